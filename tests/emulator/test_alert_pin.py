"""ALERT pin: driven from latched Alarm Status (= Raw AND Enable) when configured as alarm output."""
import struct

from simclock import CLOCK

from tools.emulator import make_emulated_board
from emu_host import Host


class FakePin:
    def __init__(self):
        self.levels = []

    def value(self, v=None):
        if v is None:
            return self.levels[-1] if self.levels else 1
        self.levels.append(v)


def test_alert_pin_follows_latched_alarms(sim):
    pin = FakePin()
    b = make_emulated_board(cells=16, attach=False, alert_pin=pin)
    h = Host(b.chip)
    h.config({0x92FC: bytes([0x2A]), 0x9234: struct.pack("<H", 0x2882), 0x9278: bytes([72])})
    h.write(0x62, struct.pack("<H", 0xFFFF))
    assert pin.value() == 1 and h.u8(0x7F) >> 6 & 1 == 0      # nothing latched (default enable 0xF800)
    h.fet_enable()
    b.pack.set_soc(1.02, cell=0)
    CLOCK.advance_ms(400)                                       # COV status -> SSA latched
    assert h.u16(0x62) >> 14 & 1 == 1
    assert pin.value() == 0                                     # asserted, active low [U]
    assert h.u8(0x7F) >> 6 & 1 == 1                             # FET Status ALRT_PIN
    h.write(0x62, struct.pack("<H", 0xF800))                    # clear while COV is still active
    assert pin.value() == 1
    CLOCK.advance_ms(100)
    b.chip.update()                                             # physics is lazy: bring the chip to now
    assert pin.value() == 0                                     # re-latched (level mode)
    b.pack.set_soc(0.9, cell=0)
    CLOCK.advance_ms(3500)
    h.write(0x62, struct.pack("<H", 0xFFFF))
    assert pin.value() == 1


def test_alert_pin_not_driven_unless_configured(sim):
    pin = FakePin()
    b = make_emulated_board(cells=16, attach=False, alert_pin=pin)
    h = Host(b.chip)
    h.write(0x66, struct.pack("<H", 0x0002))                    # ADSCAN
    CLOCK.advance_ms(100)
    assert h.u16(0x62) & 2 == 2
    assert pin.levels == []                                     # ALERT pin config 0x00: not the alarm output


def test_alert_callback_and_edge_option(sim):
    seen = []
    b = make_emulated_board(cells=16, attach=False, alert_pin=seen.append, alarm_latch="edge")
    h = Host(b.chip)
    h.config({0x92FC: bytes([0x2A])})
    h.write(0x66, struct.pack("<H", 0x0040))                    # XCHG (CHG is off in FET test mode)
    CLOCK.advance_ms(100)
    h.write(0x62, struct.pack("<H", 0xFFFF))
    CLOCK.advance_ms(100)
    # edge mode: XCHG was already raw-set when enabled and stayed set, so it never latched
    assert h.u16(0x62) & 0x0040 == 0
    assert seen == [1]                    # driven inactive (active low) once configured, never asserted
