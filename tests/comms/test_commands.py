"""Downlink commands: signed, fresh commands run and are acknowledged; every kind of bad command is
answered with its error code and changes nothing (no handler call, no config change, no counter move)."""
import pytest

from firmware.comms import command_codes as cc
from firmware.comms import frame
from firmware.comms.bootcount import IntFile
from firmware.comms.commands import Commands, get_config, set_config
from firmware.comms.timesync import TimeSync
from firmware.config import defaults, store

DEV = "bms-0001"
KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))


class Pack:
    """What the app's hook drives: a config with atomic persistence and recorded pack actions."""

    def __init__(self, path):
        self.cfg = defaults.build("lfp", {"cell_count": 4, "temp_count": 1})
        self.path = path
        self.calls = []

    def hook(self, code, params):
        self.calls.append((code, dict(params)))
        if code == cc.CMD_SET_CONFIG:
            return set_config(self.cfg, params["key"], params["value"], self.path)
        if code == cc.CMD_GET_CONFIG:
            return get_config(self.cfg, params["key"])
        if code == cc.CMD_FET and params["chg"] and self.cfg.get("_faulted"):
            return cc.RESULT_REFUSED, "fault latched"
        return cc.RESULT_OK, "done"


@pytest.fixture
def rig(tmp_path):
    pack = Pack(str(tmp_path / "config.json"))
    hwm = IntFile(str(tmp_path / "state" / "cmd_hwm"))
    ts = TimeSync(ntp=lambda: 800000000)
    cmds = Commands(DEV, KEY, hwm, handler=pack.hook, timesync=ts)
    return cmds, pack, hwm, ts


def cmd(counter, code, params=None, key=KEY, dev=DEV):
    return frame.encode_command(dev, key, counter, code, params or {})


def test_ping_is_answered_and_counter_persisted(rig):
    cmds, pack, hwm, _ = rig
    assert cmds.handle(cmd(10, cc.CMD_PING)) == (10, cc.CMD_PING, cc.RESULT_OK, "pong")
    assert hwm.read() == 10
    # The high-water mark survives a reboot: a new Commands refuses the same counter.
    again = Commands(DEV, KEY, IntFile(hwm.path))
    assert again.handle(cmd(10, cc.CMD_PING))[2] == cc.RESULT_REPLAY


def test_set_config_validated_persisted_applied(rig):
    cmds, pack, hwm, _ = rig
    r = cmds.handle(cmd(5, cc.CMD_SET_CONFIG, {"key": "cell_ov_mv", "value": 3600}))
    assert r == (5, cc.CMD_SET_CONFIG, cc.RESULT_OK, "cell_ov_mv=3600")
    assert pack.cfg["cell_ov_mv"] == 3600
    cfg, status = store.load(pack.path, "lfp", {"cell_count": 4, "temp_count": 1})
    assert status == "ok" and cfg["cell_ov_mv"] == 3600
    assert cmds.handle(cmd(6, cc.CMD_GET_CONFIG, {"key": "cell_ov_mv"}))[2:] == (cc.RESULT_OK, "cell_ov_mv=3600")


def test_set_config_out_of_range_changes_nothing(rig):
    cmds, pack, hwm, _ = rig
    before = dict(pack.cfg)
    r = cmds.handle(cmd(5, cc.CMD_SET_CONFIG, {"key": "cell_ov_mv", "value": 9000}))
    assert r[2] == cc.RESULT_BAD_PARAM and "cell_ov_mv" in r[3]
    assert pack.cfg == before
    with pytest.raises(OSError):
        open(pack.path)                               # nothing persisted


def test_set_config_unknown_key(rig):
    cmds, pack, _, _ = rig
    before = dict(pack.cfg)
    r = cmds.handle(cmd(5, cc.CMD_SET_CONFIG, {"key": "no_such_key", "value": 1}))
    assert r[2] == cc.RESULT_UNKNOWN_KEY and pack.cfg == before


def test_replayed_command_is_refused_and_runs_once(rig):
    cmds, pack, hwm, _ = rig
    c = cmd(7, cc.CMD_BALANCING, {"on": 1})
    assert cmds.handle(c)[2] == cc.RESULT_OK
    r = cmds.handle(c)
    assert r[:3] == (7, cc.CMD_BALANCING, cc.RESULT_REPLAY)
    assert cmds.handle(cmd(6, cc.CMD_BALANCING, {"on": 0}))[2] == cc.RESULT_REPLAY   # older counter
    assert pack.calls == [(cc.CMD_BALANCING, {"on": 1})] and hwm.read() == 7


