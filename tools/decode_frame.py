"""Decode one captured frame (hex, base64 or a binary file) to text or JSON, verifying its tag.

The layout is firmware/comms/frame.py's (docs/frame-format.md); this tool only reads the input and
prints. Without a key, --no-verify shows the header the codec exposes unauthenticated (peek_header):
version, kind, flags and (boot, seq) or the command counter; the body is only decoded after the tag
has been checked.

    python tools/decode_frame.py 0101012a00... --device bms-0001 --key 000102...1f
    python tools/decode_frame.py @capture.bin --secrets secrets/bms-0001.json --json
"""
import argparse
import base64
import binascii
import json
import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from firmware.comms import frame  # noqa: E402

KIND_NAMES = {frame.KIND_TELEMETRY: "telemetry", frame.KIND_EVENT: "event", frame.KIND_STATUS: "status",
              frame.KIND_ACK: "ack", frame.KIND_COMMAND: "command"}
EVENT_NAMES = {frame.EVENT_RAISED: "raised", frame.EVENT_CLEARED: "cleared", frame.EVENT_INFO: "info"}


def read_input(text, fmt="auto"):
    """bytes of a frame given as hex, base64, '@file' / a path to a binary file, or '-' (stdin)."""
    if text == "-":
        data = sys.stdin.buffer.read()
        if fmt in ("hex", "base64") or (fmt == "auto" and _printable(data)):
            return read_input(data.decode("ascii").strip(), "auto" if fmt == "auto" else fmt)
        return data
    if fmt == "file" or text.startswith("@") or (fmt == "auto" and os.path.isfile(text)):
        with open(text[1:] if text.startswith("@") else text, "rb") as f:
            return f.read()
    s = "".join(text.split())
    if fmt in ("auto", "hex"):
        h = s[2:] if s.lower().startswith("0x") else s
        try:
            return binascii.unhexlify(h)
        except (binascii.Error, ValueError):
            if fmt == "hex":
                raise ValueError("not valid hex") from None
    try:
        return base64.b64decode(s + "=" * (-len(s) % 4), validate=True)
    except (binascii.Error, ValueError):
        pass
    try:
        return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("input is neither hex, base64 nor a file") from None


def _printable(data):
    try:
        data.decode("ascii")
    except UnicodeDecodeError:
        return False
    return all(32 <= c < 127 or c in (9, 10, 13) for c in data)


def load_key(key=None, secrets=None):
    """(device_id or None, key) from --key (hex) or a secrets file written by tools/provision.py."""
    if secrets:
        with open(secrets) as f:
            doc = json.load(f)
        return doc.get("device_id"), doc["key"]
    return None, key


def decode(b, device_id=None, key=None, verify=True):
    """The decoded dict plus 'kind_name' and 'verified'. FrameError for a bad frame."""
    if verify:
        if not device_id or not key:
            raise ValueError("verifying needs --device and --key (or --secrets); or give --no-verify")
        if len(b) >= 2 and b[1] == frame.KIND_COMMAND:
            d = frame.verify_command(b, device_id, key)
        else:
            d = frame.decode(b, device_id, key)
    else:
        d = frame.peek_header(b)
    d["kind_name"] = KIND_NAMES.get(d["kind"], str(d["kind"]))
    d["verified"] = bool(verify)
    d["length"] = len(b)
    return d


