"""CRC-8, checksum and CRC framing against TI's own worked examples (never only against our emulator).

Sources (looked up, numbers carried over):
- TI SLUAA11B "BQ769x2 Software Development Guide", section 4 "I2C With CRC":
  FET_ENABLE write: CRC of [0x10 0x3E 0x22] is 0x63, CRC of the second byte [0x00] is 0x00;
  Cell 1 Voltage read: CRC of [0x10 0x14 0x11 0x68] is 0x33, CRC of the second byte [0x0B] is 0x31.
- TI SLUAAM4 (BQ7690x guide, same CRC): Cell 1 read: CRC of [0x10 0x14 0x11 0xC5] is 0x79.
- TI BQ769142 TRM SLUUCF2C / reference section 3: writing 0x307A to data memory 0x9180 gives
  checksum 0x44 and length 0x06.
"""
from firmware.afe import bq76952_regs as R
from firmware.afe import crc8
from firmware.afe.bq76952 import BQ76952
from firmware.sample import Sample

from afe_fakebus import FakeBQ


def test_crc8_matches_sluaa11b_fet_enable_write():
    assert crc8.crc8(bytes([0x10, 0x3E, 0x22])) == 0x63
    assert crc8.crc8(bytes([0x00])) == 0x00


def test_crc8_matches_sluaa11b_cell1_read():
    assert crc8.crc8(bytes([0x10, 0x14, 0x11, 0x68])) == 0x33
    assert crc8.crc8(bytes([0x0B])) == 0x31


def test_crc8_matches_sluaam4_cell1_read():
    assert crc8.crc8(bytes([0x10, 0x14, 0x11, 0xC5])) == 0x79


def test_crc8_is_poly_07_init_0_by_bitwise_definition():
    # An independent bit-by-bit CRC (x^8 + x^2 + x + 1) over a few vectors, including the "check" value
    # of CRC-8/SMBUS for "123456789" (0xF4), which uses the same parameters.
    assert crc8.crc8(b"123456789") == 0xF4
    assert crc8.crc8(b"") == 0
    assert crc8.crc8(bytes([0x10, 0x3E]), crc=0) == crc8.crc8(bytes([0x3E]), crc=crc8.crc8(bytes([0x10])))


def test_checksum_matches_reference_data_memory_example():
    assert crc8.checksum(0x9180, bytes([0x7A, 0x30]), 2) == 0x44


def test_driver_frames_fet_enable_exactly_as_ti_capture():
    bus = FakeBQ(crc=True)
    afe = BQ76952(bus, crc=True)
    afe._command(R.SC_FET_ENABLE, wait=False)
    # On the wire after the address byte 0x10 and register 0x3E: data, CRC, data, CRC.
    assert bus.log[-1] == ("w", 0x3E, bytes([0x22, 0x63, 0x00, 0x00]))


def test_driver_decodes_ti_cell1_read_capture():
    class Captured(FakeBQ):
        def readfrom_mem_into(self, addr, reg, buf):
            if reg == 0x14 and len(buf) == 4:
                buf[:] = bytes([0x68, 0x33, 0x0B, 0x31])     # SLUAA11B Figure 4-2
            else:
                super().readfrom_mem_into(addr, reg, buf)
    afe = BQ76952(Captured(crc=True), crc=True)
    got = bytearray(2)
    afe._read(0x14, memoryview(got), bytearray(4), 2)
    assert got[0] | (got[1] << 8) == 0x0B68                  # 2920 mV


def test_driver_rejects_read_with_wrong_first_crc_after_retries():
    class Corrupt(FakeBQ):
        def readfrom_mem_into(self, addr, reg, buf):
            buf[:] = bytes([0x68, 0x34, 0x0B, 0x31])         # first CRC off by one
    afe = BQ76952(Corrupt(crc=True), crc=True, retries=3)
    try:
        afe._read(0x14, bytearray(2), bytearray(4), 2)
    except OSError as e:
        assert "CRC" in str(e)
    else:
        raise AssertionError("a corrupted CRC must raise OSError")
    assert afe.stats_retries == 3


def test_read_in_crc_mode_carries_every_byte_with_its_crc():
    bus = FakeBQ(crc=True)
    for n in range(16):
        bus.set_i16(0x14 + 2 * n, 3300 + n)
    afe = BQ76952(bus, crc=True)
    s = Sample(16, 3)
    afe.read(s)
    assert list(s.cell_mv) == [3300 + n for n in range(16)]
    # every read transaction asked for twice the data bytes (data + CRC)
    assert [x[2] for x in bus.log] == [12, 98, 40, 2]


