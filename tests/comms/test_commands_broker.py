"""Commands through a real mosquitto with per-device ACLs: the operator publishes a signed command,
the board answers with an ack frame on its ack topic; a command sent while the board was away is
delivered when it returns (persistent session); forged and replayed ones are answered with errors."""
import threading
import time

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from firmware.comms import command_codes as cc
from firmware.comms import frame
from firmware.comms.commands import get_config, set_config
from firmware.config import defaults
from tests.comms.comms_helpers import DEV, KEY, PW, Subscriber, broker_users, make_comms, make_link, wifi_instant


class Operator:
    def __init__(self, broker):
        self.c = paho.Client(CallbackAPIVersion.VERSION2, client_id="op", protocol=paho.MQTTv311)
        self.c.username_pw_set("operator", PW["operator"])
        ok = threading.Event()
        self.c.on_connect = lambda *a: ok.set()
        self.c.connect(broker.host, broker.port, 30)
        self.c.loop_start()
        assert ok.wait(10)

    def send(self, payload, dev=DEV):
        self.c.publish("bms/%s/down/cmd" % dev, payload, qos=1).wait_for_publish(5)

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def pump(comms, sim_clock, n=8):
    for _ in range(n):
        comms.poll(150)
        sim_clock.advance_ms(250)
        time.sleep(0.01)           # real time for the broker to route the operator's message


def acks(sub):
    """Acks once each: a frame published again after a lost PUBACK has the same (boot, seq)."""
    seen, out = set(), []
    for d in sub.of_kind(frame.KIND_ACK):
        if (d["boot"], d["seq"]) not in seen:
            seen.add((d["boot"], d["seq"]))
            out.append((d["counter"], d["code"], d["result"], d["message"]))
    return out


def board_with_config(tmp_path, mosquitto_factory):
    """A board (comms over a real mosquitto with ACLs), the operator, the ack subscriber, and the
    config its set-config commands change (persisted under tmp_path)."""
    wifi_instant()
    broker = mosquitto_factory(users=broker_users(), acl=True, bridge_users=("bridge", "operator"))
    sub = Subscriber(broker)
    op = Operator(broker)
    comms = make_comms(tmp_path, make_link(broker))
    cfg = defaults.build("lfp", {"cell_count": 4, "temp_count": 1})
    return broker, sub, op, comms, cfg, str(tmp_path / "config.json")


def test_commands_round_trip_and_rejections(tmp_path, sim_clock, mosquitto_factory):
    broker, sub, op, comms, cfg, path = board_with_config(tmp_path, mosquitto_factory)

    def hook(code, params):
        if code == cc.CMD_SET_CONFIG:
            return set_config(cfg, params["key"], params["value"], path)
        if code == cc.CMD_GET_CONFIG:
            return get_config(cfg, params["key"])
        return cc.RESULT_UNSUPPORTED, "not in this test"

    comms.on_command = hook
    pump(comms, sim_clock, 3)
    assert comms.link.up
    op.send(frame.encode_command(DEV, KEY, 100, cc.CMD_PING, {}))
    op.send(frame.encode_command(DEV, KEY, 101, cc.CMD_SET_CONFIG, {"key": "cell_ov_mv", "value": 3600}))
    op.send(frame.encode_command(DEV, KEY, 101, cc.CMD_SET_CONFIG, {"key": "cell_ov_mv", "value": 3700}))
    op.send(frame.encode_command(DEV, bytes(32), 102, cc.CMD_SET_CONFIG, {"key": "cell_ov_mv", "value": 3700}))
    for _ in range(40):
        pump(comms, sim_clock, 1)
        if len(acks(sub)) >= 4:
            break
    assert sub.wait_for(lambda x: len(acks(x)) >= 4), acks(sub)
    assert acks(sub) == [
        (100, cc.CMD_PING, cc.RESULT_OK, "pong"),
        (101, cc.CMD_SET_CONFIG, cc.RESULT_OK, "cell_ov_mv=3600"),
        (101, cc.CMD_SET_CONFIG, cc.RESULT_REPLAY, "replay: counter 101 <= 101"),
        (102, cc.CMD_SET_CONFIG, cc.RESULT_BAD_TAG, "bad tag"),
    ]
    assert cfg["cell_ov_mv"] == 3600
    # The board is away (radio gone) when the next command is sent: the broker keeps it (persistent
    # session, QoS 1) and the board answers when it is back.
    import network
    network.SIM.set_ap(False)
    pump(comms, sim_clock, 4)
    assert not comms.link.up
    op.send(frame.encode_command(DEV, KEY, 103, cc.CMD_GET_CONFIG, {"key": "cell_ov_mv"}))
    network.SIM.set_ap(True)
    for _ in range(200):
        pump(comms, sim_clock, 1)
        if len(acks(sub)) >= 5:
            break
    assert sub.wait_for(lambda x: len(acks(x)) >= 5)
    assert acks(sub)[4] == (103, cc.CMD_GET_CONFIG, cc.RESULT_OK, "cell_ov_mv=3600")
    op.close()
    sub.close()


