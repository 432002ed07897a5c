"""The cycle: order of work, watchdog fed only on completed cycles, overruns counted, NullComms, config fault."""
import pytest
from pack_fakes import FakeAFE
from simclock import CLOCK

from firmware.app import INFO_CONFIG, INFO_OVERRUN, App, NullComms
from firmware.config import defaults
from firmware.log import RingLog
from firmware.pack import state as S
from firmware.pack.protection import F_AFE_COMM
from firmware.sample import Sample


class WDT:
    def __init__(self):
        self.feeds = 0

    def feed(self):
        self.feeds += 1


class SlowComms(NullComms):
    def __init__(self, poll_ms):
        NullComms.__init__(self)
        self.poll_ms = poll_ms
        self.got = []

    def offer_event(self, kind, code, value):
        self.got.append((kind, code, value))

    def poll(self, budget_ms):
        NullComms.poll(self, budget_ms)
        CLOCK.advance_ms(self.poll_ms)


def make(sim, comms=None, status="ok", **over):
    cfg = defaults.build("lfp", over)
    afe = FakeAFE()
    afe.clock_ms = sim.ticks_ms
    wdt = WDT()
    app = App(cfg, afe, Sample(16, 3), comms=comms, wdt=wdt, log=RingLog(64), config_status=status)
    return app, afe, wdt


def test_start_configures_chip_from_config_and_keeps_fets_off(sim):
    app, afe, wdt = make(sim)
    app.start()
    assert afe.settings["cov_mv"] == app.cfg["cell_ov_mv"] + app.cfg["chip_cell_margin_mv"]
    assert afe.fets == (0, 0)
    app.run(1)
    assert app.sm.state == S.IDLE and afe.fets == (1, 1)


def test_fixed_period_and_no_overrun_when_idle(sim):
    app, afe, wdt = make(sim)
    app.start()
    t0 = sim.now_ms()
    app.run(40)
    assert sim.now_ms() - t0 == 40 * 250
    assert app.overruns == 0 and wdt.feeds == 40 and app.comms.samples == 40


def test_overruns_counted_and_reported_when_comms_is_slow(sim):
    comms = SlowComms(poll_ms=300)
    app, afe, wdt = make(sim, comms=comms)
    app.start()
    app.run(10)
    assert app.overruns == 10 and wdt.feeds == 10
    assert comms.got.count((S.EVENT_INFO, INFO_OVERRUN, 1)) == 1     # reported once


def test_watchdog_not_fed_when_cycle_does_not_complete(sim):
    app, afe, wdt = make(sim)
    app.start()
    app.run(3)

    def broken(sample):
        raise RuntimeError("bug in a layer")
    afe.read = broken
    with pytest.raises(RuntimeError):
        app.run(1)
    assert wdt.feeds == 3


def test_afe_silent_fets_commanded_off_on_every_cycle_and_fault_raised(sim):
    app, afe, wdt = make(sim)
    app.start()
    app.run(4)
    afe.fail = True
    app.run(app.cfg["afe_fail_cycles"])
    assert app.prot.faults & F_AFE_COMM and app.sm.state == S.FAULT
    errs = app.sm.fet_errors
    app.run(4)
    assert app.sm.fet_errors == errs + 4       # keeps trying to open the FETs each cycle
    assert wdt.feeds == 4 + app.cfg["afe_fail_cycles"] + 4   # the cycle still completes


def test_config_fault_reported_as_event(sim):
    comms = SlowComms(0)
    app, afe, wdt = make(sim, comms=comms, status="corrupt")
    app.start()
    assert (S.EVENT_INFO, INFO_CONFIG, 2) in comms.got
    assert "corrupt" in app.log.lines()[0]


def test_fault_events_one_per_bit_with_the_measurement(sim):
    comms = SlowComms(0)
    app, afe, wdt = make(sim, comms=comms)
    app.start()
    app.run(2)
    afe.now.cell_mv[4] = 3700
    app.run(6)
    assert (S.EVENT_FAULT, 0, 3700) in comms.got                  # bit 0 cell_ov, value = max cell mV
    assert (S.EVENT_INFO, S.INFO_STATE + S.FAULT, 1) in comms.got  # state -> fault, value = bitmask
    afe.now.cell_mv[4] = 3300
    app.run(4 * 4)
    assert (S.EVENT_CLEAR, 0, 3300) in comms.got


