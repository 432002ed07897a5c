"""Shared pieces of the comms tests: a device with a key, a sample stream, a decoding subscriber."""
import threading
import time

import network
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from firmware.comms import frame
from firmware.comms.link import Link
from firmware.comms.service import Comms
from firmware.sample import Sample

DEV = "bms-0001"
KEY = bytes(range(32))
PW = {"bms-0001": "pw-dev-1", "bms-0002": "pw-dev-2", "bridge": "pw-bridge", "operator": "pw-op"}


def broker_users():
    return dict(PW)


def make_sample(cells=4, temps=1):
    s = Sample(cells, temps)
    for i in range(cells):
        s.cell_mv[i] = 3300 + i
    for j in range(temps):
        s.temp_dc[j] = 250
    s.stack_mv = 3300 * cells
    s.pack_mv = s.stack_mv
    s.soc_cpct = 5000
    return s


def step_sample(s, i):
    """Sample number i of the stream: the current carries i so every sample is recognisable."""
    import time as t
    s.t_ms = t.ticks_ms()
    s.current_ma = i
    s.cell_mv[0] = 3300 + (i % 7)


def make_link(broker, dev=DEV, password=None, **kw):
    kw.setdefault("backoff_min_ms", 200)
    kw.setdefault("backoff_max_ms", 2000)
    return Link(dev, "sim-ap", "wifi-key", broker.host if broker else "127.0.0.1",
                port=broker.port if broker else kw.pop("port"), user=dev,
                password=PW.get(dev) if password is None else password, **kw)


def make_comms(tmp_path, link, dev=DEV, key=KEY, **kw):
    kw.setdefault("sample_every_ms", 1000)
    kw.setdefault("batch_ms", 5000)
    return Comms(dev, key, link, spill_dir=str(tmp_path / "outbox"), state_dir=str(tmp_path / "state"),
                 cell_count=4, temp_count=1, fw_version="0.1.0", board_name="sim4", **kw)


def wifi_instant():
    network.SIM.connect_delay_ms = 0


class Subscriber:
    """A paho client with a persistent session (QoS 1) that decodes every uplink frame of one device."""

    def __init__(self, broker, dev=DEV, key=KEY, user="bridge", client_id="test-sub"):
        self.dev, self.key = dev, key
        self.lock = threading.Lock()
        self.frames = []          # decoded dicts, arrival order
        self.raw = []             # (topic, payload)
        self.errors = []
        self.connected = threading.Event()
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False,
                        protocol=paho.MQTTv311)
        c.username_pw_set(user, PW[user])
        c.reconnect_delay_set(0.05, 0.5)
        c.on_connect = self._on_connect
        c.on_message = self._on_message
        self.c = c
        c.connect(broker.host, broker.port, 30)
        c.loop_start()
        if not self.connected.wait(10):
            raise RuntimeError("subscriber did not connect")

    def _on_connect(self, client, userdata, flags, rc, props):
        if not rc.is_failure:
            client.subscribe("bms/+/up/#", qos=1)
            self.connected.set()

    def _on_message(self, client, userdata, msg):
        with self.lock:
            self.raw.append((msg.topic, bytes(msg.payload), msg.retain))
            if msg.payload == b"offline":
                return
            try:
                self.frames.append(frame.decode(bytes(msg.payload), self.dev, self.key))
            except frame.FrameError as e:
                self.errors.append(e)

    def wait_for(self, pred, timeout_s=10.0):
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            with self.lock:
                if pred(self):
                    return True
            time.sleep(0.02)
        with self.lock:
            return pred(self)

    def samples(self):
        """[(boot, seq, current_ma)] of every telemetry sample received (duplicates included)."""
        out = []
        for d in self.frames:
            if d["kind"] == frame.KIND_TELEMETRY:
                for s in d["samples"]:
                    out.append((d["boot"], d["seq"], s["current_ma"]))
        return out

    def of_kind(self, kind):
        return [d for d in self.frames if d["kind"] == kind]

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()
