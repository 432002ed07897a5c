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


def test_outbox_drops_are_reported_as_an_info_event(tmp_path, sim_clock):
    """A telemetry outbox too small for the outage drops its oldest frames: the count leaves the board
    as an info event (code INFO_OUTBOX_DROPPED, values: telemetry dropped, events dropped, corrupt
    segments), at most once a minute, and only when the count changed."""
    network.SIM.set_ap(False)
    c = make_comms(tmp_path, make_link(None, port=1), sample_every_ms=1000, batch_ms=1000,
                   tlm_slots=1, tlm_max_segments=1, tlm_segment_bytes=1024, evt_max_segments=4)
    s = make_sample()

    def run(seconds):
        for i in range(4 * seconds):
            step_sample(s, i)
            c.offer_sample(s)
            c.poll(20)
            sim_clock.advance_ms(250)

    run(30)
    c.flush()
    assert c.tlm_box.dropped > 0
    reports = [e["values"] for f in drain(c.evt_box) for e in f.get("events", [])
               if e["event"] == frame.EVENT_INFO and e["code"] == S.INFO_OUTBOX_DROPPED]
    assert len(reports) == 1                         # the first drop at once, then rate-limited
    assert reports[0][0] >= 1 and reports[0][1:] == [0, 0]
    run(90)
    c.flush()
    later = [e["values"] for f in drain(c.evt_box) for e in f.get("events", [])
             if e["event"] == frame.EVENT_INFO and e["code"] == S.INFO_OUTBOX_DROPPED]
    assert 1 <= len(later) <= 2                      # 90 s: at most one a minute
    assert later[-1][0] > reports[0][0]              # cumulative count


def test_outbox_sizes_come_from_the_comms_options_and_are_validated(tmp_path, sim_clock):
    from firmware.config import defaults
    cfg = defaults.build("lfp", {"cell_count": 4, "temp_count": 1})
    sec = {"device_id": "bms-0009", "key": "00" * 32, "wifi_ssid": "site", "wifi_key": "k",
           "mqtt_host": "10.0.0.5", "mqtt_password": "pw"}
    p = tmp_path / "secrets.json"
    p.write_text(json.dumps(sec))
    opts = {"spill_dir": str(tmp_path / "ob"), "state_dir": str(tmp_path / "st"),
            "tlm_max_segments": 512, "tlm_slots": 3, "evt_max_segments": 8}
    c = Comms.from_board({"secrets_path": str(p), "comms": opts}, cfg)
    assert c.tlm_box.max_segments == 512 and c.tlm_box.slots == 3 and c.evt_box.max_segments == 8
    for key, bad in (("tlm_max_segments", 0), ("tlm_slot_bytes", 100), ("evt_slot_bytes", 200),
                     ("tlm_slots", "2"), ("tlm_segment_bytes", 99999), ("evt_max_segments", True)):
        with pytest.raises(ValueError, match=key):
            Comms.from_board({"secrets_path": str(p), "comms": dict(opts, **{key: bad})}, cfg)
