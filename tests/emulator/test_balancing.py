"""Host balancing: the right cell bleeds, Max Cells and temperature limits, CB_NO_CMD, CB_SET_LVL."""
import struct

from simclock import CLOCK

from tools.emulator import make_emulated_board
from emu_host import Host

NO_SLEEP = struct.pack("<H", 0x2882)


def _board(sim, **kw):
    b = make_emulated_board(cells=16, attach=False, **kw)
    h = Host(b.chip)
    return b, h


def test_balancing_bleeds_the_commanded_cell_only(sim):
    b, h = _board(sim)
    h.subcmd_write(0x0083, struct.pack("<H", 1 << 4))        # cell 5 (VC5)
    assert h.subcmd_read(0x0083)[0][:2] == b"\x10\x00"
    assert h.u16(0x64) >> 2 & 1 == 1                          # Alarm Raw CB
    CLOCK.advance_ms(3600 * 1000)
    h.u8(0x12)
    bleed_mah = -b.pack.true_charge_mah(4)
    # ~3.3 V over 20 + 25 ohm = ~73 mA for one hour
    assert 65 < bleed_mah < 80
    for i in range(16):
        if i != 4:
            assert abs(b.pack.true_charge_mah(i)) < 1
    assert b.pack.die_c > 25.5                                # chip's balancing FET heats the die
    t = struct.unpack("<8I", h.subcmd_read(0x0086)[0])
    assert 3590 <= t[4] <= 3600 and t[3] == 0                 # CBSTATUS2 cumulative seconds, cell 5
    assert struct.unpack("<H", h.subcmd_read(0x0085)[0][:2])[0] >= 3590   # CBSTATUS1


def test_more_than_max_cells_is_rejected_by_default(sim):
    b, h = _board(sim)
    h.subcmd_write(0x0083, struct.pack("<H", 0x0005))        # 2 cells, Max Cells = 1
    assert h.subcmd_read(0x0083)[0][:2] == b"\x00\x00"
    h.config({0x933A: bytes([2])})
    h.subcmd_write(0x0083, struct.pack("<H", 0x0005))
    assert h.subcmd_read(0x0083)[0][:2] == b"\x05\x00"


def test_over_max_truncate_option(sim):
    b, h = _board(sim, cb_over_max="truncate")
    h.subcmd_write(0x0083, struct.pack("<H", 0x0014))
    assert h.subcmd_read(0x0083)[0][:2] == b"\x04\x00"


def test_adjacent_cells_allowed_by_default_rejected_by_option(sim):
    b, h = _board(sim)
    h.config({0x933A: bytes([4])})
    h.subcmd_write(0x0083, struct.pack("<H", 0x0003))
    assert h.subcmd_read(0x0083)[0][:2] == b"\x03\x00"
    b, h = _board(sim, cb_adjacent="reject")
    h.config({0x933A: bytes([4])})
    h.subcmd_write(0x0083, struct.pack("<H", 0x0003))
    assert h.subcmd_read(0x0083)[0][:2] == b"\x00\x00"


def test_balancing_pauses_outside_cell_temperature_limits(sim):
    b, h = _board(sim)
    h.subcmd_write(0x0083, struct.pack("<H", 0x0001))
    b.faults.thermistor("TS1", "short")                     # 150 degC > Max Cell Temp 60
    CLOCK.advance_ms(600000)
    h.u8(0x12)
    assert abs(b.pack.true_charge_mah(0)) < 0.2
    assert h.u16(0x64) >> 2 & 1 == 0
    b.faults.thermistor("TS1", None)
    CLOCK.advance_ms(600000)
    h.u8(0x12)
    assert b.pack.true_charge_mah(0) < -10


def test_cb_no_cmd_blocks_host_balancing(sim):
    b, h = _board(sim)
    h.config({0x9335: bytes([0x10])})
    h.subcmd_write(0x0083, struct.pack("<H", 0x0001))
    assert h.subcmd_read(0x0083)[0][:2] == b"\x00\x00"


def test_cb_set_lvl_picks_high_non_adjacent_cells(sim):
    b, h = _board(sim)
    h.config({0x933A: bytes([3]), 0x9234: NO_SLEEP})
    b.pack.set_soc(0.99, cell=2)
    b.pack.set_soc(0.99, cell=3)
    b.pack.set_soc(0.99, cell=9)
    CLOCK.advance_ms(100)
    h.subcmd_write(0x0084, struct.pack("<H", 3380))
    CLOCK.advance_ms(100)
    mask = struct.unpack("<H", h.subcmd_read(0x0083)[0][:2])[0]
    assert mask & (1 << 9)
    assert bin(mask & 0x000C).count("1") == 1                # one of the adjacent pair
    assert mask & ~0x020C == 0
