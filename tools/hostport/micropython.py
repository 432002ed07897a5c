"""Host stand-in for MicroPython's `micropython` module, so firmware imports it unchanged on CPython.

CPython only (the MicroPython VM has the real module). Never deployed.

    from micropython import const
    _REG = const(0x14)

What it models and what it cannot:
- const(): identity (the real compiler folds it; here it is just the value).
- native / viper: identity decorators (no code emitter on CPython).
- schedule(fn, arg): MicroPython runs scheduled functions "soon", between bytecodes, never
  nested. Here: called from plain Python code, fn(arg) runs at once; called while a host
  stand-in is busy (an I2C transfer, a Pin IRQ raised from inside an emulated chip), it is
  queued and runs when the outermost stand-in call returns. The queue has the board's depth
  (8 on the esp32 port, MICROPY_SCHEDULER_DEPTH) and a full queue raises RuntimeError as there.
- heap_lock / heap_unlock / heap_locked: CPython cannot trap allocations, so these are only
  nesting counters (heap_unlock returns the depth after unlocking, as MicroPython does). They
  let code that brackets a hot path run here; the allocation proof is done in the MicroPython VM.
- mem_info / qstr_info / stack_use: print or return placeholders (no GC heap to report).
"""

SCHEDULER_DEPTH = 8  # micropython esp32 port: MICROPY_SCHEDULER_DEPTH default

_heap_depth = 0
_opt_level = 0
_busy_depth = 0  # > 0 while a host stand-in (machine.I2C, a Pin IRQ edge) is running
_queue = []
_running_scheduled = False
emergency_buf_bytes = 0
heap_lock_calls = 0


def const(expr):
    return expr


def native(fn):
    return fn


def viper(fn):
    return fn


def alloc_emergency_exception_buf(size):
    global emergency_buf_bytes
    emergency_buf_bytes = size


def opt_level(level=None):
    global _opt_level
    if level is None:
        return _opt_level
    _opt_level = level
    return None


def heap_lock():
    global _heap_depth, heap_lock_calls
    _heap_depth += 1
    heap_lock_calls += 1


def heap_unlock():
    global _heap_depth
    if _heap_depth > 0:  # the real one would underflow; a counter here just stays at 0
        _heap_depth -= 1
    return _heap_depth


def heap_locked():
    return _heap_depth


def mem_info(verbose=None):
    print("mem_info: not available on the CPython host port (measure heap in the MicroPython VM)")


def qstr_info(verbose=None):
    print("qstr_info: not available on the CPython host port")


def stack_use():
    return 0


def kbd_intr(chr):
    pass


def schedule(fn, arg):
    """Run fn(arg) soon: now, or when the running host stand-in call returns (see module doc)."""
    if len(_queue) >= SCHEDULER_DEPTH:
        raise RuntimeError("schedule queue full")
    _queue.append((fn, arg))
    if _busy_depth == 0:
        run_scheduled()


def run_scheduled():
    """Host-only: run what schedule() queued, in order, never nested (as on the board)."""
    global _running_scheduled
    if _running_scheduled:
        return
    _running_scheduled = True
    try:
        while _queue:
            fn, arg = _queue.pop(0)
            fn(arg)
    finally:
        _running_scheduled = False


def _sim_enter():
    """Host-only: a stand-in call starts; scheduled functions wait until it ends."""
    global _busy_depth
    _busy_depth += 1


def _sim_exit():
    """Host-only: a stand-in call ends; the outermost one runs what was scheduled meanwhile."""
    global _busy_depth
    _busy_depth -= 1
    if _busy_depth <= 0:
        _busy_depth = 0
        if _queue:
            run_scheduled()


def sim_reset():
    """Host-only: forget locks, queued callbacks and counters (between tests, on a simulated reset)."""
    global _heap_depth, _busy_depth, _running_scheduled, heap_lock_calls, emergency_buf_bytes
    _heap_depth = 0
    _busy_depth = 0
    _running_scheduled = False
    heap_lock_calls = 0
    emergency_buf_bytes = 0
    del _queue[:]
