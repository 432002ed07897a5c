"""Benchmark of the cloud bridge end to end, beside what the broker and the database do alone.

Starts real servers on loopback in a temporary folder (mosquitto with auth + ACL, InfluxDB 1.x) and
measures, in one run, on the same frames:
  1. broker alone: a do-nothing paho subscriber (QoS 1) receiving the frames;
  2. database alone: raw POST /write of the very line protocol the bridge would write;
  3. the bridge (`python -m cloud_bridge run`, a subprocess): publish -> all points queryable;
  4. latency publish -> queryable at a modest rate (p50/p99), by polling the point count.

    .venv/bin/python tools/bench_bridge.py --frames 3000 --samples 10
    .venv/bin/python tools/bench_bridge.py --help

One device, one bridge: a quick look. The figures in docs/benchmarks.md come from tools/bench/bridge.py
(`python -m tools.bench --only bridge`: many devices, repeated rounds, CPU per process, 1,000-device
latency, two bridge processes, the bridge with the database taken out).
"""
import argparse
import os
import shutil
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tools", "hostport")]

import paho.mqtt.client as mqtt                      # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion      # noqa: E402

from cloud_bridge import mapper                     # noqa: E402
from cloud_bridge.registry import Registry          # noqa: E402
from cloud_bridge.writer import V1Writer            # noqa: E402
from firmware.comms import frame                    # noqa: E402
from tests.bridge.frames import KEY, Board          # noqa: E402
from tests.bridge.harness import BRIDGE_PW, BRIDGE_USER, BridgeProc, Publisher, wait_until  # noqa: E402
from tools.testservers.influxdb import InfluxDB1   # noqa: E402

DEV, DEV_PW = "bms-0001", "pw-0001"
TAGS = {"device": DEV, "site": "-", "group": "-", "board": "-"}


def make_frames(n, samples, cells, temps):
    b = Board(DEV, cells=cells, temps=temps)
    return [b.telemetry(samples) for _ in range(n)]


def lines_of(raw):
    d = frame.decode(raw, DEV, KEY)
    pts = mapper.map_frame(d, TAGS)
    return [mapper.to_line(p) for p in pts], sum(len(p[2]) for p in pts)


def bench_broker_only(broker, frames):
    got = [0]
    done = threading.Event()
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-null", protocol=mqtt.MQTTv5)
    sub.username_pw_set(BRIDGE_USER, BRIDGE_PW)

    def on_message(c, u, m):
        got[0] += 1
        if got[0] == len(frames):
            done.set()
    sub.on_message = on_message
    sub.connect(broker.host, broker.port)
    sub.subscribe("$share/null/bms/+/up/#", qos=1)
    sub.loop_start()
    time.sleep(0.5)
    pub = Publisher(broker, DEV, DEV_PW, client_id="bench-pub-null")
    t0 = time.perf_counter()
    pub.publish_all([("bms/%s/up/telemetry" % DEV, f) for f in frames], timeout_s=300)
    done.wait(300)
    dt = time.perf_counter() - t0
    pub.close()
    sub.disconnect()
    sub.loop_stop()
    return got[0], dt