@pytest.mark.parametrize("name, payload, result", [
    ("unsigned (zero tag)", cmd(9, cc.CMD_FET, {"chg": 1, "dsg": 1})[:-12] + bytes(12), cc.RESULT_BAD_TAG),
    ("other device's key", cmd(9, cc.CMD_FET, {"chg": 1, "dsg": 1}, key=OTHER_KEY), cc.RESULT_BAD_TAG),
    ("for another device", cmd(9, cc.CMD_FET, {"chg": 1, "dsg": 1}, dev="bms-0002"), cc.RESULT_BAD_TAG),
    ("truncated", cmd(9, cc.CMD_FET, {"chg": 1, "dsg": 1})[:15], cc.RESULT_MALFORMED),
    ("cut body, tag kept", cmd(9, cc.CMD_FET, {"chg": 1, "dsg": 1})[:-14] + cmd(9, cc.CMD_FET, {"chg": 1, "dsg": 1})[-12:], cc.RESULT_BAD_TAG),
    ("garbage", b"\x07hello", cc.RESULT_MALFORMED),
    ("uplink frame", frame.Encoder(DEV, KEY, 1).ack(0, 0, 0, 0, 9, 5, 0, "x").tobytes(), cc.RESULT_MALFORMED),
    ("empty", b"", cc.RESULT_MALFORMED),
])
def test_bad_frames_are_rejected_with_their_code(rig, name, payload, result):
    cmds, pack, hwm, _ = rig
    before = dict(pack.cfg)
    r = cmds.handle(payload)
    assert r is not None and r[2] == result, (name, r)
    assert pack.calls == [] and pack.cfg == before and hwm.read() == 0 and cmds.last_counter == 0


def test_signed_but_malformed_body(rig):
    cmds, pack, hwm, _ = rig
    body = bytearray(cmd(9, cc.CMD_PING)[:-12])
    body[2] = 1                                                   # reserved flag bit
    from firmware.comms import auth
    signed = bytes(body) + auth.Authenticator(KEY).tag(auth.device_id_bytes(DEV), bytes(body))
    r = cmds.handle(signed)
    assert r[2] == cc.RESULT_MALFORMED and hwm.read() == 0


@pytest.mark.parametrize("code, params, result", [
    (200, {}, cc.RESULT_UNKNOWN_COMMAND),
    (cc.CMD_FET, {"chg": 1}, cc.RESULT_BAD_PARAM),                      # missing dsg
    (cc.CMD_FET, {"chg": 2, "dsg": 0}, cc.RESULT_BAD_PARAM),            # out of range
    (cc.CMD_FET, {"chg": "on", "dsg": 0}, cc.RESULT_BAD_PARAM),         # wrong type
    (cc.CMD_BALANCING, {"on": 1, "extra": 5}, cc.RESULT_BAD_PARAM),     # unknown parameter
    (cc.CMD_SET_CONFIG, {"key": "cell_ov_mv"}, cc.RESULT_BAD_PARAM),    # missing value
])
def test_bad_parameters_change_nothing(rig, code, params, result):
    cmds, pack, hwm, _ = rig
    before = dict(pack.cfg)
    r = cmds.handle(cmd(11, code, params))
    assert r[:3] == (11, code, result)
    assert pack.calls == [] and pack.cfg == before
    assert hwm.read() == 11          # the counter is used up: the same frame cannot be replayed later


def test_refusal_by_protection_is_reported(rig):
    cmds, pack, _, _ = rig
    pack.cfg["_faulted"] = 1
    assert cmds.handle(cmd(3, cc.CMD_FET, {"chg": 1, "dsg": 1}))[2:] == (cc.RESULT_REFUSED, "fault latched")


def test_no_handler_means_unsupported(tmp_path):
    cmds = Commands(DEV, KEY, IntFile(str(tmp_path / "h")))
    assert cmds.handle(cmd(1, cc.CMD_FAULT_RESET))[2] == cc.RESULT_UNSUPPORTED
    assert cmds.handle(cmd(2, cc.CMD_PING))[2] == cc.RESULT_OK


def test_time_sync_sets_wall_clock(rig):
    cmds, _, _, ts = rig
    assert ts.wall_s == -1
    assert cmds.handle(cmd(1, cc.CMD_TIME_SYNC, {"wall_s": 700000000}))[2] == cc.RESULT_OK
    ts.update()
    assert ts.synced and 700000000 <= ts.wall_s <= 700000001


def test_reboot_is_flagged_not_run_inline(rig):
    cmds, _, _, _ = rig
    assert cmds.handle(cmd(1, cc.CMD_REBOOT))[2:] == (cc.RESULT_OK, "rebooting")
    assert cmds.reboot_requested


def test_error_acks_for_junk_are_rate_limited(rig):
    cmds, _, _, _ = rig
    answers = [cmds.handle(b"\x01\x05junkjunkjunkjunkjunkjunk") for _ in range(20)]
    assert sum(1 for a in answers if a is not None) == cmds.error_acks_per_min
    assert cmds.suppressed == 20 - cmds.error_acks_per_min


def test_codes_are_one_definition_shared_with_the_cli():
    from cloud_bridge.cli_commands import command_set
    codes, names, results = command_set()
    assert codes["set-config"] == cc.CMD_SET_CONFIG == 7 and codes["ping"] == cc.CMD_PING
    assert results[cc.RESULT_UNKNOWN_KEY] == "unknown_key" and results[0] == "ok"
    assert set(codes.values()) == set(cc.PARAMS)
