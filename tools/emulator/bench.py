"""Speed of the emulated BQ76952 + pack in simulated seconds per wall-clock second.

Runs in CPython (and in the MicroPython VM, which has time.ticks_ms instead of perf_counter).

    python -m tools.emulator.bench            # 16-cell LFP, 1 simulated hour, three host patterns
    python -m tools.emulator.bench 600        # 10 simulated minutes per run; --help for usage
"""

from simclock import CLOCK

from tools.emulator import make_emulated_board


def _wall_ms():
    import time
    if hasattr(time, "perf_counter"):
        return time.perf_counter() * 1000.0
    return time.ticks_ms()


def _load(t_s):
    # 8 A discharge for 10 min, 3 A charge for 10 min (under the default SCD of 10 A with 1 mOhm;
    # keeps the chip out of SLEEP).
    return -8000 if int(t_s) % 1200 < 600 else 3000


def run(sim_s=3600, poll_ms=0, cells=16):
    CLOCK.simulate()
    b = make_emulated_board(cells=cells, chemistry="LFP", seed=1, attach=False, profile=_load)
    chip = b.chip
    chip.i2c_write(bytes([0x3E, 0x22, 0x00]), True)       # FET_ENABLE
    start = _wall_ms()
    end_us = CLOCK.now_us() + sim_s * 1000000
    if poll_ms:
        while CLOCK.now_us() < end_us:
            CLOCK.advance_ms(poll_ms)
            chip.i2c_write(b"\x14", False)
            chip.i2c_read(32)                              # 16 cells
            chip.i2c_write(b"\x3A", False)
            chip.i2c_read(2)                               # current
            chip.i2c_write(b"\x02", False)
            chip.i2c_read(6)                               # safety alert/status A-C
    else:
        CLOCK.advance_us(end_us - CLOCK.now_us())
        chip.update()
    wall_s = (_wall_ms() - start) / 1000.0
    return sim_s / wall_s if wall_s > 0 else 0.0, chip.stats


def main(argv=None):
    import argparse     # here, not at module level: the module also runs in the MicroPython VM
    ap = argparse.ArgumentParser(
        prog="python -m tools.emulator.bench",
        description="Speed of the emulated BQ76952 + 16-cell LFP pack in simulated seconds per wall second, "
                    "with no host traffic and with a host polling every 250 ms and every 100 ms.")
    ap.add_argument("sim_s", nargs="?", type=int, default=3600,
                    help="simulated seconds per run (default 3600)")
    sim_s = ap.parse_args(argv).sim_s
    if sim_s <= 0:
        ap.error("sim_s must be > 0")
    for poll in (0, 250, 100):
        rate, stats = run(sim_s, poll)
        label = "no host traffic" if not poll else "host reads cells+current+safety every %d ms" % poll
        print("16 cells, %d s simulated, %s: %.0f simulated s per wall s (%d steps, %d ADC loops)"
              % (sim_s, label, rate, stats["steps"], stats["loops"]))


if __name__ == "__main__":
    main()
