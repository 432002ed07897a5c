"""Shared pieces of the reliability drills: the result record, the server rig, and the counting.

    rig = Rig(folder, devices=["bms-0001"]).start()
    keys = rig.stored_keys("bms-0001")      # [(boot, seq, current_ma)] of every stored pack point
    r = Result("bridge_kill", "Bridge killed with SIGKILL"); r.count_samples(sent, keys, ...)

The rig reuses the project's real servers (tools/testservers) and the bridge harness of the tests
(tests/bridge/harness.py: the bridge as a subprocess); nothing here is a second launcher.
Counting: a sample is identified by (boot, seq, current_ma) - every drill makes current_ma unique per
sample of a device - so `lost` is what was sent and is not in InfluxDB, `duplicated after dedup` is how
many stored points repeat a sample (InfluxDB overwrites the same series + timestamp, so this catches a
sample stored twice at different times), and `duplicated before dedup` is what the broker delivered
more than once (an observer's QoS 1 subscription) plus what the bridge refused as a replay.
"""
import os
import sqlite3
import threading
import time

from tools.hostport.install import install

CLOCK = install()          # MicroPython's time API on CPython: the board-side drills need it

import paho.mqtt.client as paho  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from cloud_bridge.registry import Registry  # noqa: E402
from firmware.comms import frame  # noqa: E402
from tests.bridge.frames import KEY  # noqa: E402
from tests.bridge.harness import BRIDGE_PW, BRIDGE_USER, BridgeProc, wait_until  # noqa: E402
from tests.comms import comms_helpers  # noqa: E402
from tools.testservers.influxdb import InfluxDB1  # noqa: E402
from tools.testservers.mosquitto import Mosquitto  # noqa: E402

OBSERVER_USER, OBSERVER_PW = "observer", "pw-observer"


def device_password(dev):
    """The comms tests' passwords for their devices (comms_helpers.PW), a derived one otherwise."""
    return comms_helpers.PW.get(dev, "pw-" + dev)


class Result:
    """What one drill measured: ordered figures, optional tables, a verdict and notes."""

    def __init__(self, name, title, proves):
        self.name = name
        self.title = title
        self.proves = proves
        self.figures = []          # (label, value)
        self.tables = []           # (caption, header, rows)
        self.notes = []
        self.ok = True
        self.failures = []
        self.duration_s = 0.0

    def add(self, label, value):
        self.figures.append((label, value))
        return value

    def check(self, cond, what):
        """A target of the drill: recorded as a failure (never raised) when not met."""
        if not cond:
            self.ok = False
            self.failures.append(what)
        return cond

    def note(self, text):
        self.notes.append(text)

    def table(self, caption, header, rows):
        self.tables.append((caption, header, rows))

    def count_samples(self, sent_keys, stored_keys, wire_dups=None, replays=None):
        """The standard figures from the sent and stored sample identities (lists of tuples)."""
        sent = set(sent_keys)
        stored_distinct = set(stored_keys)
        lost = len(sent - stored_distinct)
        extra = len(stored_distinct - sent)
        dup_after = len(stored_keys) - len(stored_distinct)
        self.add("samples sent", len(sent_keys))
        self.add("samples stored (points in InfluxDB)", len(stored_keys))
        self.add("samples lost", lost)
        if wire_dups is not None:
            self.add("frames the broker delivered twice to a plain QoS 1 subscriber (before dedup)", wire_dups)
        if replays is not None:
            self.add("frames redelivered to the bridge and refused as replay (before dedup)", replays)
        self.add("samples duplicated after dedup", dup_after)
        self.add("stored samples never sent", extra)
        self.check(len(sent) == len(sent_keys), "sent sample identities are not unique")
        self.check(lost == 0, "%d samples lost" % lost)
        self.check(dup_after == 0, "%d samples stored twice" % dup_after)
        self.check(extra == 0, "%d stored samples were never sent" % extra)
        return lost, dup_after