def test_named_constants_match_reference_raw_numbers():
    # Raw numbers typed from /work/shared/reference/bq76952.md, one by one.
    assert (R.BATTERY_STATUS, R.CELL1_VOLTAGE, R.STACK_VOLTAGE, R.PACK_VOLTAGE, R.LD_VOLTAGE) == \
        (0x12, 0x14, 0x34, 0x36, 0x38)
    assert (R.CC2_CURRENT, R.ALARM_STATUS, R.ALARM_RAW_STATUS, R.ALARM_ENABLE, R.INT_TEMPERATURE) == \
        (0x3A, 0x62, 0x64, 0x66, 0x68)
    assert (R.TS1_TEMPERATURE, R.TS2_TEMPERATURE, R.TS3_TEMPERATURE, R.FET_STATUS) == (0x70, 0x72, 0x74, 0x7F)
    assert (R.SUBCMD_LOW, R.TRANSFER_BUFFER, R.TRANSFER_CHECKSUM, R.TRANSFER_LENGTH) == (0x3E, 0x40, 0x60, 0x61)
    assert (R.SC_DEVICE_NUMBER, R.SC_FW_VERSION, R.SC_FET_ENABLE, R.SC_MANUFACTURING_STATUS) == \
        (0x0001, 0x0002, 0x0022, 0x0057)
    assert (R.SC_CB_ACTIVE_CELLS, R.SC_PTO_RECOVER, R.SC_SET_CFGUPDATE, R.SC_EXIT_CFGUPDATE) == \
        (0x0083, 0x008A, 0x0090, 0x0092)
    assert (R.SC_FET_CONTROL, R.SC_SLEEP_ENABLE, R.SC_SLEEP_DISABLE, R.SC_OCDL_RECOVER, R.SC_SCDL_RECOVER) == \
        (0x0097, 0x0099, 0x009A, 0x009B, 0x009C)
    assert (R.DM_COMM_TYPE, R.DM_DA_CONFIG, R.DM_VCELL_MODE, R.DM_CB_MAX_CELLS) == (0x9239, 0x9303, 0x9304, 0x933A)
    assert (R.DM_ENABLED_PROT_A, R.DM_ENABLED_PROT_B, R.DM_ENABLED_PROT_C) == (0x9261, 0x9262, 0x9263)
    assert (R.DM_CUV_THRESHOLD, R.DM_CUV_DELAY, R.DM_CUV_HYST) == (0x9275, 0x9276, 0x927B)
    assert (R.DM_COV_THRESHOLD, R.DM_COV_DELAY, R.DM_COV_HYST) == (0x9278, 0x9279, 0x927C)
    assert (R.DM_OCC_THRESHOLD, R.DM_OCC_DELAY, R.DM_OCD1_THRESHOLD, R.DM_OCD2_THRESHOLD) == \
        (0x9280, 0x9281, 0x9282, 0x9284)
    assert (R.DM_SCD_THRESHOLD, R.DM_SCD_DELAY, R.DM_RECOVERY_TIME, R.DM_SLEEP_CURRENT) == \
        (0x9286, 0x9287, 0x92AF, 0x9248)
    # OTC, OTD, OTF, OTINT, UTC, UTD step by 3 from 0x929A (OTF at 0x92A0 is not configured)
    assert (R.DM_OTC_THRESHOLD, R.DM_OTD_THRESHOLD, R.DM_OTINT_THRESHOLD, R.DM_UTC_THRESHOLD,
            R.DM_UTD_THRESHOLD) == (0x929A, 0x929D, 0x92A3, 0x92A6, 0x92A9)
    # pin configs 0x92FA.. for CFETOFF, DFETOFF, ALERT, TS1
    assert R.DM_TS1_CONFIG == 0x92FA + 3
    assert (R.SA_SCD, R.SA_OCD2, R.SA_OCD1, R.SA_OCC, R.SA_COV, R.SA_CUV) == (0x80, 0x40, 0x20, 0x10, 0x08, 0x04)
    assert (R.SB_OTINT, R.SB_OTD, R.SB_OTC, R.SB_UTD, R.SB_UTC) == (0x40, 0x20, 0x10, 0x02, 0x01)
    assert (R.SC_HWDF, R.SC_PTO, R.SC_OCDL, R.SC_SCDL) == (0x02, 0x04, 0x20, 0x40)
    assert (R.AL_CB, R.AL_FULLSCAN, R.AL_XCHG, R.AL_XDSG) == (0x04, 0x80, 0x40, 0x20)
    assert (R.FS_CHG_FET, R.FS_DSG_FET, R.MS_FET_EN) == (0x01, 0x04, 0x10)
    assert (R.FC_PCHG_OFF, R.FC_CHG_OFF, R.FC_PDSG_OFF, R.FC_DSG_OFF) == (0x08, 0x04, 0x02, 0x01)
