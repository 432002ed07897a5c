"""The emulator's named constants and data-memory layout against numbers typed from the reference
(/work/shared/reference/bq76952.md sections 2-4), so a wrong address cannot hide behind a shared name.
Defaults are checked where the reference gives one (tagged or not); entries it does not list are
the emulator's own [U] choices and are left out."""
import pytest

from tools.emulator import datamem as D
from tools.emulator import protections as P
from tools.emulator import registers as R

# --- section 4, typed from the reference table: name -> (address, default or None) ---
DM_REFERENCE = {
    "POWER_CONFIG": (0x9234, 0x2982), "REG12_CONFIG": (0x9236, 0x00),
    "PROTECTION_CONFIG": (0x925F, 0x0002),
    "ENABLED_PROT_A": (0x9261, 0x88), "ENABLED_PROT_B": (0x9262, 0x00), "ENABLED_PROT_C": (0x9263, 0x00),
    "CHG_FET_PROT_A": (0x9265, 0x98), "CHG_FET_PROT_B": (0x9266, 0xD5), "CHG_FET_PROT_C": (0x9267, 0x56),
    "DSG_FET_PROT_A": (0x9269, 0xE4), "DSG_FET_PROT_B": (0x926A, 0xE6), "DSG_FET_PROT_C": (0x926B, 0xE2),
    "DEFAULT_ALARM_MASK": (0x926D, 0xF800),
    "CUV_THRESHOLD": (0x9275, 50), "CUV_DELAY": (0x9276, 74), "CUV_RECOVERY_HYST": (0x927B, 2),
    "COV_THRESHOLD": (0x9278, 86), "COV_DELAY": (0x9279, 74), "COV_RECOVERY_HYST": (0x927C, 2),
    "OCC_THRESHOLD": (0x9280, 2), "OCC_DELAY": (0x9281, 4),
    "OCD1_THRESHOLD": (0x9282, 4), "OCD1_DELAY": (0x9283, 1),
    "OCD2_THRESHOLD": (0x9284, 3), "OCD2_DELAY": (0x9285, 7),
    "SCD_THRESHOLD": (0x9286, 0), "SCD_DELAY": (0x9287, 2),
    "OCC_RECOVERY_THRESHOLD": (0x9288, -200), "OCC_PACK_TOS_DELTA": (0x92B0, 200),
    "SCD_RECOVERY_TIME": (0x9294, None), "SCDL_LATCH_LIMIT": (0x9295, None),
    "OTC_THRESHOLD": (0x929A, 55), "OTC_DELAY": (0x929B, 2), "OTC_RECOVERY": (0x929C, 50),
    "OTD_THRESHOLD": (0x929D, 60), "OTD_DELAY": (0x929E, 2), "OTD_RECOVERY": (0x929F, 55),
    "OTF_THRESHOLD": (0x92A0, 80), "OTF_DELAY": (0x92A1, 2), "OTF_RECOVERY": (0x92A2, 65),
    "OTINT_THRESHOLD": (0x92A3, 85), "OTINT_DELAY": (0x92A4, 2), "OTINT_RECOVERY": (0x92A5, 80),
    "UTC_THRESHOLD": (0x92A6, 0), "UTC_DELAY": (0x92A7, 2), "UTC_RECOVERY": (0x92A8, 5),
    "UTD_THRESHOLD": (0x92A9, 0), "UTD_DELAY": (0x92AA, 2), "UTD_RECOVERY": (0x92AB, 5),
    "UTINT_THRESHOLD": (0x92AC, -20), "UTINT_DELAY": (0x92AD, 2), "UTINT_RECOVERY": (0x92AE, -15),
    "RECOVERY_TIME": (0x92AF, 3),
    "SLEEP_CURRENT": (0x9248, 20), "VOLTAGE_TIME": (0x924A, 5), "WAKE_COMPARATOR_CURRENT": (0x924B, 500),
    "SLEEP_HYSTERESIS_TIME": (0x924D, 10),
    "PIN_CFETOFF": (0x92FA, None), "PIN_DFETOFF": (0x92FB, None), "PIN_ALERT": (0x92FC, None),
    "PIN_TS1": (0x92FD, 0x07), "PIN_TS2": (0x92FE, 0x00), "PIN_TS3": (0x92FF, None),
    "PIN_HDQ": (0x9300, 0x00), "PIN_DCHG": (0x9301, None), "PIN_DDSG": (0x9302, None),
    "DA_CONFIG": (0x9303, 0x05), "VCELL_MODE": (0x9304, 0x0000),
    "FET_OPTIONS": (0x9308, 0x0D), "CHG_PUMP_CONTROL": (0x9309, 0x01),
    "DSG_CURRENT_THRESHOLD": (0x9310, 100), "CHG_CURRENT_THRESHOLD": (0x9312, 50),
    "BALANCING_CONFIG": (0x9335, 0x00),
    "CB_MIN_CELL_TEMP": (0x9336, -20), "CB_MAX_CELL_TEMP": (0x9337, 60), "CB_MAX_INTERNAL_TEMP": (0x9338, 70),
    "CB_INTERVAL": (0x9339, 20), "CB_MAX_CELLS": (0x933A, 1),
    "CB_CHG_MIN_CELL_V": (0x933B, 3900), "CB_CHG_MIN_DELTA": (0x933D, 40), "CB_CHG_STOP_DELTA": (0x933E, 20),
    "CB_RLX_MIN_CELL_V": (0x933F, 3900), "CB_RLX_MIN_DELTA": (0x9341, 40), "CB_RLX_STOP_DELTA": (0x9342, 20),
    "MFG_STATUS_INIT": (0x9343, 0x0040),
}


