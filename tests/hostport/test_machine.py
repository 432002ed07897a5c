"""machine.WDT, resets, RTC, unique_id, freq on the simulated clock."""
import time

import machine
import pytest


class Chip:
    def __init__(self):
        self.touched = 0

    def i2c_write(self, data, stop):
        self.touched += 1
        return len(data)

    def i2c_read(self, n):
        self.touched += 1
        return bytes(n)


def test_wdt_fed_in_time_never_resets(sim_clock):
    wdt = machine.WDT(timeout=2000)
    for _ in range(100):
        time.sleep_ms(1999)
        wdt.feed()
    assert machine.WDT.sim_state()[3] == 0


def test_wdt_not_fed_resets_at_the_next_check_with_wdt_reset_cause(sim_clock):
    wdt = machine.WDT(timeout=2000)
    sim_clock.advance_ms(2001)
    with pytest.raises(machine.ResetRequested) as e:
        wdt.feed()            # a late feed does not save the board
    assert e.value.cause == machine.WDT_RESET and e.value.chip
    machine.sim_reboot(e.value)
    assert machine.reset_cause() == machine.WDT_RESET
    sim_clock.advance_ms(10000)
    machine.WDT.check()       # a chip reset stopped the watchdog: no second reset


def test_wdt_expiry_is_noticed_by_sleep_ms_and_by_i2c_before_the_bus_is_touched(sim_clock):
    machine.WDT(timeout=500)
    with pytest.raises(machine.ResetRequested):
        time.sleep_ms(600)
    chip = Chip()
    machine.attach_i2c_target(0, 0x08, chip)
    with pytest.raises(machine.ResetRequested):
        machine.I2C(0).readfrom_mem(0x08, 0, 2)
    assert chip.touched == 0 and machine.i2c_stats(0).transactions == 0


def test_reset_is_not_swallowed_by_except_exception(sim_clock):
    machine.WDT(timeout=100)
    sim_clock.advance_ms(200)
    caught_by_firmware = False
    with pytest.raises(machine.ResetRequested):
        try:
            machine.WDT.check()
        except Exception:
            caught_by_firmware = True
    assert not caught_by_firmware


def test_wdt_cannot_be_configured_with_a_zero_timeout():
    with pytest.raises(ValueError):
        machine.WDT(timeout=0)


def test_reset_soft_reset_and_deepsleep(sim_clock):
    assert machine.reset_cause() == machine.PWRON_RESET
    machine.WDT(timeout=1000)
    with pytest.raises(machine.ResetRequested) as e:
        machine.soft_reset()
    assert not e.value.chip
    machine.sim_reboot(e.value)
    assert machine.reset_cause() == machine.PWRON_RESET   # a soft reset keeps the cause ...
    sim_clock.advance_ms(1001)
    with pytest.raises(machine.ResetRequested):            # ... and the running watchdog (esp32)
        machine.WDT.check()
    with pytest.raises(machine.ResetRequested) as e:
        machine.reset()
    machine.sim_reboot(e.value)
    assert machine.reset_cause() == machine.RESET_CAUSE_AFTER_MACHINE_RESET
    with pytest.raises(machine.ResetRequested) as e:
        machine.deepsleep(5000)
    assert e.value.sleep_ms == 5000
    machine.sim_reboot(e.value)
    assert machine.reset_cause() == machine.DEEPSLEEP_RESET


def test_reset_cause_constants_have_the_esp32_values():
    assert (machine.PWRON_RESET, machine.HARD_RESET, machine.WDT_RESET, machine.DEEPSLEEP_RESET,
            machine.SOFT_RESET) == (1, 2, 3, 4, 5)


def test_chip_reset_floats_pins_and_drops_irq_handlers():
    fired = []
    machine.Pin(35, machine.Pin.IN).irq(fired.append, machine.Pin.IRQ_RISING)
    machine.Pin(2, machine.Pin.OUT, value=1)
    machine.sim_reboot(machine.PWRON_RESET)
    machine.drive_pin(35, 1)
    assert fired == [] and machine.pin_level(2) == 0


def test_unique_id_is_bytes_and_configurable_per_board():
    assert isinstance(machine.unique_id(), bytes) and len(machine.unique_id()) == 6
    machine.sim_set_unique_id(b"\x24\x0a\xc4\xaa\xbb\xcc")
    assert machine.unique_id() == b"\x24\x0a\xc4\xaa\xbb\xcc"
    with pytest.raises(ValueError):
        machine.sim_set_unique_id("abc")


def test_rtc_runs_on_the_clock_across_a_leap_day(sim_clock):
    rtc = machine.RTC()
    assert rtc.datetime()[:3] == (2000, 1, 1)    # power-on epoch
    assert rtc.datetime()[3] == 5                 # 2000-01-01 was a Saturday (Monday = 0)
    rtc.datetime((2024, 2, 28, 0, 23, 59, 58, 0))
    sim_clock.advance_ms(2500)
    assert rtc.datetime() == (2024, 2, 29, 3, 0, 0, 0, 500000)   # Thursday
    sim_clock.advance_ms(24 * 3600 * 1000)
    assert rtc.datetime()[:4] == (2024, 3, 1, 4)
    rtc.datetime((2099, 12, 31, 0, 23, 59, 59, 0))
    sim_clock.advance_ms(1000)
    assert rtc.datetime()[:7] == (2100, 1, 1, 4, 0, 0, 0)        # 2100 is not a leap year: Friday


def test_freq():
    assert machine.freq() == 160000000
    machine.freq(240000000)
    assert machine.freq() == 240000000
    with pytest.raises(ValueError):
        machine.freq(123)
