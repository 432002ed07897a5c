"""Shared pieces of the comms tests: a device with a key, a sample stream, a decoding subscriber that
answers with delivery receipts as the bridge does (the bridge itself is tested in tests/bridge)."""
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
    # Simulated time runs far ahead of the real time a receipt takes to come back through the broker:
    # only tests of the timeout itself shorten it (resends after a new session are unaffected).
    kw.setdefault("receipt_timeout_ms", 600000)
    return Comms(dev, key, link, spill_dir=str(tmp_path / "outbox"), state_dir=str(tmp_path / "state"),
                 cell_count=4, temp_count=1, fw_version="0.1.0", board_name="sim4", **kw)


def wifi_instant():
    network.SIM.connect_delay_ms = 0


def settle(comms, sim_clock, budget_ms, timeout_s=10.0, period_ms=250):
    """Poll (simulated period, real pauses) until the link is up and the outboxes are empty: receipts
    come back in real time. True when so."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        comms.poll(budget_ms)
        if comms.pending() == 0 and comms.link.up:
            return True
        sim_clock.advance_ms(period_ms)
        time.sleep(0.02)
    if comms.pending():
        print("settle: not drained:", delivery_state(comms))
    return comms.pending() == 0


def delivery_state(comms):
    """The delivery counters, for failure messages."""
    t, e = comms.tlm_box, comms.evt_box
    return {"link_up": comms.link.up, "sessions": comms.link.sessions, "sent": comms.frames_sent,
            "confirmed": comms.frames_confirmed, "resends": comms.resends, "receipts": comms.receipts_in,
            "bad_receipts": comms.bad_receipts, "tlm": (len(t), t.sent, t.flash_frames()),
            "evt": (len(e), e.sent, e.flash_frames()), "inbox_dropped": comms.link.inbox_dropped}


class Subscriber:
    """A paho client with a persistent session (QoS 1) that decodes every uplink frame of one device
    and, like the bridge once a frame is stored, publishes a signed receipt for it (receipts=True)."""

    def __init__(self, broker, dev=DEV, key=KEY, user="bridge", client_id="test-sub", receipts=True):
        self.dev, self.key = dev, key
        self.receipts = receipts
        self.receipts_sent = 0
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
                d = frame.decode(bytes(msg.payload), self.dev, self.key)
            except frame.FrameError as e:
                self.errors.append(e)
                return
            self.frames.append(d)
        if self.receipts:    # the frame is "stored" (in self.frames): confirm it to the board
            for r in frame.encode_receipts(self.dev, self.key, d["boot"], [d["seq"]]):
                client.publish("bms/%s/down/receipt" % self.dev, r, qos=1)   # as the bridge
            self.receipts_sent += 1

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
