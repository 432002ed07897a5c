"""BQ76952 I2C transport: CRC framing, bounded retries and the subcommand protocol.

The base class of the BQ76952 driver; it knows bytes, registers and subcommands, nothing about
cells or settings. Framing per reference section 1 (TI SLUAA11B section 4), subcommands per section 3.

    t = Transport(machine.I2C(0), 0x08, crc=True, retries=3)
    t.dm_read(0x9304)                  # 32 bytes of data memory from Vcell Mode on
"""
import errno
import time

from micropython import const

from firmware.afe import bq76952_regs as R
from firmware.afe.crc8 import TABLE as _CRC

_SUB_LEN = const(36)        # 0x3E..0x61: echo, 32 data bytes, checksum, length in one read


class Transport:
    def __init__(self, i2c, addr=R.I2C_ADDR, crc=False, retries=3, sub_polls=20, sub_poll_ms=1,
                 cmd_wait_ms=2, write_wait_ms=2):
        if not 0 <= addr <= 0x7F:
            raise ValueError("addr must be 0..0x7f, got %r" % (addr,))
        if not 1 <= retries <= 10:
            raise ValueError("retries must be 1..10, got %r" % (retries,))
        if not 1 <= sub_polls <= 1000:
            raise ValueError("sub_polls must be 1..1000, got %r" % (sub_polls,))
        self._i2c = i2c
        self._addr = addr
        self._aw = (addr << 1) & 0xFF        # address byte as the CRC sees it (write / read)
        self._ar = self._aw | 1
        self._crc = bool(crc)
        self._retries = retries
        self._sub_polls = sub_polls
        self._sub_poll_ms = sub_poll_ms
        self._cmd_wait_ms = cmd_wait_ms
        self._write_wait_ms = write_wait_ms
        self._s = bytearray(_SUB_LEN)
        self._sraw = bytearray(2 * _SUB_LEN)
        self._w = bytearray(2 * 34)
        self.stats_retries = 0               # reads/writes/subcommands that needed another try

    @property
    def crc(self):
        """True while the driver frames every byte with the chip's CRC."""
        return self._crc

    # ------------------------------------------------------------------ framing
    def _read(self, reg, dst, raw, n):
        """Read n bytes from reg into dst (raw: 2n scratch for CRC mode), bounded retries."""
        why = "no answer"
        for _ in range(self._retries):
            try:
                if not self._crc:
                    self._i2c.readfrom_mem_into(self._addr, reg, dst)
                    return
                self._i2c.readfrom_mem_into(self._addr, reg, raw)
                # CRC after d0 covers [addr-w, reg, addr-r, d0]; each later CRC covers its own byte.
                c = _CRC[_CRC[_CRC[_CRC[self._aw] ^ reg] ^ self._ar] ^ raw[0]]
                ok = c == raw[1]
                i = 1
                while ok and i < n:
                    ok = _CRC[raw[2 * i]] == raw[2 * i + 1]
                    i += 1
                if ok:
                    for i in range(n):
                        dst[i] = raw[2 * i]
                    return
                why = "CRC mismatch"
            except OSError as e:
                why = e
            self.stats_retries += 1
        raise OSError(errno.EIO, "BQ76952@0x%02x: read 0x%02x failed %d times (%s)"
                      % (self._addr, reg, self._retries, why))

    def chip_talks_crc(self, reg=R.BATTERY_STATUS):
        """Read-only check of the chip's framing: 4 bytes from `reg` read as CRC frames (8 bytes).

        A chip in CRC mode passes all four CRCs; a plain chip's bytes pass by chance with
        probability 2**-32. Reads are harmless in either mode, unlike a mis-framed write (a CRC
        write to a plain chip lands its CRC bytes in the registers)."""
        raw = bytearray(8)
        why = "no answer"
        for _ in range(self._retries):
            try:
                self._i2c.readfrom_mem_into(self._addr, reg, raw)
                break
            except OSError as e:
                why = e
                self.stats_retries += 1
        else:
            raise OSError(errno.ENODEV, "BQ76952@0x%02x: no answer (%s)" % (self._addr, why))
        if _CRC[_CRC[_CRC[_CRC[self._aw] ^ reg] ^ self._ar] ^ raw[0]] != raw[1]:
            return False
        return _CRC[raw[2]] == raw[3] and _CRC[raw[4]] == raw[5] and _CRC[raw[6]] == raw[7]

    def _write(self, reg, data):
        """Write the bytes of `data` to reg (CRC framed in CRC mode), bounded retries."""
        n = len(data)
        if self._crc:
            w = self._w
            c = _CRC[_CRC[_CRC[self._aw] ^ reg] ^ data[0]]
            w[0] = data[0]
            w[1] = c
            for i in range(1, n):
                w[2 * i] = data[i]
                w[2 * i + 1] = _CRC[data[i]]
            buf = memoryview(w)[0:2 * n]
        else:
            buf = data
        why = "no answer"
        for _ in range(self._retries):
            try:
                self._i2c.writeto_mem(self._addr, reg, buf)
                return
            except OSError as e:
                why = e
            self.stats_retries += 1
        raise OSError(errno.EIO, "BQ76952@0x%02x: write 0x%02x failed %d times (%s)"
                      % (self._addr, reg, self._retries, why))

    def _read_u16(self, reg):
        s = memoryview(self._s)
        self._read(reg, s[0:2], memoryview(self._sraw)[0:4], 2)
        return self._s[0] | (self._s[1] << 8)

    # ------------------------------------------------------------------ subcommands
    def _command(self, code, wait=True):
        """Command-only subcommand: write the code to 0x3E/0x3F, then a short fixed wait."""
        self._write(R.SUBCMD_LOW, bytes((code & 0xFF, code >> 8)))
        if wait:
            time.sleep_ms(self._cmd_wait_ms)

    def _sub_read(self, code):
        """Run a read subcommand; return the data length (data in self._s[2:2+n]).

        Polls 0x3E..0x61 (echo, data, checksum, length) in one read, at most sub_polls times, until
        the echo equals the code AND length and checksum are valid: a chip that echoes the code
        before the buffer is filled ([U]: busy may read 0xFF/0xFF, or not) is still waited for.
        If the echo came but the checksum never did, the command is issued again (`retries` times)."""
        s = self._s
        sv = memoryview(s)
        raw = memoryview(self._sraw)
        why = ""
        echoed = False
        for _ in range(self._retries):
            self._command(code, wait=False)
            echoed = False
            for _ in range(self._sub_polls):
                time.sleep_ms(self._sub_poll_ms)
                self._read(R.SUBCMD_LOW, sv, raw, _SUB_LEN)
                if s[0] | (s[1] << 8) != code:
                    continue
                echoed = True
                n = s[35] - 4
                if not 0 <= n <= 32:
                    why = "length byte 0x%02x out of range" % s[35]
                    continue
                total = s[0] + s[1]
                for i in range(n):
                    total += s[2 + i]
                if (~total) & 0xFF == s[34]:
                    return n
                why = "checksum 0x%02x, expected 0x%02x" % (s[34], (~total) & 0xFF)
            if not echoed:
                raise OSError(errno.ETIMEDOUT, "BQ76952@0x%02x: subcommand 0x%04x not done after %d polls"
                              % (self._addr, code, self._sub_polls))
            self.stats_retries += 1
        raise OSError(errno.EIO, "BQ76952@0x%02x: subcommand 0x%04x: %s (%d tries)"
                      % (self._addr, code, why, self._retries))

    def _sub_u16(self, code):
        n = self._sub_read(code)
        if n < 2:
            raise OSError(errno.EIO, "BQ76952: subcommand 0x%04x returned %d bytes" % (code, n))
        return self._s[2] | (self._s[3] << 8)

    def _sub_write(self, code, data):
        """Write subcommand: code and data as one block from 0x3E, then checksum+length as ONE word at 0x60."""
        n = len(data)
        # Code and data in ONE block from 0x3E (0x3E, 0x3F, 0x40.. are contiguous), as TI's examples do:
        # a code written alone starts a read of that address into the buffer ~0.5 ms later, which can
        # overwrite data written in a separate, later transaction on a slow host (seen on the virtual
        # board). Whether the chip starts that read when data follows in the same block is [U].
        self._write(R.SUBCMD_LOW, bytes((code & 0xFF, code >> 8)) + bytes(data))
        total = (code & 0xFF) + (code >> 8)
        for b in data:
            total += b
        self._write(R.TRANSFER_CHECKSUM, bytes(((~total) & 0xFF, n + 4)))
        # The chip commits on the 0x61 write. A fixed wait covers chips that do not show busy, then
        # the echo poll covers one that reads 0xFF/0xFF while busy (TI SLUAAQ5; [U] for writes).
        time.sleep_ms(self._write_wait_ms)
        s = self._s
        sv = memoryview(s)[0:2]
        raw = memoryview(self._sraw)[0:4]
        for _ in range(self._sub_polls):
            self._read(R.SUBCMD_LOW, sv, raw, 2)
            if s[0] | (s[1] << 8) == code:
                return
            time.sleep_ms(self._sub_poll_ms)
        raise OSError(errno.ETIMEDOUT, "BQ76952@0x%02x: write subcommand 0x%04x not done after %d polls"
                      % (self._addr, code, self._sub_polls))

    def _dm_write(self, addr, size, value):
        if size == 1:
            self._sub_write(addr, bytes((value & 0xFF,)))
        else:
            self._sub_write(addr, bytes((value & 0xFF, (value >> 8) & 0xFF)))

    def dm_read(self, addr):
        """Read the 32-byte data-memory block starting at addr (any mode); returns bytes."""
        n = self._sub_read(addr)
        return bytes(self._s[2:2 + n])

