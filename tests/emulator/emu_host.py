"""A tiny I2C host for the emulator tests: raw transactions straight to the target protocol.

Uses RAW register numbers and codes on purpose (the tests double-check the emulator's named constants).

    h = Host(chip); h.read(0x14, 2); h.subcmd(0x0022)
"""
import struct

from simclock import CLOCK

from tools.emulator.crc import crc8


class Nack(Exception):
    pass


class Host:
    def __init__(self, chip, crc=False):
        self.chip = chip
        self.crc = crc

    # --- raw transactions ---
    def write(self, reg, data=b""):
        frame = bytearray([reg])
        first = True
        for d in data:
            frame.append(d)
            if self.crc:
                frame.append(crc8((0x10, reg, d)) if first else crc8((d,)))
            first = False
        n = self.chip.i2c_write(bytes(frame), True)
        if n != len(frame):
            raise Nack("write to 0x%02X acked %d of %d" % (reg, n, len(frame)))

    def read(self, reg, n):
        if self.chip.i2c_write(bytes([reg]), False) != 1:
            raise Nack("pointer write NACKed")
        if not self.crc:
            out = self.chip.i2c_read(n)
            if out is None:
                raise Nack("read NACKed")
            return out
        raw = self.chip.i2c_read(2 * n)
        if raw is None:
            raise Nack("read NACKed")
        data = bytearray()
        for k in range(n):
            d = raw[2 * k]
            want = crc8((0x10, reg, 0x11, d)) if k == 0 else crc8((d,))
            if raw[2 * k + 1] != want:
                raise OSError("CRC mismatch at byte %d" % k)
            data.append(d)
        return bytes(data)

    def u16(self, reg):
        return struct.unpack("<H", self.read(reg, 2))[0]

    def i16(self, reg):
        return struct.unpack("<h", self.read(reg, 2))[0]

    def u8(self, reg):
        return self.read(reg, 1)[0]

    # --- subcommands ---
    def subcmd(self, code, wait_ms=2):
        self.write(0x3E, struct.pack("<H", code))
        if wait_ms:
            CLOCK.advance_ms(wait_ms)

    def subcmd_read(self, code, wait_ms=2):
        """Returns (data, length_byte); checks the checksum."""
        self.subcmd(code, wait_ms)
        if self.u16(0x3E) != code:
            raise OSError("subcommand 0x%04X not complete" % code)
        length = self.u8(0x61)
        n = max(0, min(32, length - 4))
        data = self.read(0x40, n)
        chk = self.u8(0x60)
        s = (code & 0xFF) + (code >> 8) + sum(data)
        if (~s) & 0xFF != chk:
            raise OSError("checksum mismatch")
        return data, length

    def subcmd_write(self, code, data, wait_ms=2, chk=None, length=None):
        self.write(0x3E, struct.pack("<H", code) + bytes(data))
        s = (code & 0xFF) + (code >> 8) + sum(data)
        c = (~s) & 0xFF if chk is None else chk
        ln = len(data) + 4 if length is None else length
        self.write(0x60, bytes([c, ln]))
        if wait_ms:
            CLOCK.advance_ms(wait_ms)

    # --- data memory ---
    def dm_read(self, addr, n):
        data, length = self.subcmd_read(addr)
        return data[:n]

    def dm_write(self, addr, data):
        self.subcmd_write(addr, data)

    def config(self, writes):
        """Enter CONFIG_UPDATE, write {addr: bytes}, exit."""
        self.subcmd(0x0090, wait_ms=3)
        for addr in writes:
            self.dm_write(addr, writes[addr])
        self.subcmd(0x0092, wait_ms=2)

    def fet_enable(self):
        self.subcmd(0x0022)
