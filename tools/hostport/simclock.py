"""The clock behind `time.ticks_ms()` and friends on the host, real or simulated.

Runs in CPython and in the MicroPython VM. Tests advance simulated time explicitly, so an
hour-long pack scenario runs in seconds; the emulated AFE and the pack model read the same clock.

    from simclock import CLOCK
    CLOCK.simulate()          # from now on time only moves when someone advances it
    CLOCK.advance_ms(250)     # or time.sleep_ms(250) from the firmware
    CLOCK.now_us()            # monotonic microseconds since the clock started (int)

Ticks wrap like MicroPython's (period 2**30 ms), so firmware that subtracts ticks directly
instead of using ticks_diff() breaks here as it would on the board.
"""
import time as _time

TICKS_PERIOD = 1 << 30
TICKS_MAX = TICKS_PERIOD - 1
_HALF = TICKS_PERIOD // 2


def _real_now_us():
    if hasattr(_time, "perf_counter_ns"):  # CPython
        return _time.perf_counter_ns() // 1000
    return _time.ticks_us()  # MicroPython VM: wraps, but real mode there is only used briefly


def ticks_diff(new, old):
    """Signed difference new - old in ticks, correct across the wrap (as MicroPython's)."""
    return ((new - old + _HALF) & TICKS_MAX) - _HALF


def ticks_add(ticks, delta):
    return (ticks + delta) & TICKS_MAX


class Clock:
    """Monotonic microsecond clock; simulated (moves only on advance) or real."""

    def __init__(self, simulated=False, start_ms=0):
        self._simulated = simulated
        self._sim_us = start_ms * 1000
        self._real_base = _real_now_us()
        self._offset_us = start_ms * 1000
        self._listeners = []

    @property
    def simulated(self):
        return self._simulated

    def simulate(self, start_ms=None):
        """Switch to simulated time, continuing from now (or from start_ms)."""
        now = self.now_us() if start_ms is None else start_ms * 1000
        self._simulated = True
        self._sim_us = now

    def real(self):
        """Switch back to real time, continuing from the current simulated instant."""
        now = self.now_us()
        self._simulated = False
        self._real_base = _real_now_us()
        self._offset_us = now

    def now_us(self):
        if self._simulated:
            return self._sim_us
        return self._offset_us + _real_now_us() - self._real_base

    def now_ms(self):
        return self.now_us() // 1000

    def advance_us(self, us):
        """Move simulated time forward (no-op guard: only in simulated mode)."""
        if us < 0:
            raise ValueError("time cannot go backwards")
        if not self._simulated:
            raise RuntimeError("advance on a real clock; call simulate() first")
        self._sim_us += us

    def advance_ms(self, ms):
        self.advance_us(ms * 1000)

    def sleep_us(self, us):
        if us <= 0:
            return
        if self._simulated:
            self._sim_us += us
        elif hasattr(_time, "perf_counter_ns"):
            _time.sleep(us / 1_000_000)
        else:
            _time.sleep_us(us)

    def sleep_ms(self, ms):
        self.sleep_us(ms * 1000)

    # --- MicroPython's time API on this clock ---
    def ticks_ms(self):
        return (self.now_us() // 1000) & TICKS_MAX

    def ticks_us(self):
        return self.now_us() & TICKS_MAX

    def ticks_cpu(self):
        return self.ticks_us()


CLOCK = Clock()


class TimeModule:
    """A stand-in for MicroPython's `time` module bound to a Clock (for sys.modules['time'] in the VM)."""

    def __init__(self, clock):
        self._clock = clock
        self.ticks_ms = clock.ticks_ms
        self.ticks_us = clock.ticks_us
        self.ticks_cpu = clock.ticks_cpu
        self.sleep_ms = clock.sleep_ms
        self.sleep_us = clock.sleep_us
        self.ticks_diff = ticks_diff
        self.ticks_add = ticks_add

    def sleep(self, s):
        self._clock.sleep_us(int(s * 1_000_000))

    def time(self):
        # Seconds since the MicroPython epoch is not modelled: wall-clock comes from NTP in firmware.
        return self._clock.now_us() // 1_000_000

    def time_ns(self):
        return self._clock.now_us() * 1000
