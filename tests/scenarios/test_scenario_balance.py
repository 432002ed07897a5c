"""Charging an imbalanced pack balances it: an 80 mV spread falls below 10 mV (open-circuit, true)."""
import pytest
from scenario_util import board, cccv, maybe_plot


@pytest.mark.slow
def test_imbalanced_pack_charge_converges_below_10_mv():
    # 4s NMC, 1 Ah cells (small so the bleed of ~90 mA matters within hours of simulated time).
    sb = board("sim4_nmc", config={"capacity_mah": 1000, "full_current_ma": 50}, soc=0.80, record_every=20)
    p = sb.pack
    p.set_soc(0.88, cell=1)                    # cell 2 high: ~80 mV above the others at rest
    spread0 = sb.spread_mv()
    assert 70 <= spread0 <= 95
    p.set_profile(cccv(p, 500, sb.cfg["full_cell_mv"]))
    n = sb.run_s(6 * 3600, until=lambda b: b.spread_mv() < 10)
    t_h = sb.now_s() / 3600
    maybe_plot(sb, "balance", "imbalanced charge: %.0f mV -> %.1f mV in %.2f h" % (spread0, sb.spread_mv(), t_h))
    print("balance: spread %.1f -> %.2f mV in %.2f simulated h (%d cycles, %.1f sim h / wall s)"
          % (spread0, sb.spread_mv(), t_h, n, sb.sim_hours_per_wall_s()))
    assert sb.spread_mv() < 10
    # Only the high cell (cell 2, bit 1) or cells above the lowest ever bled, and never two adjacent.
    masks = set(sb.trace.balance_mask)
    assert 0b10 in masks
    for m in masks:
        assert m & (m >> 1) == 0
    # No fault on the way, and no cell beyond the over-voltage limit.
    assert not any(sb.trace.faults)
    assert max(max(c) for c in sb.trace.cell_mv) < sb.cfg["cell_ov_mv"]
