"""Drill: the bridge killed with SIGKILL again and again while several devices publish.

    r = run(folder, quick=False)       # a common.Result

Proves that the bridge acknowledges a message to the broker only after InfluxDB confirmed its points:
whatever a killed bridge held in memory is redelivered by the broker (persistent session, QoS 1) to
the restarted one, so nothing is lost, and a redelivered sample lands on its own timestamp again.
"""
import threading
import time

from tests.bridge.frames import Board
from tests.bridge.harness import Publisher
from tools.drills.common import Result, Rig, device_password

NAME = "bridge_kill"
TITLE = "Bridge killed with SIGKILL repeatedly under load"


def run(folder, quick=False, log=print):
    kills = 2 if quick else 5
    gap_s = 2.0 if quick else 3.0
    devices = ["bms-%04d" % (11 + i) for i in range(3)]
    rate = 40                                   # frames/s per device, 5 samples each
    samples_per_frame = 5
    r = Result(NAME, TITLE, __doc__.split("\n\n")[2].strip())
    rig = Rig(folder, devices).start()
    work = []
    try:
        duration_s = kills * gap_s + 3.0
        n_frames = int(rate * duration_s)
        boards = dict((d, Board(d, cells=4, temps=1)) for d in devices)
        sent = dict((d, []) for d in devices)
        for d in devices:
            items = []
            for _ in range(n_frames):
                b = boards[d]
                first = b.n
                items.append(("bms/%s/up/telemetry" % d, b.telemetry(samples_per_frame)))
                for i in range(first, first + samples_per_frame):
                    sent[d].append((1, b.seq - 1, -1500 + i))     # make_sample: current_ma = -1500 + i
            pub = Publisher(rig.broker, d, device_password(d), client_id="drill-pub-" + d)
            work.append((pub, items))
        errors = []

        def send(pub, items):
            try:
                pub.publish_all(items, rate_per_s=rate, timeout_s=duration_s + 120)
            except AssertionError as e:
                errors.append(str(e))
        threads = [threading.Thread(target=send, args=w) for w in work]
        for t in threads:
            t.start()
        done_kills = 0
        for k in range(kills):
            time.sleep(gap_s)
            rig.bridge.kill9()
            done_kills += 1
            log("  kill %d/%d (SIGKILL), restarting the bridge" % (k + 1, kills))
            rig.bridge.start()
        for t in threads:
            t.join(duration_s + 150)
        r.check(not errors, "publisher: %s" % errors)
        want = dict((d, len(sent[d])) for d in devices)
        rig.wait_stored(want, 90)
        all_sent, all_stored = [], []
        for d in devices:
            all_sent += [(d,) + k for k in sent[d]]
            all_stored += [(d,) + k for k in rig.stored_keys(d)]
        r.add("devices publishing (QoS 1)", len(devices))
        r.add("publish rate per device (frames/s, 5 samples each)", rate)
        r.add("bridge SIGKILLs", done_kills)
        r.add("bridge starts", rig.bridge.starts)
        r.check(rig.bridge.stop() == 0, "bridge did not stop cleanly")
        r.add("frames published", len(devices) * n_frames)
        r.add("frames the bridge took from the broker, all lives (lower bound)", rig.bridge_frames_in())
        r.count_samples(all_sent, all_stored, wire_dups=rig.observer.duplicates(), replays=rig.replays())
    finally:
        for pub, _ in work:
            pub.close()
        rig.stop()
    return r
