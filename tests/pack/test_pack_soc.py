"""SOC: integer coulomb counting, OCV correction outside the flat band, full/empty marks, capacity learning."""
from firmware.config import defaults
from firmware.pack.protection import Protection
from firmware.pack.soc import Soc, ocv_lookup
from firmware.sample import Sample


def rig(chem="nmc", **over):
    cfg = defaults.build(chem, over)
    s = Sample(16, 3)
    p = Protection(cfg)
    mv = 3800 if chem == "nmc" else 3290
    for i in range(16):
        s.cell_mv[i] = mv
    p._derive(s)
    return cfg, s, p, Soc(cfg)


def test_ocv_lookup_interpolates_and_clamps():
    t = (3000, 0, 3400, 4000, 4200, 10000)
    assert ocv_lookup(t, 2900) == 0 and ocv_lookup(t, 4300) == 10000
    assert ocv_lookup(t, 3200) == 2000
    assert ocv_lookup(t, 3800) == 7000


def test_one_hour_at_one_c_moves_100_percent():
    cfg, s, p, soc = rig(initial_soc_cpct=0, capacity_mah=5000)
    soc.start(s, p)
    s.current_ma = 2500            # 0.5 C for 1 h -> 50.00 %
    for _ in range(3600 * 4):
        soc.update(s, p, 250)
    assert soc.soc_cpct == 5000


def test_tiny_current_accumulates_without_loss():
    cfg, s, p, soc = rig(initial_soc_cpct=5000, capacity_mah=100000)
    soc.start(s, p)
    s.current_ma = -1              # 1 mA for 10 h = 10 mAh = 0.01 % of 100 Ah
    for _ in range(36000 * 4):
        soc.update(s, p, 250)
    assert soc.soc_cpct == 4999


def test_accumulator_stays_small_int_for_large_pack():
    cfg, s, p, soc = rig(capacity_mah=2000000, initial_soc_cpct=5000)
    soc.start(s, p)
    s.current_ma = 327670
    for _ in range(400):
        soc.update(s, p, 1000)     # long dt is chunked
        assert abs(soc._frac) < 2 ** 30 and soc._unit < 2 ** 30


def test_ocv_correction_after_rest_on_nmc():
    cfg, s, p, soc = rig("nmc", initial_soc_cpct=2000, ocv_rest_ms=600000)
    soc.start(s, p)                # cells at 3800 mV -> 50 % on the NMC table
    s.current_ma = 0
    for _ in range(600000 // 250 - 1):
        soc.update(s, p, 250)
    assert soc.soc_cpct == 2000
    soc.update(s, p, 250)
    assert soc.soc_cpct == 5000 and soc.corrections == 1


def test_no_ocv_correction_on_lfp_plateau():
    cfg, s, p, soc = rig("lfp", initial_soc_cpct=2000, ocv_rest_ms=600000)
    soc.start(s, p)                # 3290 mV is on LFP's flat middle
    for _ in range(700000 // 250):
        soc.update(s, p, 250)
    assert soc.soc_cpct == 2000 and soc.corrections == 0


def test_lfp_ocv_correction_at_the_knee():
    cfg, s, p, soc = rig("lfp", initial_soc_cpct=3000, ocv_rest_ms=600000)
    soc.start(s, p)
    for i in range(16):
        s.cell_mv[i] = 3100        # below the plateau: the curve is steep here
    p._derive(s)
    for _ in range(600000 // 250):
        soc.update(s, p, 250)
    assert soc.soc_cpct == ocv_lookup(cfg["ocv_table"], 3100) and soc.corrections == 1


def test_capacity_learning_over_full_cycle():
    cfg, s, p, soc = rig("nmc", capacity_mah=5000, initial_soc_cpct=9000, full_current_ma=250)
    soc.start(s, p)
    for i in range(16):
        s.cell_mv[i] = cfg["full_cell_mv"] + 10
    p._derive(s)
    s.current_ma = 100             # taper
    for _ in range(25):
        soc.update(s, p, 250)
    assert soc.soc_cpct == 10000
    for i in range(16):
        s.cell_mv[i] = 3700
    p._derive(s)
    s.current_ma = -4500           # 4500 mA for 1 h = 4500 mAh: a 90 % cell
    for _ in range(3600 * 4):
        soc.update(s, p, 250)
    for i in range(16):
        s.cell_mv[i] = cfg["empty_cell_mv"] - 10
    p._derive(s)
    s.current_ma = 0
    for _ in range(20):
        soc.update(s, p, 250)
    assert soc.soc_cpct == 0
    assert 4500 <= soc.learned_mah <= 4501 and soc.capacity_mah == soc.learned_mah
    assert soc.soh_cpct == soc.capacity_mah * 10000 // 5000
