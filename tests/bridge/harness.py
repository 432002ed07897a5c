"""Helpers of the end-to-end tests: the bridge as a real subprocess, a device publisher, bounded waits.

    br = BridgeProc(tmp_path, broker, influx_url); br.start(); ...; br.kill9(); br.start()
    pub = Publisher(broker, "bms-0001", "pw"); pub.publish_all([("bms/bms-0001/up/telemetry", raw)])
"""
import json
import os
import signal
import subprocess
import sys
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BRIDGE_USER, BRIDGE_PW = "bridge", "bridge-pw"
RECEIVE_MAX = 500      # MQTT v5 Receive Maximum of the bridge under test


def wait_until(cond, timeout_s, what, step_s=0.05):
    """Poll cond() until it is true; AssertionError naming `what` after timeout_s."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = cond()
        if last:
            return last
        time.sleep(step_s)
    raise AssertionError("timed out after %.0f s waiting for %s (last: %r)" % (timeout_s, what, last))


STARTED = []     # every BridgeProc started; tests/bridge/conftest.py kills leftovers after each test


class BridgeProc:
    """`python -m cloud_bridge run` as a subprocess with a generated settings file."""

    def __init__(self, folder, broker, influx_url, api="v1", name="b1", share_group="bridge",
                 **bridge_overrides):
        self.folder = os.path.join(str(folder), "bridge-" + name)
        os.makedirs(self.folder, exist_ok=True)
        self.registry = os.path.join(self.folder, "registry.sqlite")
        self.rejects = os.path.join(self.folder, "rejects.sqlite")
        self.log_path = os.path.join(self.folder, "bridge.log")
        cfg = {
            "mqtt": {"host": broker.host, "port": broker.port, "username": BRIDGE_USER,
                     "client_id": "cloud-bridge-" + name, "share_group": share_group,
                     "reconnect_min_s": 0.1, "reconnect_max_s": 1.0, "receive_maximum": RECEIVE_MAX,
                     "keepalive_s": 10},
            "influx": {"api": api, "url": influx_url, "database": "bms", "bucket": "bms",
                       "flush_ms": 50, "batch_points": 5000, "retry_min_s": 0.05,
                       "retry_max_s": 0.5, "timeout_s": 3.0},
            "bridge": {"registry": self.registry, "rejects": self.rejects,
                       "metrics_interval_s": 1.0, "instance": name},
        }
        cfg["bridge"].update(bridge_overrides)
        self.registry = cfg["bridge"]["registry"]
        self.config = os.path.join(self.folder, "bridge.json")
        with open(self.config, "w") as f:
            json.dump(cfg, f)
        self.proc = None
        self.starts = 0

    def start(self, wait_subscribed=True):
        env = dict(os.environ, CLOUD_BRIDGE_MQTT_PASSWORD=BRIDGE_PW, PYTHONPATH=ROOT)
        self._log = open(self.log_path, "ab")
        self.starts += 1
        STARTED.append(self)
        self.proc = subprocess.Popen([sys.executable, "-m", "cloud_bridge", "--config", self.config,
                                      "run"], cwd=ROOT, env=env, stdout=self._log,
                                     stderr=subprocess.STDOUT)
        if wait_subscribed:
            wait_until(lambda: self.count_log("mqtt subscribed") >= self.starts or self._dead(), 30,
                       "bridge subscribed")
            if self._dead():
                raise AssertionError("bridge exited: %s" % self.log_text()[-3000:])
        return self

    def _dead(self):
        return self.proc.poll() is not None

    def log_lines(self):
        out = []
        try:
            with open(self.log_path, "rb") as f:
                for ln in f:
                    try:
                        out.append(json.loads(ln))
                    except ValueError:
                        out.append({"raw": ln.decode("utf-8", "replace")})
        except OSError:
            pass
        return out

    def log_text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def count_log(self, msg):
        return sum(1 for d in self.log_lines() if d.get("msg") == msg)

    def last_metrics(self):
        m = [d for d in self.log_lines() if d.get("msg") in ("metrics", "bridge stopped")]
        return m[-1] if m else {}

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._log.close()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
            self._log.close()
        return self.proc.returncode if self.proc else None

    @property
    def alive(self):
        return self.proc is not None and self.proc.poll() is None


class Publisher:
    """A device's MQTT v5 connection (QoS 1), optionally with the last will the firmware sets."""

    def __init__(self, broker, device, password, will=None, client_id=None):
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or "pub-" + device,
                        protocol=mqtt.MQTTv5)
        c.username_pw_set(device, password)
        c.max_inflight_messages_set(200)
        c.max_queued_messages_set(0)
        if will is not None:
            c.will_set("bms/%s/up/status" % device, will, qos=1, retain=True)
        c.connect(broker.host, broker.port, keepalive=10)
        c.loop_start()
        self.client = c

    def publish_all(self, items, timeout_s=60, rate_per_s=None):
        """Publish (topic, payload) pairs at QoS 1 and wait for every PUBACK. Returns the reason codes."""
        infos = []
        t0 = time.monotonic()
        for i, (topic, payload) in enumerate(items):
            if rate_per_s:
                ahead = t0 + i / rate_per_s - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
            infos.append(self.client.publish(topic, payload, qos=1))
        deadline = time.monotonic() + timeout_s
        for info in infos:
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
            if not info.is_published():
                raise AssertionError("publish not acknowledged by the broker")
        return infos

    def drop(self):
        """Vanish without DISCONNECT (the broker then publishes the last will)."""
        self.client.loop_stop()
        self.client.socket().close()

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()
