"""Passive balancing policy: which cells bleed, when, and how many at once.

Bleeds while charging, or at rest after bal_settle_ms (voltages need time to settle before they say
anything about charge). A cell starts when it is more than bal_start_mv above the lowest cell and
stops when within bal_stop_mv (hysteresis, so cells do not chatter). The highest cells are chosen
first, at most bal_max_cells at once and never two adjacent cells unless bal_allow_adjacent (the
BQ76952's limits: Cell Balance Max Cells; adjacent internal balancing FETs are not allowed together).
Above bal_derate_dc fewer cells bleed, above bal_stop_dc or bal_max_int_dc none. Any fault stops it.

    bal = Balancer(cfg, afe)
    bal.update(sample, protection, state, dt_ms)   # sets sample.balance_mask to what the chip applied

No allocation per cycle: selection works on integer bitmasks.
"""
from firmware.pack import state as _st


class Balancer:
    def __init__(self, cfg, afe):
        self._afe = afe
        self.configure(cfg)
        self.enabled = True    # operator switch (CMD_BALANCING)
        self.want = 0          # cells that are above the threshold (hysteresis memory)
        self.mask = 0          # cells bleeding (as applied by the driver)
        self.errors = 0        # set_balancing calls that raised OSError
        self.bleed_ms = 0      # total time any cell bled (for reports)

    def configure(self, cfg):
        self.start_mv = cfg["bal_start_mv"]
        self.stop_mv = cfg["bal_stop_mv"]
        self.min_cell_mv = cfg["bal_min_cell_mv"]
        self.settle_ms = cfg["bal_settle_ms"]
        self.max_cells = cfg["bal_max_cells"]
        self.allow_adjacent = cfg["bal_allow_adjacent"]
        self.derate_dc = cfg["bal_derate_dc"]
        self.stop_dc = cfg["bal_stop_dc"]
        self.max_int_dc = cfg["bal_max_int_dc"]

    def limit(self, prot, int_temp_dc):
        """How many cells may bleed now (0..max_cells), after thermal derating."""
        t = prot.t_max_dc if prot.t_valid else -32768
        if t >= self.stop_dc or int_temp_dc >= self.max_int_dc:
            return 0
        n = self.max_cells
        if t > self.derate_dc:
            # Linear from max_cells at derate_dc down to 1 just below stop_dc.
            span = self.stop_dc - self.derate_dc
            n = 1 + (n - 1) * (self.stop_dc - t) // span
        return n

    def allowed(self, s, prot, sm):
        if prot.faults or not self.enabled:
            return False
        st = sm.state
        if st == _st.CHARGE:
            return True
        if st == _st.IDLE or st == _st.SLEEP:
            return sm.rest_ms >= self.settle_ms
        return False

    def select(self, s, prot, limit):
        """The bleed mask: highest cells first among those wanted, honouring limit and adjacency."""
        n = s.cell_count
        cells = s.cell_mv
        lo = prot.min_mv
        want = self.want
        for i in range(n):
            d = cells[i] - lo
            bit = 1 << i
            if d > self.start_mv:
                want |= bit
            elif d <= self.stop_mv:
                want &= ~bit
        self.want = want
        mask = 0
        for _ in range(limit):
            best = -1
            best_mv = -1
            for i in range(n):
                bit = 1 << i
                if not want & bit or mask & bit:
                    continue
                if not self.allow_adjacent and mask & ((bit << 1) | (bit >> 1)):
                    continue
                if cells[i] > best_mv:
                    best_mv = cells[i]
                    best = i
            if best < 0:
                break
            mask |= 1 << best
        return mask

    def update(self, s, prot, sm, dt_ms):
        mask = 0
        if self.allowed(s, prot, sm) and prot.max_mv >= self.min_cell_mv:
            lim = self.limit(prot, s.int_temp_dc)
            if lim:
                mask = self.select(s, prot, lim)
        else:
            self.want = 0
        if mask != self.mask:
            try:
                self.mask = self._afe.set_balancing(mask)
            except OSError:
                self.errors += 1   # self.mask unchanged: the next cycle retries
        if self.mask:
            self.bleed_ms += dt_ms
        s.balance_mask = self.mask

    def bleeding(self):
        """Cells bleeding now, as a list of 1-based cell numbers (allocates: for reports only)."""
        out = []
        m = self.mask
        i = 0
        while m:
            if m & 1:
                out.append(i + 1)
            m >>= 1
            i += 1
        return out
