"""tools/provision.py: identities on disk, in the registry, and accepted or refused by a real mosquitto."""
import json
import os
import stat
import subprocess
import sys
import time

import pytest

from cloud_bridge.registry import Registry
from tools import provision

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WAIT_S = 5.0


def _wait_refused(fleet, user, password, tries=40):
    """After SIGHUP mosquitto rereads its files asynchronously: retry (bounded) until refused."""
    for _ in range(tries):
        c = fleet.connect(user, password)
        if not c.accepted:
            return c
        c.close()
        time.sleep(0.05)
    return c


def test_create_writes_secrets_passwd_acl_and_registry(fleet):
    doc = fleet.prov.create("bms-0001", site="plant-a", group="forklifts", board="sim16_lfp")
    p = fleet.paths
    with open(p.secrets_file("bms-0001")) as f:
        on_disk = json.load(f)
    assert on_disk == doc
    assert stat.S_IMODE(os.stat(p.secrets_file("bms-0001")).st_mode) == 0o600
    key = bytes.fromhex(doc["key"])
    assert len(key) == 32 and doc["mqtt_user"] == "bms-0001" and len(doc["mqtt_password"]) >= 32
    passwd = open(p.passwd).read()
    assert passwd.startswith("bms-0001:$") and doc["mqtt_password"] not in passwd   # hashed, not plain
    acl = provision.read_acl(p.acl)
    assert acl["device:bms-0001"] == ("user bms-0001\ntopic write bms/bms-0001/up/#\n"
                                      "topic read bms/bms-0001/down/#\n")
    reg = Registry(p.registry)
    try:
        k, tags = reg.key("bms-0001")
        assert k == key and tags == {"device": "bms-0001", "site": "plant-a", "group": "forklifts",
                                     "board": "sim16_lfp"}
    finally:
        reg.close()
    # two identities never share a key or a password
    doc2 = fleet.prov.create("bms-0002")
    assert doc2["key"] != doc["key"] and doc2["mqtt_password"] != doc["mqtt_password"]
    with pytest.raises(ValueError):
        fleet.prov.create("bms-0001")
    with pytest.raises(ValueError):
        fleet.prov.create("bad id/with slash")


def test_broker_accepts_the_device_and_confines_it_to_its_own_topics(fleet):
    d1 = fleet.prov.create("dev-a")
    d2 = fleet.prov.create("dev-b")
    bridge_pw = fleet.prov.ensure_bridge_user("bridge")
    op_pw = fleet.prov.ensure_operator_user("operator")
    fleet.start_broker()
    bridge = fleet.connect("bridge", bridge_pw)
    assert bridge.accepted
    bridge.c.subscribe("bms/+/up/#", qos=1)
    assert bridge.subscribed.wait(WAIT_S)
    a = fleet.connect("dev-a", d1["mqtt_password"])
    assert a.accepted
    assert not fleet.connect("dev-a", d2["mqtt_password"]).accepted      # someone else's password
    assert not fleet.connect("nobody", "x").accepted                      # unknown user refused
    assert not fleet.connect(None, None).accepted                         # anonymous refused
    # dev-a may not publish as dev-b (silently dropped by the ACL), then publishes as itself
    a.c.publish("bms/dev-b/up/telemetry", b"forged", qos=1).wait_for_publish(WAIT_S)
    a.c.publish("bms/dev-a/up/telemetry", b"mine", qos=1).wait_for_publish(WAIT_S)
    assert bridge.got.wait(WAIT_S)
    time.sleep(0.3)   # give a wrongly forwarded message time to arrive too
    assert bridge.messages == [("bms/dev-a/up/telemetry", b"mine")]
    # the device receives its own downlink, not another device's; commands come from the operator
    # account, the bridge writes only receipts (least privilege, as cloud_bridge/deploy/mosquitto/acl)
    op = fleet.connect("operator", op_pw)
    assert op.accepted
    a.c.subscribe("bms/dev-a/down/#", qos=1)
    assert a.subscribed.wait(WAIT_S)
    op.c.publish("bms/dev-b/down/cmd", b"not yours", qos=1).wait_for_publish(WAIT_S)
    bridge.c.publish("bms/dev-a/down/cmd", b"bridge may not command", qos=1).wait_for_publish(WAIT_S)
    op.c.publish("bms/dev-a/down/receipt", b"operator may not sign", qos=1).wait_for_publish(WAIT_S)
    op.c.publish("bms/dev-a/down/cmd", b"cmd", qos=1).wait_for_publish(WAIT_S)
    bridge.c.publish("bms/dev-a/down/receipt", b"rcpt", qos=1).wait_for_publish(WAIT_S)
    _wait_count(a.messages, 2)
    time.sleep(0.3)      # give a wrongly forwarded message time to arrive too
    assert sorted(a.messages) == [("bms/dev-a/down/cmd", b"cmd"), ("bms/dev-a/down/receipt", b"rcpt")]


