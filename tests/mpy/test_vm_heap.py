"""The heap-lock contract between VM tests and host stand-ins, pinned in the MicroPython VM.

Tests hold micropython.heap_lock() around firmware code; a host stand-in that the firmware calls
(machine.I2C forwarding to the emulator) releases it for its own work and takes it back. These tests
pin the VM behaviour that contract relies on, with a stand-in written here the way
tools/mpvm/README.md tells tools/hostport/machine.py to be written.

    node tools/mpvm/run.mjs --only test_vm_heap
"""
import micropython

import vmtest


def test_heap_unlock_returns_the_depth_left_and_locks_nest():
    micropython.heap_lock()
    micropython.heap_lock()
    inner = micropython.heap_unlock()
    outer = micropython.heap_unlock()
    assert (inner, outer) == (1, 0), (inner, outer)


def test_heap_lock_returns_none():
    r = micropython.heap_lock()
    micropython.heap_unlock()
    assert r is None, r


def test_lock_depth_probe_leaves_the_depth_unchanged():
    assert vmtest.lock_depth() == 0
    micropython.heap_lock()
    micropython.heap_lock()
    d = vmtest.lock_depth()
    after = vmtest.lock_depth()
    micropython.heap_unlock()
    micropython.heap_unlock()
    assert (d, after, vmtest.lock_depth()) == (2, 2, 0)


def test_unlock_all_and_relock_round_trip():
    micropython.heap_lock()
    micropython.heap_lock()
    d = vmtest.unlock_all()
    mid = vmtest.lock_depth()
    scratch = [1, 2, 3]  # allocating is allowed while released
    vmtest.relock(d)
    back = vmtest.lock_depth()
    micropython.heap_unlock()
    micropython.heap_unlock()
    assert (d, mid, back, len(scratch)) == (2, 0, 2, 3)


def test_unlock_all_on_an_unlocked_heap_does_nothing():
    # heap_unlock() at depth 0 would wrap the depth to 32767 and lock the heap for good.
    assert vmtest.unlock_all() == 0
    assert vmtest.lock_depth() == 0


class _StandInBus:
    """A host stand-in done right: releases the lock for the host work it does on the firmware's behalf."""

    def __init__(self):
        self.calls = []

    def readfrom_mem_into(self, addr, reg, buf, addrsize=8):
        depth = vmtest.unlock_all()
        try:
            self.calls.append((addr, reg, len(buf), addrsize))  # host bookkeeping: allocates
            data = bytes(range(reg, reg + len(buf)))
            buf[:] = data
        finally:
            vmtest.relock(depth)


class _LeakyBus:
    """A stand-in that forgets to release the lock: its own allocation is blamed on the firmware."""

    def readfrom_mem_into(self, addr, reg, buf, addrsize=8):
        buf[:] = bytes(len(buf))


class _NoRelockBus:
    def readfrom_mem_into(self, addr, reg, buf, addrsize=8):
        vmtest.unlock_all()


class _Reader:
    """Firmware-shaped code: preallocated buffer, small-int arithmetic only."""

    def __init__(self, bus):
        self.bus = bus
        self.buf = bytearray(2)
        self.mv = 0

    def read(self):
        self.bus.readfrom_mem_into(0x08, 0x14, self.buf)
        self.mv = self.buf[0] | (self.buf[1] << 8)
        return self.mv

    def read_16bit_addr(self):
        self.bus.readfrom_mem_into(0x08, 0x14, self.buf, addrsize=16)
        return self.buf[0]

    def read_allocating(self):
        self.bus.readfrom_mem_into(0x08, 0x14, self.buf)
        return bytes(self.buf)  # a new object per call: what the hot path must not do


def test_firmware_under_lock_with_a_releasing_stand_in_passes():
    bus = _StandInBus()
    r = _Reader(bus)
    assert vmtest.assert_no_alloc(r.read) == 0x14 | (0x15 << 8)
    assert vmtest.assert_no_alloc(r.read_16bit_addr) == 0x14  # a keyword argument allocates nothing
    assert bus.calls == [(8, 0x14, 2, 8), (8, 0x14, 2, 16)]
    assert vmtest.lock_depth() == 0


def test_firmware_allocation_is_caught_even_with_a_releasing_stand_in():
    r = _Reader(_StandInBus())
    e = vmtest.raises(AssertionError, vmtest.assert_no_alloc, r.read_allocating)
    assert "allocated" in str(e), str(e)


def test_a_stand_in_that_keeps_the_lock_is_reported():
    vmtest.raises(AssertionError, vmtest.assert_no_alloc, _Reader(_LeakyBus()).read)


def test_a_stand_in_that_does_not_relock_is_reported():
    e = vmtest.raises(AssertionError, vmtest.assert_no_alloc, _Reader(_NoRelockBus()).read)
    assert "lock depth" in str(e), str(e)
    assert vmtest.lock_depth() == 0
