"""The driver against the independently written emulated BQ76952 (tools/emulator) in simulated time.

Each test states the chip behaviour it relies on; the numbers the emulator must produce come from
its pack model (ground truth), never from the driver.
"""
import errno

import pytest

from firmware.afe import bq76952_regs as R
from firmware.afe.bq76952 import BQ76952, RECOVER_OCDL, RECOVER_PTO, RECOVER_SCDL
from firmware.sample import TEMP_INVALID_DC, Sample

from afe_emubus import emulated

# The emulated pack wires n cells to VC1..VC(n-1) and VC16 (TI's guidance: top cell on VC16).
VMODE4 = 0x8007
BASE = {"cell_count": 4, "vcell_mode": VMODE4, "ts_pins": 0b001}


@pytest.fixture(autouse=True)
def _sim(sim_clock):
    yield


def make(crc=False, settings=None, **kw):
    board, bus = emulated(cells=4, crc=crc, seed=1, **kw)
    afe = BQ76952(bus, crc=crc)
    afe.probe()
    applied = afe.configure(dict(BASE, **(settings or {})))
    return board, bus, afe, applied


def settle(clock, ms=600):
    clock.advance_ms(ms)        # a few ADC loops (about 63 ms each, full scan about 190 ms)


def test_probe_finds_the_chip_and_rejects_a_wrong_address():
    board, bus = emulated(cells=4, seed=1)
    assert BQ76952(bus).probe() == 0x7695
    with pytest.raises(OSError) as e:
        BQ76952(bus, addr=0x09).probe()
    assert e.value.args[0] == errno.ENODEV and "No BQ76952 found at 0x09" in str(e.value)


def test_configure_round_trip_returns_what_the_chip_holds():
    board, bus, afe, applied = make(settings={
        "cov_mv": 3650, "cuv_mv": 2800, "cov_delay_ms": 1000, "occ_ma": 20000, "ocd1_ma": 40000,
        "scd_ma": 59999, "scd_delay_us": 100, "otc_dc": 455, "utc_dc": 5, "balance_max_cells": 2,
        "host_watchdog_s": 0, "sleep_current_ma": 50})
    assert applied["cov_mv"] == 3644 and applied["cuv_mv"] == 2833
    assert applied["cov_delay_ms"] == 1000 and applied["scd_ma"] == 40000 and applied["scd_delay_us"] == 90
    assert applied["otc_dc"] == 450 and applied["utc_dc"] == 10 and applied["balance_max_cells"] == 2
    # The chip holds the codes: read data memory back through the driver, raw bytes.
    assert afe.dm_read(R.DM_COV_THRESHOLD)[0] == 72
    assert afe.dm_read(R.DM_VCELL_MODE)[:2] == bytes([0x07, 0x80])
    assert afe.dm_read(R.DM_SCD_THRESHOLD)[0] == 2
    # Feeding the applied values back selects the same codes.
    assert afe.configure(applied) == applied


def test_read_matches_the_pack_model(sim_clock):
    board, bus, afe, _ = make(settings={"user_amps_ma": 10})
    afe.fet_enable()
    board.pack.set_profile(lambda t_s: -5000)
    settle(sim_clock, 1000)
    s = Sample(4, 3)
    afe.read(s)
    truth = [board.pack.input_mv(n) for n in (1, 2, 3, 16)]
    for got, want in zip(s.cell_mv, truth):
        assert abs(got - want) <= 5, (list(s.cell_mv), truth)
    assert abs(s.stack_mv - board.pack.stack_mv()) <= 30          # cV resolution plus noise
    assert abs(s.current_ma - (-5000)) <= 50                       # 10 mA/LSB
    assert abs(s.int_temp_dc) < 1250 and s.int_temp_dc != TEMP_INVALID_DC
    assert s.temp_dc[1] == TEMP_INVALID_DC and s.temp_dc[2] == TEMP_INVALID_DC   # TS1 only
    assert -400 < s.temp_dc[0] < 1250
    assert s.fet_status & R.FS_DSG_FET
    assert (s.battery_status >> 8) & 3 == R.SEC_FULLACCESS
    assert s.t_ms == sim_clock.ticks_ms()