@pytest.mark.parametrize("name", sorted(DM_REFERENCE))
def test_data_memory_address_and_default_match_the_reference(name):
    addr, default = DM_REFERENCE[name]
    dm = D.DataMemory()
    assert dm.layout[name][0] == addr, "%s at 0x%04X, reference 0x%04X" % (name, dm.layout[name][0], addr)
    if default is not None:
        assert dm.get(name) == default
        # the bytes at the raw address decode to the same default (no name-only round trip)
        fmt = dm.layout[name][1]
        import struct
        assert struct.unpack(fmt, dm.read(addr, struct.calcsize(fmt)))[0] == default


def test_temperature_protections_step_by_three_from_0x929a():
    for k, p in enumerate(("OTC", "OTD", "OTF", "OTINT", "UTC", "UTD", "UTINT")):
        base = 0x929A + 3 * k
        assert [D.LAYOUT[p + s][0] for s in ("_THRESHOLD", "_DELAY", "_RECOVERY")] == [base, base + 1, base + 2]


def test_no_two_data_memory_entries_overlap_and_all_lie_in_range():
    import struct
    owner = {}
    for name, (addr, fmt, _) in D.LAYOUT.items():
        for a in range(addr, addr + struct.calcsize(fmt)):
            assert D.DM_START <= a <= D.DM_END, name
            assert a not in owner, "%s overlaps %s at 0x%04X" % (name, owner.get(a), a)
            owner[a] = name


# --- section 2: direct-command addresses and bit positions ---
def test_direct_command_addresses():
    assert (R.SAFETY_ALERT_B, R.SAFETY_STATUS_B, R.SAFETY_ALERT_C, R.SAFETY_STATUS_C) == (0x04, 0x05, 0x06, 0x07)
    assert R.PF_ALERT_A == 0x0A
    assert (R.PACK_PIN_VOLTAGE, R.LD_PIN_VOLTAGE) == (0x36, 0x38)
    assert (R.CFETOFF_TEMPERATURE, R.DFETOFF_TEMPERATURE, R.ALERT_TEMPERATURE) == (0x6A, 0x6C, 0x6E)
    assert (R.TS1_TEMPERATURE, R.TS2_TEMPERATURE, R.TS3_TEMPERATURE) == (0x70, 0x72, 0x74)
    assert (R.HDQ_TEMPERATURE, R.DCHG_TEMPERATURE, R.DDSG_TEMPERATURE) == (0x76, 0x78, 0x7A)
    assert (R.SUBCMD_LO, R.SUBCMD_HI, R.TRANSFER_BUFFER, R.TRANSFER_CHECKSUM, R.TRANSFER_LENGTH) == (
        0x3E, 0x3F, 0x40, 0x60, 0x61)


