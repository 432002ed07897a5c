"""`cloud-bridge commands ...`: send a signed command to one device, a group or a site, collect the acks.

Each command is a kind-5 frame from the one codec (`firmware.comms.frame.encode_command`, layout in
docs/frame-format.md), signed with the device's own key from the registry and published with QoS 1 on
`bms/<device>/down/cmd`. The board answers with an ack frame on `bms/<device>/up/ack`; the table shows,
per device, the result code and message and the latency from publish to ack, or `timeout`.

    cloud-bridge commands send --device bms-0001 ping
    cloud-bridge commands send --group forklifts set-config --param cell_ov_mv=3600 --timeout 20

Command names and result names come from the firmware's command set (`firmware/comms/command_codes.py`):
every module constant `CMD_<NAME>` is the command `<name>` (underscores as dashes) and `RESULT_<NAME>`
names a result code; its PARAMS table is checked before anything is sent. `--code N` sends a numeric
code the CLI does not know by name (its parameters unchecked).

Replay protection: the board accepts a command only when its counter is above the last it accepted.
Counters are kept per device in the registry file (`CounterStore`) and never fall below the seconds
since 2023-11-14 (`COUNTER_EPOCH_S`), so they keep rising even if that file is lost.
"""

import argparse
import os
import sqlite3
import sys
import threading
import time

from cloud_bridge.cli_devices import render_table
from cloud_bridge.registry import Registry
from firmware.comms import frame

COUNTER_EPOCH_S = 1700000000   # counters start near (now - this) seconds: rising without any state
COUNTER_MAX = 0xFFFFFFFF       # u32 in the frame
WAIT_STEP_S = 0.05


def command_set():
    """(name -> code, code -> name, result code -> name) from firmware/comms/command_codes.py."""
    from firmware.comms import command_codes as cs
    codes, results = {}, {0: "ok"}
    for attr in dir(cs):
        v = getattr(cs, attr)
        if not isinstance(v, int) or isinstance(v, bool):
            continue
        if attr.startswith("CMD_"):
            codes[attr[4:].lower().replace("_", "-")] = v
        elif attr.startswith("RESULT_"):
            results[v] = attr[7:].lower()
    return codes, {c: n for n, c in codes.items()}, results


class CounterStore:
    """Per-device command counters, in their own table of the registry's SQLite file.

    Kept apart from cloud_bridge/registry.py (which has no counter yet); one transaction per
    allocation, so two operators sending at once never reuse a counter.
    """

    def __init__(self, path, timeout_s=10.0):
        self._db = sqlite3.connect(str(path), timeout=timeout_s, isolation_level=None)
        self._db.execute("PRAGMA busy_timeout=%d" % int(timeout_s * 1000))
        self._db.execute("CREATE TABLE IF NOT EXISTS command_counters("
                         "device_id TEXT PRIMARY KEY, counter INTEGER NOT NULL)")

    def next(self, device_id, now_s=None):
        floor = int(time.time() if now_s is None else now_s) - COUNTER_EPOCH_S
        self._db.execute("BEGIN IMMEDIATE")
        try:
            row = self._db.execute("SELECT counter FROM command_counters WHERE device_id=?",
                                   (device_id,)).fetchone()
            counter = max(floor, (row[0] if row else 0) + 1)
            if counter > COUNTER_MAX:
                raise ValueError("command counter of %s exhausted" % device_id)
            self._db.execute("INSERT INTO command_counters(device_id, counter) VALUES(?, ?) "
                             "ON CONFLICT(device_id) DO UPDATE SET counter=excluded.counter",
                             (device_id, counter))
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return counter

    def close(self):
        self._db.close()


def _guess(value):
    try:
        return int(value, 0)
    except ValueError:
        return value


