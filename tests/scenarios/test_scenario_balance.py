"""Balancing an imbalanced pack, measured on the pack model's true open-circuit voltages.

- While charging: an 80 mV spread falls below 10 mV; the CHG FET does not chatter when the charger
  tapers (FET Options SLEEPCHG: the chip's SLEEP no longer cuts a trickle charge off).
- At true rest (no charger): the firmware waits bal_settle_ms, bleeds with the chip kept out of SLEEP
  (CB_NOSLEEP + no SLEEP_ENABLE while cells bleed) and the spread converges.
docs/balancing.md quotes the times printed here.
"""
import pytest
from scenario_util import Watch, board, cccv

from firmware.pack import state as st

SMALL = {"capacity_mah": 1000, "full_current_ma": 50}


def imbalanced(config=SMALL, **kw):
    # 4s NMC, 1 Ah cells (small so the bleed of ~90 mA matters within hours of simulated time).
    sb = board("sim4_nmc", config=config, record_every=20, **kw)
    sb.pack.set_soc(0.88, cell=1)              # cell 2 high: ~80 mV above the others at rest
    return sb


def check_masks(sb):
    # Only the high cell (cell 2, bit 1) or cells above the lowest ever bled, and never two adjacent.
    masks = set(sb.trace.balance_mask)
    assert 0b10 in masks
    for m in masks:
        assert m & (m >> 1) == 0


@pytest.mark.slow
def test_imbalanced_pack_charge_converges_below_10_mv(plots):
    sb = imbalanced(soc=0.80)
    p = sb.pack
    spread0 = sb.spread_mv()
    assert 70 <= spread0 <= 95
    plot = plots(sb, "balance")
    p.set_profile(cccv(p, 500, sb.cfg["full_cell_mv"]))
    w = Watch(sb)
    n = sb.run_s(6 * 3600, until=w.wrap(lambda b: b.spread_mv() < 10))
    t_h = sb.now_s() / 3600
    plot.title = "imbalanced charge: %.0f mV -> %.1f mV in %.2f h" % (spread0, sb.spread_mv(), t_h)
    print("balance (charge): spread %.1f -> %.2f mV in %.2f simulated h (%d cycles, %.2f sim h / wall s); "
          "FET switches %d (CHG %d)" % (spread0, sb.spread_mv(), t_h, n, sb.sim_hours_per_wall_s(),
                                        w.fet_switches, w.chg_switches))
    assert sb.spread_mv() < 10
    tr = sb.trace
    err = max(abs(a - b) for a, b in zip(tr.soc_cpct, tr.true_soc_cpct))
    print("balance (charge): max |SOC error| against the emptiest cell %.2f %% (docs/soc.md)" % (err / 100))
    check_masks(sb)
    # No fault on the way, and no cell beyond the over-voltage limit.
    assert not any(sb.trace.faults)
    assert max(max(c) for c in sb.trace.cell_mv) < sb.cfg["cell_ov_mv"]
    # The FETs were closed at start-up (2 switches); a tapering charger must not make them chatter
    # (before SLEEPCHG: 174 CHG toggles, one every ~14 s).
    assert w.fet_switches <= 4
    # It stays balanced: 2 h more on the charger (taper, chip SLEEP allowed) without chatter.
    sb.run_s(2 * 3600, until=w.until)
    print("balance (charge): after 2 h more, spread %.2f mV, FET switches %d" % (sb.spread_mv(), w.fet_switches))
    assert sb.spread_mv() < 10
    assert w.fet_switches <= 4


@pytest.mark.slow
def test_imbalanced_pack_at_rest_balances_with_chip_awake(plots):
    sb = imbalanced(soc=0.80)
    spread0 = sb.spread_mv()
    plot = plots(sb, "balance_rest")
    sb.pack.set_profile(lambda t: 0)           # no charger, no load: true rest
    w = Watch(sb)
    settle_s = sb.cfg["bal_settle_ms"] / 1000
    # Before the settle time nothing bleeds and the chip may sleep (idle -> sleep after sleep_after_ms).
    sb.run_s(settle_s - 60, until=w.until)
    assert not any(sb.trace.balance_mask)
    assert st.SLEEP in w.states and sb.chip.sleep
    n = sb.run_s(12 * 3600, until=w.wrap(lambda b: b.spread_mv() < 10))
    t_h = sb.now_s() / 3600
    plot.title = "imbalanced pack at rest: %.0f mV -> %.1f mV in %.2f h" % (spread0, sb.spread_mv(), t_h)
    print("balance (rest): spread %.1f -> %.2f mV in %.2f simulated h incl. %.1f h settle (%d cycles, "
          "%.2f sim h / wall s); FET switches %d; chip asleep at end %s"
          % (spread0, sb.spread_mv(), t_h, settle_s / 3600, n, sb.sim_hours_per_wall_s(), w.fet_switches,
             sb.chip.sleep))
    assert sb.spread_mv() < 10
    check_masks(sb)
    assert not any(sb.trace.faults)
    # The bleed really happened on the chip (not only in the firmware's mask): cell 2's balancing time.
    assert sb.chip.cb_time_us[1] > 0
    assert w.fet_switches <= 2
    # Once balanced the chip may sleep again.
    sb.run_s(120)
    assert sb.app.sample.balance_mask == 0 and sb.app.sample.state == st.SLEEP


def test_bleeding_keeps_the_chip_out_of_sleep():
    """With the emulator's cautious [U] model (host balancing pauses in SLEEP unless CB_SLEEP;
    tests/balancing/test_balancing_chip_sleep.py) the bleed only happens if the chip stays awake:
    the firmware keeps it awake while cells bleed."""
    sb = imbalanced(soc=0.80, config=dict(SMALL, bal_settle_ms=60000, sleep_after_ms=30000))
    sb.pack.set_profile(lambda t: 0)
    assert sb.app.applied["balance_no_sleep"] == 1 and sb.app.applied["sleep_chg_fet"] == 1
    sb.run_s(600)
    assert sb.app.sample.balance_mask == 0b10
    assert not sb.chip.sleep and sb.app.sample.state == st.IDLE
    bled = sb.chip.cb_time_us[1]
    sb.run_s(60)
    assert sb.chip.cb_time_us[1] - bled >= 59 * 1000000
