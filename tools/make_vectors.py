"""Write the golden frame vectors (tests/vectors/*.json) from fixed inputs, or check them.

Each vector holds the inputs (device id, test key, encoder arguments, samples/events), the expected frame
as hex and the expected decoded structure. Both runtimes must reproduce the bytes exactly
(tests/comms/test_frame_vectors.py in CPython, tests/mpy/test_frame_vectors.py in the MicroPython VM).

    python tools/make_vectors.py            # (re)write tests/vectors/*.json
    python tools/make_vectors.py --check    # exit 1 if the files differ from what the codec produces now
Regenerate only on a deliberate format change (and bump the version byte when old frames change meaning).
"""
import argparse
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.vectors.vector_codec import decode_vector, encode_vector  # noqa: E402

OUT = ROOT / "tests" / "vectors"
# Test keys only: public on purpose, never provisioned to a device.
KEY_A = bytes(range(32)).hex()
KEY_B = "c0ffee" * 8


def _sample(t_ms, cells, current_ma, temps, **kw):
    d = {"t_ms": t_ms, "cell_mv": list(cells), "stack_mv": sum(cells), "pack_mv": sum(cells) - 35,
         "ld_mv": sum(cells) - 60, "current_ma": current_ma, "temp_dc": list(temps), "int_temp_dc": 312,
         "safety_alert": 0, "safety_status": 0, "pf_status": 0, "battery_status": 0x0180, "alarm_status": 0,
         "fet_status": 0x05, "balance_mask": 0, "soc_cpct": 4512, "soh_cpct": 9870, "state": 2, "faults": 0}
    d.update(kw)
    return d


def _lfp16(offset):
    # 16 LFP cells around 3.29 V with a few mV of spread, shifted by `offset` mV.
    return [3290 + ((i * 7) % 11) - 5 + offset for i in range(16)]