def _ms(v):
    if v is None:
        return "-"
    import datetime
    return datetime.datetime.fromtimestamp(v / 1000.0, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def to_text(d):
    """Human-readable lines."""
    out = []
    head = "%s frame v%d, %d bytes, flags 0x%02x" % (d["kind_name"], d["version"], d["length"], d["flags"])
    if "boot" in d:
        head += ", boot %d seq %d" % (d["boot"], d["seq"])
    if "counter" in d and d["kind"] == frame.KIND_COMMAND:
        head += ", counter %d" % d["counter"]
    head += ", tag %s" % ("verified" if d["verified"] else "NOT verified (header only)")
    out.append(head)
    if not d["verified"]:
        return "\n".join(out)
    k = d["kind"]
    if k != frame.KIND_COMMAND:
        out.append("uptime %.3f s, wall clock %s" % (d["uptime_ms"] / 1000.0, _ms(d["unix_ms"])))
    if k == frame.KIND_TELEMETRY:
        out.append("%d samples, %d cells, %d thermistors" % (len(d["samples"]), d["cell_count"],
                                                            d["temp_count"]))
        for i, s in enumerate(d["samples"]):
            cells = s["cell_mv"]
            out.append("  [%d] t=%.3fs %s  stack %d mV  I %+d mA  SOC %.2f %%  SOH %.2f %%  state %d  "
                       "faults 0x%x  bal 0x%x  fet 0x%x"
                       % (i, s["uptime_ms"] / 1000.0, _ms(s["unix_ms"]), s["stack_mv"], s["current_ma"],
                          s["soc_cpct"] / 100.0, s["soh_cpct"] / 100.0, s["state"], s["faults"],
                          s["balance_mask"], s["fet_status"]))
            out.append("      cells mV %s (min %d max %d delta %d)"
                       % (" ".join(str(c) for c in cells), min(cells), max(cells), max(cells) - min(cells)))
            temps = ["invalid" if t == -32768 else "%.1f" % (t / 10.0) for t in s["temp_dc"]]
            out.append("      temps degC %s  die %.1f  pack %d mV  ld %d mV  safety alert 0x%x status 0x%x "
                       "pf 0x%x battery 0x%x alarm 0x%x"
                       % (" ".join(temps) or "-", s["int_temp_dc"] / 10.0, s["pack_mv"], s["ld_mv"],
                          s["safety_alert"], s["safety_status"], s["pf_status"], s["battery_status"],
                          s["alarm_status"]))
    elif k == frame.KIND_EVENT:
        for e in d["events"]:
            out.append("  t=%.3fs %s %s code %d values %s"
                       % (e["uptime_ms"] / 1000.0, _ms(e["unix_ms"]), EVENT_NAMES.get(e["event"], e["event"]),
                          e["code"], e["values"]))
    elif k == frame.KIND_STATUS:
        out.append("  firmware %s board %s config_hash 0x%08x reset_cause %d cells %d temps %d"
                   % (d["fw_version"], d["board"], d["config_hash"], d["reset_cause"], d["cell_count"],
                      d["temp_count"]))
    elif k == frame.KIND_ACK:
        out.append("  ack of command %d (code %d): result %d %r" % (d["counter"], d["code"], d["result"],
                                                                   d["message"]))
    elif k == frame.KIND_COMMAND:
        out.append("  code %d params %s" % (d["code"], json.dumps(d["params"], sort_keys=True)))
    return "\n".join(out)


def build_parser():
    ap = argparse.ArgumentParser(prog="decode_frame.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("frame", help="hex, base64, a file path (or @path), or - for stdin")
    ap.add_argument("--format", choices=("auto", "hex", "base64", "file"), default="auto",
                    help="how FRAME is given (default: guess)")
    ap.add_argument("--device", help="device id the frame belongs to (bound into its tag)")
    ap.add_argument("--key", help="the device's HMAC key, hex")
    ap.add_argument("--secrets", metavar="FILE", help="a secrets file from tools/provision.py (id and key)")
    ap.add_argument("--no-verify", action="store_true",
                    help="no key: show only the unauthenticated header (the body is decoded only after "
                         "its tag has been verified)")
    ap.add_argument("--json", action="store_true", help="print JSON instead of text")
    return ap


def main(argv=None):
    a = build_parser().parse_args(argv)
    try:
        b = read_input(a.frame, a.format)
        dev, key = load_key(a.key, a.secrets)
        d = decode(b, a.device or dev, key, verify=not a.no_verify)
    except frame.FrameError as e:
        print("decode_frame: rejected (%s): %s" % (e.reason, e), file=sys.stderr)
        return 1
    except (ValueError, OSError, KeyError) as e:
        print("decode_frame: %s" % e, file=sys.stderr)
        return 2
    print(json.dumps(d, sort_keys=True) if a.json else to_text(d))
    return 0


if __name__ == "__main__":
    sys.exit(main())
