"""CRC-8 of the BQ76952 I2C/SPI interface (polynomial x^8+x^2+x+1, init 0, no reflection, no final XOR).

Reference bq76952.md section 1; checked against TI SLUAA11B section 4 worked examples in the tests.

    from tools.emulator.crc import crc8
    crc8(b"\x10\x3e\x22")   # -> 0x63 (TI's FET_ENABLE example)
"""


def _make_table():
    table = bytearray(256)
    for i in range(256):
        c = i
        for _ in range(8):
            if c & 0x80:
                c = ((c << 1) ^ 0x07) & 0xFF
            else:
                c = (c << 1) & 0xFF
        table[i] = c
    return table


_TABLE = _make_table()


def crc8(data, crc=0):
    """CRC-8 (poly 0x07) over data (bytes/bytearray/list of ints), continuing from crc."""
    t = _TABLE
    for b in data:
        crc = t[(crc ^ b) & 0xFF]
    return crc


def subcommand_checksum(code, data):
    """Checksum byte of 0x60: NOT of the 8-bit sum of the code's two bytes and the data (reference section 3)."""
    s = (code & 0xFF) + ((code >> 8) & 0xFF)
    for b in data:
        s += b
    return (~s) & 0xFF
