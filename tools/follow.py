"""Follow one device's uplink (telemetry, events, status, acks) on the broker: verify, decode, one line each.

An ordinary (not shared) subscription to bms/<device>/up/#, so following never takes messages away from
the bridge. The broker account needs read access there (the bridge account from tools/provision.py has it).

    python tools/follow.py bms-0001 --secrets secrets/bms-0001.json --user bridge --password-file pw
    python tools/follow.py bms-0001 --key 00..1f --port 1883 --count 10 --json
"""
import argparse
import datetime
import json
import os
import sys
import threading
import time

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import paho.mqtt.client as mqtt  # noqa: E402

from firmware.comms import frame  # noqa: E402
from tools.decode_frame import EVENT_NAMES, KIND_NAMES, load_key  # noqa: E402

TOPIC_ROOT = "bms"


def _clock(unix_ms):
    if unix_ms is None:
        return "--:--:--.---"
    t = datetime.datetime.fromtimestamp(unix_ms / 1000.0, datetime.timezone.utc)
    return t.strftime("%H:%M:%S.%f")[:-3]


def line_for(device_id, topic, d):
    """One compact line for a decoded frame."""
    k = d["kind"]
    tag = "%s %-9s b%d#%d" % (device_id, KIND_NAMES.get(k, str(k)), d["boot"], d["seq"])
    if k == frame.KIND_TELEMETRY:
        s = d["samples"][-1]
        cells = s["cell_mv"]
        temps = [t for t in s["temp_dc"] if t != -32768]
        return ("%s %s %2d samples  stack %6.3f V  I %+8.3f A  SOC %6.2f %%  cells %d..%d mV (d %d)  "
                "T %s C  state %d  faults 0x%x  bal 0x%x"
                % (_clock(s["unix_ms"]), tag, len(d["samples"]), s["stack_mv"] / 1000.0,
                   s["current_ma"] / 1000.0, s["soc_cpct"] / 100.0, min(cells), max(cells),
                   max(cells) - min(cells), "%.1f" % (max(temps) / 10.0) if temps else "-", s["state"],
                   s["faults"], s["balance_mask"]))
    if k == frame.KIND_EVENT:
        ev = ", ".join("%s code %d %s" % (EVENT_NAMES.get(e["event"], e["event"]), e["code"], e["values"])
                       for e in d["events"])
        return "%s %s %s" % (_clock(d["unix_ms"]), tag, ev)
    if k == frame.KIND_STATUS:
        return ("%s %s online fw %s board %s config 0x%08x reset %d"
                % (_clock(d["unix_ms"]), tag, d["fw_version"], d["board"], d["config_hash"], d["reset_cause"]))
    if k == frame.KIND_ACK:
        return ("%s %s command %d code %d result %d %r"
                % (_clock(d["unix_ms"]), tag, d["counter"], d["code"], d["result"], d["message"]))
    return "%s %s" % (tag, topic)


class Follower:
    """Subscribes, verifies and decodes; hands (topic, decoded dict or None, error or None, payload) to out."""

    def __init__(self, device_id, key, host, port, out, username=None, password=None):
        self.device_id = device_id
        self.key = key
        self.out = out
        self.topic = "%s/%s/up/#" % (TOPIC_ROOT, device_id)
        self.messages = 0
        self.subscribed = threading.Event()
        self.refused = None
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="follow-%s-%d" % (device_id, os.getpid()),
                             protocol=mqtt.MQTTv311)
        if username:
            self.c.username_pw_set(username, password)
        self.c.on_connect = self._on_connect
        self.c.on_subscribe = self._on_subscribe
        self.c.on_message = self._on_message
        self.host, self.port = host, port

    def _on_connect(self, client, userdata, flags, rc, props=None):
        if rc.is_failure:
            self.refused = str(rc)
            self.subscribed.set()
            return
        client.subscribe(self.topic, qos=1)   # in on_connect: a reconnect restores it

    def _on_subscribe(self, client, userdata, mid, rcs, props=None):
        if rcs and rcs[0].is_failure:
            self.refused = "subscription refused (%s)" % rcs[0]
        self.subscribed.set()

    def _on_message(self, client, userdata, msg):
        self.messages += 1
        try:
            d = frame.decode(msg.payload, self.device_id, self.key)
            self.out(msg.topic, d, None, msg.payload)
        except frame.FrameError as e:
            self.out(msg.topic, None, e, msg.payload)

    def start(self, timeout_s=10.0):
        self.c.connect(self.host, self.port, keepalive=30)
        self.c.loop_start()
        if not self.subscribed.wait(timeout_s):
            self.stop()
            raise OSError("no subscription within %.0f s" % timeout_s)
        if self.refused:
            self.stop()
            raise OSError("broker refused: %s" % self.refused)
        return self

    def stop(self):
        self.c.disconnect()
        self.c.loop_stop()


def _printer(device_id, as_json, done, count):
    n = [0]

    def out(topic, d, err, payload):
        if err is not None:
            text = (json.dumps({"topic": topic, "rejected": err.reason, "bytes": len(payload)}) if as_json
                    else "%s rejected (%s), %d bytes on %s" % (device_id, err.reason, len(payload), topic))
        else:
            text = json.dumps(dict(d, topic=topic), sort_keys=True) if as_json else line_for(device_id, topic, d)
        print(text, flush=True)
        n[0] += 1
        if count and n[0] >= count:
            done.set()
    return out


def build_parser():
    ap = argparse.ArgumentParser(prog="follow.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("device", help="device id")
    ap.add_argument("--key", help="the device's HMAC key, hex")
    ap.add_argument("--secrets", metavar="FILE", help="secrets file from tools/provision.py (its key)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=1883)
    ap.add_argument("--user", help="broker account (needs read on bms/<device>/up/#)")
    ap.add_argument("--password", help="its password (prefer --password-file)")
    ap.add_argument("--password-file", metavar="FILE", help="file whose first line is the password")
    ap.add_argument("--count", type=int, default=0, help="exit after this many messages (0: until Ctrl-C)")
    ap.add_argument("--timeout", type=float, default=0, help="exit after this many seconds (0: never)")
    ap.add_argument("--json", action="store_true", help="one JSON object per message")
    return ap


def main(argv=None):
    a = build_parser().parse_args(argv)
    _, key = load_key(a.key, a.secrets)
    if not key:
        print("follow: give --key or --secrets (frames are verified before they are shown)", file=sys.stderr)
        return 2
    password = a.password
    if a.password_file:
        with open(a.password_file) as f:
            password = f.readline().strip()
    done = threading.Event()
    f = Follower(a.device, key, a.host, a.port, _printer(a.device, a.json, done, a.count), a.user, password)
    try:
        f.start()
    except OSError as e:
        print("follow: %s" % e, file=sys.stderr)
        return 1
    deadline = time.monotonic() + a.timeout if a.timeout else None
    try:
        while not done.is_set():
            wait = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
            if wait <= 0:
                break
            done.wait(wait)
    except KeyboardInterrupt:
        pass
    finally:
        f.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