def _wait_count(messages, n, timeout_s=WAIT_S):
    deadline = time.time() + timeout_s
    while len(messages) < n and time.time() < deadline:
        time.sleep(0.05)


def test_rotate_replaces_password_and_key_old_ones_refused(fleet):
    old = fleet.prov.create("dev-r")
    fleet.start_broker()
    assert fleet.connect("dev-r", old["mqtt_password"]).accepted
    new = fleet.prov.rotate("dev-r")
    fleet.reload()
    assert not _wait_refused(fleet, "dev-r", old["mqtt_password"]).accepted
    assert fleet.connect("dev-r", new["mqtt_password"]).accepted
    assert new["key_version"] == 2 and new["key"] != old["key"]
    reg = Registry(fleet.paths.registry)
    try:
        assert reg.key("dev-r")[0] == bytes.fromhex(new["key"])
    finally:
        reg.close()
    assert json.load(open(fleet.paths.secrets_file("dev-r"))) == new


def test_rotate_keeps_the_broker_address_and_every_other_field(tmp_path):
    """Read from the secrets file itself, before and after: only the credentials change."""
    paths = provision.Paths(str(tmp_path / "s"))
    provision.Provisioner(paths, mqtt_host="mqtt.example.org", mqtt_port=8883).create(
        "dev-k", wifi_ssid="site-ap", wifi_key="wifi-pass")
    f = paths.secrets_file("dev-k")
    doc = json.load(open(f))
    doc.update(mqtt_tls=True, mqtt_ca="/ca.pem", note="added by hand")       # fields an operator set
    provision._write_atomic(f, json.dumps(doc))
    before = json.load(open(f))
    provision.Provisioner(paths).rotate("dev-k")                     # no broker options given
    after = json.load(open(f))
    changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
    assert changed == {"key", "key_version", "mqtt_password"}
    assert after["mqtt_host"] == "mqtt.example.org" and after["mqtt_port"] == 8883
    # asked for explicitly, the address does change
    provision.Provisioner(paths, mqtt_host="10.0.0.9").rotate("dev-k")
    again = json.load(open(f))
    assert again["mqtt_host"] == "10.0.0.9" and again["mqtt_port"] == 8883 and again["note"] == "added by hand"


