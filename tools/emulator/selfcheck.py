"""A short end-to-end check of the emulator that runs unchanged in CPython and in the MicroPython VM.

A wrong result raises RuntimeError (not assert, which would vanish under -O).

    from tools.emulator import selfcheck
    selfcheck.run()      # returns a dict of figures; raises RuntimeError on a wrong result
"""
import struct

from simclock import CLOCK

from tools.emulator import make_emulated_board
from tools.emulator.crc import crc8


def _check(ok, what):
    if not ok:
        raise RuntimeError("emulator selfcheck failed: " + what)


def run(sim_s=600):
    CLOCK.simulate()
    b = make_emulated_board(cells=16, attach=False, profile=lambda t: -3000, cell_noise_mv=0.0)
    c = b.chip

    def rd(reg, n):
        c.i2c_write(bytes([reg]), False)
        return c.i2c_read(n)

    def sub(code):
        c.i2c_write(bytes([0x3E, code & 0xFF, code >> 8]), True)
        CLOCK.advance_ms(2)

    _check(crc8(bytes([0x10, 0x3E, 0x22])) == 0x63, "CRC-8 of TI's FET_ENABLE example")
    sub(0x0001)
    _check(rd(0x40, 2) == b"\x95\x76", "DEVICE_NUMBER")
    # Power Config without SLEEP, through CONFIG_UPDATE with checksum and length.
    sub(0x0090)
    c.i2c_write(bytes([0x3E, 0x34, 0x92, 0x82, 0x28]), True)
    s = (0x34 + 0x92 + 0x82 + 0x28) & 0xFF
    c.i2c_write(bytes([0x60, (~s) & 0xFF, 6]), True)
    CLOCK.advance_ms(2)
    sub(0x0092)
    _check(rd(0x7F, 1)[0] & 0x05 == 0, "FET test mode before FET_ENABLE")
    sub(0x0022)
    _check(rd(0x7F, 1)[0] & 0x05 == 0x05, "FETs on after FET_ENABLE")
    CLOCK.advance_ms(100)
    cells = struct.unpack("<16h", rd(0x14, 32))
    _check(abs(cells[0] - b.pack.cell_mv(0)) <= 1, "cell 1 voltage")
    cur = struct.unpack("<h", rd(0x3A, 2))[0]
    _check(abs(cur + 3000) <= 10, "CC2 current")
    b.faults.short_circuit()
    CLOCK.advance_ms(10)
    _check(rd(0x03, 1)[0] >> 7 & 1 == 1, "SCD on a short circuit")
    _check(rd(0x7F, 1)[0] & 0x04 == 0, "DSG off after SCD")
    b.faults.clear_short_circuit()
    soc0 = b.pack.true_soc(0)
    CLOCK.advance_ms(sim_s * 1000)
    c.update()
    _check(b.pack.true_soc(0) < soc0, "discharge lowers SOC")
    # Balancing bleeds the commanded cell (VC3), and a NACK fault is seen by the bus.
    data = struct.pack("<H", 1 << 2)
    s = (0x83 + data[0] + data[1]) & 0xFF
    c.i2c_write(bytes([0x3E, 0x83, 0x00]) + data, True)
    c.i2c_write(bytes([0x60, (~s) & 0xFF, 6]), True)
    q2 = b.pack.true_charge_mah(2)
    q3 = b.pack.true_charge_mah(3)
    CLOCK.advance_ms(60000)
    c.update()
    _check(b.pack.true_charge_mah(2) - q2 < b.pack.true_charge_mah(3) - q3 - 0.5, "balancing bleeds cell 3")
    b.faults.nack_next(1)
    _check(c.i2c_write(b"\x14", False) == -1, "NACK fault")
    # CRC mode from power-up: the first CRC of a read covers [0x10, reg, 0x11, d0].
    bc = make_emulated_board(cells=8, attach=False, crc=True)
    bc.chip.i2c_write(b"\x14", False)
    raw = bc.chip.i2c_read(4)
    _check(raw[1] == crc8(bytes([0x10, 0x14, 0x11, raw[0]])) and raw[3] == crc8(raw[2:3]), "CRC read framing")
    return {"steps": c.stats["steps"], "loops": c.stats["loops"], "soc": b.pack.true_soc(0)}


def main(argv=None):
    import argparse     # here, not at module level: the module also runs in the MicroPython VM
    ap = argparse.ArgumentParser(
        prog="python -m tools.emulator.selfcheck",
        description="Short end-to-end check of the emulated BQ76952 (I2C, CRC, subcommands, pack, "
                    "protections); prints its figures, exits 1 on a wrong result.")
    ap.add_argument("--sim-s", type=int, default=600, help="simulated seconds to run (default 600)")
    args = ap.parse_args(argv)
    if args.sim_s <= 0:
        ap.error("--sim-s must be > 0")
    try:
        print("emulator selfcheck OK", run(args.sim_s))
    except RuntimeError as e:
        print(e)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
