"""Signed commands through a real mosquitto: the test broker (`mosquitto_factory`, with per-device ACLs)
and the deploy stack's own configuration (cloud_bridge/deploy/mosquitto/{mosquitto.conf,acl}).

Boards are small paho clients logged in with their device id (as both ACLs expect): they verify each
command with the codec and the device key, refuse a counter they already accepted, and answer with an
ack frame. The operator side is `cloud-bridge commands send`.
"""

import io
import os
import pathlib
import re
import shutil
import socket
import subprocess
import threading
import time

import paho.mqtt.client as mqtt
import pytest

from cloud_bridge import cli_commands
from cloud_bridge.registry import Registry
from firmware.comms import command_codes as cc
from firmware.comms import frame
from tools.testservers.mosquitto import free_port

pytestmark = pytest.mark.servers

DEPLOY = pathlib.Path(cli_commands.__file__).resolve().parent / "deploy" / "mosquitto"
PASSWORD = "test-only-password"
KEYS = {"bms-0001": bytes([1] * 32), "bms-0002": bytes([2] * 32), "bms-0003": bytes([3] * 32),
        "bms-0004": bytes([4] * 32)}


class DeployBroker:
    """mosquitto with cloud_bridge/deploy/mosquitto/{mosquitto.conf,acl}; only paths and port changed."""

    def __init__(self, folder, users):
        self.folder = pathlib.Path(folder)
        self.port = free_port()
        passwd = self.folder / "passwd"
        passwd.touch()
        for user in users:
            subprocess.run(["mosquitto_passwd", "-b", str(passwd), user, PASSWORD], check=True,
                           capture_output=True, timeout=30)
        conf = (DEPLOY / "mosquitto.conf").read_text()
        conf = conf.replace("/mosquitto/config/passwd", str(passwd))
        conf = conf.replace("/mosquitto/config/acl", str(DEPLOY / "acl"))
        conf = conf.replace("/mosquitto/data/", str(self.folder) + "/")
        conf, n = re.subn(r"(?m)^listener 1883$", "listener %d 127.0.0.1" % self.port, conf)
        assert n == 1
        # Started as root (CI), mosquitto would switch to a `mosquitto` user that cannot read the files.
        conf += "\nuser %s\n" % ("root" if os.geteuid() == 0 else "nobody")
        (self.folder / "mosquitto.conf").write_text(conf)
        self.log = open(self.folder / "mosquitto.log", "wb")
        self.proc = subprocess.Popen(["mosquitto", "-c", str(self.folder / "mosquitto.conf")],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.05)
        self.stop()
        raise OSError("mosquitto did not start: %s" % (self.folder / "mosquitto.log").read_text())

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


USERS = ["operator", "bridge"] + sorted(KEYS)


@pytest.fixture
def broker(mosquitto_factory):
    """The shared test broker; the operator may write bms/+/down/# and read bms/+/up/#."""
    return mosquitto_factory(users={u: PASSWORD for u in USERS}, acl=True,
                             bridge_users=("bridge", "operator"))


@pytest.fixture
def deploy_broker(tmp_path):
    """mosquitto running the deploy stack's mosquitto.conf and ACL."""
    if shutil.which("mosquitto") is None:
        pytest.fail("mosquitto is not installed (make sysdeps)")
    b = DeployBroker(tmp_path, USERS)
    yield b
    b.stop()


def client(port, user, on_message=None):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="t-%s-%s" % (user, os.urandom(2).hex()),
                    protocol=mqtt.MQTTv5)
    c.username_pw_set(user, PASSWORD)
    if on_message:
        c.on_message = on_message
    connected = threading.Event()
    c.on_connect = lambda *a: connected.set()
    c.connect("127.0.0.1", port)
    c.loop_start()
    assert connected.wait(10)
    return c


class Board:
    """A board's command handler: verify, check the counter, answer an ack frame."""

    def __init__(self, port, device, result=0, message="done"):
        self.device = device
        self.key = KEYS[device]
        self.result = result
        self.message = message
        self.last_counter = 0
        self.accepted = []        # (counter, code, params)
        self.refused = []         # reasons
        self.enc = frame.Encoder(device, self.key, boot=1)
        self.seq = 0
        subscribed = threading.Event()
        self.c = client(port, device, self._on_message)
        self.c.on_subscribe = lambda *a: subscribed.set()
        self.c.subscribe("bms/%s/down/cmd" % device, qos=1)
        assert subscribed.wait(10)

    def _on_message(self, c, userdata, msg):
        try:
            cmd = frame.verify_command(msg.payload, self.device, self.key)
        except frame.FrameError as e:
            self.refused.append(e.reason)
            return
        if cmd["counter"] <= self.last_counter:
            self.refused.append("replay")
            return
        self.last_counter = cmd["counter"]
        self.accepted.append((cmd["counter"], cmd["code"], cmd["params"]))
        self.seq += 1
        ack = self.enc.ack(self.seq, 0, 100, 0, cmd["counter"], cmd["code"], self.result, self.message)
        c.publish("bms/%s/up/ack" % self.device, bytes(ack), qos=1)

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def make_registry(path):
    reg = Registry(path)
    for dev, key in KEYS.items():
        reg.add_device(dev, key, site="plant-a", group="ups" if dev != "bms-0001" else "forklifts")
    reg.update_device("bms-0004", enabled=0)
    reg.close()


