"""Host stand-in for MicroPython's `machine` module (esp32 port subset): I2C, Pin, WDT, RTC, resets.

Runs in CPython and in the MicroPython VM; never deployed. Emulated chips attach to an I2C bus
and the firmware reaches them through the same methods as on the board.

    machine.attach_i2c_target(0, 0x08, afe)              # afe: i2c_write(data, stop), i2c_read(n)
    i2c = machine.I2C(0, scl=machine.Pin(22), sda=machine.Pin(21)); i2c.readfrom_mem(0x08, 0x14, 2)

The I2C target protocol is docs/architecture.md "I2C target protocol". Host-only hooks (for tests,
emulated chips and simulated boards) are the module functions named attach_*/detach_*, drive_pin,
pin_level, sim_*; firmware must not call them.

Time (WDT, RTC) is simclock.CLOCK. A watchdog that was not fed within its timeout resets the
board at the next check: WDT.feed(), any I2C call, machine.WDT.check() and (on CPython, via
hostport.install) time.sleep_ms/sleep_us. The reset is the BaseException ResetRequested, which
a simulated board catches, then calls sim_reboot(exc) and starts the firmware again.
"""
import errno

import micropython
from simclock import CLOCK

# --- scheduler/heap glue: on CPython the host `micropython` defers scheduled callbacks while a
# stand-in runs; in the MicroPython VM the real scheduler does that by itself.
_sim_enter = getattr(micropython, "_sim_enter", None)
_sim_exit = getattr(micropython, "_sim_exit", None)


def _heap_release():
    """Unlock the heap for the stand-in's own work; returns the lock depth to restore.

    The emulated chip allocates freely (it is not on the board); heap_lock() tests in the VM must
    only catch the firmware's allocations. heap_unlock() on an unlocked heap underflows the real
    VM's counter (checked here: the 1.27 VM hangs), so probe with lock+unlock first.
    """
    micropython.heap_lock()
    depth = micropython.heap_unlock()
    n = depth
    while n > 0:
        micropython.heap_unlock()
        n -= 1
    if _sim_enter is not None:
        _sim_enter()
    return depth


def _heap_restore(depth):
    n = depth
    while n > 0:
        micropython.heap_lock()
        n -= 1
    if _sim_exit is not None:
        _sim_exit()  # may run callbacks queued by micropython.schedule during the call


# --- resets -------------------------------------------------------------------------------
# Values of the esp32 port (ports/esp32/modmachine.h, enum starting at 1).
PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5

# [U] unverified: the esp32 port maps ESP_RST_SW (what machine.reset() causes) to SOFT_RESET.
# Configurable so a test can match a board that reports otherwise.
RESET_CAUSE_AFTER_MACHINE_RESET = SOFT_RESET


class ResetRequested(BaseException):
    """The simulated chip resets. BaseException so firmware `except Exception` cannot swallow it.

    cause: what machine.reset_cause() returns after the reboot.
    chip: True when the whole chip restarts (WDT stops, pins float); False for soft_reset(),
    which restarts only the Python VM (reset cause and running WDT are kept, as on the esp32).
    sleep_ms: for deepsleep(), how long the chip sleeps before it boots again (else 0).
    """

    def __init__(self, cause, chip=True, sleep_ms=0):
        super().__init__(cause)
        self.cause = cause
        self.chip = chip
        self.sleep_ms = sleep_ms


_state = {"reset_cause": PWRON_RESET, "unique_id": b"\x24\x0a\xc4\x00\x00\x01", "freq": 160000000}


def reset_cause():
    return _state["reset_cause"]


def reset():
    raise ResetRequested(RESET_CAUSE_AFTER_MACHINE_RESET, True)


def soft_reset():
    raise ResetRequested(SOFT_RESET, False)


def deepsleep(time_ms=0):
    raise ResetRequested(DEEPSLEEP_RESET, True, time_ms)


def lightsleep(time_ms=0):
    CLOCK.sleep_ms(time_ms)


def idle():
    pass


def disable_irq():
    return 0


def enable_irq(state=0):
    pass


def unique_id():
    return _state["unique_id"]


