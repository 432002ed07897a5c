"""Helpers for the simulated-time scenarios: the board, a CC-CV charger, plots on request.

Plots: set BMS_PLOTS=<dir> (e.g. `BMS_PLOTS=out/plots pytest tests/scenarios`) to write one PNG per
scenario; without it nothing is drawn.
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