def test_provisioning_into_the_deploy_acl_keeps_its_operator_and_pattern_rules(fleet):
    """A copy of cloud_bridge/deploy/mosquitto/acl: create/rotate/revoke/bridge-user/operator keep every
    hand-written line, and a real mosquitto still applies them (operator commands, pattern rules)."""
    original = open(os.path.join(ROOT, "cloud_bridge", "deploy", "mosquitto", "acl")).read()
    acl = fleet.tmp / "deploy-acl"
    acl.write_text(original)
    fleet.paths = provision.Paths(str(fleet.tmp / "secrets"), acl=str(acl))
    fleet.prov = provision.Provisioner(fleet.paths)
    dev = fleet.prov.create("dev-d")
    gone = fleet.prov.create("dev-x")
    fleet.prov.revoke("dev-x")
    dev = fleet.prov.rotate("dev-d")
    bridge_pw = fleet.prov.ensure_bridge_user("bridge")
    op_pw = fleet.prov.ensure_operator_user("operator")      # the deploy ACL's operator, with a password
    # an account the ACL covers only through its `pattern` lines (added to the password file by hand)
    provision.set_password(fleet.paths.passwd, "hand-01", "hand-pass")
    text = acl.read_text()
    assert text.startswith(original)                          # hand-written part verbatim, in place
    assert set(provision.read_acl(str(acl))) == {"device:dev-d", "bridge:bridge", "operator:operator"}
    assert "dev-x" not in text and gone["device_id"] == "dev-x"
    fleet.start_broker()
    bridge = fleet.connect("bridge", bridge_pw)
    op = fleet.connect("operator", op_pw)
    d = fleet.connect("dev-d", dev["mqtt_password"])
    hand = fleet.connect("hand-01", "hand-pass")
    assert bridge.accepted and op.accepted and d.accepted and hand.accepted
    for c, topic in ((bridge, "bms/+/up/#"), (op, "bms/+/up/ack"), (d, "bms/dev-d/down/#"),
                     (hand, "bms/hand-01/down/#")):
        c.c.subscribe(topic, qos=1)
        assert c.subscribed.wait(WAIT_S)
    # pattern rules: hand-01 publishes under its own id (and not as someone else), reads its commands
    hand.c.publish("bms/dev-d/up/telemetry", b"forged", qos=1).wait_for_publish(WAIT_S)
    hand.c.publish("bms/hand-01/up/telemetry", b"hand", qos=1).wait_for_publish(WAIT_S)
    hand.c.publish("bms/hand-01/up/ack", b"ack", qos=1).wait_for_publish(WAIT_S)
    d.c.publish("bms/dev-d/up/telemetry", b"dev", qos=1).wait_for_publish(WAIT_S)
    # the operator's hand-written rules: commands to any device
    op.c.publish("bms/hand-01/down/cmd", b"cmd-h", qos=1).wait_for_publish(WAIT_S)
    op.c.publish("bms/dev-d/down/cmd", b"cmd-d", qos=1).wait_for_publish(WAIT_S)
    _wait_count(bridge.messages, 3)
    _wait_count(hand.messages, 1)
    _wait_count(d.messages, 1)
    _wait_count(op.messages, 1)
    time.sleep(0.3)
    assert sorted(bridge.messages) == [("bms/dev-d/up/telemetry", b"dev"), ("bms/hand-01/up/ack", b"ack"),
                                       ("bms/hand-01/up/telemetry", b"hand")]
    assert hand.messages == [("bms/hand-01/down/cmd", b"cmd-h")]
    assert d.messages == [("bms/dev-d/down/cmd", b"cmd-d")]
    assert op.messages == [("bms/hand-01/up/ack", b"ack")]


def test_revoke_refuses_the_device_and_disables_it(fleet):
    keep = fleet.prov.create("dev-keep")
    gone = fleet.prov.create("dev-gone")
    fleet.start_broker()
    assert fleet.connect("dev-gone", gone["mqtt_password"]).accepted
    fleet.prov.revoke("dev-gone")
    fleet.reload()
    assert not _wait_refused(fleet, "dev-gone", gone["mqtt_password"]).accepted
    assert fleet.connect("dev-keep", keep["mqtt_password"]).accepted
    assert "dev-gone" not in provision.read_passwd(fleet.paths.passwd)
    assert "device:dev-gone" not in provision.read_acl(fleet.paths.acl)
    assert not os.path.exists(fleet.paths.secrets_file("dev-gone"))
    reg = Registry(fleet.paths.registry)
    try:
        assert reg.key("dev-gone") is None              # the bridge rejects its frames
        assert reg.get("dev-gone")["enabled"] == 0
    finally:
        reg.close()
    with pytest.raises(ValueError):
        fleet.prov.rotate("dev-gone")
    again = fleet.prov.recreate("dev-gone")              # create --force after a revoke
    assert again["key"] != gone["key"]


