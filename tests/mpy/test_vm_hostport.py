"""The host-port machine.I2C and the emulator inside the MicroPython VM, under the heap lock.

machine.I2C must release a test's heap lock for its own (host) work, yet leave the firmware's
allocations to be caught: the board's allocating calls (readfrom_mem, readfrom, scan) must still
fail under the lock, the `_into` forms must not. Then the whole chain: the compiled AFE driver reads
the emulated BQ76952 into a Sample without allocating.

    node tools/mpvm/run.mjs --only test_vm_hostport
"""
import machine

import vmtest
from firmware.sample import Sample

_BUS = 1
_ADDR = 0x2A


class _Target:
    """A register file answering the architecture's I2C target protocol; allocates like a host object."""

    def __init__(self):
        self.reg = 0
        self.log = []

    def i2c_write(self, data, stop):
        self.log.append(bytes(data))
        if data:
            self.reg = data[0]
        return len(data)

    def i2c_read(self, n):
        return bytes((self.reg + i) & 0xFF for i in range(n))


def _bus():
    t = _Target()
    machine.attach_i2c_target(_BUS, _ADDR, t)
    return machine.I2C(_BUS), t


def test_readfrom_mem_into_under_lock_passes_and_reaches_the_target():
    i2c, t = _bus()
    buf = bytearray(3)
    try:
        vmtest.assert_no_alloc(i2c.readfrom_mem_into, _ADDR, 0x40, buf)
        vmtest.assert_no_alloc(i2c.writeto_mem, _ADDR, 0x10, buf)
    finally:
        machine.detach_i2c_target(_BUS, _ADDR)
    assert bytes(buf) == b"\x40\x41\x42"
    assert t.log == [b"\x40", b"\x10\x40\x41\x42"], t.log


def test_nack_under_lock_keeps_its_errno():
    i2c = machine.I2C(_BUS)
    e = vmtest.raises(OSError, vmtest.assert_no_alloc, i2c.readfrom_mem_into, 0x77, 0, bytearray(1))
    assert e.args and e.args[0] == 19, e.args  # errno.ENODEV, made while the stand-in held no lock


def test_readfrom_mem_allocates_under_lock_as_on_the_board():
    # On the ESP32 readfrom_mem() and readfrom() build a new bytes object: under heap_lock() it raises MemoryError.
    # The stand-in must create its result after taking the lock back, or firmware using it passes here.
    i2c, _ = _bus()
    try:
        vmtest.raises(AssertionError, vmtest.assert_no_alloc, i2c.readfrom_mem, _ADDR, 0x40, 2)
        vmtest.raises(AssertionError, vmtest.assert_no_alloc, i2c.readfrom, _ADDR, 2)
        vmtest.raises(AssertionError, vmtest.assert_no_alloc, i2c.scan)  # a new list on the board
    finally:
        machine.detach_i2c_target(_BUS, _ADDR)


def test_driver_reads_the_emulated_chip_without_allocating():
    from firmware.afe.bq76952 import BQ76952 as Driver
    from tools.emulator import make_emulated_board
    with vmtest.use_sim_clock(start_ms=0) as clock:
        board = make_emulated_board(cells=16, seed=3, bus_id=0)
        assert board.attached  # the emulator found the host-port machine in the VM and sat on bus 0
        try:
            afe = Driver(machine.I2C(0), crc=False)
            afe.probe()
            s = Sample(16, 3)
            clock.advance_ms(500)
            vmtest.assert_no_alloc(afe.read, s)
            first = list(s.cell_mv)
            clock.advance_ms(500)
            vmtest.assert_no_alloc(afe.read, s)
            # mem_alloc_delta(afe.read, s) would count the emulator's own allocations (~89 KB measured):
            # with stand-ins in the call, assert_no_alloc is the check that isolates the firmware.
        finally:
            machine.detach_i2c_target(0, 0x08)
    # the read really happened: plausible LFP cell voltages, and the time stamp of simulated time
    assert min(first) > 2500 and max(first) < 3700, first
    assert 1000 <= s.t_ms < 1100, s.t_ms  # 1000 ms advanced, plus the driver's own bounded waits
