"""State machine: one test per transition, named for it; the FETs follow the state and the faults."""
from pack_fakes import FakeAFE

from firmware.config import defaults
from firmware.log import RingLog
from firmware.pack import state as S
from firmware.pack.protection import F_CELL_OV, F_CELL_UV, F_AFE_COMM, Protection
from firmware.sample import Sample


class Events:
    def __init__(self):
        self.got = []

    def offer_event(self, kind, code, value):
        self.got.append((kind, code, value))


def rig(**over):
    cfg = defaults.build("lfp", over)
    afe = FakeAFE()
    ev = Events()
    log = RingLog(64)
    sm = S.PackState(cfg, afe, events=ev, log=log)
    p = Protection(cfg)
    s = Sample(16, 3)
    clock = [0]

    def step(ms=250, ok=True):
        for _ in range(ms // 250):
            clock[0] += 250
            if ok:
                afe.read(s)
                s.t_ms = clock[0]
            p.update(s, ok, clock[0], 250)
            sm.update(s, p, 250)
    return cfg, afe, ev, log, sm, p, s, step


def test_init_keeps_fets_off_until_first_good_sample():
    cfg, afe, ev, log, sm, p, s, step = rig()
    assert sm.state == S.INIT
    step(250, ok=False)
    assert sm.state == S.INIT and afe.fets == (0, 0)


def test_init2idle_on_first_good_sample():
    cfg, afe, ev, log, sm, p, s, step = rig()
    step(250)
    assert sm.state == S.IDLE and afe.fets == (1, 1)
    assert "init->idle" in log.last() or any("init->idle" in m for m in log.lines())
    assert ev.got[0] == (S.EVENT_INFO, S.INFO_STATE + S.IDLE, 0)


def test_idle2charge_after_confirm_time():
    cfg, afe, ev, log, sm, p, s, step = rig()
    step(250)
    afe.now.current_ma = 5000
    step(cfg["state_confirm_ms"] - 250)
    assert sm.state == S.IDLE
    step(250)
    assert sm.state == S.CHARGE and s.state == S.CHARGE


def test_idle2discharge_and_discharge2idle_on_rest():
    cfg, afe, ev, log, sm, p, s, step = rig()
    step(250)
    afe.now.current_ma = -5000
    step(cfg["state_confirm_ms"])
    assert sm.state == S.DISCHARGE
    afe.now.current_ma = 10
    step(cfg["state_confirm_ms"])
    assert sm.state == S.IDLE


def test_charge2discharge_direct():
    cfg, afe, ev, log, sm, p, s, step = rig()
    step(250)
    afe.now.current_ma = 5000
    step(1000)
    afe.now.current_ma = -5000
    step(1000)
    assert sm.state == S.DISCHARGE


def test_charge2fault_on_cell_ov_opens_charge_fet_only():
    cfg, afe, ev, log, sm, p, s, step = rig()
    step(250)
    afe.now.current_ma = 5000
    step(1000)
    afe.now.cell_mv[3] = cfg["cell_ov_mv"] + 20
    step(cfg["cell_ov_delay_ms"])
    assert sm.state == S.FAULT and afe.fets == (0, 1)
    assert any("fault cell_ov" in m for m in log.lines())
    assert (S.EVENT_INFO, S.INFO_STATE + S.FAULT, F_CELL_OV) in ev.got


def test_fault2idle_when_faults_clear():
    cfg, afe, ev, log, sm, p, s, step = rig()
    step(250)
    afe.now.cell_mv[0] = cfg["cell_uv_mv"] - 10
    step(cfg["cell_uv_delay_ms"])
    assert sm.state == S.FAULT and afe.fets == (1, 0) and p.faults == F_CELL_UV
    afe.now.cell_mv[0] = cfg["cell_uv_mv"] + cfg["cell_uv_hyst_mv"] + 10
    step(cfg["recovery_ms"])
    assert sm.state == S.IDLE and afe.fets == (1, 1)


def test_idle2sleep_after_rest_and_sleep2idle_on_current():
    cfg, afe, ev, log, sm, p, s, step = rig(sleep_after_ms=60000)
    step(250)
    step(60000)
    assert sm.state == S.SLEEP and afe.sleep_allowed is True
    afe.now.current_ma = -2000
    step(250)
    assert sm.state == S.IDLE and afe.sleep_allowed is False


def test_any2fault_on_lost_afe_both_fets_commanded_off_once_bus_returns():
    cfg, afe, ev, log, sm, p, s, step = rig()
    step(250)
    afe.fail = True
    step(250 * cfg["afe_fail_cycles"], ok=False)
    assert sm.state == S.FAULT and p.faults & F_AFE_COMM
    assert sm.fet_errors > 0          # it tried to command the FETs off and the bus refused
    afe.fail = False
    step(250)
    assert afe.fets == (0, 0)         # first cycle with a working bus opens both FETs


def test_fet_command_sent_on_change_and_refresh_only():
    cfg, afe, ev, log, sm, p, s, step = rig(fet_refresh_ms=10000)
    step(250)
    n = afe.fet_calls
    step(5000)
    assert afe.fet_calls == n
    step(5000)
    assert afe.fet_calls == n + 1


def test_init_stays_while_a_condition_is_present_then_init2fault():
    cfg, afe, ev, log, sm, p, s, step = rig()
    for i in range(3):
        afe.now.temp_dc[i] = -50          # below the charge limit (0.0 degC)
    step(250)
    assert sm.state == S.INIT and afe.fets == (0, 0)   # no charge current ever allowed
    step(cfg["temp_delay_ms"])
    assert sm.state == S.FAULT and afe.fets == (0, 1)  # cold: discharge allowed, charge refused