def typed_params(code, raw):
    """{name: text} -> {name: int | str} by the command's PARAMS entry (names, types, ranges,
    required ones present); ValueError otherwise. A code without an entry: integers where they parse."""
    from firmware.comms import command_codes as cs
    spec = getattr(cs, "PARAMS", {}).get(code)
    if spec is None:
        return {k: _guess(v) for k, v in raw.items()}
    unknown = sorted(set(raw) - set(spec))
    if unknown:
        raise ValueError("unknown parameter(s) %s (this command takes: %s)"
                         % (", ".join(unknown), ", ".join(sorted(spec)) or "none"))
    out = {}
    for name, (typ, required, lo, hi) in sorted(spec.items()):
        if name not in raw:
            if required:
                raise ValueError("missing parameter %s" % name)
            continue
        if typ == "int":
            try:
                v = int(raw[name], 0)
            except ValueError:
                raise ValueError("parameter %s must be an integer, got %r" % (name, raw[name])) from None
            if not lo <= v <= hi:
                raise ValueError("parameter %s must be %d..%d, got %d" % (name, lo, hi, v))
            out[name] = v
        else:
            out[name] = raw[name]
    return out


def parse_params(items):
    """['key=cell_ov_mv', 'value=3600'] -> {'key': 'cell_ov_mv', 'value': '3600'} (text; see typed_params)."""
    params = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError("parameter must be key=value, got %r" % item)
        params[key] = value
    return params


class Outcome:
    """What became of the command to one device."""

    def __init__(self, device, counter=None, status="pending"):
        self.device = device
        self.counter = counter
        self.status = status          # pending, ok, error, timeout, skipped
        self.result = None            # ack result code
        self.result_name = None
        self.message = ""
        self.latency_ms = None
        self.sent_at = None           # time.monotonic() at publish

    def row(self):
        code = None if self.result is None else (
            "%d %s" % (self.result, self.result_name) if self.result_name else str(self.result))
        return (self.device, self.status, code, self.message or None,
                None if self.latency_ms is None else int(round(self.latency_ms)))