class Observer:
    """A QoS 1 subscriber with a persistent session that counts every delivery of every uplink frame
    by (device, boot, seq): broker-level duplicates are deliveries minus distinct frames."""

    def __init__(self, broker, client_id="drill-observer"):
        self.lock = threading.Lock()
        self.deliveries = {}
        self.connected = threading.Event()
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False,
                        protocol=paho.MQTTv311)
        c.username_pw_set(OBSERVER_USER, OBSERVER_PW)
        c.reconnect_delay_set(0.05, 0.5)
        c.on_connect = self._on_connect
        c.on_message = self._on_message
        c.connect(broker.host, broker.port, 30)
        c.loop_start()
        self.c = c
        if not self.connected.wait(10):
            raise RuntimeError("observer did not connect")

    def _on_connect(self, client, userdata, flags, rc, props):
        if not rc.is_failure:
            client.subscribe("bms/+/up/#", qos=1)
            self.connected.set()

    def _on_message(self, client, userdata, msg):
        dev = msg.topic.split("/")[1]
        try:
            h = frame.peek_header(bytes(msg.payload))
        except frame.FrameError:
            return                       # the last will (b"offline") and any junk
        k = (dev, h["boot"], h["seq"])
        with self.lock:
            self.deliveries[k] = self.deliveries.get(k, 0) + 1

    def duplicates(self):
        with self.lock:
            return sum(n - 1 for n in self.deliveries.values())

    def frames(self):
        with self.lock:
            return len(self.deliveries)

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


class Rig:
    """mosquitto (passwords + per-device ACL) + InfluxDB 1.x + the bridge subprocess, all on loopback."""

    def __init__(self, folder, devices, persistence=False, key=KEY, share_group="bridge"):
        self.folder = str(folder)
        self.share_group = share_group     # "" = a plain subscription (the bridge's default is "bridge", a shared one)
        self.devices = list(devices)
        users = dict((d, device_password(d)) for d in self.devices)
        users[BRIDGE_USER] = BRIDGE_PW
        users[OBSERVER_USER] = OBSERVER_PW
        extra = ["autosave_on_changes true"] if persistence else []
        self.broker = Mosquitto(os.path.join(self.folder, "mosquitto"), users=users, acl=True,
                                persistence=persistence, bridge_users=(BRIDGE_USER, OBSERVER_USER),
                                autosave_interval_s=1 if persistence else None, extra_config=extra)
        self.db = InfluxDB1(self.folder)
        self.bridge = None
        self.key = key
        self.observer = None

    def start(self, observer=True):
        self.broker.start()
        self.db.start()
        self.db.create_database("bms")
        self.bridge = BridgeProc(self.folder, self.broker, self.db.url, share_group=self.share_group)
        reg = Registry(self.bridge.registry)
        for d in self.devices:
            reg.add_device(d, self.key)
        self.bridge.start()
        if observer:
            self.observer = Observer(self.broker)
        return self

    def stop(self):
        if self.observer is not None:
            self.observer.close()
        if self.bridge is not None:
            if self.bridge.alive:
                self.bridge.stop()
            elif self.bridge.proc is not None and self.bridge.proc.poll() is None:
                self.bridge.proc.kill()
        self.db.kill()
        self.broker.stop()
        self.broker.kill()

    # --- counting ---
    def stored_keys(self, dev):
        """[(boot, seq, current_ma)] of every pack point of dev (duplicates kept)."""
        rows = self.db.select("bms", "SELECT boot, seq, current_ma FROM pack WHERE device = '%s'" % dev)
        return [(r["boot"], r["seq"], r["current_ma"]) for r in rows]

    def stored_count(self, dev):
        return self.db.count("bms", "pack", "stack_mv", "device = '%s'" % dev)

    def wait_stored(self, want_by_dev, timeout_s):
        """Wait (bounded) until every device has at least its wanted number of points; True if reached."""
        try:
            wait_until(lambda: all(self.stored_count(d) >= n for d, n in want_by_dev.items()), timeout_s,
                       "samples stored", step_s=0.25)
            return True
        except AssertionError:
            return False

    def reject_totals(self):
        if self.bridge is None or not os.path.exists(self.bridge.rejects):
            return {}
        con = sqlite3.connect(self.bridge.rejects)
        try:
            return dict(con.execute("SELECT reason, n FROM reject_totals"))
        except sqlite3.OperationalError:
            return {}
        finally:
            con.close()

    def replays(self):
        return self.reject_totals().get("replay", 0)

    def bridge_frames_in(self):
        """Messages the bridge took from the broker, summed over its lives (a new life at each
        "bridge starting"; each life's last metrics line, logged every second, so a killed life's
        final second is missing: a lower bound)."""
        total, cur = 0, 0
        for d in self.bridge.log_lines():
            if d.get("msg") == "bridge starting":
                total += cur
                cur = 0
            elif d.get("msg") in ("metrics", "bridge stopped"):
                cur = max(cur, d.get("frames_in", 0))
        return total + cur