@pytest.mark.parametrize("crc", [False, True])
def test_one_full_sample_costs_four_transactions(crc, sim_clock):
    board, bus, afe, _ = make(crc=crc)
    settle(sim_clock)
    s = Sample(4, 3)
    bus.reset()
    port = getattr(bus.inner, "stats", None)       # the host-port machine.I2C counts on the bus itself
    before = port.snapshot() if port is not None else None
    afe.read(s)
    assert bus.transactions == 4
    assert bus.read_bytes == (152 if crc else 76)   # the register map's bound at 4 transactions
    assert bus.write_bytes == 0
    if port is not None:
        tx, wr, rd = (a - b for a, b in zip(port.snapshot(), before))
        # machine.I2C's view: 4 transactions, the register byte of each written, the data read
        assert (tx, wr, rd) == (4, 4, 152 if crc else 76)


def test_fet_control(sim_clock):
    board, bus, afe, _ = make(settings={"sleep_allowed": 0})
    afe.fet_enable()
    afe.fet_enable()                     # must not toggle back into test mode
    board.pack.set_profile(lambda t_s: 2000)        # a charger: CHG must conduct
    afe.set_fets(True, True)
    settle(sim_clock)
    assert afe.fet_status() & (R.FS_CHG_FET | R.FS_DSG_FET) == R.FS_CHG_FET | R.FS_DSG_FET
    afe.set_fets(False, True)
    settle(sim_clock)
    assert afe.fet_status() & (R.FS_CHG_FET | R.FS_DSG_FET) == R.FS_DSG_FET
    assert board.chip.now_fets() == (False, True)
    afe.set_fets(False, False)
    settle(sim_clock)
    assert afe.fet_status() & (R.FS_CHG_FET | R.FS_DSG_FET) == 0
    afe.set_fets(True, True)
    settle(sim_clock)
    assert board.chip.now_fets() == (True, True)


def test_balancing_interlocks_and_mask(sim_clock):
    board, bus, afe, _ = make(settings={"balance_max_cells": 2})
    for bad in (0b11, 0b10000, 0b0111):
        with pytest.raises(ValueError):
            afe.set_balancing(bad)
    assert afe.set_balancing(0b1001) == 0b1001       # cells 1 and 4 (input 16)
    settle(sim_clock)
    s = Sample(4, 3)
    afe.read(s)
    assert s.balance_mask == 0b1001
    assert afe.set_balancing(0) == 0
    settle(sim_clock)
    afe.read(s)
    assert s.balance_mask == 0


def test_alarms_latch_only_when_enabled_and_clear_on_write(sim_clock):
    board, bus, afe, applied = make()
    assert applied["alarm_enable"] == 0xF800               # chip default: FULLSCAN not latched
    afe.clear_alarms(0xFFFF)
    settle(sim_clock)
    assert not afe.read_alarms() & R.AL_FULLSCAN
    applied = afe.configure(dict(BASE, alarm_enable=0xF880))
    assert applied["alarm_enable"] == 0xF880
    settle(sim_clock)
    assert afe.read_alarms() & R.AL_FULLSCAN
    afe.clear_alarms(R.AL_FULLSCAN)
    assert not afe.read_alarms() & R.AL_FULLSCAN
    settle(sim_clock)
    assert afe.read_alarms() & R.AL_FULLSCAN                # latched again by the next full scan


def test_sleep_allowed_toggles_battery_status(sim_clock):
    board, bus, afe, _ = make()
    afe.fet_enable()                                   # SLEEP is a mode of normal FET control
    afe.set_sleep_allowed(False)
    settle(sim_clock)
    assert not afe.battery_status() & (R.BS_SLEEP_EN | R.BS_SLEEP)
    afe.set_sleep_allowed(True)
    assert afe.battery_status() & R.BS_SLEEP_EN
    settle(sim_clock, 12000)                           # re-entry may be blocked for 10 s
    assert afe.battery_status() & R.BS_SLEEP           # idle pack, |I| < Sleep Current: SLEEP
    board.pack.set_profile(lambda t_s: -3000)          # a 3 A load wakes it
    settle(sim_clock, 2000)
    assert not afe.battery_status() & R.BS_SLEEP
    s = Sample(4, 3)
    afe.read(s)
    assert abs(s.current_ma + 3000) < 50


