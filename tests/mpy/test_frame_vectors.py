"""Golden frame vectors inside the MicroPython VM, with the compiled firmware (.mpy) the board would run.

The encoder must produce the stored bytes exactly, the decoder must return the stored structure, the own
HMAC must match RFC 4231, and appending a sample must allocate nothing (heap locked).
MicroPython only (run by tools/mpvm/run.mjs; tests/comms/ covers the same in CPython).

    node tools/mpvm/run.mjs --only test_frame_vectors
    node tools/mpvm/run.mjs --only test_frame_vectors::test_add_sample_allocates_nothing
"""
import json
import os

from binascii import hexlify, unhexlify

import vmtest

from firmware.comms import auth, frame
from firmware.sample import Sample
from tests.vectors.vector_codec import decode_vector, encode_vector, verifier

def _vectors():
    out = []
    # tools/mpvm/README.md: the VM's / mirrors the repository; receipts sit in a subfolder
    for d in ("/tests/vectors", "/tests/vectors/receipts"):
        for name in sorted(os.listdir(d)):
            if name.endswith(".json"):
                with open(d + "/" + name) as f:
                    out.append(json.load(f))
    return out


def test_vectors_cover_every_kind():
    kinds = sorted(set(v["kind"] for v in _vectors()))
    assert kinds == ["ack", "command", "event", "receipt", "status", "telemetry"], kinds


def test_vectors_encode_exactly():
    for v in _vectors():
        got = hexlify(encode_vector(v)).decode()
        assert got == v["frame_hex"], "%s: %s != %s" % (v["name"], got, v["frame_hex"])


def test_vectors_decode_exactly():
    for v in _vectors():
        d = decode_vector(v, unhexlify(v["frame_hex"]))
        assert d == v["decoded"], v["name"]


def test_vectors_refuse_a_flipped_tag_bit():
    for v in _vectors():
        b = bytearray(unhexlify(v["frame_hex"]))
        b[-1] ^= 1
        fn = verifier(v["kind"])
        try:
            fn(bytes(b), v["device_id"], v["key_hex"])
            raise AssertionError("accepted a bad tag: " + v["name"])
        except frame.BadTag as e:
            assert e.reason == "tag"


