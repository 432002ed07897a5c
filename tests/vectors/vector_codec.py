"""Turn a golden vector's inputs into a frame and back, with the codec: shared by the vector generator
(tools/make_vectors.py, CPython) and the vector tests in both runtimes (tests/comms, tests/mpy), so the
way a vector drives the encoder is written once. MicroPython-compatible (the VM imports it from /tests).

    from tests.vectors.vector_codec import encode_vector, decode_vector
    assert encode_vector(v).hex() == v["frame_hex"]
"""
from firmware.comms import frame
from firmware.sample import Sample

SAMPLE_FIELDS = ("t_ms", "cell_mv", "stack_mv", "pack_mv", "ld_mv", "current_ma", "temp_dc", "int_temp_dc",
                 "safety_alert", "safety_status", "pf_status", "battery_status", "alarm_status", "fet_status",
                 "balance_mask", "soc_cpct", "soh_cpct", "state", "faults")


def make_sample(d):
    """A firmware Sample from a vector's sample dict (same shape as the frame's)."""
    s = Sample(cell_count=len(d["cell_mv"]), temp_count=len(d["temp_dc"]))
    for name in SAMPLE_FIELDS:
        v = d[name]
        if name in ("cell_mv", "temp_dc"):
            arr = getattr(s, name)
            for i in range(len(v)):
                arr[i] = v[i]
        else:
            setattr(s, name, v)
    return s


def encode_vector(v):
    """Encode a vector's inputs with the codec; returns the frame bytes."""
    if v["kind"] == "command":
        a = v["args"]
        return frame.encode_command(v["device_id"], v["key_hex"], a["counter"], a["code"], a["params"])
    if v["kind"] == "receipt":
        rs = frame.encode_receipts(v["device_id"], v["key_hex"], v["boot"], v["args"]["seqs"])
        if len(rs) != 1:
            raise ValueError("a receipt vector must fit one receipt")
        return bytes(rs[0])
    enc = frame.Encoder(v["device_id"], v["key_hex"], v["boot"], v["capacity"])
    a = v["args"]
    if v["kind"] == "telemetry":
        enc.begin_telemetry(a["seq"], a["ref_ticks"], a["uptime_s"], a["uptime_ms"], a["cell_count"],
                            a["temp_count"], a["wall_s"], a["wall_ms"])
        for d in v["samples"]:
            if not enc.add_sample(make_sample(d)):
                raise ValueError("vector does not fit its capacity")
        return bytes(enc.finish())
    if v["kind"] == "event":
        enc.begin_events(a["seq"], a["ref_ticks"], a["uptime_s"], a["uptime_ms"], a["wall_s"], a["wall_ms"])
        for e in v["events"]:
            if len(e["values"]) == 1:
                ok = enc.add_event(e["t_ms"], e["event"], e["code"], e["values"][0])
            else:
                ok = enc.add_event_values(e["t_ms"], e["event"], e["code"], e["values"])
            if not ok:
                raise ValueError("vector does not fit its capacity")
        return bytes(enc.finish())
    if v["kind"] == "status":
        return bytes(enc.status(a["seq"], a["ref_ticks"], a["uptime_s"], a["uptime_ms"], a["fw_version"],
                                a["board"], a["config_hash"], a["reset_cause"], a["cell_count"],
                                a["temp_count"], a["wall_s"], a["wall_ms"]))
    if v["kind"] == "ack":
        return bytes(enc.ack(a["seq"], a["ref_ticks"], a["uptime_s"], a["uptime_ms"], a["counter"], a["code"],
                             a["result"], a["message"], a["wall_s"], a["wall_ms"]))
    raise ValueError("unknown vector kind %r" % v["kind"])


def verifier(kind):
    """The function that checks a frame of this vector kind's tag (raises frame.BadTag)."""
    if kind == "command":
        return frame.verify_command
    if kind == "receipt":
        return frame.check_receipt
    return frame.decode


def decode_vector(v, b):
    if v["kind"] == "command":
        return frame.verify_command(b, v["device_id"], v["key_hex"])
    if v["kind"] == "receipt":
        boot, seqs = frame.receipt_seqs(b, v["device_id"], v["key_hex"])
        return {"boot": boot, "seqs": seqs}
    return frame.decode(b, v["device_id"], v["key_hex"])
