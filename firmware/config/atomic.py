"""Checksummed files written atomically (temporary file + rename): shared by the config store and the
SOC/SOH state (firmware/pack/soc_store.py). Small and import-light, so it may stay resident.

    data = seal(b"body"); write_atomic("/x.dat", data); body = unseal(read("/x.dat"))

Layout: the body bytes, a newline, then `#` and the FNV-1a checksum of the body as 8 hex digits.
`write_atomic` writes `<path>.tmp` and renames it over `<path>`; on LittleFS (and POSIX) the rename
replaces atomically, so power loss leaves either the old or the new file, never a torn one.
"""
import os


def checksum(data):
    """FNV-1a 32-bit over bytes. Not cryptographic: it detects torn or bit-flipped files."""
    h = 0x811C9DC5
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def seal(body):
    return body + b"\n#" + ("%08x" % checksum(body)).encode()


def unseal(data):
    """The body of sealed bytes; ValueError when the checksum is missing or wrong."""
    cut = data.rfind(b"\n#")
    if cut < 0:
        raise ValueError("no checksum")
    body = data[:cut]
    try:
        want = int(data[cut + 2:].decode().strip(), 16)
    except (ValueError, UnicodeError):
        raise ValueError("bad checksum field")
    if checksum(body) != want:
        raise ValueError("checksum mismatch")
    return body


def write_atomic(path, data):
    """Write bytes to path via path + ".tmp" and a rename. Raises OSError (file system)."""
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.rename(tmp, path)


def read(path):
    """The file's bytes; OSError when missing."""
    with open(path, "rb") as f:
        return f.read()
