"""CRC-8 and subcommand checksum of the TI BQ769x2 family (BQ76952), table driven and allocation-free.

The I2C CRC is CRC-8 with polynomial x^8 + x^2 + x + 1 (0x07), initial value 0, no reflection and no
final XOR (reference bq76952.md section 1; TI SLUAAQ5). The subcommand checksum is the bitwise NOT of
the 8-bit sum of the command bytes and the data (reference section 3).

    from firmware.afe import crc8
    crc8.crc8(b"\\x10\\x3e\\x22")            # 0x63, TI SLUAA11B section 4 (FET_ENABLE with CRC)
"""
from micropython import const

_POLY = const(0x07)


def _make_table():
    t = bytearray(256)
    for i in range(256):
        c = i
        for _ in range(8):
            if c & 0x80:
                c = ((c << 1) ^ _POLY) & 0xFF
            else:
                c = (c << 1) & 0xFF
        t[i] = c
    return bytes(t)


# TABLE[b] is also the CRC of the single byte b: the chip's CRC for every data byte after the first.
TABLE = _make_table()


def crc8(buf, start=0, end=-1, crc=0):
    """CRC-8 (poly 0x07, init 0) of buf[start:end] continuing from `crc`; allocates nothing."""
    if end < 0:
        end = len(buf)
    t = TABLE
    for i in range(start, end):
        crc = t[crc ^ buf[i]]
    return crc


def crc8_byte(crc, b):
    """Continue a CRC with one more byte (for framing without building a buffer)."""
    return TABLE[crc ^ b]


def checksum(cmd, buf, n):
    """Subcommand checksum: ~(cmd_lo + cmd_hi + sum(buf[:n])) & 0xFF (reference section 3)."""
    s = (cmd & 0xFF) + ((cmd >> 8) & 0xFF)
    for i in range(n):
        s += buf[i]
    return (~s) & 0xFF
