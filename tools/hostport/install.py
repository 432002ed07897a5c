"""Install the host port on CPython: MicroPython's time functions on `time`, and the stand-ins importable.

CPython only. The pytest plugin (tests/conftest.py) calls it; simulated boards and the demo call it too.

    from tools.hostport.install import install
    install()   # then `import machine, network, micropython` and time.ticks_ms() work; see simclock

It adds ticks_ms/ticks_us/ticks_cpu/ticks_diff/ticks_add/sleep_ms/sleep_us to CPython's own `time`
module, bound to simclock.CLOCK. It never replaces sys.modules['time']: CPython libraries (paho,
the InfluxDB client, pytest) need the real one. time.sleep()/time.time() stay real: firmware must
use sleep_ms/sleep_us and ticks to run in simulated time.

sleep_ms/sleep_us also do what the board does around a sleep: check the watchdog (a missed feed
raises machine.ResetRequested) and run callbacks queued by micropython.schedule().
"""
import os
import sys
import time

HOSTPORT_DIR = os.path.dirname(os.path.abspath(__file__))
_NAMES = ("ticks_ms", "ticks_us", "ticks_cpu", "ticks_diff", "ticks_add", "sleep_ms", "sleep_us")


def install():
    """Idempotent. Returns simclock.CLOCK (the one clock every stand-in uses)."""
    if HOSTPORT_DIR not in sys.path:
        sys.path.insert(0, HOSTPORT_DIR)
    # Imported by their top-level names: a second copy under `tools.hostport.*` would be a second clock.
    import simclock
    import machine
    import micropython

    clock = simclock.CLOCK

    def sleep_ms(ms):
        clock.sleep_ms(ms)
        _after_sleep()

    def sleep_us(us):
        clock.sleep_us(us)
        _after_sleep()

    def _after_sleep():
        machine.WDT.check()
        micropython.run_scheduled()

    time.ticks_ms = clock.ticks_ms
    time.ticks_us = clock.ticks_us
    time.ticks_cpu = clock.ticks_cpu
    time.ticks_diff = simclock.ticks_diff
    time.ticks_add = simclock.ticks_add
    time.sleep_ms = sleep_ms
    time.sleep_us = sleep_us
    return clock


def installed():
    return all(hasattr(time, n) for n in _NAMES)


def reset_state():
    """Back to a fresh power-on: real clock, no I2C targets, default Wi-Fi, empty scheduler.

    The pytest plugin calls it before every test so one test's board never leaks into the next.
    """
    import simclock
    import machine
    import micropython
    import network

    if simclock.CLOCK.simulated:
        simclock.CLOCK.real()
    micropython.sim_reset()
    machine.sim_reset_all()
    network.SIM.reset()
    network.hostname("esp32")
