"""Driver behaviour on a recording fake bus: subcommand protocol, retries, bounded waits, read(),
FETs, balancing interlocks, alarms. The integration tests (test_driver_emulator.py) repeat the
important ones against the independently written emulator."""
import errno

import pytest

from firmware.afe import bq76952_regs as R
from firmware.afe.bq76952 import BQ76952, RECOVER_OCDL, RECOVER_PTO, RECOVER_SCDL
from firmware import sample as S
from firmware.sample import TEMP_INVALID_DC, Sample

from afe_fakebus import FakeBQ


@pytest.fixture(autouse=True)
def _sim(sim_clock):
    yield


def test_probe_reads_device_number():
    bus = FakeBQ()
    assert BQ76952(bus).probe() == 0x7695
    # a read-only framing check (4 bytes of 0x12 read as CRC frames), then 0x0001 to 0x3E, then
    # 0x3E..0x61 polled in one read of 36 bytes
    assert bus.log[:3] == [("r", 0x12, 8), ("w", 0x3E, b"\x01\x00"), ("r", 0x3E, 36)]


def test_probe_without_detection_writes_nothing_but_the_subcommand():
    bus = FakeBQ()
    assert BQ76952(bus).probe(detect_crc=False) == 0x7695
    assert bus.log[:2] == [("w", 0x3E, b"\x01\x00"), ("r", 0x3E, 36)]


def test_probe_absent_chip_raises_clear_oserror():
    bus = FakeBQ()
    bus.absent = True
    with pytest.raises(OSError) as e:
        BQ76952(bus).probe()
    assert e.value.args[0] == errno.ENODEV
    assert "No BQ76952 found at 0x08" in str(e.value)


def test_probe_wrong_device_number_raises():
    bus = FakeBQ()
    bus.sub[0x0001] = b"\x94\x76"
    with pytest.raises(OSError, match="No BQ76952 found at 0x08.*0x7694"):
        BQ76952(bus).probe()


def test_probe_detects_a_chip_that_talks_crc():
    bus = FakeBQ(crc=True)
    afe = BQ76952(bus, crc=False)
    assert afe.probe() == 0x7695
    assert afe.crc is True


def test_subcommand_waits_while_busy_then_reads():
    bus = FakeBQ()
    bus.busy_reads = 3
    assert BQ76952(bus).probe(detect_crc=False) == 0x7695
    assert [x for x in bus.log if x[0] == "r"] == [("r", 0x3E, 36)] * 4


def test_subcommand_that_never_completes_times_out_bounded():
    bus = FakeBQ()
    bus.busy_reads = 10 ** 6
    afe = BQ76952(bus, sub_polls=7)
    with pytest.raises(OSError) as e:
        afe._sub_read(R.SC_DEVICE_NUMBER)
    assert e.value.args[0] == errno.ETIMEDOUT
    assert len([x for x in bus.log if x[0] == "r"]) == 7


def test_subcommand_bad_checksum_is_reissued_then_accepted():
    bus = FakeBQ()
    bus.bad_checksum = 1            # the first answer's checksum is wrong
    afe = BQ76952(bus)
    assert afe._sub_u16(R.SC_DEVICE_NUMBER) == 0x7695
    assert bus.commands == [R.SC_DEVICE_NUMBER] * 2


def test_subcommand_bad_checksum_every_time_raises_eio():
    bus = FakeBQ()
    bus.bad_checksum = 100
    with pytest.raises(OSError) as e:
        BQ76952(bus, retries=3, sub_polls=5)._sub_read(R.SC_DEVICE_NUMBER)
    assert e.value.args[0] == errno.EIO and "checksum" in str(e.value)
    assert bus.commands == [R.SC_DEVICE_NUMBER] * 3
    assert len([x for x in bus.log if x == ("r", 0x3E, 36)]) == 15     # polled 5 times per issue


def test_fw_version_length_quirk():
    bus = FakeBQ()
    bus.sub[0x0002] = bytes([1, 2, 3, 4, 5, 6, 0xEE])   # reports 11 = 7 + 4, 6 meaningful
    assert BQ76952(bus).fw_version() == bytes([1, 2, 3, 4, 5, 6])


def test_nack_is_retried_and_counted():
    bus = FakeBQ()
    bus.nack_next = 2
    afe = BQ76952(bus, retries=3)
    assert afe.read_alarms() == 0
    assert afe.stats_retries == 2


