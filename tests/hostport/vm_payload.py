"""Runs INSIDE the MicroPython VM (test_vm_compat.py): the host port's machine/network/simclock there.

Prints one "name value" line per check; the pytest side compares them.
"""
import sys

sys.path.append("/hp")
import simclock

sys.modules["time"] = simclock.TimeModule(simclock.CLOCK)
import errno
import machine
import micropython
import network


class Chip:
    def __init__(self):
        self.regs = bytearray(range(64))
        self.ptr = 0

    def i2c_write(self, data, stop):
        if len(data):
            self.ptr = data[0]
        return len(data)

    def i2c_read(self, n):
        return bytes(self.regs[self.ptr:self.ptr + n])  # allocates: the stand-in unlocked the heap


def run():
    simclock.CLOCK.simulate(0)
    machine.attach_i2c_target(0, 8, Chip())
    i2c = machine.I2C(0, scl=machine.Pin(22), sda=machine.Pin(21))
    buf = bytearray(4)
    micropython.heap_lock()
    try:
        i2c.readfrom_mem_into(8, 0x10, buf)
        err = "none"
    except MemoryError:
        err = "MemoryError"
    micropython.heap_unlock()
    print("into_err", err)
    print("into_buf", buf[0], buf[1], buf[2], buf[3])
    print("stats", i2c.stats.transactions, i2c.stats.bytes_written, i2c.stats.bytes_read)
    # the allocating forms allocate on the board too: under the lock they must fail here as there
    for name, call in (("alloc_readfrom_mem", lambda: i2c.readfrom_mem(8, 0x10, 2)),
                       ("alloc_readfrom", lambda: i2c.readfrom(8, 2)),
                       ("alloc_scan", lambda: i2c.scan())):
        micropython.heap_lock()
        try:
            call()
            res = "none"
        except MemoryError:
            res = "MemoryError"
        micropython.heap_unlock()
        print(name, res)
    print("readfrom_mem", i2c.readfrom_mem(8, 0x10, 2) == b"\x10\x11", i2c.scan() == [8])
    try:
        i2c.readfrom_mem(9, 0, 1)
        print("absent", "no-error")
    except OSError as e:
        print("absent", e.args[0] == errno.ENODEV)
    seen = []
    p = machine.Pin(35, machine.Pin.IN, machine.Pin.PULL_UP)
    p.irq(lambda pin: seen.append(pin.value()), machine.Pin.IRQ_FALLING)
    machine.drive_pin(35, 0)
    machine.drive_pin(35, 1)
    print("irq", len(seen))
    w = machine.WDT(timeout=100)
    simclock.CLOCK.advance_ms(150)
    try:
        w.feed()
        print("wdt", "no-reset")
    except machine.ResetRequested as r:
        print("wdt", r.cause == machine.WDT_RESET and r.chip)
        machine.sim_reboot(r)
    print("cause", machine.reset_cause())
    wl = network.WLAN(network.STA_IF)
    wl.active(True)
    wl.connect("a", "b")
    print("wlan_early", wl.status())
    simclock.CLOCK.advance_ms(network.SIM.connect_delay_ms)
    print("wlan", wl.status())
    r = machine.RTC()
    r.datetime((2024, 2, 28, 0, 23, 59, 59, 0))
    simclock.CLOCK.advance_ms(1000)
    d = r.datetime()
    print("rtc", d[0], d[1], d[2], d[3])
    t0 = time_mod().ticks_ms()
    time_mod().sleep_ms(25)
    print("ticks", time_mod().ticks_diff(time_mod().ticks_ms(), t0))


def time_mod():
    return sys.modules["time"]


run()