def vectors():
    """The inputs of every vector (no outputs): edit here, then regenerate."""
    base = {"device_id": "bms-0001", "key_hex": KEY_A, "boot": 42, "capacity": 1024}
    out = []
    out.append(dict(base, name="telemetry_1", kind="telemetry",
                    description="one 16-cell sample with wall clock; discharge current, sub-zero and invalid "
                                "thermistor, PF status word above 2^31",
                    args={"seq": 1000, "ref_ticks": 123400, "uptime_s": 123, "uptime_ms": 400, "cell_count": 16,
                          "temp_count": 3, "wall_s": 817000000, "wall_ms": 250},
                    samples=[_sample(123456, _lfp16(0), -15230, [-105, 251, -32768], pf_status=0x80000001,
                                     alarm_status=0x8000)]))
    samples4 = []
    t = (1 << 30) - 1500                  # ticks wrap between sample 1 and 2
    for k in range(4):
        kw = {}
        if k >= 2:                        # a cell overvoltage raised on the third sample
            kw = {"safety_alert": 0x04, "safety_status": 0x04, "faults": 0x11, "fet_status": 0x04,
                  "balance_mask": 0b1000000000000101, "state": 4}
        samples4.append(_sample(t & ((1 << 30) - 1), _lfp16(k * 3 - (k == 3) * 20), 2500 - 900 * k,
                                [-12 + k, 230, 245 - k], soc_cpct=4512 - k, **kw))
        t += 1000
    out.append(dict(base, name="telemetry_4", kind="telemetry",
                    description="four samples, no wall clock; current crosses zero, ticks wrap, faults raised",
                    args={"seq": 7, "ref_ticks": (1 << 30) - 1600, "uptime_s": 86400 * 20, "uptime_ms": 999,
                          "cell_count": 16, "temp_count": 3, "wall_s": -1, "wall_ms": 0},
                    samples=samples4))
    samples10 = [_sample(5000 + 250 * k, [3650 + k, 3651, 3649 - k, 3650], -(k * 1111), [-400 + 10 * k],
                         soc_cpct=9990, soh_cpct=10000, state=1) for k in range(10)]
    out.append(dict(base, name="telemetry_10_4cell", kind="telemetry", key_hex=KEY_B, device_id="lab-4s",
                    description="ten 4-cell samples with one thermistor at -40 degC, 250 ms apart",
                    args={"seq": 0, "ref_ticks": 5000, "uptime_s": 5, "uptime_ms": 0, "cell_count": 4,
                          "temp_count": 1, "wall_s": 0, "wall_ms": 0},
                    samples=samples10))
    out.append(dict(base, name="event_3", kind="event",
                    description="cell overvoltage raised (cell, mV), overtemperature with two values, cleared",
                    args={"seq": 1001, "ref_ticks": 200000, "uptime_s": 200, "uptime_ms": 0, "wall_s": 817000077,
                          "wall_ms": 0},
                    events=[{"t_ms": 200010, "event": 1, "code": 0, "values": [3651]},
                            {"t_ms": 200010, "event": 1, "code": 9, "values": [3, -205]},
                            {"t_ms": 260500, "event": 2, "code": 0, "values": []}]))
    out.append(dict(base, name="status", kind="status", description="hello after a watchdog reset",
                    args={"seq": 0, "ref_ticks": 1500, "uptime_s": 1, "uptime_ms": 500, "fw_version": "0.1.0",
                          "board": "devkit-bq76952", "config_hash": 0xDEADBEEF, "reset_cause": 3,
                          "cell_count": 16, "temp_count": 3, "wall_s": -1, "wall_ms": 0}))
    out.append(dict(base, name="ack", kind="ack", description="ack of command 17 with a message",
                    args={"seq": 1002, "ref_ticks": 201000, "uptime_s": 201, "uptime_ms": 0, "counter": 17,
                          "code": 2, "result": 0, "message": "applied: cell_ov_mv=3650", "wall_s": 817000078,
                          "wall_ms": 1}))
    out.append(dict(base, name="command", kind="command", description="set config with int and str params",
                    args={"counter": 17, "code": 2,
                          "params": {"cell_ov_mv": 3650, "cell_ut_dc": -200, "chemistry": "LFP"}}))
    out.append(dict(base, name="command_empty", kind="command", description="a command without params",
                    args={"counter": 4294967295, "code": 1, "params": {}}))
    out.append(dict(base, name="receipt", kind="receipt",
                    description="bridge receipt naming seqs 0-2, 7 and 1000 of boot 42 (three runs)",
                    args={"seqs": [0, 1, 2, 7, 1000]}))
    for v in out:
        if v["kind"] == "receipt":
            del v["capacity"]
        if "boot" in v and v["kind"] == "command":
            del v["boot"], v["capacity"]
    return out


def build():
    """Every vector with its expected frame bytes and decoded structure filled in."""
    res = []
    for v in vectors():
        b = encode_vector(v)
        v["frame_hex"] = b.hex()
        v["decoded"] = decode_vector(v, b)
        res.append(v)
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="compare with the files instead of writing them")
    ap.add_argument("--out", default=str(OUT), help="folder of the vector files (default: tests/vectors)")
    args = ap.parse_args(argv)
    out = pathlib.Path(args.out)
    bad = 0
    for v in build():
        # Receipts (bridge -> board) live in a subfolder: tools/decode_frame.py and its test take the
        # top-level vectors, which are the frames it decodes (uplink and commands).
        folder = out / "receipts" if v["kind"] == "receipt" else out
        path = folder / (v["name"] + ".json")
        text = json.dumps(v, indent=1, sort_keys=True) + "\n"
        if args.check:
            if not path.exists() or path.read_text() != text:
                print("differs:", path)
                bad += 1
        else:
            folder.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print("wrote %s (%d bytes of frame)" % (path.relative_to(ROOT) if path.is_relative_to(ROOT) else path,
                                                    len(v["frame_hex"]) // 2))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
