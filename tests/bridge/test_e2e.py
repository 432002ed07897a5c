"""End to end with real parts: mosquitto (auth + ACL), a device publishing real frames with paho,
the bridge as a subprocess, InfluxDB 1.x; points queried back and counted."""
import pytest

from cloud_bridge.registry import Registry
from cloud_bridge.verify import WILL_PAYLOAD
from tests.bridge.conftest import DEVICE_PASSWORDS
from tests.bridge.frames import KEY, Board
from tests.bridge.harness import BridgeProc, Publisher, wait_until

pytestmark = pytest.mark.servers
DEV = "bms-0001"
TOPIC = "bms/%s/up/" % DEV


def register(br, *devices):
    reg = Registry(br.registry)
    for d in devices:
        reg.add_device(d, KEY, site="plant-a", group="forklifts", board="sim")
    return reg


def count(influxdb1, meas="pack", field="stack_mv", where=""):
    return influxdb1.count("bms", meas, field, where)


def test_frames_of_every_kind_reach_influxdb_with_tags(tmp_path, broker, influxdb1):
    br = BridgeProc(tmp_path, broker, influxdb1.url)
    reg = register(br, DEV)
    br.start()
    pub = Publisher(broker, DEV, DEVICE_PASSWORDS[DEV], will=WILL_PAYLOAD)
    b = Board(DEV, cells=16, temps=3)
    items = [(TOPIC + "status", b.status("0.3.1"))]
    items += [(TOPIC + "telemetry", b.telemetry(10)) for _ in range(20)]
    items += [(TOPIC + "event", b.events([4, 9])), (TOPIC + "ack", b.ack(77))]
    pub.publish_all(items)
    wait_until(lambda: count(influxdb1) == 200 and count(influxdb1, "ack", "cmd_counter") == 1, 30,
               "200 pack points")
    assert count(influxdb1, "cell", "mv") == 200 * 16
    assert count(influxdb1, "temp", "dc") == 200 * 3
    assert count(influxdb1, "event", "code") == 2
    rows = influxdb1.select("bms", "SELECT * FROM pack WHERE seq = 5")
    assert len(rows) == 10
    assert {(r["device"], r["site"], r["group"], r["board"]) for r in rows} == \
        {(DEV, "plant-a", "forklifts", "sim")}
    st = influxdb1.select("bms", "SELECT online, fw, config_hash FROM status")
    assert [(r["online"], r["fw"], r["config_hash"]) for r in st] == [(1, "0.3.1", "deadbeef")]
    wait_until(lambda: (reg.get(DEV)["online"], reg.get(DEV)["fw_version"]) == (1, "0.3.1"), 10,
               "registry online")
    # the board vanishes: the broker publishes its last will, the bridge marks it offline
    pub.drop()
    wait_until(lambda: reg.get(DEV)["online"] == 0, 30, "offline by last will")
    assert reg.get(DEV)["online_source"] == "will"
    wait_until(lambda: influxdb1.select("bms", "SELECT online, source FROM status WHERE online = 0"),
               10, "offline status point")
    # the bridge's own metrics are written beside the data
    wait_until(lambda: count(influxdb1, "bridge", "frames_in") > 0, 10, "self-metrics point")
    assert br.stop() == 0
    m = br.last_metrics()
    assert m["frames_in"] == len(items) + 1 and m["rejected"] == 0
    assert m["frames_stored"] == len(items) + 1 and m["points_stored"] >= 200 * 20


def test_replayed_frame_is_rejected_and_stores_nothing_more(tmp_path, broker, influxdb1):
    br = BridgeProc(tmp_path, broker, influxdb1.url)
    register(br, DEV)
    br.start()
    pub = Publisher(broker, DEV, DEVICE_PASSWORDS[DEV])
    b = Board(DEV)
    raw = b.telemetry(10)
    pub.publish_all([(TOPIC + "telemetry", raw)])
    wait_until(lambda: count(influxdb1) == 10, 20, "first copy stored")
    # an attacker (or a confused board) sends the very same valid frame again, later
    pub.publish_all([(TOPIC + "telemetry", raw), (TOPIC + "telemetry", b.telemetry(10))])
    wait_until(lambda: count(influxdb1) == 20, 20, "next frame stored")
    assert br.stop() == 0
    rows = __import__("sqlite3").connect(br.rejects).execute(
        "SELECT reason, payload FROM rejects").fetchall()
    assert rows == [("replay", raw)]