def test_nack_beyond_retries_raises_eio():
    bus = FakeBQ()
    bus.nack_next = 3
    with pytest.raises(OSError) as e:
        BQ76952(bus, retries=3).read_alarms()
    assert e.value.args[0] == errno.EIO


def test_data_memory_write_sequence_matches_reference_example():
    bus = FakeBQ()
    bus.r[0x12] |= 1               # in CONFIG_UPDATE
    BQ76952(bus)._dm_write(0x9180, 2, 0x307A)
    # Code and data in one block from 0x3E (auto-increment runs 0x3E, 0x3F, 0x40, 0x41), then the
    # checksum/length word of the reference example (0x44, 0x06) at 0x60.
    assert [x for x in bus.log if x[0] == "w"] == [
        ("w", 0x3E, b"\x80\x91\x7a\x30"), ("w", 0x60, b"\x44\x06")]
    assert bus.dm[0x9180] == 0x7A and bus.dm[0x9181] == 0x30


def test_configure_writes_once_in_config_update_and_returns_applied():
    bus = FakeBQ()
    afe = BQ76952(bus)
    applied = afe.configure({"cell_count": 4, "cov_mv": 3650, "cuv_mv": 2800, "ts_pins": 0b011})
    assert bus.commands.count(R.SC_SET_CFGUPDATE) == 1
    assert bus.commands.count(R.SC_EXIT_CFGUPDATE) == 1
    assert bus.r[0x12] & 1 == 0
    assert applied["cov_mv"] == 3644 and applied["cuv_mv"] == 2833 and applied["ts_pins"] == 0b011
    assert applied["vcell_mode"] == 0x000F and applied["cell_count"] == 4
    assert bus.dm[0x9304] == 0x0F and bus.dm[0x9278] == 72


def test_configure_unseals_with_the_configured_keys():
    bus = FakeBQ()
    bus.r[0x13] = 0x03              # SEALED
    orig = bus._subcommand

    def sub(code):
        orig(code)
        keys = bus.commands[-2:]
        if keys == [0x1111, 0x2222]:
            bus.r[0x13] = 0x02
        elif keys == [0x3333, 0x4444]:
            bus.r[0x13] = 0x01
    bus._subcommand = sub
    BQ76952(bus, unseal_keys=(0x1111, 0x2222), full_access_keys=(0x3333, 0x4444)).configure({})
    assert bus.commands[:4] == [0x1111, 0x2222, 0x3333, 0x4444]


def test_configure_with_wrong_keys_raises_eacces():
    bus = FakeBQ()
    bus.r[0x13] = 0x03
    with pytest.raises(OSError) as e:
        BQ76952(bus).configure({})
    assert e.value.args[0] == errno.EACCES


def test_configure_readback_mismatch_raises_and_leaves_config_update():
    bus = FakeBQ()
    orig = bus._commit

    def commit():
        orig()
        bus.dm[0x9278] = 99         # the chip holds something else
    bus._commit = commit
    with pytest.raises(OSError, match="0x9278"):
        BQ76952(bus).configure({"cov_mv": 3650})
    assert bus.r[0x12] & 1 == 0


def test_read_fills_sample_in_four_transactions():
    bus = FakeBQ()
    afe = BQ76952(bus)
    afe.configure({"cell_count": 4, "vcell_mode": 0x8007, "ts_pins": 0b011, "user_amps_ma": 10})
    for n in range(16):
        bus.set_i16(0x14 + 2 * n, 3000 + n)
    bus.set_i16(0x34, 1234)        # cV
    bus.set_i16(0x36, 1200)
    bus.set_i16(0x38, -5)
    bus.set_i16(0x3A, -250)        # x 10 mA
    bus.set_i16(0x68, 2981)        # 0.1 K -> 25.0 degC
    bus.set_i16(0x70, 3031)        # 30.0 degC
    bus.set_i16(0x72, 0)           # implausible: open thermistor
    bus.r[0x02:0x08] = bytes([0x08, 0x04, 0x10, 0x20, 0x01, 0x02])
    bus.r[0x0B], bus.r[0x0D], bus.r[0x0F], bus.r[0x11] = 1, 2, 3, 0
    bus.r[0x62], bus.r[0x63] = 0x80, 0x00
    bus.r[0x7F] = 0x05
    s = Sample(4, 3)
    bus.log.clear()
    afe.read(s)
    assert [(x[0], x[1], x[2]) for x in bus.log] == [("r", 0x02, 6), ("r", 0x0B, 49), ("r", 0x62, 20),
                                                     ("r", 0x7F, 1)]
    assert list(s.cell_mv) == [3000, 3001, 3002, 3015]      # inputs 1, 2, 3 and 16
    assert (s.stack_mv, s.pack_mv, s.ld_mv, s.current_ma) == (12340, 12000, -50, -2500)
    assert s.int_temp_dc == 250 and list(s.temp_dc) == [300, TEMP_INVALID_DC, TEMP_INVALID_DC]
    assert s.safety_alert == 0x08 | 0x10 << 8 | 0x01 << 16
    assert s.safety_status == 0x04 | 0x20 << 8 | 0x02 << 16
    assert s.pf_status == 1 | 2 << 8 | 3 << 16
    assert s.alarm_status == 0x80 and s.fet_status == 0x05