def test_sample_carries_derived_fields(sim):
    app, afe, wdt = make(sim, initial_soc_cpct=4200)
    app.start()
    app.run(2)
    s = app.sample
    assert s.soc_cpct == 4200 and s.state == S.IDLE and s.faults == 0 and s.soh_cpct == 10000


# --- operator commands through the comms hook (codes from firmware.comms.command_codes) ---
from firmware.comms import command_codes as cc  # noqa: E402
from firmware.config import store  # noqa: E402
from firmware.pack.protection import F_TEMP_SENSOR  # noqa: E402
from firmware.sample import TEMP_INVALID_DC  # noqa: E402


def test_command_fault_reset_refused_while_present_then_ok(sim):
    app, afe, wdt = make(sim)
    app.start()
    app.run(2)
    afe.now.temp_dc[1] = TEMP_INVALID_DC
    app.run(12)
    assert app.prot.faults & F_TEMP_SENSOR
    res, msg = app.handle_command(cc.CMD_FAULT_RESET, {})
    assert res == cc.RESULT_REFUSED and "temp_sensor" in msg
    afe.now.temp_dc[1] = 250
    app.run(2)
    res, msg = app.handle_command(cc.CMD_FAULT_RESET, {})
    assert res == cc.RESULT_OK and "temp_sensor" in msg
    app.run(1)
    assert app.prot.faults == 0 and afe.fets == (1, 1)


def test_command_balancing_off_stops_bleeding(sim):
    app, afe, wdt = make(sim)
    app.start()
    afe.now.cell_mv[3] = 3400
    afe.now.current_ma = 5000
    app.run(8)
    assert afe.balance == 1 << 3
    assert app.handle_command(cc.CMD_BALANCING, {"on": 0})[0] == cc.RESULT_OK
    app.run(1)
    assert afe.balance == 0


def test_command_fet_request_can_open_but_not_force_closed(sim):
    app, afe, wdt = make(sim)
    app.start()
    app.run(2)
    assert app.handle_command(cc.CMD_FET, {"chg": 1, "dsg": 0})[0] == cc.RESULT_OK
    app.run(1)
    assert afe.fets == (1, 0)
    afe.now.cell_mv[0] = 3700
    app.run(8)
    res, msg = app.handle_command(cc.CMD_FET, {"chg": 1, "dsg": 1})
    assert res == cc.RESULT_REFUSED
    app.run(1)
    assert afe.fets == (0, 0)                  # refused: nothing changed, the DSG request was not taken
    assert (app.sm.user_chg, app.sm.user_dsg) == (1, 0)


def test_a_refused_fet_request_does_not_close_a_fet_once_the_fault_clears(sim):
    app, afe, wdt = make(sim)
    app.start()
    app.run(2)
    assert app.handle_command(cc.CMD_FET, {"chg": 0, "dsg": 1})[0] == cc.RESULT_OK
    afe.now.cell_mv[0] = 3700                  # cell over-voltage: the CHG FET must stay open
    app.run(8)
    assert app.prot.faults
    assert app.handle_command(cc.CMD_FET, {"chg": 1, "dsg": 1})[0] == cc.RESULT_REFUSED
    afe.now.cell_mv[0] = 3300                  # the fault clears (hysteresis, recovery delay) ...
    for _ in range(400):
        app.run(1)
        if not app.prot.faults:
            break
    assert not app.prot.faults
    app.run(4)
    assert afe.fets == (0, 1)                  # ... and the refused CHG request did not close the CHG FET


def test_command_set_config_validates_persists_and_applies(sim, tmp_path):
    app, afe, wdt = make(sim)
    app.cfg_path = str(tmp_path / "config.json")
    app.start()
    res, msg = app.handle_command(cc.CMD_SET_CONFIG, {"key": "cell_ov_mv", "value": 3600})
    assert res == cc.RESULT_OK
    assert app.prot.ov_mv == 3600 and afe.settings["cov_mv"] == 3700
    assert store.load(app.cfg_path, "lfp")[0]["cell_ov_mv"] == 3600
    res, msg = app.handle_command(cc.CMD_SET_CONFIG, {"key": "cell_ov_mv", "value": 9000})
    assert res == cc.RESULT_BAD_PARAM and "cell_ov_mv" in msg and app.prot.ov_mv == 3600
    assert app.handle_command(cc.CMD_GET_CONFIG, {"key": "cell_ov_mv"}) == (cc.RESULT_OK, "cell_ov_mv=3600")