def bench_raw_write(db, frames, batch_points):
    db.query('DROP DATABASE "bms"')
    db.create_database("bms")
    all_lines = []
    for f in frames:
        all_lines.extend(lines_of(f)[0])
    w = V1Writer(db.url, "bms")
    t0 = time.perf_counter()
    for i in range(0, len(all_lines), batch_points):
        w.write(all_lines[i:i + batch_points])
    dt = time.perf_counter() - t0
    w.close()
    return len(all_lines), dt


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=3000, help="frames per throughput phase")
    ap.add_argument("--samples", type=int, default=10, help="samples per telemetry frame")
    ap.add_argument("--cells", type=int, default=16)
    ap.add_argument("--temps", type=int, default=3)
    ap.add_argument("--latency-rate", type=float, default=20.0, help="frames/s in the latency phase")
    ap.add_argument("--latency-s", type=float, default=10.0, help="length of the latency phase")
    ap.add_argument("--batch-points", type=int, default=5000)
    args = ap.parse_args(argv)
    from tools.testservers.mosquitto import Mosquitto

    tmp = tempfile.mkdtemp(prefix="bench-bridge-")
    broker = Mosquitto(tmp, users={BRIDGE_USER: BRIDGE_PW, DEV: DEV_PW}, acl=True)
    broker.start()
    db = InfluxDB1(tmp)
    db.start()
    db.create_database("bms")
    br = None
    try:
        frames = make_frames(args.frames, args.samples, args.cells, args.temps)
        per_frame_lines, per_frame_fields = lines_of(frames[0])
        pts_frame, fields_frame = len(per_frame_lines), per_frame_fields
        print("frame: %d samples x (%d cells, %d temps), %d bytes, %d points, %d fields"
              % (args.samples, args.cells, args.temps, len(frames[0]), pts_frame, fields_frame))

        n, dt = bench_broker_only(broker, frames)
        print("1 broker only (null subscriber): %d frames in %.2f s = %.0f frames/s" % (n, dt, n / dt))

        npts, dt = bench_raw_write(db, frames, args.batch_points)
        fr = args.frames / dt
        print("2 raw /write of the same lines:   %d points in %.2f s = %.0f points/s = %.0f frames/s"
              " = %.0f fields/s" % (npts, dt, npts / dt, fr, fr * fields_frame))

        db.query('DROP DATABASE "bms"')
        db.create_database("bms")
        br = BridgeProc(tmp, broker, db.url, name="bench")
        Registry(br.registry).add_device(DEV, KEY)
        br.start()
        pub = Publisher(broker, DEV, DEV_PW, client_id="bench-pub-bridge")
        want = args.frames * args.samples
        t0 = time.perf_counter()
        pub.publish_all([("bms/%s/up/telemetry" % DEV, f) for f in frames], timeout_s=300)
        wait_until(lambda: db.count("bms", "pack", "stack_mv") >= want, 300, "bridge catch-up", 0.02)
        dt = time.perf_counter() - t0
        fr = args.frames / dt
        print("3 bridge end to end (publish -> queryable): %d frames in %.2f s = %.0f frames/s"
              " = %.0f fields/s = %.0f points/s" % (args.frames, dt, fr, fr * fields_frame,
                                                    fr * pts_frame))

        # 4 latency: publish at a steady rate, poll the count; frame k is queryable when the count
        # reaches (k+1) * samples (one bridge writes in receive order).
        base = db.count("bms", "pack", "stack_mv")
        n_lat = int(args.latency_rate * args.latency_s)
        b2 = Board(DEV, cells=args.cells, temps=args.temps, boot=2)
        b2.n = 10 * args.frames * args.samples     # later device time than phase 3: new points
        lat_frames = [b2.telemetry(args.samples) for _ in range(n_lat)]
        sent = [None] * n_lat
        seen = [None] * n_lat
        stop = threading.Event()

        def poll():
            k = 0
            while not stop.is_set() and k < n_lat:
                c = db.count("bms", "pack", "stack_mv") - base
                now = time.perf_counter()
                while k < n_lat and c >= (k + 1) * args.samples:
                    seen[k] = now
                    k += 1
                time.sleep(0.005)
        poller = threading.Thread(target=poll)
        poller.start()
        t0 = time.perf_counter()
        for k, f in enumerate(lat_frames):
            ahead = t0 + k / args.latency_rate - time.perf_counter()
            if ahead > 0:
                time.sleep(ahead)
            sent[k] = time.perf_counter()
            pub.client.publish("bms/%s/up/telemetry" % DEV, f, qos=1)
        poller.join(60)
        stop.set()
        lat = sorted((s - p) * 1000 for s, p in zip(seen, sent) if s is not None)
        if len(lat) == n_lat:
            print("4 latency publish -> queryable at %.0f frames/s, %d frames: p50 %.0f ms, p99 %.0f ms,"
                  " max %.0f ms (bridge flush_ms=50; includes the 5 ms poll)"
                  % (args.latency_rate, n_lat, lat[len(lat) // 2], lat[int(len(lat) * 0.99) - 1],
                     lat[-1]))
        else:
            print("4 latency: only %d of %d frames became queryable" % (len(lat), n_lat))
        pub.close()
    finally:
        if br is not None and br.alive:
            br.stop()
        db.kill()
        broker.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