def settle(seconds):
    """Real-time pause between drill phases (the servers run in real time)."""
    time.sleep(seconds)


class SimDevice:
    """The board-side comms (firmware/comms/service.py over the umqtt stand-in and the simulated radio)
    driven cycle by cycle in simulated time; every sample it takes carries current_ma = its number.

        dev = SimDevice(rig, folder, "bms-0001"); dev.cycles(40); dev.drain(); dev.sent_keys()
    """

    # While frames wait for the bridge's receipt, simulated time runs at most this many times faster
    # than real time: the receipt takes real time (broker, bridge, database), and the board's resend
    # timeout (the firmware's default, 30 s) is simulated time. Otherwise cycles run as fast as they can.
    PACED_SPEED = 20

    def __init__(self, rig, folder, dev, sample_every_ms=1000, batch_ms=10000, budget_ms=150,
                 period_ms=250, receipt_timeout_ms=30000, **link_kw):
        import pathlib
        self.dev = dev
        comms_helpers.wifi_instant()
        self.link = comms_helpers.make_link(rig.broker, dev=dev, password=device_password(dev), **link_kw)
        self.comms = comms_helpers.make_comms(pathlib.Path(folder) / dev, self.link, dev=dev,
                                              sample_every_ms=sample_every_ms, batch_ms=batch_ms,
                                              receipt_timeout_ms=receipt_timeout_ms)
        self.budget_ms = budget_ms
        self.period_ms = period_ms
        self.s = comms_helpers.make_sample()
        self.k = 0
        self.taken = []
        self.max_pending = 0

    def cycles(self, n):
        c = self.comms
        for _ in range(n):
            comms_helpers.step_sample(self.s, self.k)
            before = c.samples
            c.offer_sample(self.s)
            if c.samples != before:
                self.taken.append(self.k)
            self.k += 1
            c.poll(self.budget_ms)
            p = c.pending()
            if p > self.max_pending:
                self.max_pending = p
            self._pace()
            CLOCK.advance_ms(self.period_ms)

    def _pace(self):
        c = self.comms
        if self.link.up and (c.tlm_box.sent or c.evt_box.sent):
            time.sleep(self.period_ms / 1000.0 / self.PACED_SPEED)

    def drain(self, timeout_s=60.0):
        """Close the open batch and poll until the outboxes are empty, every frame confirmed by a
        receipt (bounded in real time); True when empty."""
        self.comms.flush()
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if self.comms.pending() == 0:
                return True
            self.comms.poll(self.budget_ms)
            self._pace()
            CLOCK.advance_ms(self.period_ms)
        return self.comms.pending() == 0

    def sent_keys(self):
        return [(self.dev, self.comms.boot, k) for k in self.taken]


def board_keys(rig, dev):
    """Stored samples of a SimDevice as (device, boot, current_ma): current_ma is the sample number."""
    return [(dev, b, c) for b, _, c in rig.stored_keys(dev)]


def simulated_time():
    """Fresh board state (tools/hostport) and simulated time from now on; call real_time() after."""
    from tools.hostport.install import reset_state
    reset_state()
    CLOCK.simulate(start_ms=CLOCK.now_ms() + 1)


def real_time():
    from tools.hostport.install import reset_state
    reset_state()
