"""A 24-hour duty cycle on the 16s LFP board: SOC from the firmware against the pack model's truth.

Day: night rest, morning discharge, CC-CV charge to full (the only point where LFP's SOC is
observable), an afternoon of pulsed load, evening discharge, rest. Runs at period_ms 1000 with the
chip's ADC loop slowed (Power Config LOOP_SLOW = 3, a real chip setting) to keep the emulator's cost
down; the firmware is unchanged.
"""
import pytest
from scenario_util import Watch, board, cccv

H = 3600.0


def duty(pack, charger):
    def profile(t):
        h = t / H
        if h < 6:
            return 0                       # night
        if h < 8:
            return -15000                  # morning: 15 A
        if h < 9:
            return 0
        if h < 13:
            return charger(t)              # CC-CV 25 A to 3.56 V/cell
        if h < 17:
            return -30000 if int(t) % 600 < 120 else -3000   # 2 min pulses of 30 A on a 3 A base
        if h < 18:
            return 0
        if h < 21:
            return -10000                  # evening
        return 0
    return profile


@pytest.mark.slow
def test_24h_duty_cycle_soc_error_against_ground_truth(plots):
    sb = board("sim16_lfp", soc=0.6, record_every=60,
               config={"period_ms": 1000, "stale_ms": 3000},
               pack_kwargs={"dm_overrides": {"POWER_CONFIG": 0x298E}})
    plot = plots(sb, "duty_24h")
    p = sb.pack
    p.set_profile(duty(p, cccv(p, 25000, 3560)))
    w = Watch(sb)
    sb.run_s(24 * H, until=w.wrap(lambda b: b.app.soc.fulls > 0))
    full_at = sb.now_s()
    sb.run_s(24 * H - full_at, until=w.until)
    tr = sb.trace
    err_min = [abs(a - b) for a, b in zip(tr.soc_cpct, tr.true_soc_cpct)]
    # After the first full mark (full_at) the firmware's SOC is calibrated; before it, only the
    # boot-time OCV guess on LFP's plateau is available.
    after = [e for t, e in zip(tr.t_s, err_min) if t >= full_at]
    before = [e for t, e in zip(tr.t_s, err_min) if t < full_at]
    final_true = p.pack_soc() * 10000
    final_err = abs(sb.app.sample.soc_cpct - final_true)
    plot.title = "24 h duty cycle: max |SOC error| after full %.2f %%" % (max(after) / 100)
    print("24h: sim %.1f h in %.1f s wall (%.2f sim h / wall s); first full at %.2f h; "
          "max |err| before full %.2f %%, after full %.2f %%, final %.2f %%; overruns %d, faults 0x%x; "
          "FET switches %d"
          % (sb.now_s() / H, sb.wall_s, sb.sim_hours_per_wall_s(), full_at / H, max(before) / 100,
             max(after) / 100, final_err / 100, sb.app.overruns, w.faults, w.fet_switches))
    assert w.faults == 0 and sb.app.overruns == 0      # no fault in any cycle of the day
    assert w.fet_switches <= 4                          # closed at boot; no chatter (the taper ends in SLEEP)
    assert full_at < 14 * H
    assert max(after) <= 150           # within 1.50 % of the truth from the first full charge on
    assert final_err <= 150