def test_crc_mode_on_and_off(sim_clock):
    board, bus, afe, _ = make()
    afe.set_crc(True)
    assert afe.crc
    settle(sim_clock)
    s = Sample(4, 3)
    afe.read(s)
    assert 2000 < s.cell_mv[0] < 4000
    assert afe.probe() == 0x7695
    # A driver that does not know about CRC cannot talk to it any more; probe() detects it.
    other = BQ76952(bus, crc=False)
    assert other.probe() == 0x7695 and other.crc
    afe.set_crc(False)
    assert not afe.crc
    afe.read(s)
    assert 2000 < s.cell_mv[0] < 4000


def test_chip_that_starts_in_crc_mode(sim_clock):
    board, bus = emulated(cells=4, crc=True, seed=1)
    afe = BQ76952(bus, crc=True)
    assert afe.probe() == 0x7695
    afe.configure(BASE)
    settle(sim_clock)
    s = Sample(4, 3)
    afe.read(s)
    assert 2000 < s.cell_mv[0] < 4000


# ------------------------------------------------------------------ thermistor pins by name
def test_ts1_and_ts3_board_configures_and_reads_exactly_those_pins(sim_clock):
    # The board fits thermistors on TS1 and TS3 only (boards/esp32_bq76952_evm.json, sim4_nmc.json):
    # the pack's two thermal nodes sit on those pins, TS2 has nothing fitted.
    board, bus = emulated(cells=4, seed=1, pack_options={"ts_pins": ["TS1", "TS3"]})
    afe = BQ76952(bus)
    afe.probe()
    applied = afe.configure(dict(BASE, ts_pins=0b101))
    assert applied["ts_pins"] == 0b101
    # Raw data memory (reference: TS1/TS2/TS3 Config 0x92FD/0x92FE/0x92FF; 0x07 = 18k cell thermistor)
    assert [afe.dm_read(a)[0] for a in (0x92FD, 0x92FE, 0x92FF)] == [0x07, 0x00, 0x07]
    board.pack.node_c[0] = 10.0
    board.pack.node_c[1] = 40.0
    settle(sim_clock, 200)
    s = Sample(4, 3)
    afe.read(s)
    assert abs(s.temp_dc[0] - 100) <= 2, list(s.temp_dc)      # TS1: node 0
    assert abs(s.temp_dc[1] - 400) <= 2, list(s.temp_dc)      # slot 1 is TS3: node 1, not TS2
    assert s.temp_dc[2] == TEMP_INVALID_DC                    # no third thermistor
    # A 2-slot sample (what the app allocates for this board) gets both.
    s2 = Sample(4, 2)
    afe.read(s2)
    assert abs(s2.temp_dc[1] - 400) <= 2


def test_an_unfitted_pin_configured_by_count_would_read_open(sim_clock):
    # Why pins go by name: configuring TS1..TS2 by count on a TS1+TS3 board reads TS2 as open.
    board, bus = emulated(cells=4, seed=1, pack_options={"ts_pins": ["TS1", "TS3"]})
    afe = BQ76952(bus)
    afe.probe()
    afe.configure(dict(BASE, ts_pins=0b011))
    settle(sim_clock, 200)
    s = Sample(4, 2)
    afe.read(s)
    assert s.temp_dc[0] != TEMP_INVALID_DC and s.temp_dc[1] == TEMP_INVALID_DC


# ------------------------------------------------------------------ latched faults and recover()
# The latches need Enabled Protections C set (configure() leaves them off), given here as power-up
# data memory as OTP would hold it. Raw: Enabled Protections A 0x9261 (bit 7 SCD, 5 OCD1, 3 COV),
# C 0x9263 (bit 6 SCDL, 5 OCDL); latch limit 1 latches on the first trip.
def _latch_board(dm):
    board, bus = emulated(cells=4, seed=1, dm_overrides=dm)
    afe = BQ76952(bus)
    afe.probe()
    afe.fet_enable()
    afe.set_fets(True, True)
    afe.set_sleep_allowed(False)      # SLEEP would open CHG at rest and hide what the latch does
    return board, afe


def _ssc(afe, clock, ms=200):
    settle(clock, ms)
    s = Sample(16, 1)                 # not configured: the driver reads all 16 inputs
    afe.read(s)
    return s.safety_status >> 16, s.fet_status


