"""Firmware protection, the second line behind the BQ76952's own: a fault bitmask with delays and hysteresis.

Each fault has a trip condition held for a delay, and a recovery condition held for `recovery_ms`.
Self-recovering faults clear on their own; latched faults (LATCHED) stay until `reset()`.
The chip's own trips (Safety Status, PF Status) raise the matching firmware fault at once, so the
state machine sees one picture whichever line tripped first (docs/protection.md).

    p = Protection(cfg)
    p.update(sample, read_ok, now_ms, dt_ms)   # then p.faults, p.raised, p.cleared

No allocation in update(): integer state in preallocated arrays, derived figures in attributes.
"""
from array import array

from micropython import const

from firmware import sample as S
from firmware.sample import TEMP_INVALID_DC

try:
    from time import ticks_diff
except ImportError:  # CPython without the host port's time plugin: same arithmetic (period 2**30 ms)
    def ticks_diff(new, old):
        return ((new - old + 0x20000000) & 0x3FFFFFFF) - 0x20000000

# Fault bits (bit n = index n in NAMES).
F_CELL_OV = const(0x0001)
F_CELL_UV = const(0x0002)
F_CHG_OC = const(0x0004)
F_DSG_OC = const(0x0008)
F_CHG_OT = const(0x0010)
F_CHG_UT = const(0x0020)
F_DSG_OT = const(0x0040)
F_DSG_UT = const(0x0080)
F_IMBALANCE = const(0x0100)
F_STALE = const(0x0200)
F_AFE_COMM = const(0x0400)
F_TEMP_SENSOR = const(0x0800)
F_SHORT = const(0x1000)
F_AFE_OT = const(0x2000)
F_CHIP_PF = const(0x4000)
_N = const(15)
N_FAULTS = _N

NAMES = ("cell_ov", "cell_uv", "chg_oc", "dsg_oc", "chg_ot", "chg_ut", "dsg_ot", "dsg_ut",
         "imbalance", "stale", "afe_comm", "temp_sensor", "short", "afe_ot", "chip_pf")

# Faults that stay until an explicit reset: they point at hardware trouble, not at an operating limit.
LATCHED = F_IMBALANCE | F_AFE_COMM | F_TEMP_SENSOR | F_SHORT | F_CHIP_PF
# Faults that forbid both directions (any doubt opens the FETs).
BLOCK_BOTH = F_STALE | F_AFE_COMM | F_TEMP_SENSOR | F_SHORT | F_AFE_OT | F_CHIP_PF
BLOCK_CHG = BLOCK_BOTH | F_CELL_OV | F_CHG_OC | F_CHG_OT | F_CHG_UT | F_IMBALANCE
BLOCK_DSG = BLOCK_BOTH | F_CELL_UV | F_DSG_OC | F_DSG_OT | F_DSG_UT

def names(mask):
    """'cell_ov|stale' for a bitmask (allocates: for logs and tests, not the cycle)."""
    out = []
    for i in range(_N):
        if mask & (1 << i):
            out.append(NAMES[i])
    return "|".join(out) if out else "none"