def test_every_kind_of_bad_command_through_the_broker_is_answered_and_changes_nothing(
        tmp_path, sim_clock, mosquitto_factory):
    """Unknown, malformed, unsigned, replayed, wrong-key and bad-value commands sent by the operator
    through mosquitto: each gets an error ack, the config stays as it was, and only the signed ones
    with a fresh counter (unknown code, bad value: documented) move the replay counter."""
    broker, sub, op, comms, cfg, path = board_with_config(tmp_path, mosquitto_factory)
    calls = []

    def hook(code, params):
        calls.append(code)
        if code == cc.CMD_SET_CONFIG:
            return set_config(cfg, params["key"], params["value"], path)
        return cc.RESULT_UNSUPPORTED, "not in this test"

    comms.on_command = hook
    pump(comms, sim_clock, 3)
    assert comms.link.up
    op.send(frame.encode_command(DEV, KEY, 100, cc.CMD_SET_CONFIG, {"key": "cell_ov_mv", "value": 3600}))
    good = frame.encode_command(DEV, KEY, 100, cc.CMD_SET_CONFIG, {"key": "cell_ov_mv", "value": 3600})
    bad = [
        ("unknown", frame.encode_command(DEV, KEY, 101, 200, {}), cc.RESULT_UNKNOWN_COMMAND),
        ("malformed", b"\x07hello", cc.RESULT_MALFORMED),
        ("unsigned", frame.encode_command(DEV, KEY, 102, cc.CMD_SET_CONFIG,
                                          {"key": "cell_ov_mv", "value": 3300})[:-12] + bytes(12),
         cc.RESULT_BAD_TAG),
        ("replayed", good, cc.RESULT_REPLAY),
        ("wrong key", frame.encode_command(DEV, bytes(32), 103, cc.CMD_SET_CONFIG,
                                           {"key": "cell_ov_mv", "value": 3300}), cc.RESULT_BAD_TAG),
        ("bad value", frame.encode_command(DEV, KEY, 104, cc.CMD_SET_CONFIG,
                                           {"key": "cell_ov_mv", "value": 99999}), cc.RESULT_BAD_PARAM),
    ]
    for _ in range(40):
        pump(comms, sim_clock, 1)
        if acks(sub):
            break
    assert sub.wait_for(lambda x: len(acks(x)) >= 1) and acks(sub)[0][2] == cc.RESULT_OK
    assert cfg["cell_ov_mv"] == 3600
    with open(path) as f:
        stored = f.read()
    for name, payload, _ in bad:
        op.send(payload)
        pump(comms, sim_clock, 2)                # one at a time: error acks are rate-limited per minute
        sim_clock.advance_ms(11000)
    for _ in range(80):
        pump(comms, sim_clock, 1)
        if len(acks(sub)) >= 1 + len(bad):
            break
    assert sub.wait_for(lambda x: len(acks(x)) >= 1 + len(bad)), acks(sub)
    got = acks(sub)[1:]
    assert [r for _, _, r, _ in got] == [want for _, _, want in bad], list(zip([n for n, _, _ in bad], got))
    assert cfg["cell_ov_mv"] == 3600                 # nothing changed
    with open(path) as f:
        assert f.read() == stored                    # nothing persisted
    assert calls.count(cc.CMD_SET_CONFIG) == 2       # the good one and the bad value (refused by validation)
    assert comms.commands.last_counter == 104        # signed, fresh counters only (docs/comms.md)
    op.close()
    sub.close()