def freq(hz=None):
    if hz is None:
        return _state["freq"]
    if hz not in (20000000, 40000000, 80000000, 160000000, 240000000):
        raise ValueError("frequency must be 20MHz, 40MHz, 80Mhz, 160MHz or 240MHz")
    _state["freq"] = hz
    return None


def sim_set_unique_id(uid):
    """Host-only: the chip id of this simulated board (the esp32 returns its 6-byte base MAC)."""
    if not isinstance(uid, (bytes, bytearray)) or len(uid) == 0:
        raise ValueError("unique_id must be non-empty bytes")
    _state["unique_id"] = bytes(uid)


def sim_reboot(exc_or_cause=PWRON_RESET):
    """Host-only: apply a reset the simulated board caught (a ResetRequested) or a power cycle (cause int).

    A chip reset stops the watchdog, floats every pin and drops its IRQ handler, and sets the
    reset cause. I2C targets stay attached (they are other chips on the board) and so does their
    state. soft_reset() changes nothing here except the Python-side callbacks.
    """
    if isinstance(exc_or_cause, ResetRequested):
        cause = exc_or_cause.cause
        chip = exc_or_cause.chip
    else:
        cause = exc_or_cause
        chip = True
    if hasattr(micropython, "sim_reset"):
        micropython.sim_reset()
    for st in _pins.values():
        st.handler = None
        st.trigger = 0
    if not chip:
        return
    _state["reset_cause"] = cause
    _wdt["armed"] = False
    _pins.clear()
    _state["freq"] = 160000000
    if cause == PWRON_RESET:
        _rtc["base_s"] = 0
        _rtc["base_us"] = CLOCK.now_us()


def sim_reset_all():
    """Host-only: back to a fresh power-on with nothing attached (between tests)."""
    sim_reboot(PWRON_RESET)
    _buses.clear()
    _state["unique_id"] = b"\x24\x0a\xc4\x00\x00\x01"


# --- WDT ----------------------------------------------------------------------------------
_wdt = {"armed": False, "timeout_ms": 0, "last_feed_us": 0, "resets": 0}


class WDT:
    """machine.WDT: cannot be stopped once started (esp32); not fed in time -> reset at the next check."""

    def __init__(self, id=0, timeout=5000):
        if timeout <= 0:
            raise ValueError("WDT timeout too short")
        _wdt["armed"] = True
        _wdt["timeout_ms"] = timeout
        _wdt["last_feed_us"] = CLOCK.now_us()

    def feed(self):
        WDT.check()
        _wdt["last_feed_us"] = CLOCK.now_us()

    @staticmethod
    def check():
        """Host-only: raise ResetRequested(WDT_RESET) when the running watchdog has expired."""
        if not _wdt["armed"]:
            return
        if CLOCK.now_us() - _wdt["last_feed_us"] > _wdt["timeout_ms"] * 1000:
            _wdt["resets"] += 1
            raise ResetRequested(WDT_RESET, True)

    @staticmethod
    def sim_state():
        """Host-only: (armed, timeout_ms, us since last feed, WDT resets so far)."""
        return (_wdt["armed"], _wdt["timeout_ms"], CLOCK.now_us() - _wdt["last_feed_us"], _wdt["resets"])


# --- RTC ----------------------------------------------------------------------------------
# Seconds since 2000-01-01 00:00:00 at the CLOCK instant base_us. A power-on starts at 2000-01-01.
_rtc = {"base_s": 0, "base_us": CLOCK.now_us()}