def _other_recovers(afe, kind):
    for k in (RECOVER_OCDL, RECOVER_SCDL, RECOVER_PTO):
        if k != kind:
            afe.recover(k)


def test_scdl_latches_and_only_scdl_recover_releases_it(sim_clock):
    board, afe = _latch_board({"ENABLED_PROT_A": 0x88, "ENABLED_PROT_C": 0x40, "SCDL_LATCH_LIMIT": 1})
    ssc, fets = _ssc(afe, sim_clock)
    assert not ssc & R.SC_SCDL and fets & R.FS_DSG_FET
    board.faults.short_circuit(500000)
    settle(sim_clock, 50)
    board.faults.clear_short_circuit()
    ssc, fets = _ssc(afe, sim_clock, 10000)          # twice SCD Recovery Time (5 s): SCD itself recovered
    assert ssc & R.SC_SCDL and not fets & R.FS_DSG_FET
    _other_recovers(afe, RECOVER_SCDL)
    ssc, fets = _ssc(afe, sim_clock)
    assert ssc & R.SC_SCDL and not fets & R.FS_DSG_FET   # OCDL_RECOVER / PTO_RECOVER do not release it
    afe.recover(RECOVER_SCDL)
    ssc, fets = _ssc(afe, sim_clock)
    assert not ssc & R.SC_SCDL and fets & R.FS_DSG_FET


def test_ocdl_latches_and_only_ocdl_recover_releases_it(sim_clock):
    board, afe = _latch_board({"ENABLED_PROT_A": 0xA8, "ENABLED_PROT_C": 0x20, "OCDL_LATCH_LIMIT": 1})
    load = {"ma": -9000}            # above OCD1 (default 8 mV / 1 mOhm = 8 A), below SCD (10 mV = 10 A)
    board.pack.set_profile(lambda t_s: load["ma"])
    ssc, fets = _ssc(afe, sim_clock, 100)
    assert ssc & R.SC_OCDL and not fets & R.FS_DSG_FET
    load["ma"] = 0
    ssc, fets = _ssc(afe, sim_clock, 20000)          # far past Recovery Time and OCDL Recovery Time
    assert ssc & R.SC_OCDL and not fets & R.FS_DSG_FET
    _other_recovers(afe, RECOVER_OCDL)
    ssc, fets = _ssc(afe, sim_clock)
    assert ssc & R.SC_OCDL
    afe.recover(RECOVER_OCDL)
    ssc, fets = _ssc(afe, sim_clock)
    assert not ssc & R.SC_OCDL


def test_pto_is_released_only_by_pto_recover(sim_clock):
    # The emulator has no precharge model, so the PTO latch is set directly (as a timed-out precharge would).
    board, afe = _latch_board(None)
    board.chip.prot.pto = True
    ssc, fets = _ssc(afe, sim_clock)
    assert ssc & R.SC_PTO and not fets & R.FS_CHG_FET        # CHG FET Protections C (0x56) has PTO
    _other_recovers(afe, RECOVER_PTO)
    ssc, fets = _ssc(afe, sim_clock, 20000)
    assert ssc & R.SC_PTO
    afe.recover(RECOVER_PTO)
    ssc, fets = _ssc(afe, sim_clock)
    assert not ssc & R.SC_PTO and fets & R.FS_CHG_FET


# ------------------------------------------------------------------ injected faults
def test_nack_then_retry_succeeds(sim_clock):
    board, bus, afe, _ = make()
    settle(sim_clock)
    s = Sample(4, 3)
    board.faults.nack_next(2)
    afe.read(s)
    assert afe.stats_retries == 2
    assert 2000 < s.cell_mv[0] < 4000


def test_nack_beyond_retries_raises_clear_oserror(sim_clock):
    board, bus, afe, _ = make()
    board.faults.nack_next(3)
    with pytest.raises(OSError) as e:
        afe.read(Sample(4, 3))
    assert e.value.args[0] == errno.EIO and "0x02" in str(e.value)


def test_corrupted_byte_in_crc_mode_is_caught_and_retried(sim_clock):
    board, bus, afe, _ = make(crc=True)
    settle(sim_clock)
    s = Sample(4, 3)
    afe.read(s)
    before = list(s.cell_mv)
    board.faults.corrupt_next_read(1, index=20, xor=0x10)
    afe.read(s)
    assert afe.stats_retries == 1
    assert all(abs(a - b) < 20 for a, b in zip(before, s.cell_mv))