def test_kill9_mid_stream_and_restart_loses_and_doubles_nothing(tmp_path, broker, influxdb1):
    br = BridgeProc(tmp_path, broker, influxdb1.url)
    register(br, DEV, "bms-0002")
    br.start()
    boards = {d: Board(d, cells=4, temps=1) for d in ("bms-0001", "bms-0002")}
    pubs = {d: Publisher(broker, d, DEVICE_PASSWORDS[d]) for d in boards}
    n_frames = 600
    import threading
    done = []

    def send(d):
        items = [("bms/%s/up/telemetry" % d, boards[d].telemetry(5)) for _ in range(n_frames)]
        pubs[d].publish_all(items, rate_per_s=400)
        done.append(d)
    threads = [threading.Thread(target=send, args=(d,)) for d in boards]
    for t in threads:
        t.start()
    wait_until(lambda: count(influxdb1) >= 1000, 30, "some points stored")
    br.kill9()                                        # mid-stream: nothing flushed, nothing said
    stored_at_kill = count(influxdb1)
    assert stored_at_kill < 2 * n_frames * 5          # it really was mid-stream
    for t in threads:
        t.join(60)
    assert sorted(done) == sorted(boards)
    br.start()
    total = 2 * n_frames * 5
    wait_until(lambda: count(influxdb1) >= total, 60, "all points after restart")
    assert count(influxdb1) == total                  # nothing lost, nothing doubled
    assert count(influxdb1, "cell", "mv") == total * 4
    for d in boards:
        assert count(influxdb1, where="device='%s'" % d) == n_frames * 5
    assert br.stop() == 0


def test_v2_write_path_through_the_bridge_into_victoria_metrics(tmp_path, broker, victoria):
    br = BridgeProc(tmp_path, broker, victoria.url, api="v2")
    register(br, DEV)
    br.start()
    pub = Publisher(broker, DEV, DEVICE_PASSWORDS[DEV])
    b = Board(DEV, cells=4, temps=1)
    frames = [b.telemetry(5) for _ in range(30)]
    pub.publish_all([(TOPIC + "telemetry", f) for f in frames])

    def samples():
        s = victoria.export('{__name__="pack_stack_mv", device="%s"}' % DEV)
        return sum(len(x["values"]) for x in s)
    wait_until(lambda: samples() == 150, 30, "150 pack samples in VictoriaMetrics")
    cells = victoria.export('{__name__="cell_mv", device="%s"}' % DEV)
    assert sorted(c["metric"]["cell"] for c in cells) == ["01", "02", "03", "04"]
    assert all(c["metric"]["site"] == "plant-a" for c in cells)
    assert br.stop() == 0


def test_silent_board_is_marked_offline(tmp_path, broker, influxdb1):
    br = BridgeProc(tmp_path, broker, influxdb1.url, offline_after_s=1)
    reg = register(br, DEV)
    br.start()
    pub = Publisher(broker, DEV, DEVICE_PASSWORDS[DEV])
    b = Board(DEV, cells=4, temps=1)
    pub.publish_all([(TOPIC + "status", b.status()), (TOPIC + "telemetry", b.telemetry(1))])
    wait_until(lambda: reg.get(DEV)["online"] == 1, 20, "online")
    # no will (the connection stays up), just nothing more: the sweep marks it offline
    wait_until(lambda: reg.get(DEV)["online"] == 0, 30, "offline by silence")
    assert reg.get(DEV)["online_source"] == "silence"
    wait_until(lambda: influxdb1.select("bms", "SELECT online FROM status WHERE source = 'silence'"),
               10, "silence status point")
    # it speaks again on the same session (so no status frame): its traffic brings it back online
    pub.publish_all([(TOPIC + "telemetry", b.telemetry(1))])
    wait_until(lambda: reg.get(DEV)["online"] == 1, 20, "online again")
    assert reg.get(DEV)["online_source"] == "traffic"
    wait_until(lambda: influxdb1.select("bms", "SELECT online FROM status WHERE source = 'traffic'"),
               10, "traffic status point")
    assert [r["online"] for r in influxdb1.select(
        "bms", "SELECT online FROM status WHERE source = 'traffic'")] == [1]
    assert br.stop() == 0


