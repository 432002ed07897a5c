"""One cell over-voltage while charging: the charge FET opens within the firmware's delay, before the
chip's wider COV; discharge stays possible; the fault recovers after the hysteresis."""
from scenario_util import SS_COV, Watch, board, first_time

from firmware.pack.protection import F_CELL_OV


def test_cell_over_voltage_during_charge_opens_charge_fet_and_recovers(plots):
    sb = board("sim16_lfp", soc=0.95)
    plot = plots(sb, "cell_ov")
    p = sb.pack
    p.set_soc(0.995, cell=6)                       # cell 7 ahead of the others
    cfg = sb.cfg
    p.set_profile(lambda t: 20000)                 # a dumb 20 A charger that never stops by itself
    w = Watch(sb)
    sb.run_s(600, until=w.wrap(lambda b: b.app.prot.faults & F_CELL_OV))
    tr = sb.trace
    tripped = first_time(tr, lambda j: tr.faults[j] & F_CELL_OV)
    # Start of the unbroken run of over-voltage readings that led to the trip (noise may have
    # crossed the limit briefly before; the firmware's delay restarts each time).
    j = tr.t_s.index(tripped)
    while j > 0 and max(tr.cell_mv[j - 1]) > cfg["cell_ov_mv"]:
        j -= 1
    over = tr.t_s[j]
    sb.run_s(2, until=w.until)
    chg_off = first_time(tr, lambda j: tr.t_s[j] >= tripped and not tr.chg_on[j])
    assert over is not None and tripped is not None and chg_off is not None
    period_s = cfg["period_ms"] / 1000
    # The firmware's delay, to within a cycle on each side (sampling).
    assert cfg["cell_ov_delay_ms"] / 1000 - period_s <= tripped - over <= cfg["cell_ov_delay_ms"] / 1000 + period_s
    assert chg_off - tripped <= period_s           # FET off in the same cycle (or the next read)
    assert abs(p.current_ma) < 1                   # no charge current flows any more
    assert sb.fets() == (False, True)              # discharge still allowed
    assert max(p.cell_mv(i) for i in range(16)) < sb.app.applied["cov_mv"]   # the chip never needed to act
    # Recovery: a load pulls the cell below cell_ov_mv - hysteresis; charging is allowed again.
    p.set_profile(lambda t: -30000)
    t0 = sb.now_s()
    sb.run_s(1800, until=w.wrap(lambda b: not b.app.prot.faults & F_CELL_OV))
    assert not sb.app.prot.faults & F_CELL_OV
    cleared_at = sb.now_s()
    assert max(sb.app.sample.cell_mv) < cfg["cell_ov_mv"] - cfg["cell_ov_hyst_mv"]
    sb.run_s(1, until=w.until)
    assert sb.fets() == (True, True)
    # The chip's COV never tripped in any cycle of the run (emulator truth and the firmware's reads).
    assert not (w.ss_chip | w.ss_read) & SS_COV
    print("cell ov: tripped %.2f s after the over-voltage run began, CHG open %.2f s later; cleared %.0f s "
          "after a 30 A load started" % (tripped - over, chg_off - tripped, cleared_at - t0))
    plot.title = "cell OV during charge; recovered %.0f s after the load started" % (cleared_at - t0)