def test_corrupted_byte_in_a_subcommand_answer_fails_the_checksum_and_is_retried():
    board, bus, afe, _ = make()
    board.faults.corrupt_next_read(1, index=3, xor=0x01)      # a data byte of the 0x3E..0x61 read
    bus.reset()
    assert afe._sub_u16(R.SC_DEVICE_NUMBER) == 0x7695
    # the corrupted answer failed its checksum and the buffer was read again (plain framing has no CRC)
    assert bus.transactions >= 3 and bus.read_bytes >= 2 * 36


def test_stuck_bus_raises_then_recovers(sim_clock):
    board, bus, afe, _ = make()
    board.faults.stuck_bus(50)
    with pytest.raises(OSError):
        afe.read(Sample(4, 3))
    sim_clock.advance_ms(60)
    afe.read(Sample(4, 3))


def test_late_subcommand_within_the_poll_budget_succeeds():
    board, bus, afe, _ = make()
    board.faults.late_subcommand(5000, 1)                # 5 ms late: inside 20 polls x 1 ms
    assert afe.probe() == 0x7695


def test_subcommand_later_than_the_poll_budget_times_out():
    board, bus, afe, _ = make()
    board.faults.late_subcommand(100000, 1)              # 100 ms: beyond the bounded wait
    with pytest.raises(OSError) as e:
        afe._sub_read(R.SC_DEVICE_NUMBER)
    assert e.value.args[0] == errno.ETIMEDOUT


def test_open_cell_wire_shows_in_the_cell_voltages(sim_clock):
    board, bus, afe, _ = make()
    board.faults.open_cell_wire(2)
    settle(sim_clock)
    s = Sample(4, 3)
    afe.read(s)
    assert s.cell_mv[1] < 500                          # VC2 open: cell 2 reads about 0
    assert s.cell_mv[2] > 5000                         # and cell 3 reads cells 2 + 3


@pytest.mark.parametrize("state", ["open", "short"])
def test_broken_thermistor_reads_invalid(state, sim_clock):
    board, bus, afe, _ = make()
    board.faults.thermistor("TS1", state)
    settle(sim_clock)
    s = Sample(4, 3)
    afe.read(s)
    assert s.temp_dc[0] == TEMP_INVALID_DC


def test_short_circuit_trips_scd_and_opens_dsg(sim_clock):
    board, bus, afe, _ = make(settings={"scd_ma": 100000, "scd_delay_us": 30})
    afe.fet_enable()
    afe.set_fets(True, True)
    settle(sim_clock)
    board.faults.short_circuit(500000)
    settle(sim_clock, 100)
    s = Sample(4, 3)
    afe.read(s)
    assert s.safety_status & R.SA_SCD
    assert not s.fet_status & R.FS_DSG_FET
    assert s.battery_status & R.BS_SS


def test_cell_internal_short_drains_one_cell(sim_clock):
    board, bus, afe, _ = make()
    board.faults.cell_internal_short(1, 20000)
    s = Sample(4, 3)
    settle(sim_clock)
    afe.read(s)
    start = list(s.cell_mv)
    sim_clock.advance_ms(3600 * 1000)
    afe.read(s)
    drop = [a - b for a, b in zip(start, s.cell_mv)]
    assert drop[1] > 5 and drop[1] > max(drop[0], drop[2], drop[3]) + 5, drop


def test_host_watchdog_opens_the_fets_when_the_host_goes_quiet(sim_clock):
    board, bus, afe, _ = make(settings={"host_watchdog_s": 2, "sleep_allowed": 0})
    afe.fet_enable()
    afe.set_fets(True, True)
    settle(sim_clock)
    s = Sample(4, 3)
    afe.read(s)
    assert not s.safety_status & (R.SC_HWDF << 16)
    sim_clock.advance_ms(5000)               # no traffic for 5 s
    afe.read(s)
    assert s.safety_status & (R.SC_HWDF << 16)
    assert not s.fet_status & (R.FS_CHG_FET | R.FS_DSG_FET)


