"""A small recording stand-in for a BQ76952 on a machine.I2C-like bus, for driver unit tests.

Not the project's emulator (tools/emulator is written independently and used by the integration
tests): just enough register file, subcommand transfer buffer and CRC framing to pin down what the
driver puts on the wire. Every transaction is logged as (op, reg, bytes on the wire).
"""
import errno

from firmware.afe import crc8


class FakeBQ:
    def __init__(self, crc=False, addr=0x08):
        self.addr = addr
        self.crc = crc
        self.r = bytearray(256)
        self.r[0x13] = 0x01                 # Battery Status SEC = 1 (FULLACCESS)
        self.dm = {}
        self.sub = {0x0001: b"\x95\x76", 0x0057: b"\x40\x00", 0x0002: bytes(range(1, 8))}
        self.log = []
        self.commands = []
        self.committed = []                 # (code, data) of every write subcommand accepted
        self.fet_control = None
        self.cb = 0
        self.busy_reads = 0                 # 0x3E reads answering 0xFF before the echo
        self.nack_next = 0                  # NACK this many next transactions
        self.absent = False
        self.bad_checksum = 0               # corrupt the checksum of the next n subcommand answers

    # --- machine.I2C methods the driver uses ---
    def readfrom_mem_into(self, addr, reg, buf):
        self.log.append(("r", reg, len(buf)))
        self._check(addr)
        n = len(buf) // 2 if self.crc else len(buf)
        data = bytearray(self.r[reg:reg + n])
        if reg == 0x3E and self.busy_reads:
            self.busy_reads -= 1
            data[0] = data[1] = 0xFF
        if not self.crc:
            buf[:] = data
            return
        c = crc8.crc8(bytes((self.addr << 1, reg, (self.addr << 1) | 1, data[0])))
        out = bytearray((data[0], c))
        for b in data[1:]:
            out += bytes((b, crc8.crc8(bytes((b,)))))
        buf[:] = out

    def writeto_mem(self, addr, reg, buf):
        wire = bytes(buf)
        self.log.append(("w", reg, wire))
        self._check(addr)
        if self.crc:
            if crc8.crc8(bytes((self.addr << 1, reg, wire[0]))) != wire[1]:
                raise OSError(errno.ENODEV)        # the chip NACKs a bad CRC
            for i in range(2, len(wire), 2):
                if crc8.crc8(wire[i:i + 1]) != wire[i + 1]:
                    raise OSError(errno.ENODEV)
            data = wire[0::2]
        else:
            data = wire
        if reg == 0x62:
            mask = data[0] | (data[1] << 8)
            v = (self.r[0x62] | (self.r[0x63] << 8)) & ~mask
            self.r[0x62], self.r[0x63] = v & 0xFF, v >> 8
            return
        self.r[reg:reg + len(data)] = data
        if reg == 0x3E and len(data) == 2:
            self._subcommand(data[0] | (data[1] << 8))
        elif reg == 0x60 and len(data) == 2:
            self._commit()

    def _check(self, addr):
        if self.absent or addr != self.addr:
            raise OSError(errno.ENODEV)
        if self.nack_next:
            self.nack_next -= 1
            raise OSError(errno.ENODEV)

    # --- chip behaviour, minimal ---
    def _subcommand(self, code):
        self.commands.append(code)
        bs = self.r[0x12]
        if code == 0x0090:
            self.r[0x12] = bs | 0x01
        elif code == 0x0092:
            self.r[0x12] = bs & ~0x01
        elif code == 0x0099:
            self.r[0x12] = bs | 0x04
        elif code == 0x009A:
            self.r[0x12] = bs & ~0x04
        elif code == 0x0022:
            ms = self.sub[0x0057]
            self.sub[0x0057] = bytes((ms[0] ^ 0x10, ms[1]))
        if code in self.sub:
            resp = self.sub[code]
        elif code == 0x0083:
            resp = bytes((self.cb & 0xFF, self.cb >> 8))
        elif 0x9180 <= code <= 0x93FF:
            resp = bytes(self.dm.get(code + i, 0) for i in range(32))
        else:
            resp = b""
        self.r[0x40:0x40 + len(resp)] = resp
        cks = (~(code & 0xFF) - (code >> 8) - sum(resp)) & 0xFF
        if self.bad_checksum:
            self.bad_checksum -= 1
            cks ^= 0x5A
        self.r[0x60] = cks
        self.r[0x61] = len(resp) + 4

    def _commit(self):
        code = self.r[0x3E] | (self.r[0x3F] << 8)
        n = self.r[0x61] - 4
        data = bytes(self.r[0x40:0x40 + n])
        if (~((code & 0xFF) + (code >> 8) + sum(data))) & 0xFF != self.r[0x60]:
            return                                   # a bad checksum is ignored by the chip
        self.committed.append((code, data))
        if 0x9180 <= code <= 0x93FF:
            if self.r[0x12] & 1:                     # data memory only inside CONFIG_UPDATE
                for i, b in enumerate(data):
                    self.dm[code + i] = b
        elif code == 0x0097:
            self.fet_control = data[0]
        elif code == 0x0083:
            self.cb = data[0] | (data[1] << 8)

    # --- helpers for tests ---
    def set_i16(self, reg, v):
        v &= 0xFFFF
        self.r[reg], self.r[reg + 1] = v & 0xFF, v >> 8

    def traffic(self):
        return len(self.log)