def test_cli_create_rotate_revoke_and_help(tmp_path):
    d = str(tmp_path / "s")

    def run(*args):
        return subprocess.run([sys.executable, os.path.join(ROOT, "tools", "provision.py")] + list(args),
                              capture_output=True, text=True, timeout=60)
    for sub in ([], ["create"], ["rotate"], ["revoke"], ["bridge-user"], ["operator"]):
        r = run(*(sub + ["--help"]))
        assert r.returncode == 0 and "usage:" in r.stdout
    assert run("create", "cli-1", "--dir", d, "--site", "s1", "--mqtt-host", "broker.lan",
               "--mqtt-port", "8883").returncode == 0
    first = json.load(open(os.path.join(d, "cli-1.json")))
    r = run("create", "cli-1", "--dir", d)
    assert r.returncode == 2 and "already exists" in r.stderr
    assert run("rotate", "cli-1", "--dir", d).returncode == 0
    rotated = json.load(open(os.path.join(d, "cli-1.json")))
    assert rotated["key"] != first["key"]
    assert (rotated["mqtt_host"], rotated["mqtt_port"]) == ("broker.lan", 8883)   # kept, not reset
    r = run("operator", "alice", "--dir", d, "--password-out", os.path.join(d, "alice.pw"))
    assert r.returncode == 0 and "alice:" in open(os.path.join(d, "mosquitto", "passwd")).read()
    assert "topic write bms/+/down/cmd" in provision.read_acl(os.path.join(d, "mosquitto", "acl"))["operator:alice"]
    assert run("revoke", "cli-1", "--dir", d).returncode == 0
    assert not os.path.exists(os.path.join(d, "cli-1.json"))
    assert "cli-1" not in open(os.path.join(d, "mosquitto", "passwd")).read()


def test_secrets_file_is_what_the_board_and_the_flasher_read(fleet):
    """The file provision writes is accepted by tools/flash.py's check and by the firmware's comms."""
    import pathlib

    from firmware.comms.service import Comms
    from tools import flash
    doc = fleet.prov.create("dev-f", wifi_ssid="site-ap", wifi_key="wifi-pass")
    path = fleet.paths.secrets_file("dev-f")
    flash.load_secrets(pathlib.Path(path), "dev-f")          # raises FlashError on any problem
    from firmware import board as _board
    from firmware.config import defaults, validate
    b = _board.load(os.path.join(ROOT, "boards", "sim4_nmc.json"))
    cfg = validate.check(defaults.build(b["chemistry"], _board.overrides(b)))
    b["comms"] = {"spill_dir": str(fleet.tmp / "o"), "state_dir": str(fleet.tmp / "c")}
    comms = Comms.from_board(b, cfg, secrets_path=path)
    assert comms.device_id == "dev-f" and comms.link.user == "dev-f"
    assert comms.link.password == doc["mqtt_password"] and comms.link.port == doc["mqtt_port"]


def test_acl_blocks_added_then_removed_leave_the_file_byte_identical(tmp_path):
    acl = tmp_path / "acl"
    original = ("# hand-written\ntopic read $SYS/#\n\nuser ops\ntopic write bms/+/down/cmd\n\n"
                "pattern write bms/%u/up/#\n")
    acl.write_text(original)
    for _ in range(3):
        provision.update_acl(str(acl), "device:a", provision.device_acl("a"))
        provision.update_acl(str(acl), "device:b", provision.device_acl("b"))
        provision.update_acl(str(acl), "device:a", provision.device_acl("a"))      # replaced in place
        text = acl.read_text()
        assert text.startswith(original) and text.count("user a\n") == 1
        assert text.index("# begin device:a") < text.index("# begin device:b")
        provision.update_acl(str(acl), "device:a", None)
        provision.update_acl(str(acl), "device:b", None)
        assert acl.read_text() == original
