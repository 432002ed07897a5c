"""Host cell balancing of the emulated BQ76952 (mixin of BQ76952): CB_ACTIVE_CELLS, CB_SET_LVL, limits.

Reference section 5: host commands work sealed, CB_NO_CMD blocks them; balancing is inhibited outside
the cell and internal temperature limits; CB_SET_LVL avoids adjacent cells and Max Cells.
SLEEP interplay [U] (options cb_host_in_sleep, cb_nosleep_blocks): host balancing pauses in SLEEP
unless CB_SLEEP; CB_NOSLEEP blocks SLEEP entry while host balancing is active.

    chip._set_cb_mask(1 << 4)    # what a CB_ACTIVE_CELLS write does (bit n = VC input n + 1)
"""


class BalancingMixin:
    def _cb_inhibited(self):
        m = self.meas
        g = self.cfg.get
        if m.max_cell_dc is not None:
            if m.max_cell_dc > g("CB_MAX_CELL_TEMP") * 10 or m.min_cell_dc < g("CB_MIN_CELL_TEMP") * 10:
                return True
        return self.int_dc > g("CB_MAX_INTERNAL_TEMP") * 10

    def _cb_effective(self):
        """VC-input mask actually bleeding now."""
        if not self.cb_mask or self._cb_inhibited() or self.cfgupdate:
            return 0
        if self.sleep and self._cb_stops_in_sleep():
            return 0
        to = self.opt["cb_host_timeout_s"]
        if to and self._t - self.cb_start_us >= to * 1000000:
            return 0
        return self.cb_mask

    def _cb_stops_in_sleep(self):
        """[U] (option cb_host_in_sleep): host balancing pauses in SLEEP unless Balancing Configuration
        CB_SLEEP (bit 2) is set. The reference states CB_SLEEP for balancing in general; whether it
        covers CB_ACTIVE_CELLS is unverified, so the cautious reading is the default."""
        if self.opt["cb_host_in_sleep"] == "always":
            return False
        return not self.cfg.get("BALANCING_CONFIG") >> 2 & 1

    def _cb_blocks_sleep(self):
        """[U] (option cb_nosleep_blocks): CB_NOSLEEP (bit 3) keeps the chip out of SLEEP while host
        balancing is commanded and not inhibited."""
        if not self.opt["cb_nosleep_blocks"] or not self.cfg.get("BALANCING_CONFIG") >> 3 & 1:
            return False
        return bool(self.cb_mask) and not self._cb_inhibited()

    def _bleed_cells(self):
        eff = self._cb_effective()
        self._cb_eff_now = eff
        if not eff:
            return 0
        cells = 0
        ic = self.pack._input_cell
        for n in range(16):
            if eff >> n & 1:
                i = ic[n + 1]
                if i >= 0:
                    cells |= 1 << i
        return cells

    def _cb_loop(self, t):
        """CB_SET_LVL: keep balancing cells above the level, non-adjacent, at most Max Cells."""
        if not self.cb_lvl_mv:
            return
        mask = self.vcell_mask()
        cand = []
        for n in range(16):
            if mask >> n & 1 and self.cell_reg[n] > self.cb_lvl_mv:
                cand.append((self.cell_reg[n], n))
        cand.sort(reverse=True)
        chosen = 0
        count = 0
        limit = self.cfg.get("CB_MAX_CELLS")
        for v, n in cand:
            if count >= limit:
                break
            if chosen & ((1 << (n + 1)) | (1 << n >> 1)):
                continue
            chosen |= 1 << n
            count += 1
        if chosen != self.cb_mask:
            if not self.cb_mask:
                self.cb_start_us = t
            self.cb_mask = chosen
        if not chosen:
            self.cb_lvl_mv = 0

    def _set_cb_mask(self, mask):
        if self.cfg.get("BALANCING_CONFIG") >> 4 & 1:   # CB_NO_CMD blocks host balancing commands
            return
        if mask and self.opt["cb_adjacent"] == "reject" and mask & (mask >> 1):
            return
        limit = self.cfg.get("CB_MAX_CELLS")
        if self._popcount(mask) > limit:
            if self.opt["cb_over_max"] == "reject":
                return
            kept = 0
            for n in range(16):
                if mask >> n & 1 and self._popcount(kept) < limit:
                    kept |= 1 << n
            mask = kept
        if mask and not self.cb_mask:
            self.cb_start_us = self._t
        self.cb_mask = mask
        self.cb_lvl_mv = 0

    @staticmethod
    def _popcount(x):
        c = 0
        while x:
            x &= x - 1
            c += 1
        return c
