"""MicroPython's time functions on CPython's `time`, bound to simclock; ticks wrap like the board."""
import sys
import time

import micropython
import simclock
from simclock import TICKS_MAX, TICKS_PERIOD


def test_time_module_is_cpythons_own_with_micropython_functions_added():
    assert sys.modules["time"] is time and hasattr(time, "perf_counter")
    for name in ("ticks_ms", "ticks_us", "ticks_cpu", "ticks_diff", "ticks_add", "sleep_ms", "sleep_us"):
        assert callable(getattr(time, name))
    assert isinstance(time.time(), float)  # real wall clock for CPython libraries


def test_sleep_ms_moves_simulated_time_exactly(sim_clock):
    t0_ms, t0_us, now0 = time.ticks_ms(), time.ticks_us(), sim_clock.now_us()
    time.sleep_ms(1234)
    time.sleep_us(500)
    assert time.ticks_diff(time.ticks_ms(), t0_ms) == 1234
    assert time.ticks_diff(time.ticks_us(), t0_us) == 1234500
    assert sim_clock.now_us() - now0 == 1234500


def test_ticks_ms_wraps_and_ticks_diff_is_right_across_the_wrap(sim_clock):
    sim_clock.simulate(start_ms=TICKS_PERIOD - 5)
    before = time.ticks_ms()
    assert before == TICKS_MAX - 4
    time.sleep_ms(10)
    after = time.ticks_ms()
    assert after == 5                          # wrapped
    assert after - before < 0                  # why firmware must never subtract ticks
    assert time.ticks_diff(after, before) == 10
    assert time.ticks_diff(before, after) == -10
    assert time.ticks_add(before, 10) == after
    assert time.ticks_add(5, -10) == TICKS_MAX - 4


def test_ticks_diff_half_period_boundaries():
    half = TICKS_PERIOD // 2
    assert time.ticks_diff(half - 1, 0) == half - 1
    assert time.ticks_diff(half, 0) == -half   # beyond half a period the order is ambiguous
    assert time.ticks_diff(0, TICKS_MAX) == 1


def test_sim_clock_fixture_restores_real_time():
    assert not simclock.CLOCK.simulated
    a = time.ticks_us()
    b = time.ticks_us()
    assert time.ticks_diff(b, a) >= 0


def test_sleep_runs_scheduled_callbacks(sim_clock):
    ran = []
    micropython._sim_enter()
    micropython.schedule(ran.append, 1)
    micropython._busy_depth = 0  # an interrupted stand-in call: the sleep picks the callback up
    time.sleep_ms(1)
    assert ran == [1]


def test_micropython_stand_in_basics():
    assert micropython.const(0x14) == 0x14
    assert micropython.native(len) is len and micropython.viper(len) is len
    micropython.heap_lock()
    micropython.heap_lock()
    assert micropython.heap_locked() == 2
    assert micropython.heap_unlock() == 1
    assert micropython.heap_unlock() == 0
    assert micropython.heap_unlock() == 0  # never negative
    ran = []
    micropython.schedule(ran.append, "now")   # outside any stand-in call: runs at once
    assert ran == ["now"]
    assert micropython.opt_level() == 0