def test_redelivery_after_a_crash_before_the_window_was_stored_doubles_nothing(tmp_path, broker,
                                                                               influxdb1):
    br = BridgeProc(tmp_path, broker, influxdb1.url)
    reg = register(br, DEV)
    br.start()
    pub = Publisher(broker, DEV, DEVICE_PASSWORDS[DEV])
    b = Board(DEV, cells=4, temps=1)
    b2 = Board(DEV, cells=4, temps=1, wall=False, boot=2)   # the board rebooted, no wall clock yet
    items = [(TOPIC + "telemetry", b.telemetry(5)) for _ in range(40)]
    items += [(TOPIC + "event", b.events([1, 2]))]
    items += [(TOPIC + "telemetry", b2.telemetry(5)) for _ in range(10)]
    pub.publish_all(items)
    wait_until(lambda: count(influxdb1) == 250 and count(influxdb1, "event", "code") == 2, 20, "stored")
    assert br.stop() == 0
    # The crash this stands for: points written, then the bridge died before it stored the replay
    # window, so the broker's redelivery is accepted as new and written a second time.
    reg._db.execute("DELETE FROM replay")
    br.start()
    pub.publish_all(items)                           # the very same bytes again
    wait_until(lambda: br.count_log("metrics") and br.last_metrics().get("frames_stored", 0)
               >= len(items), 20, "redelivered frames accepted and written")
    assert br.stop() == 0
    assert br.last_metrics()["frames_stored"] == len(items) and br.last_metrics()["rejected"] == 0
    assert count(influxdb1) == 250                   # same series + timestamp: overwritten, not added
    assert count(influxdb1, "cell", "mv") == 1000
    assert count(influxdb1, "event", "code") == 2


def test_bridge_reconnects_and_resubscribes_after_a_broker_restart(tmp_path, broker, influxdb1):
    br = BridgeProc(tmp_path, broker, influxdb1.url)
    register(br, DEV)
    br.start()
    b = Board(DEV, cells=4, temps=1)
    pub = Publisher(broker, DEV, DEVICE_PASSWORDS[DEV])
    pub.publish_all([(TOPIC + "telemetry", b.telemetry(5)) for _ in range(10)])
    wait_until(lambda: count(influxdb1) == 50, 20, "before the restart")
    pub.close()
    broker.stop()
    broker.start()          # same port, sessions kept (persistence), the shared subscription not
    wait_until(lambda: br.count_log("mqtt subscribed") >= 2, 30, "bridge subscribed again")
    connects = [d for d in br.log_lines() if d.get("msg") == "mqtt connected"]
    assert connects[-1]["session_present"] is True        # the broker kept the session on disk
    pub = Publisher(broker, DEV, DEVICE_PASSWORDS[DEV], client_id="pub-again")
    pub.publish_all([(TOPIC + "telemetry", b.telemetry(5)) for _ in range(10)])
    wait_until(lambda: count(influxdb1) == 100, 20, "after the restart")
    assert br.alive and br.stop() == 0


def test_two_instances_share_the_load_and_store_each_frame_once(tmp_path, broker, influxdb1):
    b1 = BridgeProc(tmp_path, broker, influxdb1.url, name="b1")
    register(b1, DEV, "bms-0002")
    b2 = BridgeProc(tmp_path, broker, influxdb1.url, name="b2", registry=b1.registry)
    b1.start()
    b2.start()
    for d in (DEV, "bms-0002"):
        pub = Publisher(broker, d, DEVICE_PASSWORDS[d])
        b = Board(d, cells=4, temps=1)
        pub.publish_all([("bms/%s/up/telemetry" % d, b.telemetry(5)) for _ in range(200)])
    wait_until(lambda: count(influxdb1) >= 2000, 30, "all frames")
    assert b1.stop() == 0 and b2.stop() == 0
    m1, m2 = b1.last_metrics(), b2.last_metrics()
    assert m1["frames_in"] > 0 and m2["frames_in"] > 0            # both got a share
    assert m1["frames_stored"] + m2["frames_stored"] == 400
    assert m1["rejected"] + m2["rejected"] == 0
    assert count(influxdb1) == 2000


