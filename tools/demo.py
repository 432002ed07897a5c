"""`make demo`: a broker, a database, the bridge and a fleet of simulated boards, all real, on loopback.

Starts mosquitto with password file and per-device ACLs (tools/provision.py writes them), InfluxDB 1.x,
the bridge (`python -m cloud_bridge run`), and one process per board running the real firmware with
its comms on an emulated AFE (tools/demo_fleet.py), prints a progress table every few seconds, and on
Ctrl-C or after DURATION seconds stops the boards, lets the bridge store what they sent, writes PNG plots
from InfluxDB to out/demo/, prints how to look at the data, and stops every process it started.

    python tools/demo.py --duration 60 --speed 10 --boards 6      # or DURATION=60 SPEED=10 BOARDS=6
    python tools/demo.py --help

Ctrl-C reaches only this front process: the servers and boards run under a supervisor in its own
session, so they are stopped in order (boards first, then the bridge once it stored their last frames,
then the database and the broker) rather than all killed at once by the terminal.
"""
import argparse
import atexit
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(_HERE)
for _p in (_ROOT, os.path.join(_HERE, "hostport")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

DB = "bms"
TABLE_EVERY_S = 5.0
BRIDGE_READY_S = 60.0
BOARD_STOP_S = 20.0
DRAIN_S = 15.0
PLOT_LAST_S = 7200             # plots show the last 2 simulated hours of each pack
WIFI_SSID, WIFI_KEY = "demo-site", "demo-wifi-key"     # the simulated access point accepts any


def _env_num(name, default, cast=float):
    v = os.environ.get(name, "")
    return cast(v) if v.strip() else default


# ---------------------------------------------------------------- child processes
class Child:
    """A subprocess in its own process group (so all of it can be signalled), output to a log file."""

    def __init__(self, name, argv, log_path, env=None):
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     cwd=_ROOT, env=env, start_new_session=True)

    def alive(self):
        return self.proc.poll() is None

    def signal(self, sig):
        if self.alive():
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def wait(self, timeout_s):
        try:
            self.proc.wait(timeout_s)
            return True
        except subprocess.TimeoutExpired:
            return False

    def stop(self, timeout_s=10.0):
        """SIGTERM, then SIGKILL to the whole group after timeout_s. Returns the exit code."""
        self.signal(signal.SIGTERM)
        if not self.wait(timeout_s):
            self.signal(signal.SIGKILL)
            self.wait(timeout_s)
        # anything the child itself started in its group
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if not self._log.closed:
            self._log.close()
        return self.proc.returncode

    def log_tail(self, n=1500):
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-n:].decode("utf-8", "replace")
        except OSError:
            return ""