def _days_from_civil(y, m, d):
    # Days since 2000-01-01 of a proleptic Gregorian date (March-based year: leap day last).
    if m <= 2:
        y -= 1
    era = y // 400
    yoe = y - era * 400
    mp = (m + 9) % 12
    doy = (153 * mp + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 730425  # 730425: days from 0000-03-01 to 2000-01-01


def _civil_from_days(days):
    z = days + 730425
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    y = yoe + era * 400 + (1 if m <= 2 else 0)
    return y, m, d


class RTC:
    """machine.RTC: datetime() as (year, month, day, weekday 0=Monday, hours, minutes, seconds, subseconds us)."""

    def __init__(self, id=0):
        pass

    def init(self, datetime):
        self.datetime(datetime)

    def datetime(self, datetimetuple=None):
        if datetimetuple is None:
            us = _rtc["base_s"] * 1000000 + CLOCK.now_us() - _rtc["base_us"]
            secs = us // 1000000
            days = secs // 86400
            sod = secs - days * 86400
            y, m, d = _civil_from_days(days)
            wd = (days + 5) % 7  # 2000-01-01 was a Saturday (weekday 5)
            return (y, m, d, wd, sod // 3600, (sod // 60) % 60, sod % 60, us % 1000000)
        y, m, d = datetimetuple[0], datetimetuple[1], datetimetuple[2]
        hh, mm, ss = datetimetuple[4], datetimetuple[5], datetimetuple[6]
        if not (1 <= m <= 12 and 1 <= d <= 31 and 0 <= hh < 24 and 0 <= mm < 60 and 0 <= ss < 60):
            raise ValueError("invalid datetime")
        _rtc["base_s"] = _days_from_civil(y, m, d) * 86400 + hh * 3600 + mm * 60 + ss
        _rtc["base_us"] = CLOCK.now_us()
        return None


# --- Pin ----------------------------------------------------------------------------------
# esp32 GPIO numbers; 34..39 are input-only.
_VALID_PINS = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 21, 22, 23,
               25, 26, 27, 32, 33, 34, 35, 36, 37, 38, 39)
_INPUT_ONLY = (34, 35, 36, 37, 38, 39)


class _PinState:
    def __init__(self):
        self.mode = 1  # IN
        self.pull = -1
        self.out = 0
        self.external = None  # level driven from outside (an emulated chip, a test) or None
        self.handler = None
        self.trigger = 0
        self.hard = False
        self.pin = None  # the Pin object whose irq() was set (passed to the handler)
        self.irq_count = 0

    def level(self):
        """The level the pin reads (the wire, as the input buffer sees it)."""
        if self.mode == Pin.OUT:
            return self.out
        if self.mode == Pin.OPEN_DRAIN and self.out == 0:
            return 0
        if self.external is not None:
            return self.external
        return 1 if self.pull == Pin.PULL_UP else 0


_pins = {}


def _pin_state(pin_id):
    st = _pins.get(pin_id)
    if st is None:
        st = _PinState()
        _pins[pin_id] = st
    return st


def _edge(st, before):
    after = st.level()
    if after == before or st.handler is None:
        return
    kind = Pin.IRQ_RISING if after else Pin.IRQ_FALLING
    if not (st.trigger & kind):
        return
    st.irq_count += 1
    if st.hard:
        st.handler(st.pin)
    else:
        micropython.schedule(st.handler, st.pin)  # soft IRQ, as the esp32 default (hard=False)


_NOARG = object()


class _PinIRQ:
    def __init__(self, st):
        self._st = st

    def trigger(self, value=None):
        if value is None:
            return self._st.trigger
        self._st.trigger = value
        return None

    def flags(self):
        return self._st.trigger


class Pin:
    # esp32 port values (ports/esp32/machine_pin.c)
    IN = 1
    OUT = 3
    OPEN_DRAIN = 7
    PULL_DOWN = 1
    PULL_UP = 2
    IRQ_RISING = 1
    IRQ_FALLING = 2
    WAKE_LOW = 4
    WAKE_HIGH = 5

    def __init__(self, id, mode=-1, pull=-1, value=None, **kwargs):
        if id not in _VALID_PINS:
            raise ValueError("invalid pin")
        self._id = id
        self._st = _pin_state(id)
        self.init(mode, pull, value)

    def init(self, mode=-1, pull=-1, value=None, **kwargs):
        st = self._st
        before = st.level()
        if mode != -1 and mode is not None:
            if mode not in (Pin.IN, Pin.OUT, Pin.OPEN_DRAIN):
                raise ValueError("invalid pin mode")
            if mode != Pin.IN and self._id in _INPUT_ONLY:
                raise ValueError("pin can only be input")
            st.mode = mode
        if pull != -1:
            st.pull = pull
        if value is not None:
            st.out = 1 if value else 0
        _edge(st, before)

    def value(self, x=None):
        if x is None:
            return self._st.level()
        st = self._st
        before = st.level()
        st.out = 1 if x else 0
        _edge(st, before)
        return None

    def __call__(self, x=None):
        return self.value(x)

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)

    def irq(self, handler=_NOARG, trigger=3, priority=1, wake=None, hard=False):
        """irq() returns the IRQ object; irq(handler, trigger, hard=...) sets it (handler None disables)."""
        st = self._st
        if handler is not _NOARG:
            st.handler = handler
            st.trigger = trigger if handler is not None else 0
            st.hard = hard
            st.pin = self
        return _PinIRQ(st)

    def __repr__(self):
        return "Pin(%d)" % self._id


