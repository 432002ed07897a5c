"""The test runner inside the MicroPython VM, and the helpers that VM tests use.

tools/mpvm/run.mjs copies this file to /lib/vmtest.py in the VM and calls run_gate() or run_module();
tests under tests/mpy/ import it for the heap and clock helpers (see tools/mpvm/README.md).

    import vmtest
    vmtest.assert_no_alloc(dst.copy_from, src)   # fails the test if copy_from touches the heap

MicroPython only: it relies on micropython.heap_lock() and gc.mem_alloc(). Behaviour of the VM
(1.27.0) it is built on, measured with tools/mpvm/run.mjs (figures in tools/mpvm/README.md):
- heap_lock() returns None; heap_unlock() returns the lock depth left after unlocking; locks nest.
- heap_unlock() at depth 0 does not fail: the depth wraps to 32767 and the heap stays locked, after
  which the VM hangs at the next print. So nothing here unlocks without knowing the depth first.
- an allocation under the lock raises the preallocated MemoryError; no traceback can be recorded;
  an exception raised under the lock arrives as a static instance of its type with empty args.
- gc.mem_alloc() grows in 16-byte blocks; gc.disable() stops threshold collections only, a full
  heap still collects, so the runner starts the VM with a big first heap area (--heap, 8 MiB).
"""
import gc
import io
import sys

import micropython


class Skip(Exception):
    """Raised by skip(): the test is reported as skipped, not failed."""


def skip(reason):
    raise Skip(reason)


def _name(fn):
    try:
        return fn.__name__
    except AttributeError:
        return repr(fn)


# --- heap lock depth (allocation-free: safe to call with the heap locked) ---

def lock_depth():
    """The current micropython.heap_lock() depth (0 = unlocked), without changing it."""
    micropython.heap_lock()
    return micropython.heap_unlock()


def unlock_all():
    """Release every heap lock held now; return how many there were (give it back to relock()).

    Host stand-ins (machine.I2C forwarding to the emulator) call this first thing, so a test can hold
    the lock around firmware code while the host side allocates freely. Allocates nothing.
    """
    micropython.heap_lock()
    depth = micropython.heap_unlock()
    n = depth
    while n > 0:
        micropython.heap_unlock()
        n -= 1
    return depth


def relock(depth):
    """Take the heap lock `depth` times again (the value unlock_all() returned)."""
    while depth > 0:
        micropython.heap_lock()
        depth -= 1


def _set_depth(target):
    d = lock_depth()
    while d > target:
        d = micropython.heap_unlock()
    while d < target:
        micropython.heap_lock()
        d += 1


# --- helpers for tests ---

def assert_no_alloc(fn, *args):
    """Call fn(*args) with the heap locked; fail the test if it allocated. Returns fn's result.

    Any allocation raises MemoryError under the lock. Exceptions are the exception: raising a new
    instance under the lock gives MicroPython's static emergency exception of that type, without its
    args (measured), so it passes here. Code that catches MemoryError itself hides the allocation
    from this check: measure it with mem_alloc_delta() instead.
    """
    depth0 = lock_depth()
    err = None
    result = None
    micropython.heap_lock()
    try:
        result = fn(*args)
    except MemoryError as e:
        err = e
    finally:
        after = lock_depth()
        if after > depth0:
            _set_depth(depth0)
    if err is not None:
        import sys
        sys.print_exception(err)            # where it allocated (the traceback is static, no heap)
        raise AssertionError("%s allocated on the heap (MemoryError under micropython.heap_lock())" % _name(fn))
    if after != depth0 + 1:
        raise AssertionError("%s changed the heap lock depth (%d after, expected %d): a host stand-in "
                             "did not relock" % (_name(fn), after, depth0 + 1))
    return result


def mem_alloc_delta(fn, *args):
    """Bytes fn(*args) allocated on the heap (gc.mem_alloc() after minus before, gc disabled).

    Counts 16-byte blocks, including garbage fn left behind (no collection runs in between), but
    net of blocks fn freed explicitly (a list growing by realloc counts at its final size).
    """
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        before = gc.mem_alloc()
        fn(*args)
        after = gc.mem_alloc()
    finally:
        if was_enabled:
            gc.enable()
    if after < before:
        # Only a collection inside fn can lower it: the heap area was too small (run.mjs --heap).
        raise AssertionError("gc ran during the measurement of %s (%d -> %d bytes); raise --heap"
                             % (_name(fn), before, after))
    return after - before


def raises(exc_type, fn, *args):
    """Call fn(*args); return the exc_type it raises, fail the test if it raises nothing."""
    try:
        fn(*args)
    except exc_type as e:
        return e
    raise AssertionError("%s did not raise %s" % (_name(fn), exc_type.__name__))


# --- time: firmware's `time` is simclock's TimeModule from boot; tests switch its clock ---

