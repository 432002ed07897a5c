"""The AFE stops answering: the firmware cannot command it, so the chip's host watchdog opens the
FETs within host_watchdog_s; the firmware latches afe_comm within afe_fail_cycles and, once the bus
is back, keeps both FETs open until an explicit reset."""
from scenario_util import board, first_time

from firmware.pack.protection import F_AFE_COMM


def test_afe_silent_fets_open_within_host_watchdog_then_reset(plots):
    sb = board("sim16_lfp", soc=0.6, record_every=1)
    plot = plots(sb, "afe_silent")
    p = sb.pack
    cfg = sb.cfg
    p.set_profile(lambda t: -20000)
    sb.run_s(5)
    assert p.current_ma < -19000
    t_dead = sb.now_s()
    sb.faults.nack_probability(1.0)                    # every transaction NACKed from now on
    sb.run_s(cfg["host_watchdog_s"] + 3)
    tr = sb.trace
    raised = first_time(tr, lambda j: tr.t_s[j] > t_dead and tr.faults[j] & F_AFE_COMM)
    open_at = first_time(tr, lambda j: tr.t_s[j] > t_dead and not tr.dsg_on[j] and not tr.chg_on[j])
    assert raised is not None and raised - t_dead <= (cfg["afe_fail_cycles"] + 1) * cfg["period_ms"] / 1000
    assert open_at is not None and open_at - t_dead <= cfg["host_watchdog_s"] + 1
    assert abs(p.current_ma) < 1 and sb.app.sm.fet_errors > 0
    # The bus comes back: the firmware keeps the FETs open (latched) and says so to the chip.
    sb.faults.nack_probability(0.0)
    sb.run_s(30)
    assert sb.app.prot.faults & F_AFE_COMM and sb.fets() == (False, False)
    assert sb.app.sm.chg_cmd == 0 and sb.app.sm.dsg_cmd == 0
    assert sb.app.reset_faults() & F_AFE_COMM
    sb.run_s(10)
    assert sb.app.prot.faults == 0 and sb.fets() == (True, True) and p.current_ma < -19000
    plot.title = "AFE silent: FETs open after %.2f s" % (open_at - t_dead)
    print("afe silent: afe_comm after %.2f s, FETs open after %.2f s" % (raised - t_dead, open_at - t_dead))
