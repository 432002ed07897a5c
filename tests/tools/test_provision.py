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
    # the device receives its own downlink, not another device's
    a.c.subscribe("bms/dev-a/down/#", qos=1)
    assert a.subscribed.wait(WAIT_S)
    bridge.c.publish("bms/dev-b/down/cmd", b"not yours", qos=1).wait_for_publish(WAIT_S)
    bridge.c.publish("bms/dev-a/down/cmd", b"cmd", qos=1).wait_for_publish(WAIT_S)
    assert a.got.wait(WAIT_S)
    time.sleep(0.3)
    assert a.messages == [("bms/dev-a/down/cmd", b"cmd")]


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
    for sub in ([], ["create"], ["rotate"], ["revoke"], ["bridge-user"]):
        r = run(*(sub + ["--help"]))
        assert r.returncode == 0 and "usage:" in r.stdout
    assert run("create", "cli-1", "--dir", d, "--site", "s1").returncode == 0
    first = json.load(open(os.path.join(d, "cli-1.json")))
    r = run("create", "cli-1", "--dir", d)
    assert r.returncode == 2 and "already exists" in r.stderr
    assert run("rotate", "cli-1", "--dir", d).returncode == 0
    assert json.load(open(os.path.join(d, "cli-1.json")))["key"] != first["key"]
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