@pytest.mark.parametrize("status_a, status_b, status_c, pf_a, trips", [
    # raw Safety Status bits from the reference (section 2), not the named constants
    (0x08, 0, 0, 0, S.TRIP_CELL_OV),              # A bit 3 COV
    (0, 0, 0x10, 0, S.TRIP_CELL_OV),              # C bit 4 COVL
    (0x04, 0, 0, 0, S.TRIP_CELL_UV),              # A bit 2 CUV
    (0x10, 0, 0, 0, S.TRIP_CHG_OC),               # A bit 4 OCC
    (0x20, 0, 0, 0, S.TRIP_DSG_OC),               # A bit 5 OCD1
    (0x40, 0, 0, 0, S.TRIP_DSG_OC),               # A bit 6 OCD2
    (0, 0, 0x80, 0, S.TRIP_DSG_OC),               # C bit 7 OCD3
    (0, 0, 0x20, 0, S.TRIP_DSG_OC),               # C bit 5 OCDL
    (0x80, 0, 0, 0, S.TRIP_SHORT),                # A bit 7 SCD
    (0, 0, 0x40, 0, S.TRIP_SHORT),                # C bit 6 SCDL
    (0, 0x10, 0, 0, S.TRIP_CHG_OT),               # B bit 4 OTC
    (0, 0x01, 0, 0, S.TRIP_CHG_UT),               # B bit 0 UTC
    (0, 0x20, 0, 0, S.TRIP_DSG_OT),               # B bit 5 OTD
    (0, 0x02, 0, 0, S.TRIP_DSG_UT),               # B bit 1 UTD
    (0, 0x40, 0, 0, S.TRIP_AFE_OT),               # B bit 6 OTINT
    (0, 0, 0, 0x01, S.TRIP_PF),                   # any PF Status bit
    (0, 0, 0x02, 0, 0),                           # C bit 1 HWDF: deliberately not a trip
    (0x08, 0x10, 0x40, 0, S.TRIP_CELL_OV | S.TRIP_CHG_OT | S.TRIP_SHORT),
])
def test_read_translates_chip_status_into_chip_independent_trips(status_a, status_b, status_c, pf_a, trips):
    bus = FakeBQ()
    afe = BQ76952(bus)
    afe.configure({"cell_count": 4, "vcell_mode": 0x8007})
    bus.r[0x03], bus.r[0x05], bus.r[0x07], bus.r[0x0B] = status_a, status_b, status_c, pf_a
    s = Sample(4, 3)
    afe.read(s)
    assert s.chip_trips == trips


def test_read_rejects_a_sample_of_another_shape():
    afe = BQ76952(FakeBQ())
    with pytest.raises(ValueError):
        afe.read(Sample(4, 3))      # not configured: 16 cells


def test_fet_enable_toggles_only_from_test_mode():
    bus = FakeBQ()
    afe = BQ76952(bus)
    afe.fet_enable()
    assert bus.commands.count(R.SC_FET_ENABLE) == 1
    afe.fet_enable()                # already enabled: must not toggle back
    assert bus.commands.count(R.SC_FET_ENABLE) == 1
    assert bus.sub[0x0057][0] & 0x10


def test_set_fets_writes_fet_control_bits():
    bus = FakeBQ()
    afe = BQ76952(bus)
    for chg, dsg, want in ((True, True, 0x00), (False, True, 0x0C), (True, False, 0x03), (False, False, 0x0F)):
        afe.set_fets(chg, dsg)
        assert bus.fet_control == want


