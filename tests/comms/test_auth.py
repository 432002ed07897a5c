"""HMAC-SHA256 of firmware/comms/auth.py: RFC 4231 vectors, agreement with CPython's hmac, key handling."""
import hashlib
import hmac

import pytest
from hypothesis import given, settings, strategies as st

from firmware.comms import auth

# RFC 4231 section 4, HMAC-SHA-256 results (test case 5 is specified truncated to 128 bits).
RFC4231 = [
    (b"\x0b" * 20, b"Hi There",
     "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
    (b"Jefe", b"what do ya want for nothing?",
     "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
    (b"\xaa" * 20, b"\xdd" * 50,
     "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
    (bytes(range(1, 26)), b"\xcd" * 50,
     "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"),
    (b"\x0c" * 20, b"Test With Truncation",
     "a3b6167473100ee06e0c796c2955552b"),
    (b"\xaa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First",
     "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
    (b"\xaa" * 131, b"This is a test using a larger than block-size key and a larger than block-size data."
                    b" The key needs to be hashed before being used by the HMAC algorithm.",
     "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"),
]


@pytest.mark.parametrize("key,msg,expected", RFC4231, ids=["tc1", "tc2", "tc3", "tc4", "tc5", "tc6", "tc7"])
def test_own_hmac_matches_rfc4231(key, msg, expected):
    got = auth.hmac_sha256(key, msg)
    assert len(got) == 32
    assert got[:len(expected) // 2].hex() == expected


@settings(max_examples=200, deadline=None)
@given(key=st.binary(min_size=0, max_size=200), msg=st.binary(max_size=600))
def test_own_hmac_agrees_with_cpython_hmac(key, msg):
    assert auth.hmac_sha256(key, msg) == hmac.new(key, msg, hashlib.sha256).digest()


KEY = bytes(range(32))  # test key, not a device secret


def test_tag_is_truncated_hmac_over_length_prefixed_device_id():
    msg = b"\x01\x02frame body"
    want = hmac.new(KEY, b"\x06bms-01" + msg, hashlib.sha256).digest()[:12]
    for own in (False, True):
        a = auth.Authenticator(KEY, own=own)
        assert a.tag(b"bms-01", msg) == want
        assert a.check(b"bms-01", msg, want)


def test_length_prefix_separates_device_id_from_frame():
    a = auth.Authenticator(KEY)
    # same concatenation "abc", split differently: must not share a tag
    assert a.tag(b"ab", b"c") != a.tag(b"a", b"bc")


@pytest.mark.parametrize("own", [False, True])
def test_check_rejects_other_device_other_key_and_any_flipped_tag_bit(own):
    a = auth.Authenticator(KEY, own=own)
    msg = b"payload"
    t = a.tag(b"dev-a", msg)
    assert not a.check(b"dev-b", msg, t)
    assert not auth.Authenticator(bytes(32), own=own).check(b"dev-a", msg, t)
    for i in range(len(t) * 8):
        bad = bytearray(t)
        bad[i // 8] ^= 1 << (i % 8)
        assert not a.check(b"dev-a", msg, bytes(bad))
    assert not a.check(b"dev-a", msg, t[:-1])


def test_compare_digest():
    assert auth.compare_digest(b"abcd", b"abcd")
    assert not auth.compare_digest(b"abcd", b"xbcd")
    assert not auth.compare_digest(b"abcd", b"abcx")
    assert not auth.compare_digest(b"abcd", b"abc")
    assert auth.compare_digest(b"", b"")


def test_parse_key_accepts_bytes_and_hex():
    assert auth.parse_key(KEY) == KEY
    assert auth.parse_key(bytearray(KEY)) == KEY
    assert auth.parse_key(KEY.hex()) == KEY
    assert auth.parse_key(KEY.hex().upper() + "\n") == KEY


@pytest.mark.parametrize("bad", ["0g" * 16, "0" * 33, "+1" * 16, " 1" * 16, b"short", bytes(65), 12345, None])
def test_parse_key_rejects(bad):
    with pytest.raises(ValueError):
        auth.parse_key(bad)


@pytest.mark.parametrize("bad", ["", "x" * 65, 7])
def test_device_id_rejects(bad):
    with pytest.raises(ValueError):
        auth.device_id_bytes(bad)


def test_device_id_is_utf8():
    assert auth.device_id_bytes("bms-é") == "bms-é".encode()
