"""ADC loop timing: ADSCAN each loop, FULLSCAN every third, snapshots between boundaries."""
import struct

from simclock import CLOCK

from tools.emulator import make_emulated_board
from emu_host import Host

NO_SLEEP = 0x2882


def _intervals(h, bit, count, poll_us=500):
    """Times (us) between successive latchings of Alarm Status bit `bit` (cleared after each)."""
    h.write(0x66, struct.pack("<H", 1 << bit))
    h.write(0x62, struct.pack("<H", 0xFFFF))
    seen = []
    for _ in range(20000):
        CLOCK.advance_us(poll_us)
        if h.u16(0x62) >> bit & 1:
            seen.append(CLOCK.now_us())
            h.write(0x62, struct.pack("<H", 1 << bit))
            if len(seen) > count:
                break
    return [b - a for a, b in zip(seen, seen[1:])]


def _board(sim, power_config=NO_SLEEP, extra=None):
    b = make_emulated_board(cells=16, attach=False, step_ms=0.5)
    h = Host(b.chip)
    w = {0x9234: struct.pack("<H", power_config)}
    if extra:
        w.update(extra)
    h.config(w)
    return b, h


def test_adscan_every_loop_of_19_slots_of_3ms(sim):
    b, h = _board(sim)
    for d in _intervals(h, 1, 4):
        assert abs(d - 57000) <= 500          # 16 cells + 2 + TS1 = 19 slots x 3 ms


def test_fullscan_every_three_loops(sim):
    b, h = _board(sim)
    for d in _intervals(h, 7, 3):
        assert abs(d - 171000) <= 500


def test_thermistor_slots_fastadc_and_loop_slow(sim):
    b, h = _board(sim, extra={0x92FE: bytes([0x07]), 0x92FF: bytes([0x07])})
    for d in _intervals(h, 1, 2):
        assert abs(d - 63000) <= 500          # 21 slots
    b, h = _board(sim, power_config=NO_SLEEP | 0x40)
    for d in _intervals(h, 1, 2):
        assert abs(d - 28500) <= 500          # FASTADC: 1.5 ms slots
    b, h = _board(sim, power_config=NO_SLEEP | (2 << 2))
    for d in _intervals(h, 1, 2):
        assert abs(d - 228000) <= 500         # LOOP_SLOW = 2: x4


def test_cell_voltage_is_a_snapshot_updated_at_loop_boundaries(sim):
    b, h = _board(sim)
    _intervals(h, 1, 0)                        # synchronise to a loop boundary
    before = h.i16(0x14)
    b.pack.set_soc(0.05, cell=0)               # OCV drops to ~3100 mV
    CLOCK.advance_ms(20)
    assert h.i16(0x14) == before               # still the last snapshot
    CLOCK.advance_ms(40)
    assert abs(h.i16(0x14) - 3100) < 10        # next loop has it