def test_balancing_interlocks_refuse_before_bus():
    bus = FakeBQ()
    afe = BQ76952(bus)
    afe.configure({"cell_count": 6, "balance_max_cells": 2})
    n = bus.traffic()
    for bad in (0b11, 1 << 6, 0b10101, -1):
        with pytest.raises(ValueError):
            afe.set_balancing(bad)
    assert bus.traffic() == n
    assert afe.set_balancing(0b100001) == 0b100001
    assert bus.cb == 0b100001
    afe.configure({"cell_count": 6, "balance_max_cells": 2, "balance_allow_adjacent": 1})
    assert afe.set_balancing(0b11) == 0b11


def test_balancing_maps_logical_cells_to_inputs():
    bus = FakeBQ()
    afe = BQ76952(bus)
    afe.configure({"cell_count": 3, "vcell_mode": 0x8003, "balance_max_cells": 2})
    assert afe.set_balancing(0b101) == 0b101
    assert bus.cb == 0x8001         # cell 3 sits on input 16


def test_alarms_read_and_clear():
    bus = FakeBQ()
    bus.r[0x62], bus.r[0x63] = 0x82, 0xF8
    afe = BQ76952(bus)
    assert afe.read_alarms() == 0xF882
    afe.clear_alarms(0x0080)
    assert afe.read_alarms() == 0xF802
    with pytest.raises(ValueError):
        afe.clear_alarms(0x10000)


def test_sleep_allowed_is_confirmed_by_battery_status():
    bus = FakeBQ()
    afe = BQ76952(bus)
    afe.set_sleep_allowed(False)
    assert bus.r[0x12] & 0x04 == 0
    afe.set_sleep_allowed(True)
    assert bus.r[0x12] & 0x04
    bus._subcommand = lambda code: None          # a chip that ignores the command
    with pytest.raises(OSError) as e:
        afe.set_sleep_allowed(False)
    assert e.value.args[0] == errno.ETIMEDOUT


def test_recover_sends_the_right_subcommand():
    bus = FakeBQ()
    afe = BQ76952(bus)
    for kind, code in ((RECOVER_OCDL, 0x009B), (RECOVER_SCDL, 0x009C), (RECOVER_PTO, 0x008A)):
        afe.recover(kind)
        assert bus.commands[-1] == code
    n = bus.traffic()
    with pytest.raises(ValueError):
        afe.recover("COV")
    assert bus.traffic() == n


def test_set_crc_switches_chip_and_driver_together():
    bus = FakeBQ()
    orig = bus._subcommand

    def sub(code):
        orig(code)
        if code == 0x0092:
            bus.crc = bus.dm.get(0x9239) == 0x12
    bus._subcommand = sub
    afe = BQ76952(bus)
    afe.set_crc(True)
    assert afe.crc and bus.crc and bus.dm[0x9239] == 0x12
    assert afe.probe() == 0x7695
    afe.set_crc(False)
    assert not afe.crc and not bus.crc and bus.dm[0x9239] == 0x08


def test_thermistor_slots_follow_the_named_pins_and_skip_ts2():
    # TS1 + TS3 fitted (bit0, bit2): sample slot 0 = TS1 (0x70), slot 1 = TS3 (0x74); TS2 (0x72) holds a
    # plausible value that must not appear anywhere in the sample.
    bus = FakeBQ()
    afe = BQ76952(bus)
    applied = afe.configure({"cell_count": 4, "vcell_mode": 0x8007, "ts_pins": 0b101})
    assert applied["ts_pins"] == 0b101
    assert (bus.dm[0x92FD], bus.dm[0x92FE], bus.dm[0x92FF]) == (0x07, 0x00, 0x07)
    bus.set_i16(0x70, 2731 + 300)    # TS1 30.0 degC
    bus.set_i16(0x72, 2731 + 222)    # TS2 22.2 degC: not fitted, must not be read into the sample
    bus.set_i16(0x74, 2731 + 400)    # TS3 40.0 degC
    s = Sample(4, 3)
    bus.log.clear()
    afe.read(s)
    assert list(s.temp_dc) == [300, 400, TEMP_INVALID_DC]
    assert len(bus.log) == 4         # still four transactions: offsets were built at configure time


def test_no_thermistor_pins_turns_the_cell_temperature_protections_off():
    bus = FakeBQ()
    afe = BQ76952(bus)
    afe.configure({"cell_count": 4, "ts_pins": 0})
    assert (bus.dm[0x92FD], bus.dm[0x92FE], bus.dm[0x92FF]) == (0, 0, 0)
    assert bus.dm[0x9262] == R.SB_OTINT      # Enabled Protections B: OTC/OTD/UTC/UTD off
