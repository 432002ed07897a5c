"""Comms against a real mosquitto (password file + per-device ACLs): samples published in batches
arrive decodable by the codec, in order, once each; a broker crash mid-stream loses nothing."""
import pytest

from firmware.comms import frame
from tests.comms.comms_helpers import (DEV, Subscriber, broker_users, make_comms, make_link, make_sample,
                                       settle, step_sample, wifi_instant)

BUDGET_MS = 150   # socket timeout 50 ms: real-time waits on a loaded machine


def run_cycles(comms, s, sim_clock, first, n, period_ms=250):
    """n protection cycles of period_ms in simulated time; one sample offered per cycle."""
    for k in range(n):
        step_sample(s, first + k)
        comms.offer_sample(s)
        comms.poll(BUDGET_MS)
        sim_clock.advance_ms(period_ms)


def test_sample_stream_arrives_decoded_in_batches(tmp_path, sim_clock, mosquitto_factory):
    wifi_instant()
    broker = mosquitto_factory(users=broker_users(), acl=True)
    sub = Subscriber(broker)
    comms = make_comms(tmp_path, make_link(broker))
    s = make_sample()
    # 120 cycles of 250 ms = 30 s; sample_every_ms=1000 keeps every 4th cycle's sample: 30 samples.
    n_cycles = 120
    for k in range(n_cycles):
        step_sample(s, k)
        comms.offer_sample(s)
        comms.poll(BUDGET_MS)
        sim_clock.advance_ms(250)
    comms.flush()
    assert settle(comms, sim_clock, BUDGET_MS)       # every frame confirmed by a receipt
    want = list(range(0, n_cycles, 4))
    assert sub.wait_for(lambda x: len(x.samples()) >= len(want)), sub.samples()
    got = sub.samples()
    assert [c for _, _, c in got] == want
    tlm = sub.of_kind(frame.KIND_TELEMETRY)
    # batch_ms=5000 at one sample per second: 5 samples per frame (the last one may be partial)
    assert [len(d["samples"]) for d in tlm][:-1] == [5] * (len(tlm) - 1)
    assert all(d["boot"] == comms.boot for d in tlm)
    # the status frame came first (seq 0 was taken by the first telemetry frame begun before the link)
    status = sub.of_kind(frame.KIND_STATUS)
    assert len(status) == 1 and status[0]["fw_version"] == "0.1.0" and status[0]["cell_count"] == 4
    seqs = [d["seq"] for d in sub.frames]
    # no duplicate frames unless a PUBACK timed out (then the frame is sent again, same seq)
    assert len(seqs) == len(set(seqs)) or comms.link.failures > 0
    assert not sub.errors
    sub.close()


def test_status_is_retained_and_will_marks_offline(tmp_path, sim_clock, mosquitto_factory):
    wifi_instant()
    broker = mosquitto_factory(users=broker_users(), acl=True)
    sub = Subscriber(broker)
    comms = make_comms(tmp_path, make_link(broker, keepalive_s=10))
    assert settle(comms, sim_clock, BUDGET_MS) and comms.link.up
    sub.close()
    # A late subscriber gets the retained status frame.
    late = Subscriber(broker, client_id="late")
    assert late.wait_for(lambda x: any(r[0].endswith("/up/status") and r[2] for r in x.raw))
    assert late.of_kind(frame.KIND_STATUS)[0]["board"] == "sim4"
    # The board vanishes without DISCONNECT (power loss): the broker publishes the retained will.
    comms.link._client.sim_kill_socket()
    assert late.wait_for(lambda x: any(r[1] == b"offline" for r in x.raw), timeout_s=10)
    late.close()


def test_device_cannot_publish_as_another(tmp_path, sim_clock, mosquitto_factory):
    """The ACL (per-device user) confines the link to its own subtree: frames under another id are
    never delivered, and a wrong password never gets a session."""
    wifi_instant()
    broker = mosquitto_factory(users=broker_users(), acl=True)
    bad = make_comms(tmp_path / "a", make_link(broker, password="wrong"))
    for _ in range(3):
        bad.poll(BUDGET_MS)
        sim_clock.advance_ms(3000)
    assert not bad.link.up and bad.link.refused >= 1
    # The right password, another device's topic: the broker acknowledges (MQTT 3.1.1 has no way to
    # refuse a PUBLISH) and drops it; the bridge-side subscriber never sees it.
    sub = Subscriber(broker)
    good = make_comms(tmp_path / "b", make_link(broker))
    for _ in range(8):
        good.poll(BUDGET_MS)
        sim_clock.advance_ms(250)
        if good.link.up:
            break
    assert good.link.up
    lk = good.link
    forged = "bms/bms-0002/up/telemetry"
    for _ in range(3):
        lk.begin(BUDGET_MS)
        if lk.publish(forged, b"as-bms-0002"):
            break
        sim_clock.advance_ms(250)
    lk.begin(BUDGET_MS)
    assert lk.publish(lk.topic_by_kind[1], b"own-topic")
    # one connection's messages arrive in order: once the own-topic one is in, the forged one is gone
    assert sub.wait_for(lambda x: any(p == b"own-topic" for _, p, _ in x.raw), 10)
    assert [t for t, _, _ in sub.raw if t.startswith("bms/bms-0002/")] == []
    sub.close()


