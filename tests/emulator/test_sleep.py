"""SLEEP: entry at low current, CHG off, wake on current, re-entry hold-off, SLEEP_DISABLE."""

from simclock import CLOCK

from tools.emulator import make_emulated_board
from emu_host import Host


def test_sleep_entry_wake_and_hysteresis(sim):
    prof = {"ma": 0}
    b = make_emulated_board(cells=16, attach=False, profile=lambda t: prof["ma"])
    h = Host(b.chip)
    h.fet_enable()
    CLOCK.advance_ms(100)
    bs = h.u16(0x12)
    assert bs >> 15 & 1 == 1                                 # SLEEP
    assert h.u8(0x7F) & 0x05 == 0x04                         # DSG on, CHG off (SLEEPCHG = 0)
    prof["ma"] = -1000                                       # > Wake Comparator Current 500 mA
    CLOCK.advance_ms(10)
    assert h.u16(0x12) >> 15 & 1 == 0
    assert h.u8(0x7F) & 0x05 == 0x05
    prof["ma"] = 0
    CLOCK.advance_ms(9000)
    assert h.u16(0x12) >> 15 & 1 == 0                        # 10 s re-entry hold-off
    CLOCK.advance_ms(1200)
    assert h.u16(0x12) >> 15 & 1 == 1


def test_sleep_disable_and_enable(sim):
    b = make_emulated_board(cells=16, attach=False)
    h = Host(b.chip)
    h.fet_enable()
    CLOCK.advance_ms(100)
    assert h.u16(0x12) >> 15 & 1 == 1
    h.subcmd(0x009A)                                         # SLEEP_DISABLE
    bs = h.u16(0x12)
    assert bs >> 15 & 1 == 0 and bs >> 2 & 1 == 0
    CLOCK.advance_ms(20000)
    assert h.u16(0x12) >> 15 & 1 == 0
    h.subcmd(0x0099)                                         # SLEEP_ENABLE
    CLOCK.advance_ms(100)
    bs = h.u16(0x12)
    assert bs >> 15 & 1 == 1 and bs >> 2 & 1 == 1


def test_sleep_measures_every_voltage_time(sim):
    b = make_emulated_board(cells=16, attach=False, cell_noise_mv=0.0)
    h = Host(b.chip)
    h.fet_enable()
    CLOCK.advance_ms(100)
    assert h.u16(0x12) >> 15 & 1 == 1
    before = h.i16(0x14)
    b.pack.set_soc(0.05, cell=0)
    CLOCK.advance_ms(2000)
    assert h.i16(0x14) == before
    CLOCK.advance_ms(3100)                                   # Voltage Time 5 s
    assert abs(h.i16(0x14) - 3100) < 10


def test_charger_wakes_sleeping_chip(sim):
    prof = {"ma": 0}
    b = make_emulated_board(cells=16, attach=False, profile=lambda t: prof["ma"])
    h = Host(b.chip)
    h.fet_enable()
    CLOCK.advance_ms(100)
    assert h.u16(0x12) >> 15 & 1 == 1
    prof["ma"] = 5000                                        # blocked by the sleeping CHG FET
    CLOCK.advance_ms(5200)
    assert h.u16(0x12) >> 15 & 1 == 0
    assert b.pack.current_ma == 5000