class CommandSender:
    """Signs and publishes one command to several devices over one MQTT v5 session; collects acks."""

    def __init__(self, registry, counters, host="127.0.0.1", port=1883, username="", password="",
                 topic_root="bms", tls=False, ca_file="", connect_timeout_s=10.0):
        self.registry = registry
        self.counters = counters
        self.host, self.port = host, port
        self.username, self.password = username, password
        self.root = topic_root
        self.tls, self.ca_file = tls, ca_file
        self.connect_timeout_s = connect_timeout_s
        _, _, self.result_names = command_set()

    def send(self, devices, code, params=None, timeout_s=10.0):
        """Outcomes (in the order of `devices`) once every device acked or timeout_s passed."""
        import paho.mqtt.client as mqtt
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        outcomes, keys, payloads = [], {}, {}
        for dev in devices:
            k = self.registry.key(dev)
            if k is None:
                o = Outcome(dev, status="skipped")
                o.message = "unknown or disabled device"
                outcomes.append(o)
                continue
            keys[dev] = k[0]
            o = Outcome(dev, self.counters.next(dev))
            payloads[dev] = frame.encode_command(dev, k[0], o.counter, code, params or {})
            outcomes.append(o)
        pending = {o.device: o for o in outcomes if o.status == "pending"}
        if not pending:
            return outcomes

        lock = threading.Lock()
        subscribed = threading.Event()
        done = threading.Event()
        prefix, suffix = self.root + "/", "/up/ack"

        def on_message(client, userdata, msg):
            t = time.monotonic()
            if not (msg.topic.startswith(prefix) and msg.topic.endswith(suffix)):
                return
            dev = msg.topic[len(prefix):-len(suffix)]
            with lock:
                o = pending.get(dev)
                if o is None or o.sent_at is None:
                    return
                try:
                    d = frame.decode(msg.payload, dev, keys[dev])
                except frame.FrameError:
                    return          # not from that device's key: ignore, keep waiting
                if d["kind"] != frame.KIND_ACK or d["counter"] != o.counter:
                    return          # an ack of another command (another operator, an older one)
                o.result = d["result"]
                o.result_name = self.result_names.get(o.result)
                o.message = d["message"]
                o.status = "ok" if o.result == 0 else "error"
                o.latency_ms = (t - o.sent_at) * 1000.0
                del pending[dev]
                if not pending:
                    done.set()

        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                             client_id="bms-cli-%d-%s" % (os.getpid(), os.urandom(3).hex()),
                             protocol=mqtt.MQTTv5)
        if self.username:
            client.username_pw_set(self.username, self.password or None)
        if self.tls:
            client.tls_set(ca_certs=self.ca_file or None)
        connack = {}
        connected = threading.Event()

        def on_connect(c, u, flags, reason, props):
            connack["reason"] = reason
            connected.set()

        client.on_connect = on_connect
        client.on_message = on_message
        client.on_subscribe = lambda c, u, mid, codes, props: subscribed.set()
        client.connect(self.host, self.port, keepalive=30)
        client.loop_start()
        try:
            if not connected.wait(self.connect_timeout_s):
                raise OSError("no CONNACK from %s:%d within %.0f s"
                              % (self.host, self.port, self.connect_timeout_s))
            if connack["reason"].is_failure:
                raise OSError("broker refused the login: %s" % connack["reason"])
            # One wildcard subscription for every ack: the ACL lets the operator read bms/+/up/ack.
            client.subscribe(self.root + "/+/up/ack", qos=1)
            if not subscribed.wait(self.connect_timeout_s):
                raise OSError("no SUBACK from %s:%d within %.0f s"
                              % (self.host, self.port, self.connect_timeout_s))
            props = Properties(PacketTypes.PUBLISH)
            # A board offline longer than the timeout does not get a stale command later.
            props.MessageExpiryInterval = max(1, int(timeout_s))
            infos = []
            for o in outcomes:
                if o.device not in payloads:
                    continue
                with lock:
                    o.sent_at = time.monotonic()
                infos.append(client.publish("%s/%s/down/cmd" % (self.root, o.device),
                                            payloads[o.device], qos=1, properties=props))
            deadline = time.monotonic() + timeout_s
            while not done.is_set() and time.monotonic() < deadline:
                done.wait(min(WAIT_STEP_S * 4, max(0.0, deadline - time.monotonic())))
            for info in infos:
                if not info.is_published():
                    info.wait_for_publish(0.5)
        finally:
            client.disconnect()
            client.loop_stop()
        with lock:
            for o in pending.values():
                o.status = "timeout"
        return outcomes


def format_outcomes(outcomes):
    text = render_table(("device", "status", "result", "message", "latency ms"),
                        [o.row() for o in outcomes])
    n_ok = sum(1 for o in outcomes if o.status == "ok")
    return text + "%d of %d ok\n" % (n_ok, len(outcomes))


def _targets(reg, args):
    devs = list(args.device or [])
    if args.group or args.site:
        devs += [d["device_id"] for d in reg.devices(site=args.site, group=args.group)
                 if d["enabled"]]
    seen, out = set(), []
    for d in devs:
        if d not in seen:
            seen.add(d)
            out.append(d)
    if not out:
        raise ValueError("no target device (use --device, --group or --site)")
    return out