def test_receipts_name_stored_frames_only_after_they_are_queryable(tmp_path, broker, influxdb1):
    """Every frame whose tag verified is named in a signed receipt to its board, replays included
    (they are resends of stored frames), never a forged one, and never before its points are in
    the database: when a receipt arrives, every seq it names can be queried."""
    import threading

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from firmware.comms import frame

    br = BridgeProc(tmp_path, broker, influxdb1.url)
    register(br, DEV)
    br.start()
    got, early, lock = [], [], threading.Lock()

    def on_receipt(client, userdata, msg):
        boot, seqs = frame.receipt_seqs(msg.payload, DEV, KEY)      # raises on a bad tag
        stored = {r["seq"] for r in influxdb1.select("bms", "SELECT seq, stack_mv FROM pack")}
        with lock:
            got.append((boot, seqs))
            early.extend(s for s in seqs if s not in stored)

    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="rcpt-" + DEV, protocol=mqtt.MQTTv5)
    sub.username_pw_set(DEV, DEVICE_PASSWORDS[DEV])
    sub.on_message = on_receipt
    sub.connect(broker.host, broker.port)
    sub.subscribe("bms/%s/down/receipt" % DEV, qos=1)
    sub.loop_start()
    b = Board(DEV, cells=16, temps=3)
    tlm = [b.telemetry(10) for _ in range(12)]
    forged = bytearray(b.telemetry(10))
    forged[-1] ^= 1
    pub = Publisher(broker, DEV, DEVICE_PASSWORDS[DEV])
    pub.publish_all([(TOPIC + "telemetry", f) for f in tlm] + [(TOPIC + "telemetry", bytes(forged))])
    want = {frame.peek_header(f)["seq"] for f in tlm}
    wait_until(lambda: {s for _, ss in list(got) for s in ss} >= want, 30, "receipts for every frame")
    forged_seq = frame.peek_header(bytes(forged))["seq"]
    named = [s for _, ss in got for s in ss]
    assert forged_seq not in named
    assert all(boot == 1 for boot, _ in got)
    assert early == []
    # a resend of a stored frame (refused as a replay) is named again, so the board forgets it
    pub.publish_all([(TOPIC + "telemetry", tlm[3])])
    wait_until(lambda: [s for _, ss in list(got) for s in ss].count(frame.peek_header(tlm[3])["seq"]) == 2,
               10, "the resend confirmed too")
    pub.close()
    sub.loop_stop()
    assert br.stop() == 0
    assert br.last_metrics()["receipts_sent"] == len(got)


def test_firmware_board_forgets_frames_only_through_the_bridge(tmp_path, broker, influxdb1, sim_clock):
    """The firmware's Comms on a real link: every frame it made is stored, and each left its outbox
    because the bridge's receipt named it (not at PUBACK)."""
    import network

    from firmware.comms.link import Link
    from firmware.comms.service import Comms
    from firmware.sample import Sample

    br = BridgeProc(tmp_path, broker, influxdb1.url)
    register(br, DEV)
    br.start()
    network.SIM.connect_delay_ms = 0
    link = Link(DEV, "ap", "k", broker.host, port=broker.port, user=DEV, password=DEVICE_PASSWORDS[DEV],
                backoff_min_ms=200, backoff_max_ms=2000)
    comms = Comms(DEV, KEY, link, spill_dir=str(tmp_path / "ob"), state_dir=str(tmp_path / "st"),
                  sample_every_ms=1000, batch_ms=5000, cell_count=4, temp_count=1,
                  receipt_timeout_ms=600000)
    s = Sample(4, 1)
    for i in range(4):
        s.cell_mv[i] = 3300
    s.stack_mv = s.pack_mv = 13200
    import time as t
    for k in range(120):              # 30 s simulated: 30 samples in 6 frames, plus the status frame
        s.t_ms = t.ticks_ms()
        s.current_ma = k
        comms.offer_sample(s)
        comms.poll(150)
        sim_clock.advance_ms(250)
    comms.flush()
    wait_until(lambda: (comms.poll(150), comms.pending() == 0)[1], 30, "every frame confirmed")
    assert comms.frames_confirmed == comms.seq - 1 + comms._hello_sent   # every frame (seq 0: the hello)
    assert comms.resends == 0 and comms.bad_receipts == 0
    assert count(influxdb1) == comms.samples == 30
    assert br.stop() == 0