# RFC 4231 section 4 (HMAC-SHA-256; test case 5 truncated to 128 bits as the RFC gives it).
_RFC4231 = (
    (b"\x0b" * 20, b"Hi There", "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
    (b"Jefe", b"what do ya want for nothing?", "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
    (b"\xaa" * 20, b"\xdd" * 50, "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
    (bytes(range(1, 26)), b"\xcd" * 50, "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"),
    (b"\x0c" * 20, b"Test With Truncation", "a3b6167473100ee06e0c796c2955552b"),
    (b"\xaa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First",
     "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
    (b"\xaa" * 131, b"This is a test using a larger than block-size key and a larger than block-size data."
                    b" The key needs to be hashed before being used by the HMAC algorithm.",
     "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"),
)


def test_own_hmac_rfc4231():
    for key, msg, want in _RFC4231:
        got = hexlify(auth.hmac_sha256(key, msg)).decode()
        assert got[:len(want)] == want, want


def test_own_tag_equals_the_default_tag():
    k = bytes(range(32))
    assert auth.Authenticator(k, own=True).tag(b"dev", b"msg") == auth.Authenticator(k).tag(b"dev", b"msg")


def test_tag_into_writes_the_tag_and_a_reused_device_id_buffer_is_reread():
    k = bytes(range(32))
    a = auth.Authenticator(k, own=True)
    buf = bytearray(b"\xee" * 20)
    a.tag_into(b"dev", b"msg", buf, 4)
    assert bytes(buf[4:4 + auth.TAG_LEN]) == a.tag(b"dev", b"msg")
    assert buf[:4] == b"\xee" * 4 and buf[4 + auth.TAG_LEN:] == b"\xee" * (16 - auth.TAG_LEN)
    # The length prefix is cached per device id: a caller that changes its id buffer gets the new id's tag.
    dev = bytearray(b"dev")
    t1 = a.tag(dev, b"msg")
    dev[0] = ord("x")
    assert a.tag(dev, b"msg") != t1
    assert a.tag(dev, b"msg") == auth.Authenticator(k, own=True).tag(b"xev", b"msg")
    assert a.tag(b"dev", b"msg") == t1
    for bad in (b"", bytes(auth.DEVICE_ID_MAX + 1)):
        try:
            a.tag(bad, b"msg")
        except ValueError:
            pass
        else:
            raise AssertionError("device id of %d bytes accepted" % len(bad))


def _steady_samples(n):
    out = []
    for k in range(n):
        s = Sample(16, 3)
        s.t_ms = 1000 * k
        for i in range(16):
            s.cell_mv[i] = 3290 + (i * 7) % 11 + (k & 3)
        s.stack_mv = 52700 + k
        s.pack_mv = 52650
        s.ld_mv = 52600
        s.current_ma = -15000 + 13 * k
        for i in range(3):
            s.temp_dc[i] = -105 + i
        s.int_temp_dc = 312
        s.soc_cpct = 4500 - k
        s.state = 2
        s.fet_status = 5
        s.battery_status = 0x180
        s.balance_mask = k & 5
        out.append(s)
    return out


def _append_all(enc, ss):
    n = 0
    for s in ss:
        if enc.add_sample(s):
            n += 1
    return n


def test_add_sample_allocates_nothing():
    ss = _steady_samples(30)
    enc = frame.Encoder("bms-0001", bytes(range(32)), 1, capacity=2048)
    enc.begin_telemetry(1, 0, 0, 0, 16, 3)
    assert vmtest.assert_no_alloc(_append_all, enc, ss[:15]) == 15
    assert vmtest.mem_alloc_delta(_append_all, enc, ss[15:]) == 0
    d = frame.decode(bytes(enc.finish()), "bms-0001", bytes(range(32)))
    assert [x["current_ma"] for x in d["samples"]] == [s.current_ma for s in ss]


def _events(enc, n):
    for k in range(n):
        enc.add_event(k, 1, k, -k)


def test_add_event_allocates_nothing():
    enc = frame.Encoder("bms-0001", bytes(range(32)), 1)
    enc.begin_events(1, 0, 0, 0)
    vmtest.assert_no_alloc(_events, enc, 10)
    assert [e["values"] for e in frame.decode(bytes(enc.finish()), "bms-0001", bytes(range(32)))["events"]] == \
        [[-k] for k in range(10)]


def _lcg(seed):
    # A tiny deterministic generator (the VM's `random` may be absent); constants of Numerical Recipes.
    state = [seed]

    def nxt(n):
        state[0] = (state[0] * 1664525 + 1013904223) & 0xFFFFFFFF
        return (state[0] >> 8) % n
    return nxt


def test_decoders_raise_only_frame_errors_on_resigned_mutations():
    # The same property as tests/comms/test_frame_fuzz.py, in MicroPython's runtime (its struct, str and
    # exceptions differ from CPython's): garbage behind a valid tag must end in a FrameError or a result.
    rnd = _lcg(12345)
    vs = _vectors()
    reasons = {}
    for it in range(400):
        v = vs[rnd(len(vs))]
        a = auth.Authenticator(v["key_hex"], own=True)
        dev = v["device_id"].encode()
        body = bytearray(unhexlify(v["frame_hex"])[:-frame.TAG_LEN])
        for _ in range(1 + rnd(3)):
            op = rnd(4)
            i = rnd(len(body)) if body else 0
            if op == 0 and body:
                body[i] ^= 1 << rnd(8)
            elif op == 1 and body:
                body[i] = rnd(256)
            elif op == 2:
                body[i:i] = bytes([rnd(256) for _ in range(1 + rnd(6))])
            elif body:
                body[i:i + 1 + rnd(6)] = b""
        b = bytes(body) + a.tag(dev, bytes(body))
        for fn in (frame.decode, frame.verify_command):
            try:
                fn(b, v["device_id"], v["key_hex"])
                r = "ok"
            except frame.FrameError as e:
                r = e.reason
            reasons[r] = reasons.get(r, 0) + 1
    # the parser was reached, not just the header checks
    assert reasons.get("malformed", 0) > 50, reasons
    assert "tag" not in reasons, reasons


def test_finish_allocates_under_1k_per_frame():
    # finish() signs (two SHA-256 objects, digests, the tag, a memoryview): once per frame, not per sample.
    enc = frame.Encoder("bms-0001", bytes(range(32)), 1, capacity=2048)
    enc.begin_telemetry(1, 0, 0, 0, 16, 3)
    _append_all(enc, _steady_samples(10))
    n = vmtest.mem_alloc_delta(enc.finish)
    print("finish() allocated", n, "bytes")
    assert 0 < n < 1024, n