def test_random_nacks_and_corruption_in_crc_mode_never_pass_bad_data(sim_clock):
    board, bus, afe, _ = make(crc=True)
    settle(sim_clock)
    board.faults.nack_probability(0.05)
    board.faults.corrupt_probability(0.10, 0x40)
    s = Sample(4, 3)
    ok = failed = 0
    for _ in range(200):
        sim_clock.advance_ms(50)
        try:
            afe.read(s)
        except OSError:
            failed += 1
            continue
        ok += 1
        truth = [board.pack.input_mv(n) for n in (1, 2, 3, 16)]
        assert all(abs(a - b) <= 5 for a, b in zip(s.cell_mv, truth)), (list(s.cell_mv), truth)
        assert 12000 < s.stack_mv < 14000
    assert ok >= 190 and afe.stats_retries > 20, (ok, failed, afe.stats_retries)


# ------------------------------------------------------------------ the emulator's [U] choices
def test_sealed_chip_is_unsealed_with_the_default_keys():
    board, bus = emulated(cells=4, seed=1, security_at_por=R.SEC_SEALED)
    afe = BQ76952(bus)
    afe.probe()
    assert (afe.battery_status() >> 8) & 3 == R.SEC_SEALED
    applied = afe.configure(dict(BASE, cov_mv=3650))
    assert applied["cov_mv"] == 3644
    assert (afe.battery_status() >> 8) & 3 == R.SEC_FULLACCESS


def test_sealed_chip_with_other_keys_refuses_and_nothing_is_written():
    board, bus = emulated(cells=4, seed=1, security_at_por=R.SEC_SEALED,
                          unseal_keys=(0x1234, 0x5678))
    afe = BQ76952(bus)
    afe.probe()
    with pytest.raises(OSError) as e:
        afe.configure(dict(BASE, cov_mv=3650))
    assert e.value.args[0] == errno.EACCES
    # With the right keys (they are constructor arguments) the chip unseals: nothing was written.
    right = BQ76952(bus, unseal_keys=(0x1234, 0x5678))
    right.configure(BASE)
    assert right.dm_read(R.DM_COV_THRESHOLD)[0] == 86         # still the chip default


@pytest.mark.parametrize("on_exit", [False, True])
def test_crc_switch_whether_the_chip_changes_mode_on_exit_or_on_swap(on_exit, sim_clock):
    # The reference: Comm Type applies on leaving CONFIG_UPDATE; the TRM text the emulator follows by
    # default: only on SWAP_COMM_MODE/RESET. The driver must work with both.
    board, bus = emulated(cells=4, seed=1, comm_type_on_cfg_exit=on_exit)
    afe = BQ76952(bus)
    afe.probe()
    afe.configure(BASE)
    afe.set_crc(True)
    settle(sim_clock)
    s = Sample(4, 3)
    afe.read(s)
    assert afe.crc and 2000 < s.cell_mv[0] < 4000
    afe.set_crc(False)
    afe.read(s)
    assert not afe.crc and 2000 < s.cell_mv[0] < 4000


def test_subcommands_work_when_0x3e_echoes_before_the_chip_is_done(sim_clock):
    # 1.5 ms busy, within the reference's "2 ms is simple and safe" wait after a write.
    board, bus = emulated(cells=4, seed=1, busy_reads_ffff=False, subcmd_busy_us=1500)
    afe = BQ76952(bus)
    assert afe.probe() == 0x7695
    applied = afe.configure(dict(BASE, cov_mv=3650))
    assert applied["cov_mv"] == 3644
    assert afe.fw_version()[:2] == b"\x76\x95"


def test_a_chip_slower_than_the_write_wait_is_caught_by_the_read_back(sim_clock):
    # No busy indication and 3 ms per write: writes get lost; configure must say so, not pretend.
    board, bus = emulated(cells=4, seed=1, busy_reads_ffff=False, subcmd_busy_us=3000)
    afe = BQ76952(bus)
    afe.probe()
    with pytest.raises(OSError, match="data memory 0x.... reads"):
        afe.configure(dict(BASE, cov_mv=3650))
    assert not afe.battery_status() & R.BS_CFGUPDATE      # and it left CONFIG_UPDATE
    # a longer configured write wait (a constructor knob because the real timing is [U]) fixes it
    slow = BQ76952(bus, write_wait_ms=4)
    assert slow.configure(dict(BASE, cov_mv=3650))["cov_mv"] == 3644
