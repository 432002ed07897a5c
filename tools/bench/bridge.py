"""Bridge section of the benchmarks: throughput, CPU and latency of cloud_bridge end to end.

One run, one set of real servers on loopback (mosquitto, InfluxDB 1.x, both started in a temporary
folder), the same telemetry frames (10 samples x 16 cells + 3 thermistors, signed, from many device
identities) through four paths, repeated and interleaved so that machine noise hits them alike:
  null   a do-nothing paho subscriber (QoS 1, shared subscription) receiving the frames: the broker's pace;
  raw    POST /write of the very line protocol the bridge writes, in batches of the bridge's size, over
         as many connections as the bridge keeps writes in flight (and over one, for comparison):
         the database's pace; timed like the bridge, until the same poller sees every point;
  bridge `python -m cloud_bridge run` (a subprocess): publish -> every point queryable;
  two    two bridge processes in one shared-subscription group (DESIGN.md decision 11).
On a machine with 2+ cores, raw and bridge run again with InfluxDB pinned to CPU 0 and everything else
to the other CPUs (sched_setaffinity on every thread): whether the bridge keeps the database's pace
when it does not take the database's CPU, as deployed.
Then publish-to-queryable latency at 1,000 device identities, one sample per second each.
CPU seconds come from /proc/<pid>/stat (utime + stime) of each process over its phase.

    python -m tools.bench --only bridge            # the whole section (about 3 minutes)
    python -m tools.bench.bridge --quick            # alone, small, prints the figures as JSON
"""
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
for _p in (ROOT, os.path.join(ROOT, "tools", "hostport")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import paho.mqtt.client as mqtt                      # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion      # noqa: E402

from cloud_bridge import mapper                     # noqa: E402
from cloud_bridge.registry import Registry          # noqa: E402
from cloud_bridge.settings import InfluxSettings    # noqa: E402
from cloud_bridge.writer import V1Writer            # noqa: E402
from firmware.comms import frame                    # noqa: E402
from tests.bridge.frames import KEY, Board          # noqa: E402
from tests.bridge.harness import BRIDGE_PW, BRIDGE_USER, BridgeProc, Publisher, wait_until  # noqa: E402

PUB_USER, PUB_PW = "bench-pub", "bench-pub-pw"
CLK_TCK = os.sysconf("SC_CLK_TCK")
FULL = {"devices": 50, "frames": 3000, "samples": 10, "repeat": 5, "lat_devices": 1000,
        "lat_s": 30.0, "lat_batches": (10, 1), "batch_points": 5000}
QUICK = {"devices": 10, "frames": 300, "samples": 10, "repeat": 1, "lat_devices": 100,
         "lat_s": 5.0, "lat_batches": (10,), "batch_points": 5000}


def cpu_s(pid):
    """CPU seconds (user + system, all threads) a process has used so far, from /proc/<pid>/stat."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK     # fields 14 and 15 of proc(5)


def tags_of(device):
    return {"device": device, "site": "-", "group": "-", "board": "-"}


class Fleet:
    """Device identities with their own encoder (boot, seq, device time); frames interleaved."""

    def __init__(self, prefix, n, cells=16, temps=3):
        self.ids = ["%s-%04d" % (prefix, i) for i in range(n)]
        self.boards = [Board(d, cells=cells, temps=temps) for d in self.ids]

    def register(self, registry_path):
        reg = Registry(registry_path)
        for d in self.ids:
            reg.add_device(d, KEY)
        reg.close()

    def frames(self, n, samples):
        """n telemetry frames, round-robin over the devices: [(topic, payload, device)]."""
        out = []
        for k in range(n):
            b = self.boards[k % len(self.boards)]
            out.append(("bms/%s/up/telemetry" % b.device, b.telemetry(samples), b.device))
        return out


def lines_of(items):
    """The line protocol the bridge writes for these frames (the general mapper where the fast path
    is absent, so the benchmark also runs against older trees for before/after figures)."""
    out = []
    fast = getattr(mapper, "telemetry_lines", None)
    for _, raw, dev in items:
        d = frame.decode(raw, dev, KEY)
        if fast is not None:
            out.extend(fast(d, tags_of(dev)))
        else:
            out.extend(mapper.to_line(p) for p in mapper.map_frame(d, tags_of(dev)))
    return out


def run_null(broker, items):
    """A do-nothing QoS 1 subscriber in a shared subscription: frames/s from first publish to last
    message received. The frames go under the topic root `null/` (same sizes, one byte longer), which
    the running bridge does not subscribe to: under `bms/` it would take them too and still be
    writing them during the next phase."""
    got = [0]
    done = threading.Event()
    n = len(items)
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-null", protocol=mqtt.MQTTv5)
    sub.username_pw_set(BRIDGE_USER, BRIDGE_PW)

    def on_message(c, u, m):
        got[0] += 1
        if got[0] == n:
            done.set()
    sub.on_message = on_message
    sub.connect(broker.host, broker.port)
    sub.subscribe("$share/null/null/+/up/#", qos=1)
    sub.loop_start()
    time.sleep(0.5)
    pub = Publisher(broker, PUB_USER, PUB_PW, client_id="bench-pub-null")
    t0 = time.perf_counter()
    pub.publish_all([("null/" + t[len("bms/"):], p) for t, p, _ in items], timeout_s=300)
    done.wait(300)
    dt = time.perf_counter() - t0
    pub.close()
    sub.disconnect()
    sub.loop_stop()
    if got[0] != n:
        raise RuntimeError("null subscriber got %d of %d frames" % (got[0], n))
    return dt


def fresh_db(db):
    db.query('DROP DATABASE "bms"')
    db.create_database("bms")
    time.sleep(0.5)          # let InfluxDB finish dropping the last phase's shards before timing


POLL_S = 0.02      # how often both phases ask InfluxDB whether every point is queryable


def run_raw(db, lines, batch_points, want, writers=1):
    """POST /write of the lines in batches of batch_points over `writers` connections at once (each
    takes the next batch when its last one is answered), timed like the bridge phase: until the same
    poller sees every pack point queryable. The poll costs InfluxDB CPU, so both phases pay it."""
    fresh_db(db)
    batches = [lines[i:i + batch_points] for i in range(0, len(lines), batch_points)]
    nxt = [0]
    lock = threading.Lock()
    errors = []

    def writer():
        w = V1Writer(db.url, "bms")
        try:
            while True:
                with lock:
                    k = nxt[0]
                    nxt[0] += 1
                if k >= len(batches):
                    return
                w.write(batches[k])
        except Exception as e:          # reported below: a failed write must not pass as a fast one
            errors.append(e)
        finally:
            w.close()
    cpu0 = cpu_s(db.proc.pid)
    t0 = time.perf_counter()
    threads = [threading.Thread(target=writer, daemon=True) for _ in range(writers)]
    for t in threads:
        t.start()
    wait_until(lambda: errors or db.count("bms", "pack", "stack_mv") >= want, 300, "raw /write", POLL_S)
    dt = time.perf_counter() - t0
    for t in threads:
        t.join(60)
    if errors:
        raise RuntimeError("raw /write failed: %r" % errors[0])
    return dt, cpu_s(db.proc.pid) - cpu0


def pin(pids, cpus):
    """Restrict every thread of these processes to `cpus` (threads they start later inherit it)."""
    for pid in pids:
        for tid in os.listdir("/proc/%d/task" % pid):
            try:
                os.sched_setaffinity(int(tid), cpus)
            except OSError:              # a thread that just ended
                pass


def run_bridges(db, broker, bridges, items, samples):
    """Publish items; time until every pack point is queryable. CPU of each process over the phase."""
    fresh_db(db)
    want = len(items) * samples
    pids = {"bridge": [b.proc.pid for b in bridges], "influxd": [db.proc.pid],
            "mosquitto": [broker.proc.pid]}
    cpu0 = {k: [cpu_s(p) for p in v] for k, v in pids.items()}
    self0 = time.process_time()
    pub = Publisher(broker, PUB_USER, PUB_PW, client_id="bench-pub-bridge")
    t0 = time.perf_counter()
    pub.publish_all([(t, p) for t, p, _ in items], timeout_s=300)
    wait_until(lambda: db.count("bms", "pack", "stack_mv") >= want, 300, "bridge catch-up", POLL_S)
    dt = time.perf_counter() - t0
    cpu = {k: sum(cpu_s(p) for p in v) - sum(cpu0[k]) for k, v in pids.items()}
    cpu["publisher+poller"] = time.process_time() - self0
    pub.close()
    got = db.count("bms", "pack", "stack_mv")
    if got != want:
        raise RuntimeError("bridge stored %d pack points, expected %d" % (got, want))
    return dt, cpu


def run_latency(db, broker, fleet, samples, duration_s, log):
    """Each device publishes one frame of `samples` samples every `samples` seconds (one sample per
    second per device), spread evenly; frame k is queryable when the pack count reaches
    (k + 1) * samples (one bridge, one publishing connection: written in publish order)."""
    fresh_db(db)
    n_dev = len(fleet.ids)
    rate = n_dev / float(samples)                   # frames per second
    n = int(rate * duration_s)
    items = fleet.frames(n, samples)
    sent = [None] * n
    seen = [None] * n
    stop = threading.Event()

    def poll():
        k = 0
        while not stop.is_set() and k < n:
            c = db.count("bms", "pack", "stack_mv")
            now = time.perf_counter()
            while k < n and c >= (k + 1) * samples:
                seen[k] = now
                k += 1
            time.sleep(0.01)
    poller = threading.Thread(target=poll, daemon=True)
    pub = Publisher(broker, PUB_USER, PUB_PW, client_id="bench-pub-lat")
    poller.start()
    t0 = time.perf_counter()
    late = 0
    for k, (topic, payload, _) in enumerate(items):
        ahead = t0 + k / rate - time.perf_counter()
        if ahead > 0:
            time.sleep(ahead)
        elif ahead < -0.05:
            late += 1
        sent[k] = time.perf_counter()
        pub.client.publish(topic, payload, qos=1)
    poller.join(120)
    stop.set()
    pub.close()
    lat = sorted((s - p) * 1000.0 for s, p in zip(seen, sent) if s is not None)
    if len(lat) != n:
        raise RuntimeError("latency: only %d of %d frames became queryable" % (len(lat), n))
    if late:
        log("latency: the publisher fell >50 ms behind its schedule on %d of %d frames" % (late, n))
    return {"devices": n_dev, "samples_per_frame": samples, "frames_per_s": rate,
            "samples_per_s": rate * samples, "frames": n, "duration_s": duration_s,
            "p50_ms": lat[n // 2], "p99_ms": lat[max(0, int(n * 0.99) - 1)], "max_ms": lat[-1],
            "publisher_late_frames": late,
            # percentiles 0..100 for the plot (nearest rank)
            "cdf_ms": [lat[min(n - 1, int(n * q / 100.0))] for q in range(101)]}


class NullSink:
    """tools/bench/nullsink.py as a subprocess on a free loopback port."""

    def __init__(self):
        import subprocess
        from tools.testservers.mosquitto import free_port
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.proc = subprocess.Popen([sys.executable, "-m", "tools.bench.nullsink", "--port",
                                      str(self.port)], cwd=ROOT, stdout=subprocess.PIPE,
                                     env=dict(os.environ, PYTHONPATH=ROOT))
        self.proc.stdout.readline()            # "listening"

    def count(self):
        import urllib.request
        with urllib.request.urlopen(self.url + "/count", timeout=5) as r:
            return int(r.read())

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


def run_ceiling(broker, bridge, sink, items, samples):
    """The bridge alone: the database replaced by a do-nothing /write (frames/s, bridge CPU s)."""
    base = sink.count()
    want = base + len(items) * samples
    cpu0 = cpu_s(bridge.proc.pid)
    pub = Publisher(broker, PUB_USER, PUB_PW, client_id="bench-pub-ceiling")
    t0 = time.perf_counter()
    pub.publish_all([(t, p) for t, p, _ in items], timeout_s=300)
    wait_until(lambda: sink.count() >= want, 300, "bridge into the null sink", 0.02)
    dt = time.perf_counter() - t0
    pub.close()
    return dt, cpu_s(bridge.proc.pid) - cpu0


def measure(quick=False, log=print):
    """All bridge figures as a dict (see tools/bench/report.py for how they are shown)."""
    cfg = QUICK if quick else FULL
    tmp = tempfile.mkdtemp(prefix="bench-bridge-")
    from tools.testservers.influxdb import InfluxDB1
    from tools.testservers.mosquitto import Mosquitto
    # ACL off: one publishing connection speaks for every device identity (1,000 paho clients with a
    # thread each would measure the Python publisher, not the bridge). Frames are still signed per
    # device and verified by the bridge against each device's key.
    broker = Mosquitto(tmp, users={BRIDGE_USER: BRIDGE_PW, PUB_USER: PUB_PW}, acl=False)
    broker.start()
    db = InfluxDB1(tmp)
    db.start()
    db.create_database("bms")
    bridges = []
    out = {"config": dict(cfg, lat_batches=list(cfg["lat_batches"]))}
    try:
        fleet = Fleet("bench", cfg["devices"])
        lat_fleet = Fleet("lat", cfg["lat_devices"])
        b1 = BridgeProc(tmp, broker, db.url, name="bench1")
        fleet.register(b1.registry)
        lat_fleet.register(b1.registry)
        b2 = BridgeProc(tmp, broker, db.url, name="bench2", registry=b1.registry)
        n, samples = cfg["frames"], cfg["samples"]
        probe = fleet.frames(1, samples)
        pts = lines_of(probe)
        fields = sum(ln.split(" ")[1].count(",") + 1 for ln in pts)
        out["frame"] = {"samples": samples, "cells": 16, "temps": 3, "bytes": len(probe[0][1]),
                        "points": len(pts), "fields": fields}
        log("bridge: frame of %d samples, %d bytes, %d points, %d fields; %d frames per phase from %d"
            " devices, %d rounds" % (samples, len(probe[0][1]), len(pts), fields, n, cfg["devices"],
                                     cfg["repeat"]))
        b1.start()
        bridges.append(b1)
        # raw /write with as many connections as the bridge keeps writes in flight: the same use of
        # the database (one connection, the old bridge's way, is measured too, for comparison)
        writers = InfluxSettings().writes_in_flight
        out["raw_writers"] = writers
        everyone = set(range(os.cpu_count() or 1))
        split = len(everyone) >= 2
        db_cpus, rest_cpus = {0}, everyone - {0}
        out["split"] = {"db_cpus": sorted(db_cpus), "rest_cpus": sorted(rest_cpus)} if split else None
        rounds = []
        for r in range(cfg["repeat"]):
            items = fleet.frames(n, samples)
            t_null = run_null(broker, items)
            raw_lines = lines_of(items)
            want = n * samples
            items = fleet.frames(n, samples)          # fresh seqs: the bridge accepts each frame once
            t_raw1, _ = run_raw(db, raw_lines, cfg["batch_points"], want, 1)
            if r % 2 == 0:                            # alternate the order: no phase always goes first
                t_raw, raw_cpu = run_raw(db, raw_lines, cfg["batch_points"], want, writers)
                t_br, cpu = run_bridges(db, broker, [b1], items, samples)
            else:
                t_br, cpu = run_bridges(db, broker, [b1], items, samples)
                t_raw, raw_cpu = run_raw(db, raw_lines, cfg["batch_points"], want, writers)
            row = {"null_fps": n / t_null, "raw_fps": n / t_raw, "raw1_fps": n / t_raw1, "bridge_fps": n / t_br,
                   "bridge_cpu_s_per_1000": cpu["bridge"] / n * 1000,
                   "influxd_cpu_s_per_1000": cpu["influxd"] / n * 1000,
                   "mosquitto_cpu_s_per_1000": cpu["mosquitto"] / n * 1000,
                   "publisher_cpu_s_per_1000": cpu["publisher+poller"] / n * 1000,
                   "raw_influxd_cpu_s_per_1000": raw_cpu / n * 1000}
            if split:
                # The same two phases with the database on a core of its own and everything else
                # (publisher, mosquitto, the bridge, this process) on the others, as deployed (DESIGN.md
                # decision 11): does the bridge keep the database's pace when it does not take its CPU?
                pin([db.proc.pid], db_cpus)
                pin([os.getpid(), broker.proc.pid, b1.proc.pid], rest_cpus)
                try:
                    items = fleet.frames(n, samples)
                    if r % 2 == 0:
                        t_rawp, _ = run_raw(db, raw_lines, cfg["batch_points"], want, writers)
                        t_brp, _ = run_bridges(db, broker, [b1], items, samples)
                    else:
                        t_brp, _ = run_bridges(db, broker, [b1], items, samples)
                        t_rawp, _ = run_raw(db, raw_lines, cfg["batch_points"], want, writers)
                finally:
                    pin([db.proc.pid, os.getpid(), broker.proc.pid, b1.proc.pid], everyone)
                row.update({"split_raw_fps": n / t_rawp, "split_bridge_fps": n / t_brp})
            rounds.append(row)
            log("bridge round %d: null %.0f, raw /write %.0f (1 connection %.0f), bridge %.0f frames/s; bridge"
                " CPU %.2f s per 1000 frames%s" % (
                    r + 1, row["null_fps"], row["raw_fps"], row["raw1_fps"], row["bridge_fps"],
                    row["bridge_cpu_s_per_1000"],
                    "; database on its own core: raw %.0f, bridge %.0f" % (row["split_raw_fps"], row["split_bridge_fps"])
                    if split else ""))
        out["rounds"] = rounds
        med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
        out["median"] = med
        out["ratio_null"] = statistics.median(r["bridge_fps"] / r["null_fps"] for r in rounds)
        out["ratio_raw"] = statistics.median(r["bridge_fps"] / r["raw_fps"] for r in rounds)
        out["ratio_raw1"] = statistics.median(r["bridge_fps"] / r["raw1_fps"] for r in rounds)
        if split:
            out["ratio_split"] = statistics.median(r["split_bridge_fps"] / r["split_raw_fps"] for r in rounds)
        out["fields_per_s"] = med["bridge_fps"] * fields

        out["latency"] = []
        for batch in cfg["lat_batches"]:
            lat = run_latency(db, broker, lat_fleet, batch, cfg["lat_s"], log)
            out["latency"].append(lat)
            log("bridge latency at %d devices, %d sample(s)/frame (%.0f frames/s): p50 %.0f ms,"
                " p99 %.0f ms" % (lat["devices"], batch, lat["frames_per_s"], lat["p50_ms"],
                                  lat["p99_ms"]))

        b2.start()
        bridges.append(b2)
        two = []
        for r in range(cfg["repeat"]):
            items = fleet.frames(n, samples)
            t2, cpu2 = run_bridges(db, broker, [b1, b2], items, samples)
            two.append({"fps": n / t2, "cpu_s_per_1000": cpu2["bridge"] / n * 1000})
            log("bridge round %d: two bridge processes %.0f frames/s" % (r + 1, n / t2))
        out["two"] = two
        out["two_fps"] = statistics.median(t["fps"] for t in two)
        out["two_cpu_s_per_1000"] = statistics.median(t["cpu_s_per_1000"] for t in two)
        out["two_over_one"] = out["two_fps"] / med["bridge_fps"]
        out["two_ratio_raw"] = out["two_fps"] / med["raw_fps"]
        out["bottleneck_ratio"] = statistics.median(r["bridge_fps"] / min(r["null_fps"], r["raw_fps"])
                                                    for r in rounds)

        # The bridge's own ceiling, last (the other bridges stopped first: their persistent sessions
        # would otherwise be sent these frames later): a bridge in a share group of its own whose
        # database is the do-nothing /write endpoint.
        for b in bridges:
            b.stop()
        sink = NullSink()
        try:
            bn = BridgeProc(tmp, broker, sink.url, name="bench-ceiling", registry=b1.registry)
            with open(bn.config) as f:
                bcfg = json.load(f)
            bcfg["mqtt"]["share_group"] = "ceiling"
            with open(bn.config, "w") as f:
                json.dump(bcfg, f)
            bn.start()
            bridges.append(bn)
            ceil = []
            for r in range(cfg["repeat"]):
                items = fleet.frames(n, samples)
                tc, cpu_c = run_ceiling(broker, bn, sink, items, samples)
                ceil.append({"fps": n / tc, "cpu_s_per_1000": cpu_c / n * 1000})
                log("bridge round %d: bridge into a do-nothing /write %.0f frames/s, CPU %.2f s per"
                    " 1000 frames" % (r + 1, n / tc, cpu_c / n * 1000))
        finally:
            sink.stop()
        out["ceiling"] = ceil
        out["ceiling_fps"] = statistics.median(c["fps"] for c in ceil)
        out["ceiling_cpu_s_per_1000"] = statistics.median(c["cpu_s_per_1000"] for c in ceil)
    finally:
        for b in bridges:
            if b.alive:
                b.stop()
        db.kill()
        broker.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def main(argv=None):
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    args = ap.parse_args(argv)
    print(json.dumps(measure(args.quick, log=lambda m: print(m, file=sys.stderr)), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
