"""tools/follow.py against a real mosquitto with provisioned accounts: frames published by a device
show up decoded, a forged one shows as rejected, and the CLI prints a retained status and exits."""
import json
import os
import subprocess
import sys
import threading

from firmware.comms import frame
from firmware.sample import Sample
from tools import follow

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WAIT_S = 10.0


def _telemetry(dev, key, boot=3, seq=5):
    enc = frame.Encoder(dev, key, boot)
    s = Sample(4, 2)
    for i, mv in enumerate((3301, 3299, 3312, 3290)):
        s.cell_mv[i] = mv
    s.stack_mv, s.current_ma, s.soc_cpct, s.state, s.t_ms = 13202, -2500, 5012, 2, 1000
    s.temp_dc[0], s.temp_dc[1] = 251, 263
    enc.begin_telemetry(seq, 1000, 1, 0, 4, 2)
    assert enc.add_sample(s)
    return bytes(enc.finish())


def _status(dev, key, boot=3, seq=0):
    enc = frame.Encoder(dev, key, boot)
    return bytes(enc.status(seq, 0, 0, 100, "0.1.0", "sim4_nmc", 0x1234ABCD, 1, 4, 2))


def test_follower_decodes_device_frames_and_flags_forgeries(fleet):
    dev = fleet.prov.create("f-1")
    other = fleet.prov.create("f-2")
    bridge_pw = fleet.prov.ensure_bridge_user("bridge")
    fleet.start_broker()
    got = []
    three = threading.Event()

    def out(topic, d, err, payload):
        got.append((topic, d, err))
        if len(got) >= 3:
            three.set()
    f = follow.Follower("f-1", dev["key"], fleet.broker.host, fleet.broker.port, out, "bridge", bridge_pw)
    f.start(WAIT_S)
    try:
        board = fleet.connect("f-1", dev["mqtt_password"])
        assert board.accepted
        key = bytes.fromhex(dev["key"])
        board.c.publish("bms/f-1/up/status", _status("f-1", key), qos=1).wait_for_publish(WAIT_S)
        board.c.publish("bms/f-1/up/telemetry", _telemetry("f-1", key), qos=1).wait_for_publish(WAIT_S)
        # signed with another device's key: the tag binds key and device id, so it must not pass
        forged = _telemetry("f-1", bytes.fromhex(other["key"]), seq=6)
        board.c.publish("bms/f-1/up/telemetry", forged, qos=1).wait_for_publish(WAIT_S)
        assert three.wait(WAIT_S)
    finally:
        f.stop()
    (t0, st, e0), (t1, tel, e1), (t2, bad, e2) = got
    assert (t0, e0, st["board"], st["config_hash"]) == ("bms/f-1/up/status", None, "sim4_nmc", 0x1234ABCD)
    assert e1 is None and tel["samples"][0]["cell_mv"] == [3301, 3299, 3312, 3290]
    assert bad is None and e2.reason == "tag"
    line = follow.line_for("f-1", t1, tel)
    assert "b3#5" in line and "stack 13.202 V" in line and "I   -2.500 A" in line
    assert "cells 3290..3312 mV (d 22)" in line and "T 26.3 C" in line


def test_follower_with_a_device_account_sees_nothing_of_another_device(fleet):
    spy = fleet.prov.create("f-3")
    dev = fleet.prov.create("f-4")
    bridge_pw = fleet.prov.ensure_bridge_user("bridge")
    fleet.start_broker()
    # mosquitto 2.0 accepts the SUBSCRIBE of a wildcard filter and applies the ACL per message
    # (measured: the log shows the subscription, no 0x80), so the test is on what gets delivered.
    seen = {"spy": [], "bridge": []}
    two = threading.Event()

    def sink(name):
        def out(topic, d, err, payload):
            seen[name].append(topic)
            if len(seen["bridge"]) >= 2:
                two.set()
        return out
    f_spy = follow.Follower("f-4", dev["key"], fleet.broker.host, fleet.broker.port, sink("spy"),
                            "f-3", spy["mqtt_password"]).start(WAIT_S)
    f_ok = follow.Follower("f-4", dev["key"], fleet.broker.host, fleet.broker.port, sink("bridge"),
                           "bridge", bridge_pw).start(WAIT_S)
    try:
        board = fleet.connect("f-4", dev["mqtt_password"])
        board.c.publish("bms/f-4/up/telemetry", _telemetry("f-4", bytes.fromhex(dev["key"])),
                        qos=1).wait_for_publish(WAIT_S)
        board.c.publish("bms/f-4/up/telemetry", _telemetry("f-4", bytes.fromhex(dev["key"]), seq=6),
                        qos=1).wait_for_publish(WAIT_S)
        assert two.wait(WAIT_S)
        threading.Event().wait(0.5)     # time for a wrongly delivered copy to reach the spy too
    finally:
        f_spy.stop()
        f_ok.stop()
    assert seen["spy"] == [] and len(seen["bridge"]) == 2


def test_cli_prints_the_retained_status_then_exits(fleet):
    dev = fleet.prov.create("f-5")
    bridge_pw = fleet.prov.ensure_bridge_user("bridge")
    fleet.start_broker()
    board = fleet.connect("f-5", dev["mqtt_password"])
    key = bytes.fromhex(dev["key"])
    board.c.publish("bms/f-5/up/status", _status("f-5", key), qos=1, retain=True).wait_for_publish(WAIT_S)
    pwf = fleet.tmp / "bridge.pw"
    pwf.write_text(bridge_pw + "\n")
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "follow.py"), "f-5",
                        "--secrets", fleet.paths.secrets_file("f-5"), "--port", str(fleet.broker.port),
                        "--user", "bridge", "--password-file", str(pwf), "--count", "1", "--timeout", "20",
                        "--json"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout.strip().splitlines()[0])
    assert d["topic"] == "bms/f-5/up/status" and d["board"] == "sim4_nmc" and d["boot"] == 3
    h = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "follow.py"), "--help"],
                       capture_output=True, text=True, timeout=60)
    assert h.returncode == 0 and "usage:" in h.stdout


def test_follower_with_a_wrong_password_is_refused(fleet):
    fleet.prov.ensure_bridge_user("bridge")
    fleet.start_broker()
    f = follow.Follower("x", "00" * 32, fleet.broker.host, fleet.broker.port, lambda *a: None, "bridge", "wrong")
    try:
        f.start(WAIT_S)
        err = None
    except OSError as e:
        err = str(e)
    assert err is not None and err.startswith("broker refused")
