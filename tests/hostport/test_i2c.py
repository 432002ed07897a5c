"""machine.I2C stand-in against a tiny register target: the esp32 port's error and transfer semantics."""
import errno

import machine
import micropython
import pytest

ADDR = 0x08


class RegTarget:
    """A 256-byte register file: a write sets the pointer (first byte) and stores the rest."""

    def __init__(self):
        self.regs = bytearray(range(256))
        self.ptr = 0
        self.log = []  # ("w", bytes, stop) / ("r", n)
        self.ack_limit = None  # ACK only this many data bytes of a write
        self.absent = False  # NACK the address byte
        self.stuck = False  # SCL held low: the transfer times out
        self.heap_depth_seen = None
        self.short_read = False

    def i2c_write(self, data, stop):
        self.heap_depth_seen = micropython.heap_locked()
        if self.stuck:
            raise OSError(errno.ETIMEDOUT)
        if self.absent:
            return -1
        data = bytes(data)
        self.log.append(("w", data, stop))
        n = len(data) if self.ack_limit is None else min(len(data), self.ack_limit)
        if n:
            self.ptr = data[0]
            for b in data[1:n]:
                self.regs[self.ptr] = b
                self.ptr = (self.ptr + 1) & 0xFF
        return n

    def i2c_read(self, n):
        if self.stuck:
            raise OSError(errno.ETIMEDOUT)
        if self.absent:
            return None
        self.log.append(("r", n))
        out = bytes(self.regs[(self.ptr + i) & 0xFF] for i in range(n))
        self.ptr = (self.ptr + n) & 0xFF
        return out[:-1] if self.short_read else out


@pytest.fixture
def bus():
    t = RegTarget()
    machine.attach_i2c_target(0, ADDR, t)
    i2c = machine.I2C(0, scl=machine.Pin(22), sda=machine.Pin(21), freq=400000)
    return i2c, t


def test_readfrom_mem_into_is_register_write_without_stop_then_read(bus):
    i2c, t = bus
    buf = bytearray(4)
    assert i2c.readfrom_mem_into(ADDR, 0x14, buf) is None
    assert buf == bytearray([0x14, 0x15, 0x16, 0x17])
    assert t.log == [("w", b"\x14", False), ("r", 4)]


def test_readfrom_mem_into_fills_a_memoryview_slice_in_place(bus):
    i2c, t = bus
    buf = bytearray(6)
    i2c.readfrom_mem_into(ADDR, 0x40, memoryview(buf)[2:5])
    assert buf == bytearray([0, 0, 0x40, 0x41, 0x42, 0])


def test_readfrom_mem_returns_bytes_and_addrsize16_sends_msb_first(bus):
    i2c, t = bus
    data = i2c.readfrom_mem(ADDR, 0x0120, 2, addrsize=16)
    assert isinstance(data, bytes) and len(data) == 2
    assert t.log == [("w", b"\x01\x20", False), ("r", 2)]
    with pytest.raises(ValueError):
        i2c.readfrom_mem(ADDR, 0, 1, addrsize=12)
    assert len(t.log) == 2 and i2c.stats.transactions == 1   # refused before the bus was touched


def test_writeto_returns_ack_count_and_writeto_mem_sends_reg_then_data(bus):
    i2c, t = bus
    assert i2c.writeto(ADDR, b"\x30\xaa\xbb") == 3
    assert t.regs[0x30:0x32] == b"\xaa\xbb"
    assert i2c.writeto_mem(ADDR, 0x3E, b"\x01\x02") is None
    assert t.log[-1] == ("w", b"\x3e\x01\x02", True)
    assert i2c.writevto(ADDR, (b"\x50", bytearray(b"\x07"), memoryview(b"\x08"))) == 3
    assert t.regs[0x50:0x52] == b"\x07\x08"