class _VMTime:
    """simclock.TimeModule plus the VM's own `time` for anything simclock does not model (gmtime...)."""

    def __init__(self, clock, real):
        import simclock
        self._tm = simclock.TimeModule(clock)
        self._real = real
        self.ticks_ms = self._tm.ticks_ms
        self.ticks_us = self._tm.ticks_us
        self.ticks_cpu = self._tm.ticks_cpu
        self.ticks_diff = self._tm.ticks_diff
        self.ticks_add = self._tm.ticks_add
        self.sleep_ms = self._tm.sleep_ms
        self.sleep_us = self._tm.sleep_us
        self.sleep = self._tm.sleep
        self.time = self._tm.time
        self.time_ns = self._tm.time_ns

    def __getattr__(self, name):
        return getattr(self._real, name)


_real_time = None
_vm_time = None


# An MQTT client for VM runs (the VM has no sockets; on a board umqtt.simple is frozen into the image):
# a broker that acknowledges every publish at once, counts it, and hands queued downlink messages to
# the callback on check_msg. With `receipt_key` set (the device key) it also plays the bridge: every
# uplink frame published is named in a signed receipt delivered, as bytes topic and payload like the
# real client's, on a later check_msg. Used by the live-heap phases and the benchmarks alike.
# What the stand-in allocates for its own part (noting publishes, building and signing receipts) is
# counted in `own_alloc`, so that a benchmark can charge the firmware only with what the firmware
# allocates (this VM collects nothing inside a call, so gc.mem_alloc() deltas are allocations).
_LOOPBACK_UMQTT = """
import gc

RECEIPT_KEY = None         # set by the harness (bytes): clients made from then on send receipts


class MQTTException(Exception):
    pass


class MQTTClient:
    def __init__(self, client_id, server, port=0, user=None, password=None, keepalive=0, ssl=None,
                 ssl_params=None):
        self.sock = None
        self.cb = None
        self.published = 0
        self.bytes = 0
        self.pending = []
        self.receipt_key = RECEIPT_KEY
        self.receipts = 0
        self.own_alloc = 0         # bytes the stand-in allocated for itself (not the firmware)
        self._stored = []          # (receipt topic, boot, seq) published, not yet confirmed

    def set_last_will(self, topic, msg, retain=False, qos=0):
        pass

    def set_callback(self, f):
        self.cb = f

    def connect(self, clean_session=True, timeout=None):
        return False

    def disconnect(self):
        pass

    def ping(self):
        pass

    def subscribe(self, topic, qos=0):
        pass

    def check_msg(self):
        if self.pending:
            topic, msg = self.pending.pop(0)
            self.cb(topic, msg)
        elif self._stored:
            self._confirm()

    def _confirm(self):
        # Its own method: a comprehension closing over a local makes a cell at every call of the
        # function that holds it, and check_msg must not allocate when nothing is waiting.
        m0 = gc.mem_alloc()
        from firmware.comms import frame
        topic, boot = self._stored[0][0], self._stored[0][1]
        seqs = [s for t, b, s in self._stored if b == boot]
        self._stored = [x for x in self._stored if x[1] != boot]
        dev = topic.split(b"/")[1]
        receipts = list(frame.encode_receipts(dev, self.receipt_key, boot, seqs))
        self.own_alloc += gc.mem_alloc() - m0
        for r in receipts:            # what the firmware does with them is the firmware's
            self.receipts += 1
            self.cb(topic, r)

    def wait_msg(self):
        self.check_msg()

    def publish(self, topic, msg, retain=False, qos=0):
        self.published += 1
        self.bytes += len(msg)
        if self.receipt_key is not None and "/up/" in topic and len(msg) > 11:
            m0 = gc.mem_alloc()
            boot = msg[3] | (msg[4] << 8) | (msg[5] << 16) | (msg[6] << 24)
            seq = msg[7] | (msg[8] << 8) | (msg[9] << 16) | (msg[10] << 24)
            self._stored.append((topic.split("/up/")[0].encode() + b"/down/receipt", boot, seq))
            self.own_alloc += gc.mem_alloc() - m0
"""


def install_loopback_umqtt():
    """Put the loopback MQTT client at /lib/umqtt/simple.py (idempotent)."""
    import os
    try:
        os.mkdir("/lib/umqtt")
    except OSError:
        pass
    with open("/lib/umqtt/__init__.py", "w") as f:
        f.write("")
    with open("/lib/umqtt/simple.py", "w") as f:
        f.write(_LOOPBACK_UMQTT)


def install_time():
    """Put a simclock-backed `time` in sys.modules (real mode) before any firmware module imports it.

    Firmware does `import time` at module level and keeps that object, so replacing sys.modules['time']
    later would not reach it: the runner calls this at VM start, use_sim_clock() then switches the clock.
    Returns False when simclock is not in the VM (no tools/hostport/simclock.py).
    """
    global _real_time, _vm_time
    if _vm_time is not None:
        sys.modules["time"] = _vm_time
        return True
    try:
        import simclock  # first: it binds the VM's real time module for its real mode
    except ImportError:
        return False
    _real_time = sys.modules.get("time")
    if _real_time is None:
        import time as _t
        _real_time = _t
    _vm_time = _VMTime(simclock.CLOCK, _real_time)
    sys.modules["time"] = _vm_time
    return True


