"""Helpers for the simulated-time scenarios: the board, a CC-CV charger, plots on request.

Plots: set BMS_PLOTS=<dir> (e.g. `BMS_PLOTS=out/plots pytest tests/scenarios`) to write one PNG per
scenario; without it nothing is drawn. Scenarios register their board with the `plots` fixture
(conftest.py), which draws at teardown, so a failing scenario still leaves its plot (title marked
FAILED) for debugging. docs/protection.md "Scenarios and plots".

Watch: per-cycle observations that the trace (which may record every n-th cycle) would miss: chip
FET switches and the chip's safety status over the whole run.
"""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tools.simboard import SimBoard  # noqa: E402

# Safety Status A/B bits of the BQ76952 (reference section 2), for "which line tripped" assertions.
SS_COV = 0x08
SS_SCD = 0x80
SS_OTC = 0x1000


def board(name="sim16_lfp", **kw):
    return SimBoard(name, **kw)


class Watch:
    """Observe every cycle of a SimBoard run: pass `watch.until` (or `watch.wrap(pred)`) to run_s.

    fet_switches: how often the chip's CHG or DSG FET changed (ground truth from the emulator).
    ss_chip / ss_read: OR of the chip's Safety Status A | B << 8, from the emulator and as the firmware
    read it (sample.safety_status), over every cycle watched. faults: OR of the firmware's fault bits.
    """

    def __init__(self, sb):
        self.sb = sb
        self.fets = sb.fets()
        self.fet_switches = 0
        self.chg_switches = 0
        self.ss_chip = 0
        self.ss_read = 0
        self.faults = 0
        self.states = set()

    def observe(self, sb):
        f = sb.fets()
        if f != self.fets:
            self.fet_switches += 1
            if f[0] != self.fets[0]:
                self.chg_switches += 1
            self.fets = f
        st = sb.chip.prot.registers()
        self.ss_chip |= st[1] | st[3] << 8
        self.ss_read |= sb.app.sample.safety_status
        self.faults |= sb.app.sample.faults
        self.states.add(sb.app.sample.state)

    def until(self, sb):
        self.observe(sb)
        return False

    def wrap(self, pred):
        def until(sb):
            self.observe(sb)
            return pred(sb)
        return until


def maybe_plot(sb, name, title=""):
    d = os.environ.get("BMS_PLOTS")
    if d:
        return sb.plot(os.path.join(d, name + ".png"), title or name)
    return None


def cccv(pack, i_cc_ma, v_cell_mv):
    """A charger that regulates on the highest cell (as a BMS-aware charger does): constant current
    until a cell reaches v_cell_mv, then just enough current to hold that cell there."""
    def profile(t_s):
        i = i_cc_ma
        for k in range(pack.cells):
            head = (v_cell_mv - pack.cell_ocv_mv(k)) / pack.r_ohm[k]   # mV / ohm = mA
            if head < i:
                i = head
        return i if i > 0 else 0.0
    return profile


def first_time(trace, pred, start=0):
    """Simulated time (s) of the first trace index >= start where pred(index) holds, or None."""
    for j in range(start, len(trace)):
        if pred(j):
            return trace.t_s[j]
    return None
