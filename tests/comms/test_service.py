"""Comms without a broker: decimation, event kinds, boot counter, (boot, seq) ordering of the two
outboxes, reboot after the ack, construction from a board + secrets file."""
import json

import network
import pytest

from firmware.comms import frame
from firmware.comms import service as S
from firmware.comms.service import Comms
from tests.comms.comms_helpers import DEV, KEY, make_comms, make_link, make_sample, step_sample


@pytest.fixture
def offline(tmp_path, sim_clock):
    network.SIM.set_ap(False)
    return make_comms(tmp_path, make_link(None, port=1), batch_ms=3000)


def drain(box):
    out = []
    while box.peek() is not None:
        out.append(frame.decode(bytes(box.peek()), DEV, KEY))
        box.pop()
    return out


def test_one_sample_per_second_is_kept_from_a_250ms_cycle(offline, sim_clock):
    s = make_sample()
    for i in range(40):                                # 10 s of 250-ms cycles
        step_sample(s, i)
        offline.offer_sample(s)
        offline.poll(20)
        sim_clock.advance_ms(250)
    offline.flush()
    got = [x["current_ma"] for f in drain(offline.tlm_box) for x in f["samples"]]
    assert got == list(range(0, 40, 4))


def test_events_go_out_with_the_next_poll_in_one_frame(offline):
    from firmware.pack import state
    offline.offer_event(state.EVENT_FAULT, 5, 3700)    # fault bit 5 raised, the cell mV behind it
    offline.offer_event(state.EVENT_CLEAR, 5, 3500)
    offline.offer_event(state.EVENT_INFO, state.INFO_STATE + 4, 0x20)
    offline.poll(20)
    (f,) = drain(offline.evt_box)
    assert [(e["event"], e["code"], e["values"]) for e in f["events"]] == [
        (frame.EVENT_RAISED, 5, [3700]), (frame.EVENT_CLEARED, 5, [3500]), (frame.EVENT_INFO, 20, [0x20])]


def test_boot_counter_rises_per_boot(tmp_path, sim_clock):
    network.SIM.set_ap(False)
    boots = [make_comms(tmp_path, make_link(None, port=1)).boot for _ in range(3)]
    assert boots == [1, 2, 3]


def test_events_overtake_a_short_telemetry_queue_but_not_a_long_one(offline, sim_clock):
    s = make_sample()
    for i in range(5):
        step_sample(s, i)
        offline.offer_sample(s)
        offline.flush()                                # 5 telemetry frames, seq 0..4
        sim_clock.advance_ms(1000)
    offline.offer_event(2, 1, 1)
    offline.poll(20)                                   # event frame seq 5
    assert offline._pick() is offline.evt_box          # 5 - 0 <= REORDER_MAX: the event goes first
    offline.evt_box.pop()
    for i in range(S.REORDER_MAX + 5):
        step_sample(s, 10 + i)
        offline.offer_sample(s)
        offline.flush()
        sim_clock.advance_ms(1000)
    offline.offer_event(2, 1, 1)
    offline.poll(20)
    assert offline._pick() is offline.tlm_box          # too far ahead: the bridge's window would refuse


def test_reboot_waits_for_the_ack_then_resets(tmp_path, sim_clock):
    from firmware.comms import command_codes as cc
    network.SIM.set_ap(False)
    resets = []
    c = make_comms(tmp_path, make_link(None, port=1), reset_fn=lambda: resets.append(1))
    c.link.inbox.append((b"bms/bms-0001/down/cmd", frame.encode_command(DEV, KEY, 1, cc.CMD_REBOOT, {})))
    c.poll(20)
    assert resets == [] and len(c.evt_box) == 1        # the ack is queued, not yet sent
    sim_clock.advance_ms(S.REBOOT_GRACE_MS + 1)
    c.poll(20)                                         # offline: reset after the grace period anyway
    assert resets == [1]


def test_from_board_reads_the_secrets_file(tmp_path, sim_clock):
    from firmware.config import defaults
    cfg = defaults.build("lfp", {"cell_count": 4, "temp_count": 1})
    sec = {"device_id": "bms-0009", "key": "00" * 32, "wifi_ssid": "site", "wifi_key": "k",
           "mqtt_host": "10.0.0.5", "mqtt_password": "pw"}
    p = tmp_path / "secrets.json"
    p.write_text(json.dumps(sec))
    b = {"name": "sim4", "secrets_path": str(p),
         "comms": {"spill_dir": str(tmp_path / "ob"), "state_dir": str(tmp_path / "st")}}
    c = Comms.from_board(b, cfg)
    assert c.device_id == "bms-0009" and c.link.user == "bms-0009" and c.cell_count == 4
    assert c.link.topic_cmd == "bms/bms-0009/down/cmd" and c.config_hash != 0
    del sec["key"]
    p.write_text(json.dumps(sec))
    with pytest.raises(ValueError, match="lacks key"):
        Comms.from_board(b, cfg)
    with pytest.raises(ValueError, match="no secrets"):
        Comms.from_board({"secrets_path": str(tmp_path / "none.json")}, cfg)