def send(reg_path, port, *argv):
    out = io.StringIO()
    old = os.environ.get("CLOUD_BRIDGE_MQTT_PASSWORD")
    os.environ["CLOUD_BRIDGE_MQTT_PASSWORD"] = PASSWORD
    try:
        rc = cli_commands.main(["--registry", str(reg_path), "send", "--host", "127.0.0.1",
                                "--port", str(port), "--username", "operator"] + list(argv), out=out)
    finally:
        if old is None:
            del os.environ["CLOUD_BRIDGE_MQTT_PASSWORD"]
        else:
            os.environ["CLOUD_BRIDGE_MQTT_PASSWORD"] = old
    return rc, out.getvalue()


def rows(text):
    lines = text.splitlines()
    start = next(i for i, l in enumerate(lines) if set(l.replace(" ", "")) == {"-"}) + 1
    return {r[0]: r for r in (re.split(r"\s{2,}", l.strip()) for l in lines[start:])
            if r[0].startswith("bms-")}


@pytest.mark.parametrize("which", ["broker", "deploy_broker"])
def test_group_command_table_shows_ok_error_timeout_and_skipped(which, request, tmp_path):
    broker = request.getfixturevalue(which)
    reg_path = tmp_path / "reg.sqlite"
    make_registry(reg_path)
    b1 = Board(broker.port, "bms-0001", 0, "pong")
    b2 = Board(broker.port, "bms-0002", cc.RESULT_UNKNOWN_KEY, "unknown key")
    # bms-0003 is offline (nobody answers); bms-0004 is disabled in the registry
    try:
        rc, out = send(reg_path, broker.port, "set-config", "--param", "key=cell_ov_mv",
                       "--param", "value=3600", "--device", "bms-0001", "--group", "ups",
                       "--device", "bms-0004", "--timeout", "3")
    finally:
        b1.close()
        b2.close()
    r = rows(out)
    assert rc == 1, out                               # not every device said ok
    assert r["bms-0001"][1:4] == ["ok", "0 ok", "pong"], out
    assert r["bms-0002"][1:4] == ["error", "2 unknown_key", "unknown key"], out
    assert r["bms-0003"][1:] == ["timeout", "-", "-", "-"], out
    assert r["bms-0004"][1:3] == ["skipped", "-"], out
    # latency in ms for the two that answered, bounded by the timeout
    for dev in ("bms-0001", "bms-0002"):
        assert 0 <= int(r[dev][4]) <= 3000
    assert out.rstrip().endswith("1 of 4 ok")
    # the boards verified the signature and got exactly what was sent
    assert b1.refused == [] and len(b1.accepted) == 1
    assert b1.accepted[0][1:] == (cc.CMD_SET_CONFIG, {"key": "cell_ov_mv", "value": 3600})
    assert b2.accepted[0][1] == cc.CMD_SET_CONFIG


def test_counters_rise_so_a_board_accepts_every_new_command(broker, tmp_path):
    reg_path = tmp_path / "reg.sqlite"
    make_registry(reg_path)
    b1 = Board(broker.port, "bms-0001")
    try:
        for _ in range(3):
            rc, out = send(reg_path, broker.port, "ping", "--device", "bms-0001", "--timeout", "5")
            assert rc == 0, out
    finally:
        b1.close()
    counters = [c for c, _, _ in b1.accepted]
    assert len(counters) == 3 and counters == sorted(set(counters)) and b1.refused == []


def test_a_command_signed_for_another_device_is_refused_by_the_board(broker, tmp_path):
    """Device binding: bms-0001's command re-sent on bms-0002's topic fails verification there."""
    b2 = Board(broker.port, "bms-0002")
    op = client(broker.port, "operator")
    try:
        forged = frame.encode_command("bms-0001", KEYS["bms-0001"], 10 ** 9, 1, {})
        op.publish("bms/bms-0002/down/cmd", forged, qos=1).wait_for_publish(5)
        deadline = time.monotonic() + 5
        while not b2.refused and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        op.disconnect()
        op.loop_stop()
        b2.close()
    assert b2.refused == ["tag"] and b2.accepted == []