def drive_pin(pin_id, level):
    """Host-only: an external device drives pin_id to 0/1 (None releases it); fires IRQs on the edge."""
    st = _pin_state(pin_id)
    before = st.level()
    st.external = None if level is None else (1 if level else 0)
    _edge(st, before)


def pin_level(pin_id):
    """Host-only: the level on the wire (what an emulated chip connected to pin_id sees)."""
    return _pin_state(pin_id).level()


def pin_irq_count(pin_id):
    """Host-only: how many IRQ edges fired on pin_id since power-on."""
    return _pin_state(pin_id).irq_count


# --- I2C ----------------------------------------------------------------------------------
class I2CStats:
    """Per-bus counters. A transaction is one call that starts with START and ends with STOP
    (readfrom_mem is one: write, repeated START, read), as one i2c_master_cmd_begin on the esp32.
    Bytes are data bytes ACKed (written) or received (read), address bytes not counted."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.transactions = 0
        self.bytes_written = 0
        self.bytes_read = 0
        self.nacks = 0
        self.timeouts = 0

    def snapshot(self):
        return (self.transactions, self.bytes_written, self.bytes_read)


class _Bus:
    def __init__(self):
        self.targets = {}
        self.stats = I2CStats()


_buses = {}
I2C_BUS_IDS = (0, 1)  # the esp32 has two hardware I2C controllers


def _bus(bus_id):
    b = _buses.get(bus_id)
    if b is None:
        b = _Bus()
        _buses[bus_id] = b
    return b


def attach_i2c_target(bus_id, addr, target):
    """Host-only: put `target` on bus bus_id at 7-bit address addr (see the target protocol)."""
    if not 0 <= addr <= 0x7F:
        raise ValueError("I2C address must be 7-bit")
    if not (hasattr(target, "i2c_write") and hasattr(target, "i2c_read")):
        raise ValueError("target needs i2c_write(data, stop) and i2c_read(n)")
    _bus(bus_id).targets[addr] = target


def detach_i2c_target(bus_id, addr):
    """Host-only: remove the chip at addr (it then NACKs like an absent one)."""
    b = _buses.get(bus_id)
    if b is not None and addr in b.targets:
        del b.targets[addr]


def i2c_stats(bus_id):
    """Host-only: the I2CStats of a bus (the same object as I2C(bus_id).stats)."""
    return _bus(bus_id).stats


def _result(data):
    """The bytes readfrom()/readfrom_mem() return, made after the heap lock is back in force: the board
    allocates them in the firmware's heap, so heap_lock() in the VM must catch these calls as there."""
    return bytes(memoryview(data))


def _nack(stats):
    stats.nacks += 1
    return OSError(errno.ENODEV)


