"""ADC side of the emulated BQ76952: loop timing and the measurement snapshot (mixin of BQ76952).

Reference section 5: 16 cell slots + 1 rotating VC16/PACK/LD slot + 1 rotating internal temp slot +
one slot per thermistor, 3 ms each (1.5 ms FASTADC), times LOOP_SLOW; a full set every 3 loops.

    chip.loop_time_us()      # 57000 with TS1 only
"""
from tools.emulator.units import PINS, clamp16, dc, k10


class AdcMixin:
    def loop_time_us(self):
        """ADC loop: 16 cells + 2 rotating slots + thermistor slots, 3 ms each (1.5 ms FASTADC), x LOOP_SLOW."""
        pc = self.cfg.get("POWER_CONFIG")
        slot = 1500 if pc >> 6 & 1 else 3000
        therms = 0
        for name in ("TS1", "TS2", "TS3"):
            if self.cfg.get("PIN_" + name) & 3 == 3:
                therms += 1
        return (18 + therms) * slot * (1 << ((pc >> 2) & 3))

    def _measure(self, t, full=True):
        """Take the ADC snapshot from the pack (cells every loop; stack/PACK/LD/internal temp every 3rd)."""
        pack = self.pack
        noise = self.opt["cell_noise_mv"]
        vals = self._vals
        stack = pack.input_mvs(vals)
        ow = self.open_wire
        if ow:
            # Open VC(n) wire: the floating input reads ~0 for cell n and cell n+1 reads both cells
            # (the sense lines of n and n+1 now span VC(n+1)..VC(n-1)). Chosen model, see docs.
            for n in range(1, 17):
                if ow >> (n - 1) & 1:
                    if n < 16:
                        vals[n + 1] += vals[n]
                    vals[n] = 0.0
        rng = self._rng
        reg = self.cell_reg
        for n in range(1, 17):
            v = vals[n]
            if noise:
                v += rng.noise(noise)
            reg[n - 1] = clamp16(int(v + 0.5) if v >= 0 else int(v - 0.5))
        # Thermistors are measured every loop.
        for k in range(9):
            self.pin_k10[k] = self._pin_tempk10(k)
        if full:
            chg, dsg = self._fets
            req = pack.requested_ma(t / 1000000.0)
            self.stack_mv = int(stack)
            self.pack_mv = int(pack.pack_pin_mv(req, chg, dsg, stack))
            self.ld_mv = self.pack_mv
            self.int_dc = dc(pack.die_c)

    def _pin_tempk10(self, k):
        cfg = self.cfg.get("PIN_" + PINS[k])
        if cfg & 3 != 3:
            return self.opt["therm_unconfigured_k10"]
        f = self.therm_fault[k]
        if f == "open":
            return k10(self.opt["therm_open_dc"])
        if f == "short":
            return k10(self.opt["therm_short_dc"])
        use = (cfg >> 2) & 3
        if use == 3:
            return k10(dc(self.pack.fet_c))
        node = self.pack.ts_node.get(PINS[k])
        if node is None:
            return k10(self.opt["therm_open_dc"])   # nothing fitted on this pin: reads open
        return k10(dc(self.pack.node_c[node]))

    def _fill_meas(self):
        m = self.meas
        mask = self.vcell_mask()
        hi = -100000
        lo = 100000
        for n in range(16):
            if mask >> n & 1:
                v = self.cell_reg[n]
                if v > hi:
                    hi = v
                if v < lo:
                    lo = v
        m.max_cell_mv = hi
        m.min_cell_mv = lo
        cell_t = []
        fet_t = []
        for k in range(9):
            cfg = self.cfg.get("PIN_" + PINS[k])
            if cfg & 3 == 3:
                use = (cfg >> 2) & 3
                if use == 1:
                    cell_t.append(self.pin_k10[k] - 2732)
                elif use == 3:
                    fet_t.append(self.pin_k10[k] - 2732)
        da = self.cfg.get("DA_CONFIG")
        if not cell_t and da >> 3 & 1:
            cell_t.append(self.int_dc)
        if not fet_t and da >> 4 & 1:
            fet_t.append(self.int_dc)
        m.max_cell_dc = max(cell_t) if cell_t else None
        m.min_cell_dc = min(cell_t) if cell_t else None
        m.fet_dc = max(fet_t) if fet_t else None
        m.int_dc = self.int_dc
        m.stack_mv = self.stack_mv
        m.pack_mv = self.pack_mv