def test_acl_keeps_each_device_under_its_own_topics(deploy_broker):
    """The deploy ACL: a device cannot command another device or speak in its name."""
    broker = deploy_broker
    got = []
    spy = client(broker.port, "bridge", lambda c, u, m: got.append(m.topic))
    sub_done = threading.Event()
    spy.on_subscribe = lambda *a: sub_done.set()
    spy.subscribe("bms/+/up/#", qos=1)
    assert sub_done.wait(5)
    b2 = Board(broker.port, "bms-0002")
    intruder = client(broker.port, "bms-0001")
    try:
        intruder.publish("bms/bms-0002/down/cmd", frame.encode_command(
            "bms-0002", KEYS["bms-0001"], 5, 1, {}), qos=1).wait_for_publish(5)
        intruder.publish("bms/bms-0002/up/telemetry", b"x", qos=1).wait_for_publish(5)
        intruder.publish("bms/bms-0001/up/telemetry", b"mine", qos=1).wait_for_publish(5)
        deadline = time.monotonic() + 5
        while "bms/bms-0001/up/telemetry" not in got and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)     # room for a wrongly forwarded message to arrive too
    finally:
        intruder.disconnect()
        intruder.loop_stop()
        spy.disconnect()
        spy.loop_stop()
        b2.close()
    assert got == ["bms/bms-0001/up/telemetry"]
    assert b2.refused == [] and b2.accepted == []     # the command never reached bms-0002


def test_counter_store_rises_from_a_time_floor_and_survives_reopening(tmp_path):
    path = tmp_path / "reg.sqlite"
    Registry(path).close()
    s = cli_commands.CounterStore(path)
    t = cli_commands.COUNTER_EPOCH_S + 1000
    assert [s.next("a", now_s=t) for _ in range(3)] == [1000, 1001, 1002]
    assert s.next("b", now_s=t) == 1000              # per device
    s.close()
    s = cli_commands.CounterStore(path)
    assert s.next("a", now_s=t) == 1003              # persisted
    assert s.next("a", now_s=t + 5000) == 6000       # a lost file would still move on with time
    s.close()


def test_send_refuses_bad_arguments_before_touching_the_network(tmp_path):
    reg_path = tmp_path / "reg.sqlite"
    make_registry(reg_path)
    port = free_port()          # nothing listens there: any attempt to connect would show
    rc, out = send(reg_path, port, "--code", "300", "--device", "bms-0001")
    assert rc == 2 and "0..255" in out
    rc, out = send(reg_path, port, "--code", "1")
    assert rc == 2 and "no target device" in out
    rc, out = send(reg_path, port, "--code", "1", "--param", "novalue", "--device", "bms-0001")
    assert rc == 2 and "key=value" in out
    rc, out = send(reg_path, port, "no-such-command", "--device", "bms-0001")
    assert rc == 2 and "unknown command" in out
    # the firmware's PARAMS table is checked before sending
    rc, out = send(reg_path, port, "set-config", "--param", "key=cell_ov_mv", "--device", "bms-0001")
    assert rc == 2 and "missing parameter value" in out
    rc, out = send(reg_path, port, "fet", "--param", "chg=2", "--param", "dsg=1", "--device", "bms-0001")
    assert rc == 2 and "chg must be 0..1" in out
    rc, out = send(reg_path, port, "ping", "--param", "x=1", "--device", "bms-0001")
    assert rc == 2 and "unknown parameter(s) x" in out
    rc, out = send(reg_path, port, "balancing", "--param", "on=yes", "--device", "bms-0001")
    assert rc == 2 and "must be an integer" in out
    rc, out = send(reg_path, port, "ping", "--device", "bms-0001", "--timeout", "1")
    assert rc == 3 and "MQTT" in out                 # connection refused, reported, no traceback


def test_typed_params_follow_the_firmware_table():
    assert cli_commands.typed_params(cc.CMD_GET_CONFIG, {"key": "1234"}) == {"key": "1234"}   # text stays text
    assert cli_commands.typed_params(cc.CMD_FET, {"chg": "0", "dsg": "1"}) == {"chg": 0, "dsg": 1}
    assert cli_commands.typed_params(cc.CMD_FAULT_RESET, {}) == {}                            # optional
    assert cli_commands.typed_params(cc.CMD_FAULT_RESET, {"mask": "0x10"}) == {"mask": 16}
    assert cli_commands.typed_params(200, {"a": "5", "b": "x"}) == {"a": 5, "b": "x"}        # unknown code
    names, by_code, results = cli_commands.command_set()
    assert names["set-config"] == cc.CMD_SET_CONFIG and by_code[cc.CMD_PING] == "ping"
    assert results[cc.RESULT_REPLAY] == "replay"


def test_a_refused_login_is_reported_not_waited_for(deploy_broker, tmp_path, monkeypatch):
    broker = deploy_broker
    reg_path = tmp_path / "reg.sqlite"
    make_registry(reg_path)
    out = io.StringIO()
    monkeypatch.delenv("CLOUD_BRIDGE_MQTT_PASSWORD", raising=False)
    rc = cli_commands.main(["--registry", str(reg_path), "send", "--host", "127.0.0.1", "--port",
                            str(broker.port), "--username", "operator", "ping",
                            "--device", "bms-0001"], out=out)
    assert rc == 3 and "refused the login" in out.getvalue(), out.getvalue()
