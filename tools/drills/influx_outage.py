"""Drill: InfluxDB stopped for a minute (quick: 10 s) while two devices publish.

    r = run(folder, quick=False)

Proves that a database outage costs nothing: the bridge retries its write with backoff and holds the
broker's acknowledgements (at most Receive Maximum messages in flight to it, the broker queues the
rest), and once InfluxDB is back every sample is stored exactly once.
"""
import threading
import time

from tests.bridge.frames import Board
from tests.bridge.harness import RECEIVE_MAX, Publisher
from tools.drills.common import Result, Rig, device_password

NAME = "influx_outage"
TITLE = "InfluxDB stopped under load"


def run(folder, quick=False, log=print):
    outage_s = 10.0 if quick else 60.0
    devices = ["bms-0021", "bms-0022"]
    rate = 30                                   # frames/s per device, 5 samples each
    r = Result(NAME, TITLE, __doc__.split("\n\n")[2].strip())
    rig = Rig(folder, devices).start()
    pubs = []
    try:
        duration_s = outage_s + 6.0
        n_frames = int(rate * duration_s)
        sent, work = [], []
        for d in devices:
            b = Board(d, cells=4, temps=1)
            items = []
            for _ in range(n_frames):
                first = b.n
                items.append(("bms/%s/up/telemetry" % d, b.telemetry(5)))
                sent += [(d, 1, b.seq - 1, -1500 + i) for i in range(first, first + 5)]
            pubs.append(Publisher(rig.broker, d, device_password(d), client_id="drill-pub-" + d))
            work.append((pubs[-1], items))
        errors = []

        def send(pub, items):
            try:
                pub.publish_all(items, rate_per_s=rate, timeout_s=duration_s + 180)
            except AssertionError as e:
                errors.append(str(e))
        threads = [threading.Thread(target=send, args=w) for w in work]
        for t in threads:
            t.start()
        time.sleep(2.0)
        mark = len(rig.bridge.log_lines())
        rig.db.stop()
        log("  InfluxDB stopped for %.0f s" % outage_s)
        t_down = time.monotonic()
        time.sleep(outage_s)
        during = rig.bridge.log_lines()[mark:]
        rig.db.start()
        r.add("outage (s, measured)", round(time.monotonic() - t_down, 1))
        log("  InfluxDB back")
        for t in threads:
            t.join(duration_s + 200)
        r.check(not errors, "publisher: %s" % errors)
        rig.wait_stored({devices[0]: len(sent) // 2, devices[1]: len(sent) // 2}, 120)
        stored = []
        for d in devices:
            stored += [(d,) + k for k in rig.stored_keys(d)]
        retries = sum(1 for x in during if x.get("msg") == "write failed, retrying")
        m = [x for x in during if x.get("msg") == "metrics" and x.get("db_down")]
        r.add("devices publishing (QoS 1)", len(devices))
        r.add("publish rate per device (frames/s, 5 samples each)", rate)
        r.add("write retries logged by the bridge during the outage", retries)
        depth = max([x.get("queue_depth", 0) for x in m] or [0])
        r.add("max messages held unacknowledged by the bridge (Receive Maximum %d)" % RECEIVE_MAX, depth)
        r.check(retries > 0, "no write retry logged during the outage")
        r.check(depth <= RECEIVE_MAX, "bridge held more than Receive Maximum")
        r.count_samples(sent, stored, wire_dups=rig.observer.duplicates(), replays=rig.replays())
        r.check(rig.bridge.alive, "bridge not running at the end")
    finally:
        for p in pubs:
            p.close()
        rig.stop()
    return r
