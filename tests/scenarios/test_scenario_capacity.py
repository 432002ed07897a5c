"""Capacity learning (SOH) against the pack model's ground truth: a pack whose cells hold only 90 % of
the configured capacity goes full -> empty -> full; the firmware learns the capacity from the charge
counted between its full and empty marks. docs/soc.md quotes the figures printed here.

Ground truth, two ways: the charge the model really delivered between the firmware's two marks (what
a coulomb counter can measure), and the weakest cell's capacity (what the pack holds from 0 to 100 %).
The marks sit at full_cell_mv with taper current and at empty_cell_mv, a little inside 100 % and 0 %.
"""
import pytest
from scenario_util import Watch, board, cccv

H = 3600.0


@pytest.mark.slow
def test_capacity_learned_over_a_full_cycle_on_a_faded_pack(plots):
    sb = board("sim4_nmc", soc=0.6, record_every=40)
    p = sb.pack
    cfg = sb.cfg
    for i in range(p.cells):
        p.capacity_mas[i] *= 0.90               # faded: 90 % of the nominal 5 Ah (plus the model's spread)
    weakest_mah = min(p.capacity_mas) / 3600.0
    plot = plots(sb, "capacity")
    w = Watch(sb)
    i_c = cfg["capacity_mah"] // 2              # 0.5 C
    charger = cccv(p, i_c, cfg["full_cell_mv"] + 20)
    phase = {"f": charger}
    p.set_profile(lambda t: phase["f"](t))
    sb.run_s(6 * H, until=w.wrap(lambda b: b.app.soc.fulls > 0))
    assert sb.app.soc.fulls == 1 and sb.app.soc.soh_cpct == 10000
    # Discharge at 0.5 C to the empty mark; count the true charge delivered between the marks.
    q0 = sum(p.charge_in_mas) / p.cells
    t_full = sb.now_s()
    phase["f"] = lambda t: -i_c
    sb.run_s(4 * H, until=w.wrap(lambda b: b.app.soc.empties > 0))
    assert sb.app.soc.empties == 1, "no empty mark"
    delivered_mah = (q0 - sum(p.charge_in_mas) / p.cells) / 3600.0
    learned = sb.app.soc.learned_mah
    # Full again: SOC runs on the learned capacity.
    phase["f"] = charger
    sb.run_s(6 * H, until=w.wrap(lambda b: b.app.soc.fulls > 1))
    assert sb.app.soc.fulls == 2
    err_marks = (learned - delivered_mah) / delivered_mah * 100
    err_weak = (learned - weakest_mah) / weakest_mah * 100
    plot.title = "capacity learning: learned %d mAh, delivered %.0f, weakest cell %.0f" % (
        learned, delivered_mah, weakest_mah)
    print("capacity: learned %d mAh (SOH %.2f %%), true between the marks %.0f mAh (%+.2f %%), weakest cell "
          "%.0f mAh (%+.2f %%); nominal %d mAh; full->empty->full %.2f h; %.1f sim h in %.1f s wall (%.2f sim h / wall s)"
          % (learned, sb.app.soc.soh_cpct / 100, delivered_mah, err_marks, weakest_mah, err_weak,
             cfg["capacity_mah"], (sb.now_s() - t_full) / H, sb.now_s() / H, sb.wall_s, sb.sim_hours_per_wall_s()))
    assert abs(err_marks) <= 1.0                 # the counter itself
    # The marks sit inside 100 % and 0 % (empty_cell_mv is reached under load, IR drop): the learned
    # capacity under-reads the weakest cell by a few percent (measured -5.4 %), never over-reads it.
    assert -7.0 <= err_weak <= 0.0
    assert sb.app.soc.capacity_mah == learned and 8000 <= sb.app.soc.soh_cpct <= 9300
    assert not any(sb.trace.faults)
