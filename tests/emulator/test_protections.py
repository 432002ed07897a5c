"""Protections: alert on detection, status after the delay, FETs off by the masks, recovery."""
import struct

from simclock import CLOCK

from tools.emulator import make_emulated_board
from emu_host import Host

NO_SLEEP = struct.pack("<H", 0x2882)     # Power Config 0x2982 without SLEEP (bit 8)


def _board(sim, profile=None, **kw):
    b = make_emulated_board(cells=16, attach=False, step_ms=5, profile=profile, **kw)
    return b, Host(b.chip)


def test_cov_alert_then_status_after_delay_opens_chg_then_recovers(sim):
    b, h = _board(sim)
    h.config({0x9234: NO_SLEEP, 0x9278: bytes([72])})      # COV 72 x 50.6 = 3643 mV
    h.fet_enable()
    CLOCK.advance_ms(100)
    assert h.u8(0x03) == 0 and h.u8(0x7F) & 0x05 == 0x05
    b.pack.set_soc(1.02, cell=5)                            # OCV ~3660 mV
    CLOCK.advance_ms(70)                                    # one ADC loop (57 ms) + a step
    assert h.u8(0x02) >> 3 & 1 == 1                         # Safety Alert A COV
    assert h.u8(0x03) == 0                                  # not yet Status
    assert h.u8(0x7F) & 0x01 == 0x01
    CLOCK.advance_ms(250)                                   # delay 74 -> 3.3 ms x 76 = 250.8 ms
    assert h.u8(0x03) >> 3 & 1 == 1
    assert h.u8(0x02) >> 3 & 1 == 0                         # Alert cleared when Status set
    assert h.u8(0x7F) & 0x05 == 0x04                        # CHG off (mask 0x98), DSG on
    assert h.u16(0x12) >> 11 & 1 == 1                       # Battery Status SS
    assert h.u16(0x64) >> 6 & 1 == 1                        # Alarm Raw XCHG
    b.pack.set_soc(0.9, cell=5)
    CLOCK.advance_ms(2900)                                  # Recovery Time 3 s not yet over
    assert h.u8(0x03) >> 3 & 1 == 1
    CLOCK.advance_ms(200)
    assert h.u8(0x03) == 0
    assert h.u8(0x7F) & 0x05 == 0x05


def test_cov_shorter_than_delay_only_alerts(sim):
    b, h = _board(sim)
    h.config({0x9234: NO_SLEEP, 0x9278: bytes([72])})
    h.fet_enable()
    b.pack.set_soc(1.02, cell=0)
    CLOCK.advance_ms(150)
    assert h.u8(0x02) >> 3 & 1 == 1
    b.pack.set_soc(0.9, cell=0)
    CLOCK.advance_ms(300)
    assert h.u8(0x02) == 0 and h.u8(0x03) == 0 and h.u8(0x7F) & 0x05 == 0x05


def test_cuv_opens_dsg(sim):
    b, h = _board(sim)
    h.config({0x9234: NO_SLEEP, 0x9261: bytes([0x8C]), 0x9276: struct.pack("<H", 10)})  # + CUV, 39.6 ms
    h.fet_enable()
    b.pack.set_soc(-0.1, cell=15)                           # OCV far below 2530 mV
    CLOCK.advance_ms(200)
    assert h.u8(0x03) >> 2 & 1 == 1
    assert h.u8(0x7F) & 0x05 == 0x01                        # DSG off (mask 0xE4)


def test_occ_trips_and_recovers_only_with_a_discharge(sim):
    prof = {"ma": 5000}
    b, h = _board(sim, profile=lambda t: prof["ma"])
    h.config({0x9234: NO_SLEEP, 0x9261: bytes([0x98])})    # + OCC (4 mV / 1 mOhm = 4 A)
    h.fet_enable()
    CLOCK.advance_ms(30)                                    # delay 4 -> 19.8 ms
    assert h.u8(0x03) >> 4 & 1 == 1
    assert h.u8(0x7F) & 0x05 == 0x04
    prof["ma"] = 0
    CLOCK.advance_ms(5000)
    assert h.u8(0x03) >> 4 & 1 == 1                         # no discharge: stays
    prof["ma"] = -500                                       # flows through CHG's body diode
    CLOCK.advance_ms(3100)
    assert h.u8(0x03) == 0 and h.u8(0x7F) & 0x05 == 0x05


def test_ocd1_trips_and_recovers_with_charge(sim):
    prof = {"ma": -9000}
    b, h = _board(sim, profile=lambda t: prof["ma"])
    h.config({0x9234: NO_SLEEP, 0x9261: bytes([0xA8])})    # + OCD1 (8 A)
    h.fet_enable()
    CLOCK.advance_ms(20)                                    # delay 1 -> 9.9 ms
    assert h.u8(0x03) >> 5 & 1 == 1
    assert h.u8(0x7F) & 0x05 == 0x01
    assert b.pack.current_ma == 0                           # discharge blocked
    prof["ma"] = 1000                                       # charger: through DSG's body diode
    CLOCK.advance_ms(3100)
    assert h.u8(0x03) == 0


