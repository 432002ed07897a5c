"""The emulated board on a bus the driver can use, with a transaction/byte counter.

Uses the host port's machine.I2C(0) when tools/hostport/machine.py offers attach_i2c_target;
before that lands, a local adapter speaks the same target protocol (docs/architecture.md:
i2c_write(data, stop) -> ACKed count or -1, i2c_read(n) -> bytes or None, NACK -> OSError(ENODEV)).
"""
import errno

from tools.emulator import make_emulated_board


class TargetBus:
    """machine.I2C-like adapter to one emulated target at 0x08 (readfrom_mem = write reg, read n)."""

    def __init__(self, target, addr=0x08):
        self.target = target
        self.addr = addr

    def readfrom_mem_into(self, addr, reg, buf):
        if addr != self.addr or self.target.i2c_write(bytes([reg]), False) < 0:
            raise OSError(errno.ENODEV)
        data = self.target.i2c_read(len(buf))
        if data is None:
            raise OSError(errno.ENODEV)
        buf[:] = data

    def writeto_mem(self, addr, reg, buf):
        data = bytes([reg]) + bytes(buf)
        if addr != self.addr or self.target.i2c_write(data, True) != len(data):
            raise OSError(errno.ENODEV)


class CountingBus:
    """Counts transactions and data bytes (excluding address and register bytes) through `inner`."""

    def __init__(self, inner):
        self.inner = inner
        self.reset()

    def reset(self):
        self.transactions = 0
        self.read_bytes = 0
        self.write_bytes = 0

    def readfrom_mem_into(self, addr, reg, buf):
        self.transactions += 1
        self.read_bytes += len(buf)
        self.inner.readfrom_mem_into(addr, reg, buf)

    def writeto_mem(self, addr, reg, buf):
        self.transactions += 1
        self.write_bytes += len(buf)
        self.inner.writeto_mem(addr, reg, buf)


def emulated(cells=4, crc=False, **kw):
    """(board, counting bus) with the chip on the host-port bus if available, else the adapter."""
    try:
        import machine
        has_port = hasattr(machine, "attach_i2c_target")
    except ImportError:
        has_port = False
    if has_port:
        board = make_emulated_board(cells=cells, crc=crc, **kw)
        inner = machine.I2C(0)
    else:
        board = make_emulated_board(cells=cells, crc=crc, attach=False, **kw)
        inner = TargetBus(board.chip)
    return board, CountingBus(inner)