class I2C:
    """Hardware I2C of the esp32 port: any NACK raises OSError(ENODEV), a stuck bus OSError(ETIMEDOUT)."""

    def __init__(self, id, scl=None, sda=None, freq=400000, timeout=50000):
        if id not in I2C_BUS_IDS:
            raise ValueError("I2C(%s) doesn't exist" % (id,))
        if freq <= 0:
            raise ValueError("freq must be positive")
        self._id = id
        self._b = _bus(id)
        self.scl = scl
        self.sda = sda
        self.freq = freq
        self.timeout = timeout

    @property
    def stats(self):
        return self._b.stats

    def __repr__(self):
        return "I2C(%d, freq=%d, timeout=%d)" % (self._id, self.freq, self.timeout)

    # one transaction each; the helpers below raise on NACK, count bytes, and never retry
    def _target(self, addr):
        t = self._b.targets.get(addr)
        if t is None:
            raise _nack(self._b.stats)
        return t

    def _write(self, t, data, stop):
        st = self._b.stats
        try:
            n = t.i2c_write(data, stop)
        except OSError as e:
            if e.args and e.args[0] == errno.ETIMEDOUT:
                st.timeouts += 1
            raise
        if n < 0:
            raise _nack(st)
        st.bytes_written += n
        if n < len(data):
            raise _nack(st)
        return n

    def _read(self, t, n):
        st = self._b.stats
        try:
            data = t.i2c_read(n)
        except OSError as e:
            if e.args and e.args[0] == errno.ETIMEDOUT:
                st.timeouts += 1
            raise
        if data is None:
            raise _nack(st)
        if len(data) != n:
            raise ValueError("I2C target returned %d bytes, %d asked" % (len(data), n))
        st.bytes_read += n
        return data

    def _start(self):
        # the watchdog is checked first: a board that is being reset does not reach the bus
        WDT.check()
        self._b.stats.transactions += 1

    def scan(self):
        found = []
        d = _heap_release()
        try:
            WDT.check()
            for addr in range(0x08, 0x78):  # the range MicroPython's scan() probes
                self._b.stats.transactions += 1
                t = self._b.targets.get(addr)
                if t is not None and t.i2c_write(b"", True) >= 0:
                    found.append(addr)
        finally:
            _heap_restore(d)
        return list(found)  # the board builds a new list: allocated under the caller's heap lock

    def writeto(self, addr, buf, stop=True):
        d = _heap_release()
        try:
            self._start()
            n = self._write(self._target(addr), buf, stop)
        finally:
            _heap_restore(d)
        return n

    def writevto(self, addr, vector, stop=True):
        d = _heap_release()
        try:
            self._start()
            data = b"".join(bytes(v) for v in vector)
            n = self._write(self._target(addr), data, stop)
        finally:
            _heap_restore(d)
        return n

    def readfrom(self, addr, nbytes, stop=True):
        d = _heap_release()
        try:
            self._start()
            data = self._read(self._target(addr), nbytes)
        finally:
            _heap_restore(d)
        return _result(data)

    def readfrom_into(self, addr, buf, stop=True):
        d = _heap_release()
        try:
            self._start()
            buf[:] = self._read(self._target(addr), len(buf))
        finally:
            _heap_restore(d)

    @staticmethod
    def _mem_addr(memaddr, addrsize):
        if addrsize == 8:
            return bytes((memaddr & 0xFF,))
        if addrsize == 16:
            return bytes(((memaddr >> 8) & 0xFF, memaddr & 0xFF))  # MSB first, as MicroPython sends it
        raise ValueError("addrsize must be 8 or 16")

    def readfrom_mem(self, addr, memaddr, nbytes, addrsize=8):
        d = _heap_release()
        try:
            reg = self._mem_addr(memaddr, addrsize)  # ValueError before the bus is touched
            self._start()
            t = self._target(addr)
            self._write(t, reg, False)
            data = self._read(t, nbytes)
        finally:
            _heap_restore(d)
        return _result(data)

    def readfrom_mem_into(self, addr, memaddr, buf, addrsize=8):
        d = _heap_release()
        try:
            reg = self._mem_addr(memaddr, addrsize)  # ValueError before the bus is touched
            self._start()
            t = self._target(addr)
            self._write(t, reg, False)
            buf[:] = self._read(t, len(buf))
        finally:
            _heap_restore(d)

    def writeto_mem(self, addr, memaddr, buf, addrsize=8):
        d = _heap_release()
        try:
            reg = self._mem_addr(memaddr, addrsize)
            self._start()
            self._write(self._target(addr), reg + bytes(buf), True)
        finally:
            _heap_restore(d)

