"""Wire section of the benchmarks: bytes per 16-cell sample, binary frames against text encodings.

Wraps tools/wire_size.py (binary frames from the real codec, one JSON object per sample, InfluxDB line
protocol, the bridge's own schema lines) and adds what per-cell publishers send: one small JSON
message per cell per sample (the diyBMS-style layout: a topic per cell module, a payload with its
voltage, temperatures and bypass flag) plus one pack message. Sizes are payload bytes; the MQTT
PUBLISH overhead (fixed header, topic, packet id at QoS 1) is added in a separate column, because
per-cell publishing pays it 17 times per sample where a batched frame pays it once.

    python -m tools.bench --only wire
    python -m tools.bench.wire             # the figures as JSON
"""
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tools import wire_size  # noqa: E402

CELLS, TEMPS = 16, 3
BATCHES = (1, 4, 10, 60)
TOPIC_BINARY = "bms/%s/up/telemetry" % wire_size.DEVICE


def mqtt_overhead(topic, payload_len, qos=1):
    """Bytes of an MQTT 3.1.1/5 PUBLISH around a payload (no v5 properties): fixed header with its
    variable-length remaining length, 2-byte topic length, topic, 2-byte packet id at QoS > 0."""
    rest = 2 + len(topic.encode()) + (2 if qos else 0) + payload_len
    n = 1
    while rest >= 128 ** n:
        n += 1
    return 1 + n + rest - payload_len


def per_cell_json(s, seq):
    """[(topic, payload)] of one sample published per cell module, plus one pack message."""
    out = []
    for i in range(s.cell_count):
        bypass = (s.balance_mask >> i) & 1
        body = {"voltage": round(s.cell_mv[i] / 1000.0, 3), "inttemp": s.int_temp_dc // 10,
                "exttemp": s.temp_dc[i % s.temp_count] // 10 if s.temp_count else 0, "bypass": bypass}
        out.append(("diybms/0/%d" % i, json.dumps(body, separators=(",", ":"))))
    pack = {"voltage": round(s.stack_mv / 1000.0, 2), "current": round(s.current_ma / 1000.0, 2),
            "soc": round(s.soc_cpct / 100.0, 1), "seq": seq}
    out.append(("diybms/pack", json.dumps(pack, separators=(",", ":"))))
    return out


def measure(quick=False, log=print):
    rows = wire_size.measure(CELLS, TEMPS, 1000, list(BATCHES), seed=1, profile="noisy")
    n = 20 if quick else 200
    samples = wire_size.simulate(n, CELLS, TEMPS, 1000, 1, "noisy")
    msgs = [per_cell_json(s, k) for k, s in enumerate(samples)]
    pc_payload = sum(len(p.encode()) for m in msgs for _, p in m) / n
    pc_mqtt = sum(len(p.encode()) + mqtt_overhead(t, len(p.encode())) for m in msgs for t, p in m) / n
    for r in rows:
        b = r["samples_per_frame"]
        frame = r["frame_bytes"]
        r["binary_with_mqtt_per_sample"] = (frame + mqtt_overhead(TOPIC_BINARY, int(frame))) / b
    out = {"cells": CELLS, "temps": TEMPS, "rows": rows, "per_cell_json_payload": pc_payload,
           "per_cell_json_with_mqtt": pc_mqtt, "per_cell_messages": CELLS + 1,
           "json_object_per_sample": rows[0]["json_per_sample"],
           "line_protocol_per_sample": rows[0]["line_per_sample"],
           "schema_lines_per_sample": rows[0]["schema_lines_per_sample"]}
    log("wire: binary %.1f B/sample single, %.1f batched x10, per-cell JSON %.0f B/sample"
        % (rows[0]["binary_per_sample"], rows[2]["binary_per_sample"], pc_payload))
    return out


def main(argv=None):
    import argparse
    argparse.ArgumentParser(prog="python -m tools.bench.wire", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter).parse_args(argv)
    print(json.dumps(measure(), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
