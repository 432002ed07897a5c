"""State of charge by coulomb counting in integers, OCV correction after rest, capacity learning (SOH).

SOC is held as 0.01 % steps plus a remainder in mA*ms below one step. One step is capacity_mah * 360
mA*ms, so for packs up to 2000 Ah every accumulator stays below 2**30 (MicroPython's small-int limit on
the ESP32: no heap allocation); the current is integrated in chunks of at most 250 ms for the same reason.

    soc = Soc(cfg)
    soc.start(sample, protection)         # first estimate from the open-circuit voltage
    soc.update(sample, protection, dt_ms) # each cycle: sets sample.soc_cpct, sample.soh_cpct

Persistence (firmware/pack/soc_store.py, driven by the app): `save_due()` says when SOC and the learned
capacity should go to flash: on a capacity change or a full/empty mark at once, otherwise when SOC moved
by 1 % and 10 min have passed since the last write (_SAVE_STEP_CPCT, _SAVE_MIN_MS: at most 6 writes
an hour, 144 a day, plus one per full/empty mark). `restore()` before the first sample puts a stored state back; the
boot OCV estimate is then skipped, and the usual OCV correction after ocv_rest_ms of rest (outside the
flat band) still overrides it.

OCV correction: after ocv_rest_ms with |current| < rest_ma, the rested average cell voltage gives SOC
from the chemistry's table, but only outside ocv_lo_cpct..ocv_hi_cpct (LFP's flat plateau, where a few
mV are tens of percent). Full (max cell >= full_cell_mv at taper current, or a cell over-voltage) sets
100 %; empty (min cell <= empty_cell_mv) sets 0 %. A discharge from full to empty measures capacity.
"""
from micropython import const

_SAVE_STEP_CPCT = const(100)     # write the state after SOC moved 1 % ...
_SAVE_MIN_MS = const(600000)     # ... but at most every 10 min (marks and a learned capacity: at once)
_CHUNK_MS = const(250)
_MAS_PER_MAH = const(3600000)
_EDGE_MS = const(5000)   # full/empty condition must hold this long (load transients)


def ocv_lookup(table, mv):
    """SOC (0.01 %) for a rested cell voltage by linear interpolation in (mV, cpct) pairs."""
    n = len(table)
    if mv <= table[0]:
        return table[1]
    if mv >= table[n - 2]:
        return table[n - 1]
    i = 2
    while i < n - 2 and table[i] < mv:
        i += 2
    v0 = table[i - 2]
    c0 = table[i - 1]
    v1 = table[i]
    c1 = table[i + 1]
    return c0 + (mv - v0) * (c1 - c0) // (v1 - v0)


