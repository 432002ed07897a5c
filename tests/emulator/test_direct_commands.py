"""Direct commands by RAW address: measurements, status registers, write rules."""
import struct

from simclock import CLOCK

from tools.emulator import make_emulated_board
from tools.emulator import registers as R
from emu_host import Host


def test_named_constants_match_reference_raw_numbers():
    assert R.I2C_ADDR == 0x08
    assert (R.CONTROL_STATUS, R.SAFETY_ALERT_A, R.SAFETY_STATUS_A, R.SAFETY_STATUS_C) == (0x00, 0x02, 0x03, 0x07)
    assert (R.BATTERY_STATUS, R.CELL1_VOLTAGE, R.STACK_VOLTAGE, R.CC2_CURRENT) == (0x12, 0x14, 0x34, 0x3A)
    assert (R.ALARM_STATUS, R.ALARM_RAW_STATUS, R.ALARM_ENABLE, R.INT_TEMPERATURE) == (0x62, 0x64, 0x66, 0x68)
    assert (R.TS1_TEMPERATURE, R.TS3_TEMPERATURE, R.FET_STATUS) == (0x70, 0x74, 0x7F)
    assert (R.FET_ENABLE, R.RESET, R.SET_CFGUPDATE, R.EXIT_CFGUPDATE, R.FET_CONTROL) == (0x22, 0x12, 0x90, 0x92, 0x97)
    assert (R.CB_ACTIVE_CELLS, R.OCDL_RECOVER, R.SCDL_RECOVER, R.PTO_RECOVER) == (0x83, 0x9B, 0x9C, 0x8A)


def test_cell_voltages_are_the_pack_cells_in_mv(host, board):
    cells = struct.unpack("<16h", host.read(0x14, 32))     # auto-increment across all 16 registers
    for i in range(16):
        assert abs(cells[i] - board.pack.cell_mv(i)) <= 3


def test_stack_in_centivolts_and_current_in_user_amps(sim):
    b = make_emulated_board(cells=8, attach=False, profile=lambda t: -4321, current_noise_ma=0.0)
    h = Host(b.chip)
    h.fet_enable()
    CLOCK.advance_ms(300)
    stack_cv = h.i16(0x34)
    assert abs(stack_cv * 10 - b.pack.stack_mv()) < 20
    assert h.i16(0x3A) == -4321                      # DA Configuration default 0x05: 1 mA
    h.config({0x9303: bytes([0x06])})                 # USER_AMPS = 2: 10 mA, cV
    CLOCK.advance_ms(300)
    assert h.i16(0x3A) in (-432, -433)
    h.config({0x9303: bytes([0x02])})                 # USER_AMPS = 2 without cV -> stack in mV (8 cells fit I2)
    CLOCK.advance_ms(300)
    assert abs(h.i16(0x34) - b.pack.stack_mv()) < 20


def test_temperatures_in_decikelvin(host, board):
    ts1 = host.i16(0x70)
    assert abs(ts1 - (board.pack.node_c[0] * 10 + 2731.5)) <= 1.5
    assert abs(host.i16(0x68) - 2982) <= 2            # 25 degC die
    assert host.i16(0x72) == 0                         # TS2 not configured (default 0x00)


def test_control_status_reads_ffa5_once_after_a_write(host):
    host.write(0x00, b"\x00\x00")
    assert host.u16(0x00) == 0xFFA5
    assert host.u16(0x00) != 0xFFA5


def test_alarm_status_is_write_one_to_clear_and_enable_is_rw(host, board):
    host.write(0x66, struct.pack("<H", 0x0082))       # FULLSCAN + ADSCAN
    assert host.u16(0x66) == 0x0082
    CLOCK.advance_ms(400)
    st = host.u16(0x62)
    assert st & 0x0082 == 0x0082
    host.write(0x62, struct.pack("<H", 0x0080))
    assert host.u16(0x62) & 0x0080 == 0
    assert host.u16(0x62) & 0x0002 == 0x0002          # the other bit stays latched


def test_read_only_registers_ignore_writes(host):
    before = host.read(0x14, 2)
    host.write(0x14, b"\x00\x00")
    assert host.read(0x14, 2) == before
    host.write(0x12, b"\xFF\xFF")
    assert host.u16(0x12) & 0x0300 == 0x0100           # SEC still FULLACCESS


def test_battery_status_por_sec_sleep_en_at_power_up(host):
    bs = host.u16(0x12)
    assert bs >> 3 & 1 == 1        # POR
    assert bs >> 8 & 3 == 1        # FULLACCESS [U] security_at_por
    assert bs >> 2 & 1 == 1        # SLEEP_EN from Power Config bit 8 (0x2982)
    assert bs & 1 == 0             # not in CONFIG_UPDATE


def test_fet_test_mode_until_fet_enable(host, board):
    CLOCK.advance_ms(100)
    assert host.u8(0x7F) & 0x0F == 0                   # FETs off at power-up (FET_EN = 0)
    host.subcmd(0x0096)                                # ALL_FETS_ON does not drive them in test mode
    CLOCK.advance_ms(10)
    assert host.u8(0x7F) & 0x0F == 0
    host.subcmd(0x001F)                                # CHGTEST works only in test mode
    assert host.u8(0x7F) & 0x05 == 0x01
    host.subcmd(0x0022)                                # FET_ENABLE
    assert host.u8(0x7F) & 0x05 == 0x05
    assert host.subcmd_read(0x0057)[0][0] >> 4 & 1 == 1
    host.subcmd(0x0022)                                # toggles back to test mode
    assert host.u8(0x7F) & 0x05 == 0