# ---------------------------------------------------------------- the demo
class Demo:
    def __init__(self, out_dir, boards=6, speed=10.0, duration_s=0.0, batch_ms=10000, out=sys.stdout):
        from tools import demo_fleet
        if speed <= 0:
            raise ValueError("SPEED must be > 0")
        if duration_s < 0:
            raise ValueError("DURATION must be >= 0 (0: until Ctrl-C)")
        self.out_dir = os.path.abspath(out_dir)
        self.state = os.path.join(self.out_dir, "state")
        self.specs = demo_fleet.fleet(boards)
        self.speed = speed
        self.duration_s = duration_s
        self.batch_ms = batch_ms
        self.out = out
        self.broker = None
        self.influx = None
        self.bridge = None
        self.boards = {}
        self.stop_ev = threading.Event()
        self.plots = []
        self.final = None
        self._stopped = False

    def say(self, text=""):
        print(text, file=self.out, flush=True)

    # --- start ---
    def start(self):
        from tools.provision import Paths, Provisioner
        from tools.testservers.influxdb import InfluxDB1
        from tools.testservers.mosquitto import Mosquitto, free_port
        for b in ("mosquitto", "influxd", "mosquitto_passwd"):
            if shutil.which(b) is None and not os.path.exists("/usr/sbin/" + b):
                raise OSError("%s is not installed: sudo apt-get install -y mosquitto influxdb" % b)
        if os.path.exists(self.state):
            shutil.rmtree(self.state)        # every run starts from nothing (out/ is git-ignored)
        os.makedirs(os.path.join(self.state, "logs"))
        os.makedirs(os.path.join(self.state, "traces"))
        port = free_port()
        self.paths = Paths(os.path.join(self.state, "secrets"))
        prov = Provisioner(self.paths, mqtt_port=port)
        self.bridge_pw = prov.ensure_bridge_user("bridge")
        for s in self.specs:
            prov.create(s.device, site=s.site, group=s.group, board=s.board, wifi_ssid=WIFI_SSID,
                        wifi_key=WIFI_KEY)
        self.say("== provisioned %d boards and the bridge account (%s)" % (len(self.specs), self.paths.base))
        self.broker = Mosquitto(os.path.join(self.state, "mosquitto"), port=port, extra_config=[
            # the helper writes `allow_anonymous true` when it has no users of its own; this overrides it
            "allow_anonymous false", "password_file %s" % self.paths.passwd, "acl_file %s" % self.paths.acl])
        self.broker.start()
        self.say("== mosquitto on %s:%d (password file + per-device ACL)" % (self.broker.host, self.broker.port))
        self.influx = InfluxDB1(self.state)
        self.influx.start()
        self.influx.create_database(DB)
        self.say("== InfluxDB 1.x on %s, database %s" % (self.influx.url, DB))
        self._start_bridge()
        self.say("== bridge subscribed (log %s)" % self.bridge.log_path)
        offset = self.duration_s * (self.speed - 1) if self.duration_s and self.speed > 1 else 0.0
        for i, s in enumerate(self.specs):
            argv = [sys.executable, os.path.join(_HERE, "demo_fleet.py"), "board",
                    "--secrets", self.paths.secrets_file(s.device), "--board", s.board,
                    "--scenario", s.scenario, "--profile", s.profile, "--soc", str(s.soc), "--seed", str(i + 1),
                    "--speed", str(self.speed), "--batch-ms", str(self.batch_ms), "--wall-offset-s", str(offset),
                    "--trace", os.path.join(self.state, "traces", s.device + ".jsonl"),
                    "--state-dir", os.path.join(self.state, "boards", s.device)]
            self.boards[s.device] = Child(s.device, argv, os.path.join(self.state, "logs", s.device + ".log"))
        self.say("== %d boards running the firmware at %gx real time%s"
                 % (len(self.specs), self.speed,
                    ", for %g s" % self.duration_s if self.duration_s else " (Ctrl-C to stop)"))

    def _start_bridge(self):
        cfg = {
            "mqtt": {"host": self.broker.host, "port": self.broker.port, "username": "bridge",
                     "client_id": "demo-bridge", "keepalive_s": 10, "reconnect_min_s": 0.2,
                     "reconnect_max_s": 2.0},
            "influx": {"api": "v1", "url": self.influx.url, "database": DB, "flush_ms": 200},
            "bridge": {"registry": self.paths.registry, "rejects": os.path.join(self.state, "rejects.sqlite"),
                       "metrics_interval_s": 2.0, "instance": "demo",
                       # boards send at least every batch; silent for 3 batches (simulated) = offline
                       "offline_after_s": max(5, int(3 * self.batch_ms / 1000.0 / self.speed) + 5)},
        }
        self.bridge_cfg = os.path.join(self.state, "bridge.json")
        with open(self.bridge_cfg, "w") as f:
            json.dump(cfg, f, indent=1)
        env = dict(os.environ, CLOUD_BRIDGE_MQTT_PASSWORD=self.bridge_pw,
                   PYTHONPATH=_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.bridge = Child("bridge", [sys.executable, "-m", "cloud_bridge", "--config", self.bridge_cfg, "run"],
                            os.path.join(self.state, "logs", "bridge.log"), env=env)
        deadline = time.monotonic() + BRIDGE_READY_S
        while time.monotonic() < deadline:
            if not self.bridge.alive():
                raise OSError("the bridge exited: %s" % self.bridge.log_tail())
            if "mqtt subscribed" in self.bridge.log_tail(100000):
                return
            time.sleep(0.1)
        raise OSError("the bridge did not subscribe within %.0f s: %s" % (BRIDGE_READY_S, self.bridge.log_tail()))

    # --- watch ---
    def _q(self, q):
        r = self.influx.query(q, db=DB, epoch="ms")["results"][0]
        if "error" in r:
            raise OSError(r["error"])
        out = {}
        for s in r.get("series") or []:
            dev = (s.get("tags") or {}).get("device", "")
            out[dev] = dict(zip(s["columns"], s["values"][0]))
        return out

    def snapshot(self):
        """Per device: online (registry), frames and samples stored, last SOC/state/faults (InfluxDB)."""
        from firmware.pack.protection import names as fault_names
        reg = {}
        try:
            db = sqlite3.connect("file:%s?mode=ro" % self.paths.registry, uri=True, timeout=5)
            try:
                for dev, online, last_ms in db.execute("SELECT device_id, online, last_seen_ms FROM devices"):
                    reg[dev] = (online, last_ms)
            finally:
                db.close()
        except sqlite3.Error:
            pass
        counts = self._q('SELECT count("stack_mv") AS samples, count(distinct("seq")) AS frames '
                         'FROM "pack" GROUP BY "device"')
        last = self._q('SELECT last("soc_cpct") AS soc, last("state") AS state, last("faults") AS faults '
                       'FROM "pack" GROUP BY "device"')
        events = self._q('SELECT count("code") AS n FROM "event" GROUP BY "device"')
        bridge = self._q('SELECT last("frames_stored") AS stored, last("rejected") AS rejected FROM "bridge"')
        rows = []
        for s in self.specs:
            c = counts.get(s.device, {})
            l_ = last.get(s.device, {})
            online = reg.get(s.device, (None, None))[0]
            faults = l_.get("faults") or 0
            rows.append({"device": s.device, "site": s.site, "board": s.board, "trouble": s.scenario,
                         "online": {1: "yes", 0: "no"}.get(online, "-"),
                         "frames": c.get("frames", 0), "samples": c.get("samples", 0),
                         "events": events.get(s.device, {}).get("n", 0),
                         "soc": l_.get("soc"), "state": l_.get("state"),
                         "faults": faults, "alarms": fault_names(faults) if faults else "-",
                         "running": self.boards[s.device].alive() if s.device in self.boards else False})
        b = bridge.get("", {})
        return {"rows": rows, "bridge_frames_stored": b.get("stored"), "bridge_rejected": b.get("rejected")}

    def table(self, snap, elapsed_s):
        from firmware.pack.state import NAMES as STATE_NAMES
        rows = snap["rows"]
        online = sum(1 for r in rows if r["online"] == "yes")
        alarms = sum(1 for r in rows if r["faults"])
        lines = ["", "-- %5.0f s real, ~%.0f s simulated: %d/%d online, %d frames / %d samples stored, "
                 "%d with active alarms; bridge stored %s frames, rejected %s"
                 % (elapsed_s, elapsed_s * self.speed, online, len(rows), sum(r["frames"] for r in rows),
                    sum(r["samples"] for r in rows), alarms, snap["bridge_frames_stored"], snap["bridge_rejected"]),
                 "%-9s %-10s %-10s %-11s %-6s %7s %8s %6s %7s %-9s %s"
                 % ("device", "site", "board", "trouble", "online", "frames", "samples", "events", "SOC %",
                    "state", "active alarms")]
        for r in rows:
            st = r["state"]
            lines.append("%-9s %-10s %-10s %-11s %-6s %7d %8d %6d %7s %-9s %s"
                         % (r["device"], r["site"], r["board"], r["trouble"], r["online"], r["frames"],
                            r["samples"], r["events"], "%.1f" % (r["soc"] / 100.0) if r["soc"] is not None else "-",
                            STATE_NAMES[st] if st is not None and 0 <= st < len(STATE_NAMES) else "-",
                            r["alarms"]))
        return "\n".join(lines)

    def watch(self):
        t0 = time.monotonic()
        next_table = t0 + TABLE_EVERY_S
        while not self.stop_ev.is_set():
            now = time.monotonic()
            if self.duration_s and now - t0 >= self.duration_s:
                break
            if not self.bridge.alive():
                raise OSError("the bridge exited: %s" % self.bridge.log_tail())
            for name, c in self.boards.items():
                if not c.alive():
                    raise OSError("board %s exited with %s: %s" % (name, c.proc.returncode, c.log_tail()))
            if now >= next_table:
                next_table = now + TABLE_EVERY_S
                try:
                    self.say(self.table(self.snapshot(), now - t0))
                except OSError as e:
                    self.say("(progress: %s)" % e)
            wait = next_table - time.monotonic()
            if self.duration_s:
                wait = min(wait, t0 + self.duration_s - time.monotonic())
            self.stop_ev.wait(max(0.05, min(1.0, wait)))
        return time.monotonic() - t0

    # --- stop ---
    def stop_boards(self):
        for c in self.boards.values():
            c.signal(signal.SIGTERM)       # each board closes its open frames and sends them
        codes = {}
        deadline = time.monotonic() + BOARD_STOP_S
        for name, c in self.boards.items():
            c.wait(max(0.1, deadline - time.monotonic()))
            codes[name] = c.stop(2.0)
        return codes

    def drain(self):
        """Wait (bounded) until the bridge's stored-frame count stops growing."""
        prev, stable, deadline = None, 0, time.monotonic() + DRAIN_S
        while time.monotonic() < deadline:
            try:
                n = sum(r["frames"] for r in self.snapshot()["rows"])
            except OSError:
                n = None
            stable = stable + 1 if n == prev else 0
            if stable >= 3:
                return
            prev = n
            time.sleep(0.5)

    def write_plots(self):
        from tools import plot_run
        os.makedirs(self.out_dir, exist_ok=True)
        for s in self.specs:
            path = os.path.join(self.out_dir, "%s.png" % s.device)
            try:
                run = plot_run.from_influx(self.influx.url, DB, s.device, last_s=PLOT_LAST_S)
                plot_run.plot(run, path, "%s (%s, %s, %s): stored by the bridge in InfluxDB"
                              % (s.device, s.site, s.board, s.scenario))
                self.plots.append(path)
            except (ValueError, OSError) as e:
                self.say("no plot for %s: %s" % (s.device, e))

    def how_to_look(self):
        conf = self.influx.config
        lines = [
            "",
            "== How to look at the data",
            "Plots (from InfluxDB):",
        ] + ["  %s" % os.path.relpath(p, _ROOT) for p in self.plots] + [
            "Board traces (what each simulated board saw, one line per simulated second):",
            "  %s/*.jsonl   (python tools/plot_run.py --trace FILE -o FILE.png)" % os.path.relpath(
                os.path.join(self.state, "traces"), _ROOT),
            "The data stays in %s. Start that InfluxDB again with:" % os.path.relpath(self.influx.folder, _ROOT),
            "  influxd run -config %s &" % os.path.relpath(conf, _ROOT),
            "then query it (InfluxQL):",
            "  curl -sG %s/query --data-urlencode db=%s --data-urlencode \"q=SELECT count(stack_mv) FROM pack "
            "GROUP BY device\"" % (self.influx.url, DB),
            "  curl -sG %s/query --data-urlencode db=%s --data-urlencode \"q=SELECT last(soc_pct), last(faults) "
            "FROM pack GROUP BY device\"" % (self.influx.url, DB),
            "  curl -sG %s/query --data-urlencode db=%s --data-urlencode \"q=SELECT mv FROM cell WHERE "
            "device='%s' ORDER BY time DESC LIMIT 16\"" % (self.influx.url, DB, self.specs[0].device),
            "  curl -sG %s/query --data-urlencode db=%s --data-urlencode \"q=SELECT * FROM event\""
            % (self.influx.url, DB),
            "  python tools/plot_run.py --influx %s --device %s -o out/%s.png"
            % (self.influx.url, self.specs[0].device, self.specs[0].device),
        ]
        compose = os.path.join(_ROOT, "cloud_bridge", "deploy", "compose.yaml")
        if os.path.exists(compose):
            lines += ["Grafana with the project's dashboards and alerts: the full stack (its own broker,",
                      "InfluxDB and bridge; see docs/operations.md):",
                      "  docker compose -f cloud_bridge/deploy/compose.yaml up -d",
                      "  or, for this demo's data, add an InfluxDB (InfluxQL) datasource %s, database %s, to"
                      % (self.influx.url, DB),
                      "  any Grafana and import cloud_bridge/grafana/dashboards/*.json."]
        lines += ["Logs: %s" % os.path.relpath(os.path.join(self.state, "logs"), _ROOT)]
        return "\n".join(lines)

    def shutdown(self):
        """Stop everything this demo started, in order; safe to call twice and after a failed start."""
        if self._stopped:
            return
        self._stopped = True
        for c in self.boards.values():
            c.stop(2.0)
        if self.bridge is not None:
            self.bridge.stop(10.0)
        if self.influx is not None:
            self.influx.stop()
        if self.broker is not None:
            try:
                self.broker.stop()
            finally:
                self.broker.kill()

    def run(self):
        """The whole demo; returns the final snapshot. Stops everything even on an exception."""
        atexit.register(self.shutdown)
        try:
            self.start()
            elapsed = self.watch()
            self.say("\n== stopping the boards (they send their last frames)")
            codes = self.stop_boards()
            bad = {k: v for k, v in codes.items() if v not in (0, None)}
            if bad:
                self.say("boards that did not exit cleanly: %s" % bad)
            self.drain()
            self.final = self.snapshot()
            self.say(self.table(self.final, elapsed))
            self.write_plots()
            self.say(self.how_to_look())
            self.final["board_exit_codes"] = codes
            return self.final
        finally:
            self.shutdown()


# ---------------------------------------------------------------- front process
def _supervised(a):
    try:
        demo = Demo(a.out, a.boards, a.speed, a.duration, a.batch_ms)
    except ValueError as e:
        print("demo: %s" % e, file=sys.stderr, flush=True)
        return 2

    from tools.demo_fleet import StopFlag
    _stop = StopFlag(demo.stop_ev)        # sets the event from a thread: see StopFlag
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    parent = os.getppid()

    def _orphan_watch():
        # the front process was killed outright: stop in order rather than run on forever
        while not demo.stop_ev.wait(1.0):
            if os.getppid() != parent:
                demo.stop_ev.set()
    threading.Thread(target=_orphan_watch, daemon=True).start()
    try:
        final = demo.run()
    except (OSError, ValueError) as e:
        print("demo: %s" % e, file=sys.stderr, flush=True)
        return 1
    if a.summary:
        with open(a.summary, "w") as f:
            json.dump(dict(final, plots=demo.plots, state=demo.state), f, indent=1)
    silent = [r["device"] for r in final["rows"] if not r["samples"]]
    if silent:
        print("demo: no telemetry stored from %s; see the logs in %s" % (", ".join(silent),
              os.path.join(demo.state, "logs")), file=sys.stderr, flush=True)
        return 3
    return 0


def build_parser():
    ap = argparse.ArgumentParser(prog="demo.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=_env_num("DURATION", 0.0),
                    help="real seconds to run, 0 = until Ctrl-C (env DURATION)")
    ap.add_argument("--speed", type=float, default=_env_num("SPEED", 10.0),
                    help="simulated seconds per real second (env SPEED, default 10)")
    ap.add_argument("--boards", type=int, default=_env_num("BOARDS", 6, int),
                    help="number of simulated boards (env BOARDS, default 6)")
    ap.add_argument("--batch-ms", type=int, default=10000, help="telemetry batch interval of the boards (simulated ms)")
    ap.add_argument("--out", default=os.path.join(_ROOT, "out", "demo"), help="plots and state (default out/demo)")
    ap.add_argument("--summary", metavar="FILE.json", help="write the final table as JSON (tests)")
    ap.add_argument("--supervised", action="store_true", help=argparse.SUPPRESS)
    return ap


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    a = build_parser().parse_args(argv)
    if a.supervised:
        return _supervised(a)
    # The supervisor runs in its own session, so the terminal's Ctrl-C reaches only us; we pass it on once.
    child = subprocess.Popen([sys.executable, os.path.abspath(__file__)] + argv + ["--supervised"],
                             start_new_session=True)
    asked = [False]

    def _forward(signum, frame):
        if not asked[0]:
            asked[0] = True
            print("\n(stopping: boards, then bridge, database and broker; wait a few seconds)", flush=True)
        try:
            child.send_signal(signal.SIGINT)
        except ProcessLookupError:
            pass
    signal.signal(signal.SIGINT, _forward)
    signal.signal(signal.SIGTERM, _forward)
    while True:
        try:
            return child.wait()
        except KeyboardInterrupt:      # pragma: no cover - the handler above replaces it
            _forward(signal.SIGINT, None)


if __name__ == "__main__":
    sys.exit(main())