def test_short_circuit_trips_scd_at_once_and_recovers_on_time(sim):
    b, h = _board(sim)
    h.config({0x9234: NO_SLEEP})
    h.fet_enable()
    CLOCK.advance_ms(10)
    b.faults.short_circuit()
    CLOCK.advance_ms(1)
    assert h.u8(0x03) >> 7 & 1 == 1                         # SCD enabled by default (0x88)
    assert h.u8(0x7F) & 0x04 == 0
    assert b.pack.current_ma == 0
    b.faults.clear_short_circuit()
    CLOCK.advance_ms(4900)
    assert h.u8(0x03) >> 7 & 1 == 1
    CLOCK.advance_ms(200)                                   # SCD Recovery Time 5 s [U]
    assert h.u8(0x03) == 0 and h.u8(0x7F) & 0x04 == 0x04


def test_scdl_latches_after_limit_and_needs_scdl_recover(sim):
    b, h = _board(sim)
    h.config({0x9234: NO_SLEEP, 0x9263: bytes([0x40]), 0x9295: bytes([2])})   # SCDL on, limit 2
    h.fet_enable()
    for _ in range(2):
        b.faults.short_circuit()
        CLOCK.advance_ms(1)
        assert h.u8(0x03) >> 7 & 1 == 1
        b.faults.clear_short_circuit()
        CLOCK.advance_ms(5100)
    assert h.u8(0x03) == 0                                  # SCD itself recovered...
    assert h.u8(0x07) >> 6 & 1 == 1                         # ...but SCDL latched
    assert h.u8(0x7F) & 0x05 == 0                           # both FETs held off (C masks 0x56/0xE2)
    CLOCK.advance_ms(60000)
    assert h.u8(0x07) >> 6 & 1 == 1
    h.subcmd(0x009C)                                        # SCDL_RECOVER
    assert h.u8(0x07) == 0 and h.u8(0x7F) & 0x05 == 0x05


def test_ocdl_latch_released_by_ocdl_recover(sim):
    prof = {"ma": -9000}
    b, h = _board(sim, profile=lambda t: prof["ma"])
    h.config({0x9234: NO_SLEEP, 0x9261: bytes([0xA8]), 0x9263: bytes([0x20]), 0x928A: bytes([1])})
    h.fet_enable()
    CLOCK.advance_ms(20)
    assert h.u8(0x07) >> 5 & 1 == 1
    prof["ma"] = 1000
    CLOCK.advance_ms(5000)
    assert h.u8(0x03) == 0 and h.u8(0x07) >> 5 & 1 == 1
    h.subcmd(0x009B)                                        # OCDL_RECOVER
    assert h.u8(0x07) == 0


def test_otc_from_shorted_thermistor_and_utd_from_open(sim):
    b, h = _board(sim)
    h.config({0x9234: NO_SLEEP, 0x9262: bytes([0x12])})    # OTC + UTD
    h.fet_enable()
    b.faults.thermistor("TS1", "short")
    CLOCK.advance_ms(100)
    assert h.i16(0x70) == 1500 + 2732
    assert h.u8(0x04) >> 4 & 1 == 1                         # Alert B OTC
    CLOCK.advance_ms(2100)                                  # OTC delay 2 s (+ up to one ADC loop)
    assert h.u8(0x05) >> 4 & 1 == 1
    assert h.u8(0x7F) & 0x01 == 0                           # CHG off (0xD5 has OTC)
    b.faults.thermistor("TS1", "open")
    CLOCK.advance_ms(2100)
    assert h.i16(0x70) == -400 + 2732
    assert h.u8(0x05) >> 1 & 1 == 1                         # UTD
    assert h.u8(0x7F) & 0x04 == 0                           # DSG off (0xE6 has UTD)
    b.faults.thermistor("TS1", None)
    CLOCK.advance_ms(3200)
    assert h.u8(0x05) == 0 and h.u8(0x7F) & 0x05 == 0x05


def test_host_watchdog_opens_fets_when_host_goes_silent(sim):
    b, h = _board(sim)
    h.config({0x9234: NO_SLEEP, 0x9263: bytes([0x02]), 0x92B2: struct.pack("<H", 2)})  # HWD 2 s [U addr]
    h.fet_enable()
    CLOCK.advance_ms(1900)
    assert h.u8(0x7F) & 0x05 == 0x05                        # talking keeps it fed
    CLOCK.advance_ms(1900)
    assert h.u8(0x7F) & 0x05 == 0x05
    CLOCK.advance_ms(2100)                                  # silent for 2.1 s
    b.chip.update()
    assert b.chip.now_fets() == (False, False)
    assert h.u8(0x07) >> 1 & 1 == 1                         # HWDF; the host is back from here on
    CLOCK.advance_ms(1500)
    assert h.u8(0x07) >> 1 & 1 == 1
    CLOCK.advance_ms(1600)                                  # Recovery Time 3 s after the host returned
    assert h.u8(0x07) == 0 and h.u8(0x7F) & 0x05 == 0x05


def test_protections_disabled_do_nothing(sim):
    b, h = _board(sim, profile=lambda t: -9000)
    h.config({0x9234: NO_SLEEP})                            # OCD1 not enabled by default
    h.fet_enable()
    CLOCK.advance_ms(500)
    assert h.u8(0x02) == 0 and h.u8(0x03) == 0 and h.u8(0x7F) & 0x05 == 0x05