class Protection:
    def __init__(self, cfg):
        self.configure(cfg)
        self._trip_ms = array("i", [0] * _N)
        self._clear_ms = array("i", [0] * _N)
        self.faults = 0
        self.raised = 0         # bits raised by the last update
        self.cleared = 0        # bits cleared by the last update (or reset)
        self.present = 0        # conditions beyond their threshold in the last update (tripped or not)
        self.read_failures = 0  # consecutive failed AFE reads
        self.trip_count = 0     # faults raised since boot
        # Figures derived from the last good sample (used by balancing, state, SOC).
        self.max_mv = 0
        self.min_mv = 0
        self.max_cell = 0
        self.min_cell = 0
        self.avg_mv = 0
        self.t_max_dc = 0
        self.t_min_dc = 0
        self.t_valid = 0
        self.current_ma = 0
        self.age_ms = 0
        self.int_temp_dc = 0
        self.safety_status = 0
        self.pf_status = 0

    def configure(self, c):
        """Take the limits from a validated config (at boot and on a config change)."""
        self.ov_mv = c["cell_ov_mv"]
        self.ov_delay = c["cell_ov_delay_ms"]
        self.ov_hyst = c["cell_ov_hyst_mv"]
        self.uv_mv = c["cell_uv_mv"]
        self.uv_delay = c["cell_uv_delay_ms"]
        self.uv_hyst = c["cell_uv_hyst_mv"]
        self.chg_oc = c["chg_oc_ma"]
        self.chg_oc_delay = c["chg_oc_delay_ms"]
        self.dsg_oc = c["dsg_oc_ma"]
        self.dsg_oc_delay = c["dsg_oc_delay_ms"]
        self.oc_recovery = c["oc_recovery_ms"]
        self.chg_ot = c["chg_ot_dc"]
        self.chg_ut = c["chg_ut_dc"]
        self.dsg_ot = c["dsg_ot_dc"]
        self.dsg_ut = c["dsg_ut_dc"]
        self.t_delay = c["temp_delay_ms"]
        self.t_hyst = c["temp_hyst_dc"]
        self.imb_mv = c["imbalance_mv"]
        self.imb_delay = c["imbalance_delay_ms"]
        self.stale_ms = c["stale_ms"]
        self.fail_cycles = c["afe_fail_cycles"]
        self.recovery = c["recovery_ms"]
        # Firmware AFE die limit sits the chip margin below the chip's OTINT.
        self.afe_ot = c["otint_dc"] - c["chip_temp_margin_dc"]
        self.temp_count = c["temp_count"]
        self.t_lo_valid = c["temp_valid_min_dc"]
        self.t_hi_valid = c["temp_valid_max_dc"]

    def _step(self, i, over, ok, delay_ms, recover_ms, dt_ms):
        """Advance fault i: `over` held for delay trips it; `ok` held for recover_ms clears it."""
        bit = 1 << i
        if over:
            self.present |= bit
        if self.faults & bit:
            self._trip_ms[i] = 0
            if ok and not (LATCHED & bit):
                c = self._clear_ms[i] + dt_ms
                if c >= recover_ms:
                    self.faults &= ~bit
                    self.cleared |= bit
                    self._clear_ms[i] = 0
                else:
                    self._clear_ms[i] = c
            else:
                self._clear_ms[i] = 0
        elif over:
            t = self._trip_ms[i] + dt_ms
            if t >= delay_ms:
                self._raise(i)
            else:
                self._trip_ms[i] = t
        else:
            self._trip_ms[i] = 0

    def _raise(self, i):
        bit = 1 << i
        self.present |= bit
        if not self.faults & bit:
            self.faults |= bit
            self.raised |= bit
            self.trip_count += 1
        self._trip_ms[i] = 0
        self._clear_ms[i] = 0

    def _derive(self, s):
        n = s.cell_count
        cells = s.cell_mv
        hi = cells[0]
        lo = hi
        hi_i = 0
        lo_i = 0
        total = 0
        for i in range(n):
            v = cells[i]
            total += v
            if v > hi:
                hi = v
                hi_i = i
            if v < lo:
                lo = v
                lo_i = i
        self.max_mv = hi
        self.min_mv = lo
        self.max_cell = hi_i
        self.min_cell = lo_i
        self.avg_mv = total // n
        tmax = -32768
        tmin = 32767
        valid = 0
        lo_ok = self.t_lo_valid
        hi_ok = self.t_hi_valid
        for i in range(s.temp_count):
            t = s.temp_dc[i]
            if t == TEMP_INVALID_DC or t <= lo_ok or t >= hi_ok:
                continue
            valid += 1
            if t > tmax:
                tmax = t
            if t < tmin:
                tmin = t
        self.t_valid = valid
        self.t_max_dc = tmax
        self.t_min_dc = tmin

    def update(self, s, read_ok, now_ms, dt_ms):
        """One cycle. `read_ok` False when afe.read raised OSError (s then holds the last good data)."""
        self.raised = 0
        self.cleared = 0
        if read_ok:
            self.present = 0
            self.read_failures = 0
        else:
            self.read_failures += 1
        # Lost AFE communication: latched, the chip's host watchdog is the other half (docs).
        self._step(10, self.read_failures >= self.fail_cycles, False, 0, 0, dt_ms)
        # Stale: newest good measurement too old (failed reads, a stuck bus, overruns).
        age = ticks_diff(now_ms, s.t_ms)
        self.age_ms = age
        self._step(9, age > self.stale_ms, age <= self.stale_ms, 0, self.recovery, dt_ms)
        if not read_ok:
            return self.faults
        self._derive(s)
        rec = self.recovery
        hi = self.max_mv
        lo = self.min_mv
        self._step(0, hi > self.ov_mv, hi < self.ov_mv - self.ov_hyst, self.ov_delay, rec, dt_ms)
        self._step(1, lo < self.uv_mv, lo > self.uv_mv + self.uv_hyst, self.uv_delay, rec, dt_ms)
        i_ma = s.current_ma
        self.current_ma = i_ma
        self.int_temp_dc = s.int_temp_dc
        self.safety_status = s.safety_status
        self.pf_status = s.pf_status
        self._step(2, i_ma > self.chg_oc, i_ma <= self.chg_oc, self.chg_oc_delay, self.oc_recovery, dt_ms)
        self._step(3, -i_ma > self.dsg_oc, -i_ma <= self.dsg_oc, self.dsg_oc_delay, self.oc_recovery, dt_ms)
        if self.t_valid:
            tmax = self.t_max_dc
            tmin = self.t_min_dc
            h = self.t_hyst
            d = self.t_delay
            self._step(4, tmax > self.chg_ot, tmax < self.chg_ot - h, d, rec, dt_ms)
            self._step(5, tmin < self.chg_ut, tmin > self.chg_ut + h, d, rec, dt_ms)
            self._step(6, tmax > self.dsg_ot, tmax < self.dsg_ot - h, d, rec, dt_ms)
            self._step(7, tmin < self.dsg_ut, tmin > self.dsg_ut + h, d, rec, dt_ms)
        # A thermistor reading invalid (open/short): without it over/under-temperature is blind.
        self._step(11, self.t_valid < self.temp_count, False, self.t_delay, 0, dt_ms)
        self._step(8, hi - lo > self.imb_mv, False, self.imb_delay, 0, dt_ms)
        it = s.int_temp_dc
        self._step(13, it > self.afe_ot, it < self.afe_ot - self.t_hyst, self.t_delay, rec, dt_ms)
        self._chip(s.chip_trips)
        return self.faults

    def _chip(self, trips):
        """Mirror the AFE's own trips (chip-independent, from the driver) into the bitmask at once:
        the chip already acted, and the state machine should see one picture."""
        if not trips:
            return
        if trips & S.TRIP_CELL_OV:
            self._raise(0)
        if trips & S.TRIP_CELL_UV:
            self._raise(1)
        if trips & S.TRIP_CHG_OC:
            self._raise(2)
        if trips & S.TRIP_DSG_OC:
            self._raise(3)
        if trips & S.TRIP_CHG_OT:
            self._raise(4)
        if trips & S.TRIP_CHG_UT:
            self._raise(5)
        if trips & S.TRIP_DSG_OT:
            self._raise(6)
        if trips & S.TRIP_DSG_UT:
            self._raise(7)
        if trips & S.TRIP_SHORT:
            self._raise(12)
        if trips & S.TRIP_AFE_OT:
            self._raise(13)
        if trips & S.TRIP_PF:
            self._raise(14)

    def reset(self, mask=0x7FFF):
        """Explicit reset: clear the given faults (latched ones included). Returns the bits cleared.

        A fault whose condition is still present (as of the last update, the chip's own status
        included) is not cleared: a reset never closes a FET onto a condition that is still there.
        """
        bits = self.faults & mask & ~self.present
        self.faults &= ~bits
        self.cleared |= bits
        for i in range(_N):
            if bits & (1 << i):
                self._trip_ms[i] = 0
                self._clear_ms[i] = 0
        if bits & F_AFE_COMM:
            self.read_failures = 0
        return bits

    def cause(self, i):
        """The measured value behind fault bit i, in its fixed unit (for events: mV, mA, 0.1 degC...)."""
        if i == 0:
            return self.max_mv
        if i == 1:
            return self.min_mv
        if i == 2 or i == 3:
            return self.current_ma
        if i == 4 or i == 6:
            return self.t_max_dc
        if i == 5 or i == 7:
            return self.t_min_dc
        if i == 8:
            return self.max_mv - self.min_mv
        if i == 9:
            return self.age_ms
        if i == 10:
            return self.read_failures
        if i == 11:
            return self.t_valid
        if i == 12:
            return self.safety_status
        if i == 13:
            return self.int_temp_dc
        return self.pf_status

    def pending(self):
        """Conditions beyond their threshold that have not tripped (yet)."""
        return self.present & ~self.faults

    def chg_allowed(self):
        return not (self.faults & BLOCK_CHG)

    def dsg_allowed(self):
        return not (self.faults & BLOCK_DSG)
