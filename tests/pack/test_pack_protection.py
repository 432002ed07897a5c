"""Firmware protection: each fault trips after its delay, recovers after hysteresis, or latches."""
import pytest

from firmware.config import defaults
from firmware.pack import protection as P
from firmware.pack.protection import Protection
from firmware.sample import TEMP_INVALID_DC, TRIP_CELL_OV, TRIP_SHORT, Sample


def make(**over):
    cfg = defaults.build("lfp", over)
    s = Sample(16, 3)
    for i in range(16):
        s.cell_mv[i] = 3300
    for i in range(3):
        s.temp_dc[i] = 250
    s.int_temp_dc = 300
    return Protection(cfg), s, cfg


def run(p, s, ms, now=[0], ok=True, dt=250):
    """Advance `ms` of cycles; keeps the sample fresh (t_ms = now)."""
    for _ in range(ms // dt):
        now[0] += dt
        if ok:
            s.t_ms = now[0]
        p.update(s, ok, now[0], dt)
    return p.faults


def test_cell_ov_trips_after_delay_not_before():
    p, s, cfg = make()
    s.cell_mv[5] = cfg["cell_ov_mv"] + 1
    assert run(p, s, cfg["cell_ov_delay_ms"] - 250) == 0
    assert run(p, s, 250) == P.F_CELL_OV
    assert not p.chg_allowed() and p.dsg_allowed()


def test_cell_ov_recovers_only_below_hysteresis_after_recovery_time():
    p, s, cfg = make()
    s.cell_mv[5] = cfg["cell_ov_mv"] + 50
    run(p, s, 2000)
    s.cell_mv[5] = cfg["cell_ov_mv"] - cfg["cell_ov_hyst_mv"] + 10   # inside the hysteresis band
    assert run(p, s, 10000) == P.F_CELL_OV
    s.cell_mv[5] = cfg["cell_ov_mv"] - cfg["cell_ov_hyst_mv"] - 10
    assert run(p, s, cfg["recovery_ms"] - 250) == P.F_CELL_OV
    assert run(p, s, 250) == 0
    assert p.cleared == P.F_CELL_OV


def test_short_blip_below_delay_does_not_trip():
    p, s, cfg = make()
    for _ in range(10):
        s.cell_mv[0] = cfg["cell_ov_mv"] + 10
        run(p, s, 500)
        s.cell_mv[0] = 3300
        run(p, s, 250)
    assert p.faults == 0


def test_cell_uv_blocks_discharge_only():
    p, s, cfg = make()
    s.cell_mv[15] = cfg["cell_uv_mv"] - 1
    run(p, s, cfg["cell_uv_delay_ms"])
    assert p.faults == P.F_CELL_UV
    assert p.chg_allowed() and not p.dsg_allowed()


@pytest.mark.parametrize("current, bit", [(50001, P.F_CHG_OC), (-100001, P.F_DSG_OC)])
def test_over_current_each_direction_and_retry(current, bit):
    p, s, cfg = make()
    s.current_ma = current
    assert run(p, s, 1750) == 0
    assert run(p, s, 250) == bit
    s.current_ma = 0
    assert run(p, s, cfg["oc_recovery_ms"] - 250) == bit
    assert run(p, s, 250) == 0


@pytest.mark.parametrize("temp, bits", [
    (460, P.F_CHG_OT), (-10, P.F_CHG_UT), (610, P.F_CHG_OT | P.F_DSG_OT), (-210, P.F_CHG_UT | P.F_DSG_UT)])
def test_temperature_limits_separately_for_charge_and_discharge(temp, bits):
    p, s, cfg = make()
    s.temp_dc[1] = temp
    assert run(p, s, cfg["temp_delay_ms"]) == bits


def test_cold_recovers_after_temperature_hysteresis():
    p, s, cfg = make()
    s.temp_dc[0] = -10
    run(p, s, 3000)
    s.temp_dc[0] = cfg["chg_ut_dc"] + cfg["temp_hyst_dc"]          # not above the band yet
    assert run(p, s, 10000) == P.F_CHG_UT
    s.temp_dc[0] = cfg["chg_ut_dc"] + cfg["temp_hyst_dc"] + 1
    assert run(p, s, cfg["recovery_ms"]) == 0


def test_open_thermistor_latches_and_blocks_both():
    p, s, cfg = make()
    s.temp_dc[2] = TEMP_INVALID_DC
    assert run(p, s, cfg["temp_delay_ms"]) == P.F_TEMP_SENSOR
    assert not p.chg_allowed() and not p.dsg_allowed()
    s.temp_dc[2] = 250
    assert run(p, s, 60000) == P.F_TEMP_SENSOR      # latched: no self-recovery
    assert p.reset() == P.F_TEMP_SENSOR
    assert run(p, s, 5000) == 0


@pytest.mark.parametrize("reading", [-400, -351, 1200, 1500])
def test_reading_at_the_sensor_range_end_counts_as_open_not_as_cold(reading):
    p, s, cfg = make()
    s.temp_dc[0] = reading
    assert run(p, s, cfg["temp_delay_ms"]) == P.F_TEMP_SENSOR


def test_imbalance_latches_until_reset():
    p, s, cfg = make()
    s.cell_mv[3] = 3300 + cfg["imbalance_mv"] + 1
    assert run(p, s, cfg["imbalance_delay_ms"]) == P.F_IMBALANCE
    s.cell_mv[3] = 3300
    assert run(p, s, 60000) == P.F_IMBALANCE
    p.reset(P.F_IMBALANCE)
    assert run(p, s, 1000) == 0


def test_lost_afe_communication_after_n_failed_reads_latches():
    p, s, cfg = make()
    run(p, s, 1000)
    n = cfg["afe_fail_cycles"]
    run(p, s, (n - 1) * 250, ok=False)
    assert not p.faults & P.F_AFE_COMM
    run(p, s, 250, ok=False)
    assert p.faults & P.F_AFE_COMM
    assert not p.chg_allowed() and not p.dsg_allowed()
    run(p, s, 30000)                            # reads work again: still latched
    assert p.faults & P.F_AFE_COMM
    p.reset()
    assert run(p, s, 5000) == 0


def test_stale_sample_trips_and_self_recovers():
    p, s, cfg = make(afe_fail_cycles=100)
    now = [0]
    run(p, s, 1000, now)
    s_t = s.t_ms
    # reads "succeed" but the timestamp does not move: the data is stale
    for _ in range(8):
        now[0] += 250
        p.update(s, True, now[0], 250)
    assert s.t_ms == s_t and p.faults & P.F_STALE
    run(p, s, cfg["recovery_ms"], now)
    assert not p.faults & P.F_STALE


def test_chip_short_circuit_status_latches_firmware_fault_at_once():
    p, s, cfg = make()
    s.chip_trips = TRIP_SHORT    # the driver saw the chip's SCD
    assert run(p, s, 250) == P.F_SHORT
    s.chip_trips = 0             # the chip recovers by itself after its SCD recovery time
    assert run(p, s, 60000) == P.F_SHORT
    p.reset()
    assert run(p, s, 250) == 0


def test_chip_cov_status_holds_firmware_fault_until_chip_recovers():
    p, s, cfg = make()
    s.chip_trips = TRIP_CELL_OV  # the chip's COV
    assert run(p, s, 250) == P.F_CELL_OV
    run(p, s, 10000)
    assert p.faults == P.F_CELL_OV
    s.chip_trips = 0
    assert run(p, s, cfg["recovery_ms"]) == 0


def test_names():
    assert P.names(P.F_CELL_OV | P.F_STALE) == "cell_ov|stale"
    assert P.names(0) == "none"


def test_reset_refused_while_condition_still_present():
    p, s, cfg = make()
    s.temp_dc[0] = TEMP_INVALID_DC
    run(p, s, cfg["temp_delay_ms"])
    assert p.reset() == 0 and p.faults == P.F_TEMP_SENSOR
    s.temp_dc[0] = 250
    run(p, s, 250)
    assert p.reset() == P.F_TEMP_SENSOR and p.faults == 0


def test_pending_shows_condition_before_it_trips():
    p, s, cfg = make()
    s.cell_mv[0] = cfg["cell_ov_mv"] + 5
    run(p, s, 250)
    assert p.faults == 0 and p.pending() == P.F_CELL_OV | P.F_IMBALANCE   # 355 mV spread too