@pytest.mark.parametrize("how", ["kill", "stop", "pause_kill"])
def test_broker_restart_mid_stream_loses_no_sample(tmp_path, sim_clock, mosquitto_factory, how):
    """kill: SIGKILL right after the last PUBACK; stop: SIGTERM; pause_kill: the broker freezes
    (SIGSTOP) while the board publishes, so publishes are in flight without PUBACK, and is then killed.
    Frames the broker acknowledged but had not passed on when it died are sent again, because no
    receipt named them (test_broker_crash_after_puback_* below makes that loss certain)."""
    wifi_instant()
    broker = mosquitto_factory(users=broker_users(), acl=True, persistence=True, autosave_interval_s=1,
                               extra_config=["autosave_on_changes true"])
    sub = Subscriber(broker)
    comms = make_comms(tmp_path, make_link(broker))
    s = make_sample()
    run_cycles(comms, s, sim_clock, 0, 60)             # 15 s of cycles
    sent = comms.frames_sent
    assert sent >= 3
    if how == "pause_kill":
        broker.pause()
        run_cycles(comms, s, sim_clock, 60, 40)        # publishes time out: nothing acknowledged
        assert comms.frames_sent == sent and comms.link.failures >= 1
        broker.kill()
        first_outage = 100
    else:
        getattr(broker, how)()                         # SIGKILL (crash) or SIGTERM
        first_outage = 60
    run_cycles(comms, s, sim_clock, first_outage, 180 - first_outage)  # broker away: held on the board
    assert comms.pending() >= 1
    broker.start()
    assert sub.wait_for(lambda x: x.c.is_connected(), 10)
    run_cycles(comms, s, sim_clock, 180, 120)          # broker back: backlog drains
    comms.flush()
    assert settle(comms, sim_clock, BUDGET_MS, 20)
    want = list(range(0, 300, 4))
    assert sub.wait_for(lambda x: set(c for _, _, c in x.samples()) >= set(want), 15), \
        sorted(set(want) - set(c for _, _, c in sub.samples()))
    # Redelivery may repeat a frame (PUBACK lost in the crash); (boot, seq) identifies it.
    frames = {}
    for boot, seq, c in sub.samples():
        frames.setdefault((boot, seq), []).append(c)
    per_frame = [cs[:len(cs) // (cs.count(cs[0]))] for cs in frames.values()]
    assert sorted(c for cs in per_frame for c in cs) == want
    assert comms.link.sessions >= 2 and comms.link.failures >= 1
    sub.close()


@pytest.mark.parametrize("receipts", [True, False])
def test_broker_crash_after_puback_loses_nothing_with_receipts(tmp_path, sim_clock, mosquitto_factory,
                                                               receipts):
    """The case QoS 1 alone cannot cover: the broker acknowledged frames (PUBACK), holds them for an
    offline subscriber, and dies (SIGKILL) before it saved them (persistence on, no autosave yet).
    With receipts the board still holds them and sends them again to the restarted broker; without
    (receipts=False, pop at PUBACK) they are gone, which shows the test can see the loss."""
    wifi_instant()
    broker = mosquitto_factory(users=broker_users(), acl=True, persistence=True)
    sub = Subscriber(broker)
    comms = make_comms(tmp_path, make_link(broker), receipts=receipts)
    s = make_sample()
    run_cycles(comms, s, sim_clock, 0, 40)             # 10 s: delivered and confirmed
    assert settle(comms, sim_clock, BUDGET_MS)
    assert sub.wait_for(lambda x: len(x.samples()) >= 10)
    sub.close()                                        # the bridge is away; its session stays
    sent = comms.frames_sent
    run_cycles(comms, s, sim_clock, 40, 40)            # 10 s more: PUBACKed, queued for the session
    assert comms.frames_sent >= sent + 2
    held = comms.pending()
    assert held >= 2 if receipts else held == 0
    broker.kill()                                      # crash: nothing saved since the start
    broker.start()
    sub2 = Subscriber(broker)
    run_cycles(comms, s, sim_clock, 80, 40)
    comms.flush()
    assert settle(comms, sim_clock, BUDGET_MS, 20)
    want = set(range(0, 120, 4))
    got = set(c for _, _, c in sub.samples()) | set(c for _, _, c in sub2.samples())
    if not receipts:   # settle() only waited for PUBACKs
        assert sub2.wait_for(lambda x: 116 in set(c for _, _, c in x.samples()))
        got |= set(c for _, _, c in sub2.samples())
    if receipts:
        assert got >= want, sorted(want - got)
        assert comms.resends >= 1
    else:
        lost = want - got
        assert lost and lost <= set(range(40, 80, 4)), sorted(lost)
    sub2.close()
