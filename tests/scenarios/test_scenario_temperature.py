"""Temperature: over-temperature while charging opens the charge FET before the chip's OTC; charging
below the cold limit is refused from the first cycle while discharge works; an open thermistor opens
both FETs and latches until reset."""
from scenario_util import SS_OTC, Watch, board, first_time

from firmware.pack.protection import F_CHG_OT, F_CHG_UT, F_TEMP_SENSOR


def set_temp(p, c):
    p.ambient_c = c
    for k in range(len(p.node_c)):
        p.node_c[k] = c


def test_over_temperature_while_charging_opens_charge_fet_then_recovers(plots):
    sb = board("sim16_lfp", soc=0.5, record_every=1)
    plot = plots(sb, "over_temperature")
    w = Watch(sb)
    p = sb.pack
    p.set_profile(lambda t: 20000)
    sb.run_s(10, until=w.until)
    assert sb.fets() == (True, True) and p.current_ma > 19000
    t_hot = sb.now_s()
    set_temp(p, 47.0)                                  # above chg_ot 45.0, below the chip's 50.0
    sb.run_s(10, until=w.until)
    tr = sb.trace
    off = first_time(tr, lambda j: tr.t_s[j] > t_hot and not tr.chg_on[j])
    assert off is not None
    assert off - t_hot <= sb.cfg["temp_delay_ms"] / 1000 + 3 * sb.cfg["period_ms"] / 1000
    assert sb.app.prot.faults & F_CHG_OT and sb.fets() == (False, True)
    print("over-temperature: CHG FET open %.2f s after the cells reached 47 degC" % (off - t_hot))
    # Discharge still works while hot (discharge limit is 60.0).
    p.set_profile(lambda t: -10000)
    sb.run_s(5, until=w.until)
    assert p.current_ma < -9000
    # Cool below the limit minus hysteresis: charging allowed again.
    set_temp(p, 38.0)
    p.set_profile(lambda t: 20000)
    sb.run_s(10, until=w.until)
    # The chip's backstop (OTC) never tripped in any cycle of the run, neither in the emulator nor as read.
    assert not (w.ss_chip | w.ss_read) & SS_OTC
    assert not sb.app.prot.faults & F_CHG_OT and sb.fets() == (True, True) and p.current_ma > 19000
    plot.title = "over-temperature while charging"


def test_charging_below_cold_limit_refused_from_the_start_discharge_allowed(plots):
    sb = board("sim16_lfp", soc=0.5, record_every=1)
    plot = plots(sb, "cold_charge")
    p = sb.pack
    set_temp(p, -5.0)                                  # below chg_ut 0.0, above dsg_ut -20.0
    p.set_profile(lambda t: 10000)                     # a charger is connected at boot
    sb.run_s(30)
    assert max(sb.trace.true_ma) <= 0                  # not one cycle of charge current
    assert sb.app.prot.faults & F_CHG_UT and sb.fets() == (False, True)
    p.set_profile(lambda t: -10000)
    sb.run_s(5)
    assert p.current_ma < -9000                        # discharge is allowed in the cold
    set_temp(p, 10.0)
    p.set_profile(lambda t: 10000)
    sb.run_s(10)
    assert sb.fets() == (True, True) and p.current_ma > 9000
    plot.title = "charging below the cold limit refused"


def test_open_thermistor_opens_both_fets_and_latches_until_reset(plots):
    sb = board("sim16_lfp", soc=0.5)
    plot = plots(sb, "thermistor_open")
    p = sb.pack
    p.set_profile(lambda t: -10000)
    sb.run_s(5)
    sb.faults.thermistor("TS2", "open")
    sb.run_s(sb.cfg["temp_delay_ms"] / 1000 + 1)
    assert sb.app.prot.faults & F_TEMP_SENSOR and sb.fets() == (False, False)
    assert abs(p.current_ma) < 1
    assert sb.app.reset_faults() & F_TEMP_SENSOR == 0  # reset refused while the sensor is still open
    sb.run_s(2)
    assert sb.fets() == (False, False)
    sb.faults.thermistor("TS2", None)                  # repaired
    sb.run_s(60)
    assert sb.app.prot.faults & F_TEMP_SENSOR and sb.fets() == (False, False)   # latched
    assert sb.app.reset_faults() & F_TEMP_SENSOR
    sb.run_s(10)
    assert sb.app.prot.faults == 0 and sb.fets() == (True, True) and p.current_ma < -9000
    plot.title = "thermistor open, repair, reset"
