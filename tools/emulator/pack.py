"""Pack model behind the emulated BQ76952: series cells, power path with body diodes, heat, noise.

Host-side physics (floats are fine: the MicroPython VM has doubles). The chip model calls step() with
the FET states and the balancing bleed mask; tests read the ground truth (true SOC, charge) back.

    from tools.emulator.pack import Pack
    p = Pack(cells=16, chemistry="LFP", capacity_mah=100000, seed=3); p.set_profile(lambda t_s: -20000)

Sign convention (as the chip's CC2): current > 0 is charge, < 0 is discharge, in mA.
"""
from tools.emulator.ocv import ocv_mv, table
from tools.emulator.rng import Rng

# A body diode drops about this much when it carries the current its FET blocks (typical power MOSFET).
_DIODE_MV = 700.0


def default_vc_inputs(cells):
    """Physical wiring: cells on VC1..VC(n-1) and the top cell on VC16 (TI's guidance that the top cell
    uses VC16; which lower inputs are shorted is the board's choice, this is one common choice)."""
    if cells == 16:
        return list(range(1, 17))
    return list(range(1, cells)) + [16]


class Pack:
    """3-16 series cells with seeded spreads of capacity and internal resistance."""

    def __init__(self, cells=16, chemistry="LFP", capacity_mah=100000, seed=1, soc=0.5,
                 capacity_spread=0.02, r_mohm=None, r_spread=0.10, ambient_c=25.0, thermal_nodes=3,
                 balance_ext_ohm=20.0, balance_chip_ohm=25.0, cell_heat_j_per_k=900.0,
                 cell_cooling_w_per_k=0.3, die_heat_j_per_k=0.5, die_cooling_w_per_k=0.02,
                 fet_mohm=2.0, fet_heat_j_per_k=20.0, fet_cooling_w_per_k=0.5,
                 charger_headroom_mv=500.0, vc_inputs=None, profile=None, ts_pins=None):
        if not 3 <= cells <= 16:
            raise ValueError("cells must be 3..16")
        if capacity_mah <= 0:
            raise ValueError("capacity_mah must be > 0")
        self.chemistry = chemistry
        self._tbl = table(chemistry)
        self.cells = cells
        rng = Rng(seed)
        if r_mohm is None:
            # Typical DC resistance scales inversely with capacity: ~0.5 mOhm for a 100 Ah prismatic cell.
            r_mohm = 50000.0 / capacity_mah
        self.capacity_mas = []   # per cell, mA*s
        self.r_ohm = []
        self.soc = []            # true state of charge, fraction (may leave 0..1 when abused)
        for _ in range(cells):
            self.capacity_mas.append(capacity_mah * 3600.0 * (1.0 + capacity_spread * (2.0 * rng.uniform() - 1.0)))
            self.r_ohm.append(r_mohm / 1000.0 * (1.0 + r_spread * (2.0 * rng.uniform() - 1.0)))
            self.soc.append(float(soc))
        self.ocv = [0.0] * cells             # cached OCV per cell, refreshed after every change of SOC
        self.leak_ma = [0.0] * cells          # internal short / self-discharge per cell
        self.charge_in_mas = [0.0] * cells    # ground truth: net charge into each cell since start
        self.vc_inputs = list(vc_inputs) if vc_inputs is not None else default_vc_inputs(cells)
        if len(self.vc_inputs) != cells or len(set(self.vc_inputs)) != cells:
            raise ValueError("vc_inputs must name one distinct VC input (1..16) per cell")
        self._input_cell = [-1] * 17          # VC input -> cell index or -1 (shorted input)
        for i, n in enumerate(self.vc_inputs):
            if not 1 <= n <= 16:
                raise ValueError("VC inputs are 1..16")
            self._input_cell[n] = i
        # Thermal: cells are split into contiguous groups, one node per fitted thermistor. ts_pins
        # names the TS pin wired to each node in order (the board's "thermistors", e.g. TS1, TS3);
        # a TS pin not named reads open. Without ts_pins node k sits on TS(k+1).
        self.ambient_c = float(ambient_c)
        if ts_pins is not None:
            ts_pins = tuple(ts_pins)
            for name in ts_pins:
                if name not in ("TS1", "TS2", "TS3") or ts_pins.count(name) != 1:
                    raise ValueError("ts_pins must name distinct pins out of TS1, TS2, TS3")
            thermal_nodes = len(ts_pins)
        self.thermal_nodes = max(1, int(thermal_nodes))
        if ts_pins is None:
            ts_pins = ("TS1", "TS2", "TS3")[:self.thermal_nodes]
        self.ts_node = {name: k for k, name in enumerate(ts_pins)}   # TS pin name -> thermal node
        self.node_c = [self.ambient_c] * self.thermal_nodes
        self._node_of = [min(self.thermal_nodes - 1, i * self.thermal_nodes // cells) for i in range(cells)]
        self._node_cells = [self._node_of.count(k) for k in range(self.thermal_nodes)]
        self.cell_heat = cell_heat_j_per_k
        self.cell_cool = cell_cooling_w_per_k
        self.die_c = self.ambient_c
        self.die_heat = die_heat_j_per_k
        self.die_cool = die_cooling_w_per_k
        self.fet_c = self.ambient_c
        self.fet_ohm = fet_mohm / 1000.0
        self.fet_heat = fet_heat_j_per_k
        self.fet_cool = fet_cooling_w_per_k
        self.balance_ext_ohm = float(balance_ext_ohm)
        self.balance_chip_ohm = float(balance_chip_ohm)
        self.charger_headroom_mv = float(charger_headroom_mv)
        self._profile = profile
        self.short_ma = 0.0          # external short circuit current (a discharge, > 0 = magnitude)
        self.current_ma = 0.0        # pack current that flowed during the last step
        self.bleed_ma = [0.0] * cells
        self.time_s = 0.0            # simulated seconds integrated so far
        self._refresh_ocv()

    def _refresh_ocv(self):
        chem = self.chemistry
        tbl = self._tbl
        for i in range(self.cells):
            self.ocv[i] = ocv_mv(chem, self.soc[i], tbl)

    # --- load and charger ---
    def set_profile(self, fn):
        """fn(t_s) -> requested current in mA (+ charge, - discharge); t_s is CLOCK time in seconds."""
        self._profile = fn

    def requested_ma(self, t_s):
        req = 0.0
        if self._profile is not None:
            req = float(self._profile(t_s))
        if self.short_ma:
            req -= self.short_ma
        return req

    @staticmethod
    def flow_ma(req_ma, chg_on, dsg_on):
        """Current the FETs let through. Charge needs the CHG FET (DSG's body diode passes it when DSG is
        off); discharge needs the DSG FET (CHG's body diode passes it when CHG is off)."""
        if req_ma > 0:
            return req_ma if chg_on else 0.0
        if req_ma < 0:
            return req_ma if dsg_on else 0.0
        return 0.0

    # --- integration ---
    def step(self, dt_s, pack_ma, bleed_mask, chg_on=True, dsg_on=True):
        """Integrate dt_s seconds with pack current pack_ma and the cells in bleed_mask (bit i = cell i)."""
        if dt_s <= 0:
            return
        self.current_ma = pack_ma
        amb = self.ambient_c
        nodes = self.thermal_nodes
        node_w = [0.0] * nodes
        die_w = 0.0
        total_bal = self.balance_ext_ohm + self.balance_chip_ohm
        i_a = pack_ma / 1000.0
        for i in range(self.cells):
            bleed = 0.0
            if bleed_mask and (bleed_mask >> i) & 1 and total_bal > 0:
                bleed = self.ocv[i] / total_bal                  # mA, since mV / ohm
                p_bleed = (bleed / 1000.0) ** 2
                node_w[self._node_of[i]] += p_bleed * self.balance_ext_ohm
                die_w += p_bleed * self.balance_chip_ohm
            self.bleed_ma[i] = bleed
            cell_ma = pack_ma - bleed - self.leak_ma[i]
            dq = cell_ma * dt_s
            self.charge_in_mas[i] += dq
            self.soc[i] += dq / self.capacity_mas[i]
            node_w[self._node_of[i]] += i_a * i_a * self.r_ohm[i]
        for k in range(nodes):
            c = self.cell_heat * self._node_cells[k]
            g = self.cell_cool * self._node_cells[k]
            self.node_c[k] += (node_w[k] - g * (self.node_c[k] - amb)) * dt_s / c
        self.die_c += (die_w - self.die_cool * (self.die_c - amb)) * dt_s / self.die_heat
        fet_w = i_a * i_a * self.fet_ohm * (1 if chg_on else 0) + i_a * i_a * self.fet_ohm * (1 if dsg_on else 0)
        # A body diode carrying current dissipates V_diode * I instead of I^2 R.
        if (pack_ma < 0 and not chg_on) or (pack_ma > 0 and not dsg_on):
            fet_w += _DIODE_MV / 1000.0 * abs(i_a)
        self.fet_c += (fet_w - self.fet_cool * (self.fet_c - amb)) * dt_s / self.fet_heat
        self.time_s += dt_s
        self._refresh_ocv()

    # --- voltages ---
    def cell_ocv_mv(self, i):
        return self.ocv[i]

    def cell_mv(self, i):
        """Terminal voltage of cell i (mV, float) with the current of the last step."""
        cell_ma = self.current_ma - self.bleed_ma[i] - self.leak_ma[i]
        return self.ocv[i] + cell_ma * self.r_ohm[i]

    def input_mvs(self, out):
        """Fill out[1..16] with the VC input voltages (shorted inputs 0) in one pass; returns the stack."""
        stack = 0.0
        ic = self._input_cell
        cur = self.current_ma
        for n in range(1, 17):
            i = ic[n]
            if i < 0:
                out[n] = 0.0
            else:
                v = self.ocv[i] + (cur - self.bleed_ma[i] - self.leak_ma[i]) * self.r_ohm[i]
                out[n] = v
                stack += v
        return stack

    def input_mv(self, n):
        """Voltage across VC(n)-VC(n-1) (n = 1..16): a cell, or 0 for a shorted unused input."""
        i = self._input_cell[n]
        if i < 0:
            return 0.0
        return self.cell_mv(i)

    def stack_mv(self):
        s = 0.0
        for i in range(self.cells):
            s += self.cell_mv(i)
        return s

    def pack_pin_mv(self, req_ma, chg_on, dsg_on, stack=None):
        """Voltage at the PACK+ terminal (simplified: a path conducts, a charger floats above, or 0)."""
        if stack is None:
            stack = self.stack_mv()
        if dsg_on:
            return stack - (0.0 if chg_on else _DIODE_MV) + self.current_ma * self.fet_ohm * 2
        if req_ma > 0:
            if chg_on:
                return stack + _DIODE_MV
            return stack + self.charger_headroom_mv
        return 0.0

    # --- ground truth for tests ---
    def true_soc(self, i):
        return self.soc[i]

    def true_soc_list(self):
        return list(self.soc)

    def true_charge_mah(self, i):
        """Net charge into cell i since the model started (mAh)."""
        return self.charge_in_mas[i] / 3600.0

    def pack_soc(self):
        """Pack SOC as a BMS should see it: limited by the emptiest cell (fraction)."""
        return min(self.soc)

    def set_soc(self, soc, cell=None):
        if cell is None:
            for i in range(self.cells):
                self.soc[i] = float(soc)
        else:
            self.soc[cell] = float(soc)
        self._refresh_ocv()

    def cell_temp_c(self, i):
        return self.node_c[self._node_of[i]]
