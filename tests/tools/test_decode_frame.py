"""tools/decode_frame.py on the golden vectors (tests/vectors/): every input form, text and JSON,
verified or header-only, and tampered frames refused with the codec's reason."""
import base64
import glob
import io
import json
import os
from contextlib import redirect_stderr, redirect_stdout

import pytest

from tools import decode_frame

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VECTORS = sorted(glob.glob(os.path.join(ROOT, "tests", "vectors", "*.json")))


def _run(*argv):
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        rc = decode_frame.main(list(argv))
    return rc, out.getvalue(), err.getvalue()


def _load(path):
    with open(path) as f:
        return json.load(f)


@pytest.mark.parametrize("path", VECTORS, ids=[os.path.basename(p)[:-5] for p in VECTORS])
def test_json_output_equals_the_vectors_decoded_form(path):
    v = _load(path)
    rc, out, err = _run(v["frame_hex"], "--device", v["device_id"], "--key", v["key_hex"], "--json")
    assert rc == 0, err
    d = json.loads(out)
    assert d.pop("verified") is True and d.pop("kind_name") == v["kind"]
    assert d.pop("length") == len(v["frame_hex"]) // 2
    assert d == v["decoded"]


@pytest.mark.parametrize("path", VECTORS, ids=[os.path.basename(p)[:-5] for p in VECTORS])
def test_hex_base64_and_file_inputs_give_the_same_result(path, tmp_path):
    v = _load(path)
    raw = bytes.fromhex(v["frame_hex"])
    f = tmp_path / "frame.bin"
    f.write_bytes(raw)
    forms = [v["frame_hex"], v["frame_hex"].upper(), base64.b64encode(raw).decode(),
             base64.urlsafe_b64encode(raw).decode().rstrip("="), "@" + str(f), str(f)]
    outs = set()
    for form in forms:
        rc, out, err = _run(form, "--device", v["device_id"], "--key", v["key_hex"])
        assert rc == 0, (form, err)
        outs.add(out)
    assert len(outs) == 1
    assert "tag verified" in out


def test_text_shows_the_telemetry_values():
    v = _load(os.path.join(ROOT, "tests", "vectors", "telemetry_1.json"))
    rc, out, _ = _run(v["frame_hex"], "--device", v["device_id"], "--key", v["key_hex"])
    s = v["decoded"]["samples"][0]
    assert rc == 0
    assert "boot 42 seq 1000" in out
    assert "cells mV " + " ".join(str(c) for c in s["cell_mv"]) in out
    assert "I %+d mA" % s["current_ma"] in out
    assert "invalid" in out          # the -32768 thermistor


def test_secrets_file_supplies_device_and_key(tmp_path):
    v = _load(os.path.join(ROOT, "tests", "vectors", "status.json"))
    sec = tmp_path / "dev.json"
    sec.write_text(json.dumps({"device_id": v["device_id"], "key": v["key_hex"]}))
    rc, out, _ = _run(v["frame_hex"], "--secrets", str(sec), "--json")
    assert rc == 0 and json.loads(out)["board"] == v["decoded"]["board"]


def test_wrong_key_device_or_flipped_bit_is_rejected_with_the_reason():
    v = _load(os.path.join(ROOT, "tests", "vectors", "telemetry_4.json"))
    other_key = "ff" * 32
    assert _run(v["frame_hex"], "--device", v["device_id"], "--key", other_key)[0] == 1
    rc, _, err = _run(v["frame_hex"], "--device", "someone-else", "--key", v["key_hex"])
    assert rc == 1 and "rejected (tag)" in err
    raw = bytearray.fromhex(v["frame_hex"])
    raw[30] ^= 0x01
    rc, _, err = _run(raw.hex(), "--device", v["device_id"], "--key", v["key_hex"])
    assert rc == 1 and "rejected (tag)" in err
    rc, _, err = _run(v["frame_hex"][:20], "--device", v["device_id"], "--key", v["key_hex"])
    assert rc == 1 and "rejected (truncated)" in err


def test_no_verify_shows_only_the_header():
    v = _load(os.path.join(ROOT, "tests", "vectors", "telemetry_4.json"))
    rc, out, _ = _run(v["frame_hex"], "--no-verify", "--json")
    d = json.loads(out)
    assert rc == 0 and d["verified"] is False
    assert (d["boot"], d["seq"], d["kind_name"]) == (v["decoded"]["boot"], v["decoded"]["seq"], "telemetry")
    assert "samples" not in d
    rc, _, err = _run(v["frame_hex"])       # no key and no --no-verify: refused, not guessed
    assert rc == 2 and "--no-verify" in err


def test_garbage_input_is_a_usage_error():
    rc, _, err = _run("this is not a frame!", "--key", "00" * 32, "--device", "d")
    assert rc == 2 and "neither hex" in err