class Soc:
    def __init__(self, cfg):
        self.nominal_mah = 0
        self.capacity_mah = 0
        self.soh_cpct = 10000
        self.configure(cfg)
        self.soc_cpct = 5000
        self._frac = 0          # 0 <= _frac < _unit (mA*ms)
        self.rest_ms = 0
        self._ocv_done = False
        self.corrections = 0    # OCV corrections applied
        self._full_ms = 0
        self._empty_ms = 0
        self._seen_full = False
        self._dsg_mah = 0       # discharged since the last full (for capacity learning)
        self._dsg_frac = 0
        self.learned_mah = 0    # last learned capacity (0: none yet)
        self.fulls = 0          # full marks seen (SOC recalibrated to 100 %)
        self.empties = 0        # empty marks seen
        self._saved_soc = -1    # soc_cpct last written (-1: never, or a mark / new capacity to write now)
        self._since_save_ms = 0

    def configure(self, cfg):
        """Take the settings from a validated config; a new nominal capacity restarts SOH at 100 %."""
        if cfg["capacity_mah"] != self.nominal_mah:
            self.nominal_mah = cfg["capacity_mah"]
            self.capacity_mah = self.nominal_mah
            self.soh_cpct = 10000
            self._unit = self.capacity_mah * 360   # mA*ms per 0.01 %
            self._frac = 0
        self._table = cfg["ocv_table"]
        self._ocv_lo = cfg["ocv_lo_cpct"]
        self._ocv_hi = cfg["ocv_hi_cpct"]
        self._rest_ma = cfg["rest_ma"]
        self._ocv_rest_ms = cfg["ocv_rest_ms"]
        self._full_mv = cfg["full_cell_mv"]
        self._full_ma = cfg["full_current_ma"]
        self._empty_mv = cfg["empty_cell_mv"]
        self._initial = cfg["initial_soc_cpct"]

    def restore(self, soc_cpct, capacity_mah, nominal_mah):
        """Put a stored state back (before start()). A stored capacity counts only for the same nominal
        capacity (a new pack restarts SOH at 100 %). Returns True if the capacity was taken."""
        if self._initial < 0:   # a configured initial_soc_cpct wins (tests, commissioning)
            self._initial = soc_cpct
        self._saved_soc = soc_cpct
        if nominal_mah != self.nominal_mah:
            return False
        self.capacity_mah = capacity_mah
        self._unit = capacity_mah * 360
        self._frac = 0
        self._soh()
        return True

    def save_due(self):
        """True when the state should be written now (see the module docstring for the rate)."""
        saved = self._saved_soc
        if saved < 0:
            return True
        d = self.soc_cpct - saved
        return (d >= _SAVE_STEP_CPCT or -d >= _SAVE_STEP_CPCT) and self._since_save_ms >= _SAVE_MIN_MS

    def saved(self):
        """The state was written: remember it (also after a failed write, so a broken flash is retried
        only after _SAVE_MIN_MS)."""
        self._saved_soc = self.soc_cpct
        self._since_save_ms = 0

    def start(self, s, prot):
        if self._initial >= 0:      # configured, or restored from the state file
            self.soc_cpct = self._initial
        else:
            self.soc_cpct = ocv_lookup(self._table, prot.avg_mv)
        self._frac = 0
        s.soc_cpct = self.soc_cpct
        s.soh_cpct = self.soh_cpct

    def _count(self, q):
        """Add q mA*ms (|q| <= 250 ms * 2**15 * 10 mA, well inside small ints)."""
        f = self._frac + q
        unit = self._unit
        if f >= unit or f < 0:
            k = f // unit
            f -= k * unit
            soc = self.soc_cpct + k
            if soc > 10000:
                soc = 10000
                f = 0
            elif soc < 0:
                soc = 0
                f = 0
            self.soc_cpct = soc
        self._frac = f
        if q < 0:
            d = self._dsg_frac - q
            if d >= _MAS_PER_MAH:
                k = d // _MAS_PER_MAH
                d -= k * _MAS_PER_MAH
                self._dsg_mah += k
            self._dsg_frac = d

    def update(self, s, prot, dt_ms):
        i_ma = s.current_ma
        if self._since_save_ms < 0x3FFFFFFF - dt_ms:
            self._since_save_ms += dt_ms
        left = dt_ms
        while left > 0:
            step = _CHUNK_MS if left > _CHUNK_MS else left
            self._count(i_ma * step)
            left -= step
        # Rest and OCV correction.
        if -self._rest_ma <= i_ma <= self._rest_ma:
            if self.rest_ms < 0x3FFFFFFF - dt_ms:
                self.rest_ms += dt_ms
            if not self._ocv_done and self.rest_ms >= self._ocv_rest_ms:
                self._ocv_done = True
                ocv = ocv_lookup(self._table, prot.avg_mv)
                if ocv < self._ocv_lo or ocv > self._ocv_hi:
                    self.soc_cpct = ocv
                    self._frac = 0
                    self.corrections += 1
        else:
            self.rest_ms = 0
            self._ocv_done = False
        # Full: a cell at the full voltage while the charge current tapered (or the pack stopped).
        if prot.max_mv >= self._full_mv and i_ma <= self._full_ma:
            self._full_ms += dt_ms
            if self._full_ms >= _EDGE_MS:
                self._full_ms = 0
                self._at_full()
        else:
            self._full_ms = 0
        if prot.min_mv <= self._empty_mv:
            self._empty_ms += dt_ms
            if self._empty_ms >= _EDGE_MS:
                self._empty_ms = 0
                self._at_empty()
        else:
            self._empty_ms = 0
        s.soc_cpct = self.soc_cpct
        s.soh_cpct = self.soh_cpct

    def _at_full(self):
        self.fulls += 1
        if self._saved_soc != 10000:
            self._saved_soc = -1    # write the mark now
        self.soc_cpct = 10000
        self._frac = 0
        self._seen_full = True
        self._dsg_mah = 0
        self._dsg_frac = 0

    def _at_empty(self):
        self.empties += 1
        if self._saved_soc != 0:
            self._saved_soc = -1
        self.soc_cpct = 0
        self._frac = 0
        if self._seen_full:
            self._seen_full = False
            self.learn(self._dsg_mah)

    def learn(self, measured_mah):
        """Take a full-to-empty discharge as the capacity; SOH = capacity / nominal (clamped 50..120 %)."""
        nom = self.nominal_mah
        cap = measured_mah
        if cap < nom // 2:
            cap = nom // 2
        if cap > nom + nom // 5:
            cap = nom + nom // 5
        self.learned_mah = measured_mah
        self.capacity_mah = cap
        self._unit = cap * 360
        self._frac = 0
        self._saved_soc = -1        # a new capacity is written at once
        self._soh()

    def _soh(self):
        nom = self.nominal_mah
        cap = self.capacity_mah
        self.soh_cpct = cap * 100 // (nom // 100) if nom >= 10000 else cap * 10000 // nom