def test_bit_positions():
    assert (R.BS_SLEEP, R.BS_SD_CMD, R.BS_PF, R.BS_SS, R.BS_SEC_SHIFT, R.BS_POR, R.BS_SLEEP_EN, R.BS_CFGUPDATE) == (
        15, 13, 12, 11, 8, 3, 2, 0)
    assert (R.AL_SSBC, R.AL_SSA, R.AL_PF, R.AL_FULLSCAN, R.AL_XCHG, R.AL_XDSG, R.AL_CB, R.AL_ADSCAN, R.AL_WAKE) == (
        15, 14, 13, 7, 6, 5, 2, 1, 0)
    assert (R.FS_ALRT_PIN, R.FS_DDSG_PIN, R.FS_DCHG_PIN, R.FS_PDSG_FET, R.FS_DSG_FET, R.FS_PCHG_FET,
            R.FS_CHG_FET) == (6, 5, 4, 3, 2, 1, 0)
    assert (R.MS_OTPW_EN, R.MS_PF_EN, R.MS_PDSG_TEST, R.MS_FET_EN, R.MS_DSG_TEST, R.MS_CHG_TEST,
            R.MS_PCHG_TEST) == (7, 6, 5, 4, 2, 1, 0)
    assert (R.FO_FET_INIT_OFF, R.FO_PDSG_EN, R.FO_FET_CTRL_EN, R.FO_HOST_FET_EN, R.FO_SLEEPCHG, R.FO_SFET) == (
        5, 4, 3, 2, 1, 0)
    # Safety A/B/C bits as the protections module uses them
    assert (P.A_SCD, P.A_OCD2, P.A_OCD1, P.A_OCC, P.A_COV, P.A_CUV) == (7, 6, 5, 4, 3, 2)
    assert (P.B_OTF, P.B_OTINT, P.B_OTD, P.B_OTC, P.B_UTINT, P.B_UTD, P.B_UTC) == (7, 6, 5, 4, 2, 1, 0)
    assert (P.C_OCD3, P.C_SCDL, P.C_OCDL, P.C_COVL, P.C_PTO, P.C_HWDF) == (7, 6, 5, 4, 2, 1)


# --- section 3: subcommand codes ---
def test_subcommand_codes():
    assert (R.DEVICE_NUMBER, R.FW_VERSION, R.HW_VERSION, R.EXIT_DEEPSLEEP, R.DEEPSLEEP, R.SHUTDOWN) == (
        0x0001, 0x0002, 0x0003, 0x000E, 0x000F, 0x0010)
    assert (R.PDSGTEST, R.PCHGTEST, R.CHGTEST, R.DSGTEST, R.PF_ENABLE, R.SEAL) == (
        0x001C, 0x001E, 0x001F, 0x0020, 0x0024, 0x0030)
    assert (R.SECURITY_KEYS, R.MANUFACTURINGSTATUS, R.MANU_DATA, R.DASTATUS1, R.DASTATUS6) == (
        0x0035, 0x0057, 0x0070, 0x0071, 0x0076)
    assert (R.CUV_SNAPSHOT, R.COV_SNAPSHOT, R.RESET_PASSQ, R.CB_SET_LVL) == (0x0080, 0x0081, 0x0082, 0x0084)
    assert (R.CBSTATUS1, R.CBSTATUS2, R.CBSTATUS3) == (0x0085, 0x0086, 0x0087)
    assert (R.DSG_PDSG_OFF, R.CHG_PCHG_OFF, R.ALL_FETS_OFF, R.ALL_FETS_ON) == (0x0093, 0x0094, 0x0095, 0x0096)
    assert (R.REG12_CONTROL, R.SLEEP_ENABLE, R.SLEEP_DISABLE, R.SWAP_COMM_MODE) == (0x0098, 0x0099, 0x009A, 0x29BC)
