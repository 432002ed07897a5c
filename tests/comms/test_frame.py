"""The frame codec against docs/frame-format.md: layout built by hand, behaviours, and each error class."""
import hashlib
import hmac
import struct

import pytest

from firmware.comms import frame
from firmware.sample import Sample

KEY = bytes(range(32))      # test key
DEV = "bms-0001"


def uv(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def sv(v):
    return uv(v * 2 if v >= 0 else -v * 2 - 1)


def sign(body, dev=DEV, key=KEY):
    d = dev.encode()
    return body + hmac.new(key, bytes([len(d)]) + d + body, hashlib.sha256).digest()[:12]


def sample(cells=16, temps=3, t_ms=0, base_mv=3300, current_ma=0):
    s = Sample(cells, temps)
    s.t_ms = t_ms
    for i in range(cells):
        s.cell_mv[i] = base_mv + i
    s.stack_mv = sum(s.cell_mv)
    s.pack_mv = s.stack_mv - 20
    s.ld_mv = s.stack_mv - 40
    s.current_ma = current_ma
    for i in range(temps):
        s.temp_dc[i] = 200 + i
    s.int_temp_dc = 300
    s.soc_cpct = 5000
    s.state = 2
    return s


def telemetry(samples, seq=1, ref_ticks=0, wall_s=-1, capacity=1024):
    enc = frame.Encoder(DEV, KEY, boot=3, capacity=capacity)
    enc.begin_telemetry(seq, ref_ticks, 10, 5, samples[0].cell_count, samples[0].temp_count, wall_s, 7)
    for s in samples:
        assert enc.add_sample(s)
    return bytes(enc.finish())


# ---------------------------------------------------------------- layout, built by hand from the document
def test_telemetry_layout_matches_the_document_byte_for_byte():
    s1 = sample(cells=2, temps=1, t_ms=100, base_mv=3300, current_ma=-1500)
    s1.temp_dc[0] = -55
    s1.fet_status = 5
    s2 = sample(cells=2, temps=1, t_ms=1100, base_mv=3302, current_ma=-1490)
    s2.temp_dc[0] = -55
    s2.fet_status = 5
    s2.faults = 0x200
    body = struct.pack("<BBBIIIH", 1, 1, 1, 3, 9, 10, 5) + struct.pack("<IH", 800000000, 7)
    body += bytes([2, 1, 2])
    # sample 0: dt vs ref ticks 50; cells: 3300, then 3301-3300; all else vs 0
    body += sv(50) + sv(3300) + sv(1) + sv(6601) + sv(6581) + sv(6561) + sv(-1500) + sv(-55) + sv(300) \
        + sv(5000) + sv(10000) + sv(2) + bytes([0x20]) + uv(5)
    # sample 1: deltas vs sample 0; only `faults` (bit 7) changed among the words
    body += sv(1000) + sv(2) + sv(2) + sv(4) + sv(4) + sv(4) + sv(10) + sv(0) + sv(0) + sv(0) + sv(0) + sv(0) \
        + bytes([0x80]) + uv(0x200)
    enc = frame.Encoder(DEV, KEY, boot=3)
    enc.begin_telemetry(9, 50, 10, 5, 2, 1, wall_s=800000000, wall_ms=7)
    assert enc.add_sample(s1) and enc.add_sample(s2)
    assert bytes(enc.finish()) == sign(body)


def test_command_layout_matches_the_document_byte_for_byte():
    body = struct.pack("<BBBIBB", 1, 5, 0, 77, 4, 2) + bytes([1]) + b"a" + bytes([0]) + sv(-3) \
        + bytes([1]) + b"b" + bytes([1, 2]) + b"hi"
    assert frame.encode_command(DEV, KEY, 77, 4, {"b": "hi", "a": -3}) == sign(body)


def test_status_and_ack_layout():
    body = struct.pack("<BBBIIIH", 1, 3, 0, 3, 0, 1, 2) + b"\x03fw1" + b"\x02bd" + struct.pack("<IBBB", 9, 1, 16, 3)
    enc = frame.Encoder(DEV, KEY, boot=3)
    assert bytes(enc.status(0, 0, 1, 2, "fw1", "bd", 9, 1, 16, 3)) == sign(body)
    body = struct.pack("<BBBIIIH", 1, 4, 0, 3, 5, 1, 2) + struct.pack("<IBB", 8, 2, 1) + b"\x02no"
    assert bytes(enc.ack(5, 0, 1, 2, 8, 2, 1, "no")) == sign(body)


# ---------------------------------------------------------------- behaviour
def test_round_trip_negative_and_extreme_values():
    s = sample(current_ma=-200000)
    s.temp_dc[0] = -32768
    s.temp_dc[1] = -400
    s.int_temp_dc = -1
    s.cell_mv[5] = -5
    s.pf_status = 0xFFFFFFFF
    s.balance_mask = 0xFFFF
    d = frame.decode(telemetry([s]), DEV, KEY)["samples"][0]
    assert d["current_ma"] == -200000
    assert d["temp_dc"] == [-32768, -400, 202]
    assert d["int_temp_dc"] == -1
    assert d["cell_mv"][5] == -5
    assert d["pf_status"] == 0xFFFFFFFF
    assert d["balance_mask"] == 0xFFFF


def test_sample_times_follow_ticks_across_the_wrap():
    ticks_max = (1 << 30) - 1
    a = sample(t_ms=ticks_max - 100)
    b = sample(t_ms=400)            # 501 ms later, after the wrap
    d = frame.decode(telemetry([a, b], ref_ticks=ticks_max - 200, wall_s=5), DEV, KEY)
    assert [s["dt_ms"] for s in d["samples"]] == [100, 501]
    assert [s["uptime_ms"] for s in d["samples"]] == [10105, 10606]
    assert [s["unix_ms"] for s in d["samples"]] == [(5 + 946684800) * 1000 + 107, (5 + 946684800) * 1000 + 608]


def test_steady_sample_is_small_in_a_batch():
    # A repeated sample costs: dt (2 bytes for 1000 ms) + 28 zero deltas + 1 `changed` byte.
    s = [sample(t_ms=1000 * k) for k in range(3)]
    one, three = len(telemetry(s[:1])), len(telemetry(s))
    assert (three - one) == 2 * (2 + 16 + 4 + 3 + 4 + 1)


def test_full_frame_refuses_the_sample_and_keeps_the_rest():
    enc = frame.Encoder(DEV, KEY, boot=1, capacity=300)
    enc.begin_telemetry(1, 0, 0, 0, 16, 3)
    n = 0
    while enc.add_sample(sample(t_ms=1000 * n, base_mv=3000 + 37 * n)):
        n += 1
        assert n < 50
    before = enc.length
    assert not enc.add_sample(sample(t_ms=99999))
    assert enc.length == before
    b = bytes(enc.finish())
    assert len(b) <= 300
    d = frame.decode(b, DEV, KEY)
    assert len(d["samples"]) == n >= 2
    assert d["samples"][-1]["cell_mv"][0] == 3000 + 37 * (n - 1)


def test_255_samples_is_the_limit_per_frame():
    enc = frame.Encoder(DEV, KEY, boot=1, capacity=8192)
    enc.begin_telemetry(1, 0, 0, 0, 1, 0)
    s = sample(cells=1, temps=0)
    for _ in range(255):
        assert enc.add_sample(s)
    assert not enc.add_sample(s)
    assert len(frame.decode(bytes(enc.finish()), DEV, KEY)["samples"]) == 255


def test_rejected_value_leaves_the_frame_as_it_was():
    enc = frame.Encoder(DEV, KEY, boot=1)
    enc.begin_telemetry(1, 0, 0, 0, 16, 3)
    assert enc.add_sample(sample(t_ms=1))
    bad = sample(t_ms=2)
    bad.faults = -1                 # a bit mask cannot be negative
    with pytest.raises(ValueError):
        enc.add_sample(bad)
    bad.faults = 1 << 40            # nor wider than 5 varint bytes
    with pytest.raises(ValueError):
        enc.add_sample(bad)
    assert enc.add_sample(sample(t_ms=3, base_mv=3310))
    d = frame.decode(bytes(enc.finish()), DEV, KEY)
    assert [s["cell_mv"][0] for s in d["samples"]] == [3300, 3310]


@pytest.mark.parametrize("args", [
    dict(seq=-1), dict(seq=1 << 32), dict(uptime_ms=1000), dict(uptime_s=-1), dict(cell_count=0),
    dict(cell_count=17), dict(temp_count=4), dict(wall_s=1 << 32), dict(wall_ms=1000)])
def test_begin_rejects_out_of_range(args):
    a = dict(seq=1, ref_ticks=0, uptime_s=0, uptime_ms=0, cell_count=16, temp_count=3, wall_s=5, wall_ms=0)
    a.update(args)
    enc = frame.Encoder(DEV, KEY, boot=1)
    with pytest.raises(ValueError):
        enc.begin_telemetry(**a)


def test_encoder_misuse_is_a_value_error():
    with pytest.raises(ValueError):
        frame.Encoder(DEV, KEY, boot=1, capacity=100)
    with pytest.raises(ValueError):
        frame.Encoder(DEV, b"short", boot=1)
    enc = frame.Encoder(DEV, KEY, boot=1)
    with pytest.raises(ValueError):
        enc.add_sample(sample())            # no frame begun
    with pytest.raises(ValueError):
        enc.finish()
    enc.begin_telemetry(1, 0, 0, 0, 16, 3)
    with pytest.raises(ValueError):
        enc.add_sample(sample(cells=8))     # shape differs
    with pytest.raises(ValueError):
        enc.finish()                        # empty frame
    enc.begin_events(1, 0, 0, 0)
    with pytest.raises(ValueError):
        enc.add_event_values(0, 1, 2, list(range(9)))
    with pytest.raises(ValueError):
        enc.ack(1, 0, 0, 0, 1, 1, 0, "x" * 256)


def test_peek_header_routes_without_a_key():
    b = telemetry([sample()], seq=77)
    assert frame.peek_header(b) == {"version": 1, "kind": 1, "flags": 0, "boot": 3, "seq": 77}
    c = frame.encode_command(DEV, KEY, 12, 3)
    assert frame.peek_header(c) == {"version": 1, "kind": 5, "flags": 0, "counter": 12}


def test_command_params_round_trip_and_counter_is_returned():
    params = {"cell_ov_mv": 3650, "neg": -2147483648, "max": 2147483647, "name": "Ünïcode", "empty": ""}
    c = frame.verify_command(frame.encode_command(DEV, KEY, 900, 7, params), DEV, KEY.hex())
    assert c == {"version": 1, "kind": 5, "flags": 0, "counter": 900, "code": 7, "params": params}


@pytest.mark.parametrize("params", [{"": 1}, {"k" * 33: 1}, {"é": 1}, {"a": 1.5}, {"a": True},
                                    {"a": 1 << 31}, {"a": "x" * 256}, {str(i): i for i in range(33)}])
def test_encode_command_rejects_bad_params(params):
    with pytest.raises(ValueError):
        frame.encode_command(DEV, KEY, 1, 1, params)


# ---------------------------------------------------------------- each error class, with its reason
def test_error_classes_are_frame_errors_and_value_errors():
    for cls in (frame.Truncated, frame.Oversized, frame.UnknownVersion, frame.UnknownKind, frame.BadTag,
                frame.Malformed):
        assert issubclass(cls, frame.FrameError) and issubclass(cls, ValueError)
    assert len({c.reason for c in frame.FrameError.__subclasses__()}) == 6


def raises(cls, b, fn=frame.decode, dev=DEV, key=KEY):
    with pytest.raises(cls) as ei:
        fn(b, dev, key)
    return ei.value.reason


def test_truncated():
    good = telemetry([sample()], wall_s=1)
    assert raises(frame.Truncated, b"") == "truncated"
    assert raises(frame.Truncated, good[:1]) == "truncated"
    assert raises(frame.Truncated, good[:23 + 11]) == "truncated"    # flagged wall clock, header + tag - 1
    assert raises(frame.Truncated, frame.encode_command(DEV, KEY, 1, 1)[:20], frame.verify_command)


def test_oversized():
    assert raises(frame.Oversized, b"\x01\x01" + bytes(8191)) == "oversized"


def test_unknown_version_and_kind():
    good = bytearray(telemetry([sample()]))
    good[0] = 2
    assert raises(frame.UnknownVersion, bytes(good)) == "version"
    good[0] = 1
    for k in (0, 6, 255):
        good[1] = k
        assert raises(frame.UnknownKind, bytes(good)) == "kind"
    assert raises(frame.UnknownKind, frame.encode_command(DEV, KEY, 1, 1)) == "kind"     # command to decode
    assert raises(frame.UnknownKind, telemetry([sample()]), frame.verify_command) == "kind"


def test_bad_tag():
    good = telemetry([sample()])
    assert raises(frame.BadTag, good, key=bytes(32)) == "tag"
    assert raises(frame.BadTag, good, dev="bms-0002") == "tag"
    for i in range(len(good)):
        if i < 2:
            continue                # version and kind bytes have their own errors
        bad = bytearray(good)
        bad[i] ^= 0x10
        with pytest.raises(frame.FrameError):
            frame.decode(bytes(bad), DEV, KEY)
    bad = bytearray(good)
    bad[-1] ^= 1
    assert raises(frame.BadTag, bytes(bad)) == "tag"
    cmd = bytearray(frame.encode_command(DEV, KEY, 5, 1, {"a": 1}))
    cmd[9] ^= 1
    assert raises(frame.BadTag, bytes(cmd), frame.verify_command) == "tag"


def hdr(kind=1, flags=0):
    return struct.pack("<BBBIIIH", 1, kind, flags, 3, 1, 0, 0)


@pytest.mark.parametrize("body", [
    hdr() + bytes([16, 3, 0]),                           # zero samples
    hdr() + bytes([0, 3, 1]),                            # zero cells
    hdr() + bytes([17, 3, 1]),                           # too many cells
    hdr() + bytes([1, 4, 1]),                            # too many temps
    hdr() + bytes([1, 0, 1]) + b"\x80" * 6,              # varint longer than 5 bytes
    hdr() + bytes([1, 0, 1]) + bytes(5),                 # sample runs past the end
    hdr() + bytes([1, 0, 1]) + bytes(11) + b"\x00",      # one trailing byte
    hdr(flags=2) + bytes([1, 0, 1]) + bytes(11),         # reserved flag bit
    struct.pack("<BBBIIIH", 1, 1, 0, 3, 1, 0, 1000) + bytes([1, 0, 1]) + bytes(11),   # uptime_ms > 999
    hdr(kind=2) + bytes([0]),                            # zero events
    hdr(kind=2) + bytes([1, 0, 1, 0, 9]) + bytes(9),     # 9 event values
    hdr(kind=3) + b"\x02\xff\xfe" + b"\x00" + bytes(7),  # invalid UTF-8
    hdr(kind=3) + b"\x09ab",                             # string longer than the body
    hdr(kind=4) + bytes(5),                              # ack too short
])
def test_malformed_after_a_good_tag(body):
    assert raises(frame.Malformed, sign(body)) == "malformed"


def test_a_good_minimal_body_is_accepted():
    # the control for the cases above: the same construction with a right body decodes
    d = frame.decode(sign(hdr() + bytes([1, 0, 1]) + bytes(11)), DEV, KEY)
    assert d["samples"][0]["cell_mv"] == [0]


@pytest.mark.parametrize("tail", [
    bytes([1, 0]),                      # param header cut
    bytes([1, 1]) + b"a" + bytes([2, 0]),            # unknown param type
    bytes([2, 1]) + b"a" + bytes([0, 0]) + bytes([1]) + b"a" + bytes([0, 0]),   # duplicate key
    bytes([1, 1]) + b"\xc3" + bytes([0, 0]),         # non-ASCII key
    bytes([1, 0, 0, 0]),                             # empty key
    bytes([1, 1]) + b"a" + bytes([0]) + uv(1 << 32),  # int out of 32-bit range
    bytes([33]) + bytes([1]) + b"a" + bytes([0, 0]) * 33,  # too many params
    bytes([0, 0]),                                   # trailing byte
])
def test_malformed_command(tail):
    body = struct.pack("<BBBIB", 1, 5, 0, 1, 1) + tail
    assert raises(frame.Malformed, sign(body), frame.verify_command) == "malformed"


def test_command_with_reserved_flag_is_malformed():
    body = struct.pack("<BBBIBB", 1, 5, 1, 1, 1, 0)
    assert raises(frame.Malformed, sign(body), frame.verify_command) == "malformed"