class _SimClockUse:
    def __init__(self, clock, prev_time, was_simulated):
        self.clock = clock
        self._prev_time = prev_time
        self._was_simulated = was_simulated

    def __enter__(self):
        return self.clock

    def __exit__(self, exc_type, exc, tb):
        self.restore()
        return False

    def restore(self):
        if not self._was_simulated and self.clock.simulated:
            self.clock.real()
        if self._prev_time is not None:
            sys.modules["time"] = self._prev_time


_sim_uses = []


def use_sim_clock(start_ms=None):
    """Run firmware's time.ticks_ms()/sleep_ms() on simulated time until the returned object is restored.

        with vmtest.use_sim_clock(start_ms=0) as clock:
            clock.advance_ms(250)        # or firmware's time.sleep_ms(250)

    Without `with`, the runner restores real time after the test.
    """
    import simclock
    prev = sys.modules.get("time")
    if not install_time():
        skip("simclock is not in the VM")
    use = _SimClockUse(simclock.CLOCK, prev, simclock.CLOCK.simulated)
    simclock.CLOCK.simulate(start_ms)
    _sim_uses.append(use)
    return use


def _restore_clocks():
    while _sim_uses:
        _sim_uses.pop().restore()


# --- the runner ---

def _where(exc):
    """The innermost 'File ..., line N' of exc's traceback outside this file (the test's own line
    rather than the helper's raise), and the whole traceback (MicroPython has no traceback objects)."""
    buf = io.StringIO()
    sys.print_exception(exc, buf)
    last = ""
    for line in buf.getvalue().split("\n"):
        line = line.strip()
        if line.startswith("File ") and (not last or "/vmtest.py" not in line):
            last = line
    return last, buf.getvalue()


def _exc_text(exc):
    msg = str(exc)
    name = type(exc).__name__
    return name + ": " + msg if msg else name


def _report_failure(label, exc, verbose):
    print("FAIL %s: %s" % (label, _exc_text(exc)))
    where, tb = _where(exc)
    if verbose:
        for line in tb.rstrip().split("\n"):
            print("    " + line)
    elif where:
        print("    at " + where)


def _after_test():
    """Undo what a test may have left behind: heap lock, simulated clock. Returns a problem or None."""
    depth = lock_depth()
    if depth:
        _set_depth(0)
    _restore_clocks()
    if depth:
        return "left the heap locked (depth %d)" % depth
    return None


def _closing(passed, failed, skipped):
    line = "%d passed, %d failed" % (passed, failed)
    if skipped:
        line += ", %d skipped" % skipped
    print(line)


def run_gate(modules, verbose=False):
    """Import every firmware module (names as 'firmware.x.y'); one FAIL line per module that fails."""
    passed = failed = 0
    gc.collect()
    base = gc.mem_alloc()
    for name in modules:
        gc.collect()
        before = gc.mem_alloc()
        error = None
        try:
            __import__(name)
        except Exception as e:  # any exception at import time is the gate's failure to report
            error = e
        except BaseException:
            _after_test()  # SystemExit & co. end the VM: never let them reach its top level locked
            raise
        problem = _after_test()
        if error is not None:
            failed += 1
            _report_failure("import::" + name, error, verbose)
        elif problem:
            failed += 1
            print("FAIL import::%s: %s" % (name, problem))
        else:
            passed += 1
            if verbose:
                gc.collect()
                print("ok import::%s (+%d heap bytes, with what it imported first)" % (name, gc.mem_alloc() - before))
    gc.collect()
    print("import gate: %d modules, bytes allocated importing them: %d (gc.mem_alloc, garbage included, "
          "%d before)" % (len(modules), gc.mem_alloc(), base))
    _closing(passed, failed, 0)
    return failed


def _selected(module, test, only):
    return only is None or only == module or only == test or only == module + "::" + test


def run_module(module, only=None, verbose=False):
    """Import tests module `module`, run its test_* functions (sorted by name), print the closing line."""
    passed = failed = skipped = 0
    try:
        mod = __import__(module)
    except Exception as e:  # an import error of a test module is one failure
        _after_test()
        _report_failure(module + "::<import>", e, verbose)
        _closing(0, 1, 0)
        return 1
    names = sorted(n for n in dir(mod) if n.startswith("test_") and callable(getattr(mod, n)))
    for name in names:
        if not _selected(module, name, only):
            continue
        label = module + "::" + name
        fn = getattr(mod, name)
        outcome = None
        try:
            fn()
        except Skip as e:
            outcome = e
        except Exception as e:  # a test's failure, whatever its type, is reported and the run goes on
            outcome = e
        except BaseException:
            # SystemExit, KeyboardInterrupt: the VM stops and run.mjs reports the missing closing line.
            # Unlock first: an exception reaching the VM's top level with the heap locked spins forever.
            _after_test()
            raise
        problem = _after_test()
        if isinstance(outcome, Skip):
            skipped += 1
            print("SKIP %s: %s" % (label, outcome))
        elif outcome is not None:
            failed += 1
            _report_failure(label, outcome, verbose)
        elif problem:
            failed += 1
            print("FAIL %s: %s" % (label, problem))
        else:
            passed += 1
            if verbose:
                print("ok " + label)
        gc.collect()
    _closing(passed, failed, skipped)
    return failed
