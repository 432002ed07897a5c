"""CRC-8 and subcommand checksum of the TI BQ769x2 family (BQ76952), table driven and allocation-free.

The I2C CRC is CRC-8 with polynomial x^8 + x^2 + x + 1 (0x07), initial value 0, no reflection and no
final XOR (reference bq76952.md section 1; TI SLUAAQ5). The subcommand checksum is the bitwise NOT of
the 8-bit sum of the command bytes and the data (reference section 3).

    from firmware.afe import crc8
    crc8.crc8(b"\\x10\\x3e\\x22")            # 0x63, TI SLUAA11B section 4 (FET_ENABLE with CRC)
"""
from micropython import const

_POLY = const(0x07)


# TABLE[b] is also the CRC of the single byte b: the chip's CRC for every data byte after the first.
# A literal, not computed at import: frozen into the image it stays in flash (tests/mpy/test_afe_driver.py
# checks it against the polynomial).
TABLE = (
    b"\x00\x07\x0e\x09\x1c\x1b\x12\x15\x38\x3f\x36\x31\x24\x23\x2a\x2d"
    b"\x70\x77\x7e\x79\x6c\x6b\x62\x65\x48\x4f\x46\x41\x54\x53\x5a\x5d"
    b"\xe0\xe7\xee\xe9\xfc\xfb\xf2\xf5\xd8\xdf\xd6\xd1\xc4\xc3\xca\xcd"
    b"\x90\x97\x9e\x99\x8c\x8b\x82\x85\xa8\xaf\xa6\xa1\xb4\xb3\xba\xbd"
    b"\xc7\xc0\xc9\xce\xdb\xdc\xd5\xd2\xff\xf8\xf1\xf6\xe3\xe4\xed\xea"
    b"\xb7\xb0\xb9\xbe\xab\xac\xa5\xa2\x8f\x88\x81\x86\x93\x94\x9d\x9a"
    b"\x27\x20\x29\x2e\x3b\x3c\x35\x32\x1f\x18\x11\x16\x03\x04\x0d\x0a"
    b"\x57\x50\x59\x5e\x4b\x4c\x45\x42\x6f\x68\x61\x66\x73\x74\x7d\x7a"
    b"\x89\x8e\x87\x80\x95\x92\x9b\x9c\xb1\xb6\xbf\xb8\xad\xaa\xa3\xa4"
    b"\xf9\xfe\xf7\xf0\xe5\xe2\xeb\xec\xc1\xc6\xcf\xc8\xdd\xda\xd3\xd4"
    b"\x69\x6e\x67\x60\x75\x72\x7b\x7c\x51\x56\x5f\x58\x4d\x4a\x43\x44"
    b"\x19\x1e\x17\x10\x05\x02\x0b\x0c\x21\x26\x2f\x28\x3d\x3a\x33\x34"
    b"\x4e\x49\x40\x47\x52\x55\x5c\x5b\x76\x71\x78\x7f\x6a\x6d\x64\x63"
    b"\x3e\x39\x30\x37\x22\x25\x2c\x2b\x06\x01\x08\x0f\x1a\x1d\x14\x13"
    b"\xae\xa9\xa0\xa7\xb2\xb5\xbc\xbb\x96\x91\x98\x9f\x8a\x8d\x84\x83"
    b"\xde\xd9\xd0\xd7\xc2\xc5\xcc\xcb\xe6\xe1\xe8\xef\xfa\xfd\xf4\xf3"
)


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
