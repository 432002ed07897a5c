"""Frame authentication: HMAC-SHA256 with a per-device key, truncated to TAG_LEN bytes.

Used by the frame codec on the board (to sign telemetry, to verify commands) and in the bridge.

    a = Authenticator(parse_key("00112233...")); t = a.tag(b"bms-01", frame_bytes)
    ok = a.check(b"bms-01", frame_bytes, received_tag)      # constant-time comparison

The tag covers `u8 len(device_id) || device_id || message` (docs/frame-format.md, Authentication).
On CPython the standard `hmac` module computes it; on MicroPython (no `hmac` in the firmware image, and
micropython-lib's is an extra install) this module's own RFC 2104 construction over `hashlib.sha256`
does, checked against the RFC 4231 test vectors in both runtimes (tests/comms/test_auth.py, tests/mpy/).
"""
import sys
from hashlib import sha256

try:
    from micropython import const
except ImportError:  # plain CPython (the bridge) without the host port on sys.path
    def const(x):
        return x

TAG_LEN = const(12)         # bytes kept of the 32-byte HMAC; why 12: docs/frame-format.md
KEY_MIN = const(16)         # per-device key length accepted from configuration (bytes)
KEY_MAX = const(64)         # longer than one SHA-256 block would be hashed first: no gain
DEVICE_ID_MAX = const(64)   # bytes of UTF-8
_BLOCK = const(64)          # SHA-256 block size (RFC 2104: B)

if sys.implementation.name == "cpython":
    import hmac as _std_hmac
else:
    _std_hmac = None


def parse_key(key):
    """Return a per-device key as bytes from bytes/bytearray or a hex string; ValueError if unusable."""
    if isinstance(key, str):
        k = key.strip()
        if len(k) % 2:
            raise ValueError("hex key has an odd number of digits")
        # Checked digit by digit: int() alone would accept "+1", " 1" or "_".
        for c in k:
            if c not in "0123456789abcdefABCDEF":
                raise ValueError("key is not a hex string")
        key = bytes(int(k[i:i + 2], 16) for i in range(0, len(k), 2))
    elif isinstance(key, (bytes, bytearray)):
        key = bytes(key)
    else:
        raise ValueError("key must be bytes or a hex string")
    if not KEY_MIN <= len(key) <= KEY_MAX:
        raise ValueError("key must be %d..%d bytes, got %d" % (KEY_MIN, KEY_MAX, len(key)))
    return key


def device_id_bytes(device_id):
    """The device id as the UTF-8 bytes the tag binds (1..64 bytes); ValueError otherwise."""
    if isinstance(device_id, str):
        b = device_id.encode("utf-8")
    elif isinstance(device_id, (bytes, bytearray)):
        b = bytes(device_id)
    else:
        raise ValueError("device_id must be str or bytes")
    if not 1 <= len(b) <= DEVICE_ID_MAX:
        raise ValueError("device_id must be 1..%d bytes" % DEVICE_ID_MAX)
    return b


def _pads(key):
    # RFC 2104 section 2: keys longer than B are hashed first; then zero-padded to B bytes.
    if len(key) > _BLOCK:
        key = sha256(key).digest()
    ipad = bytearray(_BLOCK)
    opad = bytearray(_BLOCK)
    for i in range(_BLOCK):
        k = key[i] if i < len(key) else 0
        ipad[i] = k ^ 0x36
        opad[i] = k ^ 0x5C
    return bytes(ipad), bytes(opad)


class _OwnHmac:
    """RFC 2104 HMAC-SHA256 with the pads computed once per key (hashlib.sha256 has no copy() in MicroPython).

    digest3(a, b, c) = HMAC(a || b || c): the parts are fed in turn, so no tuple or joined copy is made.
    What a call allocates is what MicroPython's hashlib cannot avoid: two sha256 objects (it can neither
    copy nor reset one) and their two 32-byte digests (measured: tests/mpy/test_frame_vectors.py).
    """

    def __init__(self, key):
        self._ipad, self._opad = _pads(key)

    def digest3(self, a, b, c):
        inner = sha256(self._ipad)
        inner.update(a)
        inner.update(b)
        inner.update(c)
        outer = sha256(self._opad)
        outer.update(inner.digest())
        return outer.digest()


class _StdHmac:
    """The standard library's HMAC (CPython), keyed once and copied per message."""

    def __init__(self, key):
        self._base = _std_hmac.new(key, digestmod="sha256")

    def digest3(self, a, b, c):
        h = self._base.copy()
        h.update(a)
        h.update(b)
        h.update(c)
        return h.digest()


def hmac_sha256(key, msg):
    """Full 32-byte HMAC-SHA256 of msg under key (any key length, as RFC 2104), this module's own code."""
    return _OwnHmac(bytes(key)).digest3(b"", b"", msg)


def compare_digest(a, b):
    """True if a == b, in time that depends only on the lengths (no early exit on the first difference)."""
    if len(a) != len(b):
        return False
    acc = 0
    for i in range(len(a)):
        acc |= a[i] ^ b[i]
    return acc == 0


class Authenticator:
    """Signs and checks messages for one key. `own=True` forces the RFC 2104 code even on CPython."""

    def __init__(self, key, own=False):
        key = parse_key(key)
        self._mac = _StdHmac(key) if (_std_hmac is not None and not own) else _OwnHmac(key)
        # The length prefix of the last device id seen, made once: a device signs with one id, so
        # tag() allocates nothing of its own after the first call (only the hash objects and digests).
        self._dev = None
        self._len = None

    def _digest(self, device_id, msg):
        if device_id != self._dev:          # compares contents: a caller may reuse a bytearray
            if not 1 <= len(device_id) <= DEVICE_ID_MAX:
                raise ValueError("device_id must be 1..%d bytes" % DEVICE_ID_MAX)
            self._len = bytes((len(device_id),))
            self._dev = bytes(device_id)
        return self._mac.digest3(self._len, self._dev, msg)

    def tag(self, device_id, msg, n=TAG_LEN):
        """First n bytes of HMAC-SHA256(key, u8 len(device_id) || device_id || msg); device_id as bytes."""
        d = self._digest(device_id, msg)
        return d if n == len(d) else d[:n]

    def tag_into(self, device_id, msg, buf, pos):
        """Write the TAG_LEN-byte tag of msg into buf[pos:pos + TAG_LEN], without the copy tag() returns."""
        d = self._digest(device_id, msg)
        for i in range(TAG_LEN):
            buf[pos + i] = d[i]

    def check(self, device_id, msg, tag):
        """True if tag is the right TAG_LEN-byte tag of msg for device_id; compared in constant time."""
        want = self.tag(device_id, msg)
        if _std_hmac is not None:
            return _std_hmac.compare_digest(want, bytes(tag))
        return compare_digest(want, tag)