def add_parser(sub, registry_default=None):
    """Adds `commands` (send, codes) to an argparse sub-parser set."""
    p = sub.add_parser("commands", help="send signed commands to devices and collect acks")
    p.add_argument("--registry", default=registry_default)
    s = p.add_subparsers(dest="commands_cmd", required=True)
    sd = s.add_parser("send", help="send one command to devices, print each ack")
    sd.add_argument("name", nargs="?", help="command name (see `commands codes`)")
    sd.add_argument("--code", type=int, help="numeric command code instead of a name")
    sd.add_argument("--param", action="append", metavar="KEY=VALUE",
                    help="command parameter (integer or text); repeatable")
    sd.add_argument("--device", action="append", help="target device; repeatable")
    sd.add_argument("--group", help="every enabled device of this group")
    sd.add_argument("--site", help="every enabled device of this site")
    sd.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for acks")
    sd.add_argument("--host", help="MQTT broker host (default: mqtt.host of the settings, "
                                    "CLOUD_BRIDGE_MQTT_HOST)")
    sd.add_argument("--port", type=int, help="MQTT broker port (default: mqtt.port of the settings, "
                                             "CLOUD_BRIDGE_MQTT_PORT)")
    sd.add_argument("--username", help="MQTT user (password: CLOUD_BRIDGE_MQTT_PASSWORD)")
    sd.set_defaults(commands_fn=cmd_send)
    s.add_parser("codes", help="list the command names the firmware defines").set_defaults(
        commands_fn=cmd_codes)
    p.set_defaults(func=run)
    return p


def cmd_codes(reg, args, out, settings):
    codes, _, results = command_set()
    out.write(render_table(("command", "code"), sorted(codes.items(), key=lambda x: x[1])))
    out.write(render_table(("result", "code"), sorted(((n, c) for c, n in results.items()),
                                                       key=lambda x: x[1])))
    return 0


def cmd_send(reg, args, out, settings):
    codes, _, _ = command_set()
    if (args.code is None) == (args.name is None):
        raise ValueError("give a command name or --code N (one of them)")
    if args.code is not None:
        code = args.code
    elif args.name in codes:
        code = codes[args.name]
    else:
        raise ValueError("unknown command %r (known: %s)" % (args.name, ", ".join(sorted(codes))
                                                              or "none; use --code"))
    if not 0 <= code <= 255:
        raise ValueError("command code must be 0..255, got %d" % code)
    if not 0 < args.timeout <= 3600:
        raise ValueError("timeout must be 0..3600 s")
    params = typed_params(code, parse_params(args.param))
    m = settings.mqtt if settings is not None else None
    counters = CounterStore(reg.path)
    try:
        sender = CommandSender(
            reg, counters,
            host=args.host or (m.host if m else "127.0.0.1"),
            port=args.port or (m.port if m else 1883),
            username=args.username if args.username is not None else (m.username if m else ""),
            password=os.environ.get("CLOUD_BRIDGE_MQTT_PASSWORD", m.password if m else ""),
            topic_root=m.topic_root if m else "bms",
            tls=m.tls if m else False, ca_file=m.ca_file if m else "")
        outcomes = sender.send(_targets(reg, args), code, params, args.timeout)
    finally:
        counters.close()
    out.write(format_outcomes(outcomes))
    return 0 if all(o.status == "ok" for o in outcomes) else 1


def run(args, out=None, settings=None):
    out = out or sys.stdout
    path = args.registry or (settings.bridge.registry if settings is not None else None)
    if not path:
        out.write("error: no registry file (--registry or bridge.registry)\n")
        return 2
    reg = Registry(path)
    try:
        return args.commands_fn(reg, args, out, settings)
    except ValueError as e:
        out.write("error: %s\n" % e)
        return 2
    except OSError as e:
        out.write("error: MQTT: %s\n" % e)
        return 3
    finally:
        reg.close()


def register(sub):
    """Hook for cloud_bridge/__main__.py: `cloud-bridge commands ...`; settings from --config/environment."""
    add_parser(sub).set_defaults(func=_run_with_settings)


def _run_with_settings(args):
    from cloud_bridge import settings as settings_mod
    return run(args, settings=settings_mod.load(getattr(args, "config", None)))


def main(argv=None, out=None):
    ap = argparse.ArgumentParser(prog="cloud-bridge")
    add_parser(ap.add_subparsers(dest="cmd", required=True))
    args = ap.parse_args(["commands"] + list(sys.argv[1:] if argv is None else argv))
    return run(args, out)


if __name__ == "__main__":
    sys.exit(main())
