"""Run the real firmware app on an emulated board in simulated time (tests, demos, plots).

The firmware is the deployed code (firmware.app.App, the real BQ76952 driver); only the bus and the
chip are emulated (tools/emulator) and time is tools/hostport/simclock.CLOCK in simulated mode, so an
hour of pack life takes seconds.

    from tools.simboard import SimBoard
    sb = SimBoard("boards/sim16_lfp.json", soc=0.5); sb.pack.set_profile(lambda t: 20000); sb.run_s(3600)

CLI: `python tools/simboard.py --help`.
"""
import argparse
import os
import sys
import time as _time

_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(_HERE)
for _p in (_ROOT, os.path.join(_HERE, "hostport")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from tools.hostport.install import install  # noqa: E402

install()   # MicroPython's time API on CPython's time, machine/micropython stand-ins importable

import simclock  # noqa: E402

from firmware import board as _board  # noqa: E402
from firmware.app import App, NullComms  # noqa: E402
from firmware.config import defaults, validate  # noqa: E402
from firmware.log import RingLog  # noqa: E402
from firmware.sample import Sample  # noqa: E402

BOARDS = os.path.join(_ROOT, "boards")


class Trace:
    """Per-cycle record of what the firmware saw and what the pack really did (host lists)."""

    FIELDS = ("t_s", "cell_mv", "current_ma", "true_ma", "state", "faults", "soc_cpct", "true_soc_cpct",
              "balance_mask", "chg_on", "dsg_on", "temp_dc")

    def __init__(self):
        for f in self.FIELDS:
            setattr(self, f, [])

    def __len__(self):
        return len(self.t_s)


class SimBoard:
    def __init__(self, board="sim16_lfp", config=None, seed=1, soc=0.5, pack_kwargs=None, comms=None,
                 record_every=1, log_echo=False):
        if not board.endswith(".json"):
            board = os.path.join(BOARDS, board + ".json")
        self.board = _board.load(board)
        simclock.CLOCK.simulate(start_ms=0)   # deterministic: every run starts at t = 0
        self.clock = simclock.CLOCK
        over = _board.overrides(self.board)
        if config:
            over.update(config)
        self.cfg = validate.check(defaults.build(self.board["chemistry"], over))
        kw = dict(pack_kwargs or {})
        self.emu = self._make_emulator(seed, soc, kw)
        self.pack = self.emu.pack
        self.chip = self.emu.chip
        self.faults = self.emu.faults
        from firmware.afe.bq76952 import BQ76952
        import machine
        bus = self.board["i2c"]
        if not self.emu.attached:
            raise RuntimeError("the emulated chip is not on machine's I2C bus (tools/hostport/machine.py)")
        i2c = machine.I2C(bus.get("id", 0), scl=machine.Pin(bus["scl"]), sda=machine.Pin(bus["sda"]),
                          freq=bus["freq"])
        self.i2c = i2c
        self.afe = BQ76952(i2c, addr=bus.get("addr", 8), crc=bool(bus.get("crc", False)))
        self.log = RingLog(256, echo=log_echo)
        self.comms = comms if comms is not None else NullComms()
        # The host port's WDT: a cycle that fails to feed it within wdt_ms raises machine.ResetRequested
        # at the next sleep, as the board would reset.
        self.wdt = machine.WDT(timeout=self.cfg["wdt_ms"])
        self.app = App(self.cfg, self.afe, Sample(self.cfg["cell_count"], self.cfg["temp_count"]),
                       comms=self.comms, wdt=self.wdt, log=self.log)
        self.trace = Trace()
        self.record_every = record_every
        self._n = 0
        self.wall_s = 0.0
        self.app.start()

    def _make_emulator(self, seed, soc, kw):
        from tools.emulator import make_emulated_board
        c = self.cfg
        po = dict(kw.pop("pack_options", {}))
        if "thermal_nodes" not in po:
            po.setdefault("ts_pins", list(self.board["thermistors"]))   # thermal nodes on the named pins
        if self.board.get("vc_inputs"):
            po.setdefault("vc_inputs", list(self.board["vc_inputs"]))
        return make_emulated_board(cells=c["cell_count"], chemistry=c["chemistry"].upper(),
                                   capacity_mah=c["capacity_mah"], seed=seed, soc=soc,
                                   sense_mohm=c["shunt_uohm"] / 1000.0, pack_options=po, **kw)

    # --- running ---
    def now_s(self):
        return self.clock.now_us() / 1e6

    def step(self):
        """One firmware cycle (plus its sleep to the next period); records the trace."""
        self.app.run(1)
        self._n += 1
        if self._n % self.record_every == 0:
            self._record()

    def run_s(self, seconds, until=None):
        """Run cycles for `seconds` of simulated time, or until `until(self)` is true. Returns cycles run."""
        t_end = self.clock.now_us() + int(seconds * 1e6)
        w0 = _time.perf_counter()
        n = 0
        while self.clock.now_us() < t_end:
            self.step()
            n += 1
            if until is not None and until(self):
                break
        self.wall_s += _time.perf_counter() - w0
        return n

    def _record(self):
        s = self.app.sample
        p = self.pack
        tr = self.trace
        tr.t_s.append(self.now_s())
        tr.cell_mv.append(list(s.cell_mv))
        tr.current_ma.append(s.current_ma)
        tr.true_ma.append(p.current_ma)
        tr.state.append(s.state)
        tr.faults.append(s.faults)
        tr.soc_cpct.append(s.soc_cpct)
        tr.true_soc_cpct.append(round(p.pack_soc() * 10000))
        tr.balance_mask.append(s.balance_mask)
        chg, dsg = self.fets()
        tr.chg_on.append(chg)
        tr.dsg_on.append(dsg)
        tr.temp_dc.append(list(s.temp_dc))

    # --- ground truth helpers ---
    def fets(self):
        """(chg_on, dsg_on) as the emulated chip really drives them."""
        return self.chip.now_fets()

    def spread_mv(self):
        """True OCV spread across cells (mV), from the pack model."""
        v = [self.pack.cell_ocv_mv(i) for i in range(self.pack.cells)]
        return max(v) - min(v)

    def sim_hours_per_wall_s(self):
        return (self.clock.now_us() / 3.6e9) / self.wall_s if self.wall_s else 0.0

    # --- plots ---
    def plot(self, path, title=""):
        """Write a PNG of the trace: cell voltages, currents, SOC, state/faults/FETs."""
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        tr = self.trace
        if not len(tr):
            return None
        t_h = [t / 3600.0 for t in tr.t_s]
        fig, ax = plt.subplots(4, 1, figsize=(10, 10), sharex=True)
        n = len(tr.cell_mv[0])
        for i in range(n):
            ax[0].plot(t_h, [c[i] for c in tr.cell_mv], lw=0.8)
        ax[0].set_ylabel("cell (mV)")
        ax[1].plot(t_h, [c / 1000 for c in tr.current_ma], label="measured")
        ax[1].plot(t_h, [c / 1000 for c in tr.true_ma], "--", label="true")
        ax[1].set_ylabel("current (A)")
        ax[1].legend(loc="best")
        ax[2].plot(t_h, [c / 100 for c in tr.soc_cpct], label="firmware SOC")
        ax[2].plot(t_h, [c / 100 for c in tr.true_soc_cpct], "--", label="true (min cell)")
        ax[2].set_ylabel("SOC (%)")
        ax[2].legend(loc="best")
        ax[3].step(t_h, tr.state, where="post", label="state")
        ax[3].step(t_h, [1.2 * c for c in tr.chg_on], where="post", label="CHG on")
        ax[3].step(t_h, [1.4 * c for c in tr.dsg_on], where="post", label="DSG on")
        ax[3].step(t_h, [min(6, bin(f).count("1")) for f in tr.faults], where="post", label="# faults")
        ax[3].set_ylabel("state / FET")
        ax[3].set_xlabel("simulated time (h)")
        ax[3].legend(loc="best", fontsize=7)
        fig.suptitle(title)
        fig.tight_layout()
        d = os.path.dirname(path)
        if d:
            os.makedirs(d, exist_ok=True)
        fig.savefig(path, dpi=90)
        plt.close(fig)
        return path


def main(argv=None):
    ap = argparse.ArgumentParser(description="Run the firmware on an emulated board in simulated time.")
    ap.add_argument("--board", default="sim16_lfp", help="board name under boards/ or a JSON path")
    ap.add_argument("--hours", type=float, default=1.0, help="simulated hours to run")
    ap.add_argument("--current-ma", type=int, default=-20000, help="constant load (-) or charge (+) in mA")
    ap.add_argument("--soc", type=float, default=0.5, help="initial true SOC of every cell (0..1)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--period-ms", type=int, default=None, help="cycle period (default from config)")
    ap.add_argument("--plots", default=os.environ.get("BMS_PLOTS"), help="write a PNG into this folder")
    ap.add_argument("--log", action="store_true", help="echo the firmware's log lines")
    a = ap.parse_args(argv)
    cfg = {"period_ms": a.period_ms} if a.period_ms else None
    sb = SimBoard(a.board, config=cfg, seed=a.seed, soc=a.soc, log_echo=a.log, record_every=4)
    i_ma = a.current_ma
    sb.pack.set_profile(lambda t: i_ma)
    sb.run_s(a.hours * 3600)
    s = sb.app.sample
    print("simulated %.2f h in %.1f s wall (%.1f sim h / wall s); cycles %d, overruns %d"
          % (sb.clock.now_us() / 3.6e9, sb.wall_s, sb.sim_hours_per_wall_s(), sb.app.cycles, sb.app.overruns))
    print("state %d faults 0x%04x soc %.2f %% (true %.2f %%)" % (s.state, s.faults, s.soc_cpct / 100,
                                                                 sb.pack.pack_soc() * 100))
    if a.plots:
        print("plot:", sb.plot(os.path.join(a.plots, "simboard_%s.png" % sb.board["name"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
