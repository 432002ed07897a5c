"""Property-based fuzzing: the decoders raise nothing but FrameError subclasses, whatever the bytes.

Random bytes mostly die at the tag check, so the body parser is also fed *re-signed* garbage: mutated or
random bodies behind a valid tag, which is what a buggy (not a malicious) board would send.
"""
import hashlib
import hmac

from hypothesis import HealthCheck, given, settings, strategies as st

from firmware.comms import frame
from firmware.sample import Sample

KEY = bytes(range(32))
DEV = "bms-0001"
SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def sign(body):
    d = DEV.encode()
    return body + hmac.new(KEY, bytes([len(d)]) + d + body, hashlib.sha256).digest()[:12]


def decode_only_frame_errors(b):
    """Run both decoders; return the outcome ('ok' or a reason). Any other exception fails the test."""
    out = []
    for fn in (frame.decode, frame.verify_command):
        try:
            fn(b, DEV, KEY)
            out.append("ok")
        except frame.FrameError as e:
            assert e.reason in ("truncated", "oversized", "version", "kind", "tag", "malformed")
            out.append(e.reason)
    try:
        frame.peek_header(b)
    except frame.FrameError:
        pass
    return out


i32 = st.integers(-(1 << 31), (1 << 31) - 1)
u32 = st.integers(0, (1 << 32) - 1)


@st.composite
def samples(draw):
    cells = draw(st.integers(1, 16))
    temps = draw(st.integers(0, 3))
    n = draw(st.integers(1, 6))
    out = []
    for _ in range(n):
        s = Sample(cells, temps)
        s.t_ms = draw(st.integers(0, (1 << 30) - 1))
        for i in range(cells):
            s.cell_mv[i] = draw(st.integers(-32768, 32767))
        for i in range(temps):
            s.temp_dc[i] = draw(st.integers(-32768, 32767))
        for name in ("stack_mv", "pack_mv", "ld_mv", "current_ma", "int_temp_dc", "soc_cpct", "soh_cpct", "state"):
            setattr(s, name, draw(i32))
        for name in ("safety_alert", "safety_status", "pf_status", "battery_status", "alarm_status", "fet_status",
                     "balance_mask", "faults"):
            setattr(s, name, draw(u32))
        out.append(s)
    return out


def encode(ss, seq=1, ref=0, wall=-1):
    enc = frame.Encoder(DEV, KEY, boot=9, capacity=8192)
    enc.begin_telemetry(seq, ref, 1, 2, ss[0].cell_count, ss[0].temp_count, wall, 3)
    for s in ss:
        assert enc.add_sample(s)
    return bytes(enc.finish())


@SETTINGS
@given(ss=samples(), ref=st.integers(0, (1 << 30) - 1), wall=st.one_of(st.just(-1), u32))
def test_any_valid_sample_round_trips(ss, ref, wall):
    d = frame.decode(encode(ss, ref=ref, wall=wall), DEV, KEY)
    assert len(d["samples"]) == len(ss)
    for got, s in zip(d["samples"], ss):
        assert got["cell_mv"] == list(s.cell_mv)
        assert got["temp_dc"] == list(s.temp_dc)
        for name in ("stack_mv", "pack_mv", "ld_mv", "current_ma", "int_temp_dc", "soc_cpct", "soh_cpct", "state",
                     "safety_alert", "safety_status", "pf_status", "battery_status", "alarm_status", "fet_status",
                     "balance_mask", "faults"):
            assert got[name] == getattr(s, name), name


@SETTINGS
@given(b=st.binary(max_size=400))
def test_random_bytes(b):
    decode_only_frame_errors(b)


@SETTINGS
@given(b=st.binary(max_size=300), kind=st.integers(0, 7), flags=st.integers(0, 255))
def test_random_bytes_with_a_plausible_header(b, kind, flags):
    decode_only_frame_errors(bytes([1, kind, flags]) + b)


@SETTINGS
@given(body=st.binary(max_size=300), kind=st.integers(1, 5), flags=st.sampled_from([0, 1, 2]))
def test_random_signed_bodies_reach_the_parser(body, kind, flags):
    # A valid tag over garbage: the decoder must get past the tag and fail (or succeed) in the parser.
    out = decode_only_frame_errors(sign(bytes([1, kind, flags]) + body))
    assert "tag" not in out or len(body) < 6