def test_readfrom_and_readfrom_into(bus):
    i2c, t = bus
    i2c.writeto(ADDR, b"\x10", False)
    assert i2c.readfrom(ADDR, 2) == b"\x10\x11"
    buf = bytearray(3)
    i2c.readfrom_into(ADDR, buf)
    assert buf == b"\x12\x13\x14"
    assert t.log[0] == ("w", b"\x10", False)


def test_data_nack_raises_enodev_like_the_esp32_port(bus):
    i2c, t = bus
    t.ack_limit = 1
    with pytest.raises(OSError) as e:
        i2c.writeto(ADDR, b"\x30\x01\x02")
    assert e.value.args[0] == errno.ENODEV
    assert i2c.stats.nacks == 1


def test_address_nack_and_absent_address_raise_enodev(bus):
    i2c, t = bus
    t.absent = True
    for call in (lambda: i2c.readfrom_mem(ADDR, 0, 2), lambda: i2c.writeto(ADDR, b"\x00"),
                 lambda: i2c.readfrom(ADDR, 1), lambda: i2c.readfrom_mem_into(0x0B, 0, bytearray(2))):
        with pytest.raises(OSError) as e:
            call()
        assert e.value.args[0] == errno.ENODEV
    machine.detach_i2c_target(0, ADDR)
    with pytest.raises(OSError) as e:
        i2c.readfrom_mem(ADDR, 0, 1)
    assert e.value.args[0] == errno.ENODEV


def test_stuck_bus_timeout_propagates(bus):
    i2c, t = bus
    t.stuck = True
    with pytest.raises(OSError) as e:
        i2c.readfrom_mem_into(ADDR, 0x14, bytearray(2))
    assert e.value.args[0] == errno.ETIMEDOUT
    assert i2c.stats.timeouts == 1


def test_target_returning_wrong_length_is_a_target_bug(bus):
    i2c, t = bus
    t.short_read = True
    with pytest.raises(ValueError):
        i2c.readfrom_mem_into(ADDR, 0, bytearray(4))


def test_stats_count_transactions_and_data_bytes_per_bus(bus):
    i2c, t = bus
    s = i2c.stats
    s.reset()
    i2c.readfrom_mem_into(ADDR, 0x14, bytearray(20))   # 1 transaction: 1 byte out, 20 in
    i2c.writeto_mem(ADDR, 0x3E, b"\x01\x02")             # 1 transaction: 3 bytes out
    i2c.readfrom(ADDR, 2)                                # 1 transaction: 2 in
    assert (s.transactions, s.bytes_written, s.bytes_read) == (3, 4, 22)
    assert machine.I2C(0).stats is s and machine.i2c_stats(0) is s
    assert machine.i2c_stats(1).transactions == 0       # the other bus is separate
    s.reset()
    assert s.snapshot() == (0, 0, 0)


def test_scan_lists_only_acking_targets(bus):
    i2c, t = bus
    other = RegTarget()
    other.absent = True
    machine.attach_i2c_target(0, 0x20, other)
    machine.attach_i2c_target(1, 0x30, RegTarget())
    assert i2c.scan() == [ADDR]
    assert machine.I2C(1).scan() == [0x30]


def test_only_the_two_esp32_controllers_exist_and_addresses_are_7bit():
    with pytest.raises(ValueError):
        machine.I2C(2)
    with pytest.raises(ValueError):
        machine.attach_i2c_target(0, 0x80, RegTarget())
    with pytest.raises(ValueError):
        machine.attach_i2c_target(0, 0x10, object())


def test_targets_run_with_the_heap_unlocked_and_the_lock_is_restored(bus):
    # In the MicroPython VM heap_lock() traps allocations; the emulated chip is not on the board,
    # so the stand-in unlocks around it and locks again before returning to the firmware.
    i2c, t = bus
    micropython.heap_lock()
    try:
        i2c.readfrom_mem_into(ADDR, 0x14, bytearray(2))
        assert t.heap_depth_seen == 0
        assert micropython.heap_locked() == 1
    finally:
        micropython.heap_unlock()
    assert micropython.heap_locked() == 0
