"""machine.Pin stand-in: levels, pulls, and IRQs fired on the right edge by an external driver."""
import machine
import micropython
import pytest

ALERT = 35  # an input-only GPIO, as a board would use for the AFE's ALERT line


def test_falling_trigger_fires_only_on_falling_edges():
    seen = []
    p = machine.Pin(ALERT, machine.Pin.IN)
    p.irq(handler=lambda pin: seen.append(pin.value()), trigger=machine.Pin.IRQ_FALLING)
    machine.drive_pin(ALERT, 1)   # rising: ignored
    machine.drive_pin(ALERT, 1)   # no edge
    machine.drive_pin(ALERT, 0)   # falling: fires
    machine.drive_pin(ALERT, 1)
    machine.drive_pin(ALERT, 0)   # fires again
    assert seen == [0, 0]
    assert machine.pin_irq_count(ALERT) == 2


def test_rising_trigger_and_both_edges():
    rising, both = [], []
    machine.Pin(ALERT, machine.Pin.IN).irq(lambda p: rising.append(1), machine.Pin.IRQ_RISING)
    machine.Pin(4, machine.Pin.IN).irq(lambda p: both.append(p.value()),
                                       machine.Pin.IRQ_RISING | machine.Pin.IRQ_FALLING)
    for level in (1, 0, 1):
        machine.drive_pin(ALERT, level)
        machine.drive_pin(4, level)
    assert rising == [1, 1]
    assert both == [1, 0, 1]


def test_handler_receives_the_pin_and_can_be_disabled():
    got = []
    p = machine.Pin(ALERT, machine.Pin.IN)
    p.irq(got.append, machine.Pin.IRQ_RISING)
    machine.drive_pin(ALERT, 1)
    assert got == [p]
    p.irq(None)
    machine.drive_pin(ALERT, 0)
    machine.drive_pin(ALERT, 1)
    assert got == [p]


def test_pull_up_reads_high_when_released_and_release_can_make_an_edge():
    seen = []
    p = machine.Pin(ALERT, machine.Pin.IN, machine.Pin.PULL_UP)
    assert p.value() == 1
    p.irq(lambda pin: seen.append("rise"), machine.Pin.IRQ_RISING)
    machine.drive_pin(ALERT, 0)
    assert p() == 0
    machine.drive_pin(ALERT, None)   # open-drain ALERT released: the pull-up brings it back high
    assert p.value() == 1 and seen == ["rise"]


def test_output_pin_value_on_off_and_level_seen_outside():
    led = machine.Pin(2, machine.Pin.OUT, value=1)
    assert machine.pin_level(2) == 1
    led.off()
    assert led.value() == 0 and machine.pin_level(2) == 0
    led.on()
    assert machine.pin_level(2) == 1
    led.value(0)
    assert machine.Pin(2).value() == 0  # another Pin object on the same GPIO sees the same wire


def test_soft_irq_raised_inside_an_i2c_transfer_runs_after_the_transfer():
    order = []

    class AlertingChip:
        def i2c_write(self, data, stop):
            order.append("write")
            machine.drive_pin(ALERT, 0)   # the chip pulls ALERT mid-transaction
            order.append("write done")
            return len(data)

        def i2c_read(self, n):
            return bytes(n)

    machine.attach_i2c_target(0, 0x08, AlertingChip())
    machine.Pin(ALERT, machine.Pin.IN, machine.Pin.PULL_UP).irq(
        lambda p: order.append("irq"), machine.Pin.IRQ_FALLING)
    machine.I2C(0).writeto(0x08, b"\x00")
    order.append("returned")
    # soft IRQs (the esp32 default) are scheduled: never inside the C-level I2C call
    assert order == ["write", "write done", "irq", "returned"]


def test_hard_irq_runs_at_once_even_inside_a_transfer():
    order = []

    class AlertingChip:
        def i2c_write(self, data, stop):
            machine.drive_pin(ALERT, 0)
            order.append("write done")
            return len(data)

        def i2c_read(self, n):
            return bytes(n)

    machine.attach_i2c_target(0, 0x08, AlertingChip())
    machine.Pin(ALERT, machine.Pin.IN, machine.Pin.PULL_UP).irq(
        lambda p: order.append("irq"), machine.Pin.IRQ_FALLING, hard=True)
    machine.I2C(0).writeto(0x08, b"\x00")
    assert order == ["irq", "write done"]


def test_invalid_and_input_only_pins_are_refused():
    with pytest.raises(ValueError):
        machine.Pin(20)   # GPIO20 does not exist on the ESP32
    with pytest.raises(ValueError):
        machine.Pin(34, machine.Pin.OUT)


def test_schedule_queue_depth_is_bounded_like_the_board():
    ran = []
    micropython._sim_enter()
    try:
        for i in range(micropython.SCHEDULER_DEPTH):
            micropython.schedule(ran.append, i)
        with pytest.raises(RuntimeError):
            micropython.schedule(ran.append, 99)
        assert ran == []
    finally:
        micropython._sim_exit()
    assert ran == list(range(micropython.SCHEDULER_DEPTH))