@SETTINGS
@given(ss=samples(), data=st.data())
def test_mutated_valid_frames_resigned(ss, data):
    good = bytearray(encode(ss))[:-12]
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "set", "insert", "delete"]))
        i = data.draw(st.integers(0, max(0, len(good) - 1)))
        if op == "flip" and good:
            good[i] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "set" and good:
            good[i] = data.draw(st.integers(0, 255))
        elif op == "insert":
            good[i:i] = data.draw(st.binary(min_size=1, max_size=8))
        elif good:
            del good[i:i + data.draw(st.integers(1, 8))]
    decode_only_frame_errors(sign(bytes(good)))


@SETTINGS
@given(ss=samples(), cut=st.integers(0, 2000))
def test_truncations(ss, cut):
    b = encode(ss)
    cut %= len(b)
    out = decode_only_frame_errors(b[:cut])
    assert out[0] != "ok"
    # cut and re-signed: the body parser sees a short body
    out = decode_only_frame_errors(sign(b[:-12][:max(cut, 17)]))
    if cut < len(b) - 12:
        assert out[0] != "ok"


@SETTINGS
@given(params=st.dictionaries(st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1,
                                      max_size=32),
                              st.one_of(i32, st.text(max_size=60)), max_size=32),
       counter=u32, code=st.integers(0, 255), data=st.data())
def test_commands_round_trip_and_mutations_fail_cleanly(params, counter, code, data):
    c = frame.encode_command(DEV, KEY, counter, code, params)
    got = frame.verify_command(c, DEV, KEY)
    assert (got["counter"], got["code"], got["params"]) == (counter, code, params)
    body = bytearray(c[:-12])
    i = data.draw(st.integers(0, len(body) - 1))
    body[i] ^= 1 << data.draw(st.integers(0, 7))
    decode_only_frame_errors(sign(bytes(body)))
    decode_only_frame_errors(bytes(body) + c[-12:])      # unsigned mutation: must be refused
    assert decode_only_frame_errors(bytes(body) + c[-12:])[1] != "ok"


def receipt_only_frame_errors(b):
    """check_receipt / receipt_has / receipt_seqs on any bytes: a result or a FrameError with one of the
    documented reasons, nothing else. Returns the reason or 'ok'."""
    try:
        boot, runs = frame.check_receipt(b, DEV, KEY)
    except frame.FrameError as e:
        assert e.reason in ("truncated", "oversized", "version", "kind", "tag", "malformed")
        return e.reason
    assert 0 <= boot < 1 << 32 and 0 <= runs
    for seq in (0, 1, 7, (1 << 32) - 1):
        assert frame.receipt_has(b, runs, seq) in (True, False)
    boot2, seqs = frame.receipt_seqs(b, DEV, KEY)
    assert boot2 == boot and all(0 <= s for s in seqs)
    return "ok"


@SETTINGS
@given(b=st.binary(max_size=400))
def test_receipt_parser_on_random_bytes(b):
    receipt_only_frame_errors(b)


@SETTINGS
@given(body=st.binary(max_size=300), kind=st.sampled_from([6, 6, 6, 1, 5, 9]), flags=st.sampled_from([0, 1, 2]))
def test_receipt_parser_on_resigned_bodies(body, kind, flags):
    """Garbage behind a valid tag and a receipt header: reaches the run parser."""
    receipt_only_frame_errors(sign(bytes([1, kind, flags]) + body))


@SETTINGS
@given(seqs=st.lists(st.integers(0, (1 << 32) - 1), min_size=1, max_size=60), data=st.data())
def test_receipt_parser_on_mutated_receipts(seqs, data):
    """Real receipts, then one byte changed (re-signed) or cut: never anything but a FrameError, and
    an unmodified receipt names exactly its seqs."""
    for r in frame.encode_receipts(DEV, KEY, 3, seqs):
        r = bytes(r)
        boot, got = frame.receipt_seqs(r, DEV, KEY)
        assert boot == 3 and set(got) <= set(seqs)
        body = bytearray(r[:-frame.TAG_LEN])
        i = data.draw(st.integers(0, len(body) - 1))
        body[i] = data.draw(st.integers(0, 255))
        receipt_only_frame_errors(sign(bytes(body)))
        receipt_only_frame_errors(r[:data.draw(st.integers(0, len(r)))])
