"""Golden vectors in CPython: the inputs encode to exactly the stored bytes, the bytes decode to the inputs."""
import json
import pathlib

import pytest

from firmware.comms import frame
from tests.vectors import vector_codec
from tools import make_vectors

VEC_DIR = pathlib.Path(__file__).resolve().parents[1] / "vectors"
FILES = sorted(VEC_DIR.glob("*.json")) + sorted(VEC_DIR.glob("receipts/*.json"))


def load(path):
    return json.loads(path.read_text())


def test_every_kind_has_a_vector():
    kinds = {load(p)["kind"] for p in FILES}
    assert kinds == {"telemetry", "event", "status", "ack", "command", "receipt"}
    batched = [load(p) for p in FILES if load(p)["kind"] == "telemetry" and len(load(p)["samples"]) > 1]
    assert batched, "no batched telemetry vector"


def test_vector_files_are_what_the_generator_writes():
    # The committed files are exactly the generator's output (no hand edits, no stale vector).
    assert make_vectors.main(["--check", "--out", str(VEC_DIR)]) == 0


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_encode_gives_exact_bytes(path):
    v = load(path)
    assert vector_codec.encode_vector(v).hex() == v["frame_hex"]


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_decode_gives_the_inputs(path):
    v = load(path)
    d = vector_codec.decode_vector(v, bytes.fromhex(v["frame_hex"]))
    assert d == v["decoded"]
    a = v["args"]
    if v["kind"] == "command":
        assert (d["counter"], d["code"], d["params"]) == (a["counter"], a["code"], a["params"])
        return
    if v["kind"] == "receipt":
        assert d == {"boot": v["boot"], "seqs": a["seqs"]}
        assert frame.check_receipt(bytes.fromhex(v["frame_hex"]), v["device_id"], v["key_hex"]) == (v["boot"], 3)
        return
    assert (d["boot"], d["seq"]) == (v["boot"], a["seq"])
    assert d["uptime_ms"] == a["uptime_s"] * 1000 + a["uptime_ms"]
    if a["wall_s"] >= 0:
        assert d["unix_ms"] == (a["wall_s"] + 946684800) * 1000 + a["wall_ms"]
    else:
        assert d["unix_ms"] is None
    if v["kind"] == "telemetry":
        assert len(d["samples"]) == len(v["samples"])
        prev_t = a["ref_ticks"]
        for got, want in zip(d["samples"], v["samples"]):
            for name in vector_codec.SAMPLE_FIELDS:
                if name != "t_ms":
                    assert got[name] == want[name], name
            # time: the tick difference, taken modulo the 2**30 tick period
            assert got["dt_ms"] % (1 << 30) == (want["t_ms"] - prev_t) % (1 << 30)
            prev_t = want["t_ms"]
    elif v["kind"] == "event":
        assert [(e["event"], e["code"], e["values"]) for e in d["events"]] == \
               [(e["event"], e["code"], e["values"]) for e in v["events"]]
        assert [e["uptime_ms"] - d["uptime_ms"] for e in d["events"]] == \
               [e["t_ms"] - a["ref_ticks"] for e in v["events"]]
    elif v["kind"] == "status":
        for k in ("fw_version", "board", "config_hash", "reset_cause", "cell_count", "temp_count"):
            assert d[k] == a[k]
    else:
        for k in ("counter", "code", "result", "message"):
            assert d[k] == a[k]


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_vector_fails_under_another_device_id(path):
    v = load(path)
    b = bytes.fromhex(v["frame_hex"])
    fn = vector_codec.verifier(v["kind"])
    with pytest.raises(frame.BadTag):
        fn(b, v["device_id"] + "x", v["key_hex"])