def test_board_booted_offline_gets_its_presync_samples_placed_in_time(tmp_path, broker, influxdb1, sim_clock):
    """A board boots with the access point down and makes 10 simulated minutes of samples without a
    wall clock (60 telemetry frames, more than the 32 an event frame may overtake). When the AP comes
    back it syncs its clock, sends its hello (status, seq 0, with wall clock) ahead of the backlog, and
    the bridge replaces its estimated anchor with the exact one: every stored sample lies within 1 s
    (NTP gives whole seconds) of the instant it was taken. Without the exact anchor the backlog would
    be placed at its arrival, an hour after the true times chosen here."""
    import time as t

    import network

    from firmware.comms.link import Link
    from firmware.comms.service import Comms
    from firmware.comms.timesync import TimeSync
    from firmware.sample import Sample

    br = BridgeProc(tmp_path, broker, influxdb1.url)
    register(br, DEV)
    br.start()
    base_ms = (int(t.time()) - 3600) * 1000        # the simulated world's wall clock at t0
    t0 = t.ticks_ms()

    def true_ms():
        return base_ms + t.ticks_diff(t.ticks_ms(), t0)

    def ntp():                                      # seconds since 2000, whole seconds as ntptime
        return true_ms() // 1000 - 946684800

    network.SIM.connect_delay_ms = 0
    network.SIM.set_ap(False)
    link = Link(DEV, "ap", "k", broker.host, port=broker.port, user=DEV, password=DEVICE_PASSWORDS[DEV],
                backoff_min_ms=200, backoff_max_ms=2000)
    comms = Comms(DEV, KEY, link, spill_dir=str(tmp_path / "ob"), state_dir=str(tmp_path / "st"),
                  sample_every_ms=1000, batch_ms=10000, cell_count=4, temp_count=1,
                  timesync=TimeSync(ntp=ntp), receipt_timeout_ms=600000)
    s = Sample(4, 1)
    for i in range(4):
        s.cell_mv[i] = 3300
    s.stack_mv = s.pack_mv = 13200
    taken = {}                                      # current_ma (sample id) -> true time, ms
    k = 0

    def step():
        nonlocal k
        s.t_ms = t.ticks_ms()
        s.current_ma = k
        before = comms.samples
        comms.offer_sample(s)
        if comms.samples != before:
            taken[k] = true_ms()
        k += 1
        comms.poll(150)
        sim_clock.advance_ms(250)

    for _ in range(4 * 600):                        # 10 simulated minutes offline
        step()
    assert not link.up and not comms.ts.synced and link.wifi_failures >= 1
    assert len(comms.tlm_box) >= 59                 # a backlog longer than an event may overtake (32)
    network.SIM.set_ap(True)
    for _ in range(40):                             # 10 s online: sync, hello, the backlog drains
        step()
    comms.flush()
    wait_until(lambda: (comms.poll(150), sim_clock.advance_ms(50), comms.pending() == 0)[2], 60,
               "every frame confirmed")
    assert comms.ts.synced
    r = influxdb1.query('SELECT "current_ma" FROM "pack"', db="bms", epoch="ms")["results"][0]
    rows = r["series"][0]["values"]
    assert len(rows) == len(taken) >= 600
    errs = {int(v): ts - taken[int(v)] for ts, v in rows}
    assert set(errs) == set(taken)
    worst = max(abs(e) for e in errs.values())
    assert worst <= 1000, sorted(errs.items(), key=lambda kv: -abs(kv[1]))[:5]
    assert br.stop() == 0
