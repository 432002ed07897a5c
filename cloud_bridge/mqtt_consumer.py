"""The MQTT side of the bridge: a persistent MQTT v5 session, plain or shared subscription, manual acks.

paho-mqtt 2.x runs the network in its own thread (loop_start) and reconnects with exponential backoff.
Every QoS 1 message is handed over as a `Message` through a queue; nothing is acknowledged until the
bridge calls `ack(msg)`, which it does only after the database confirmed the write. Because the
session is persistent (clean_start False, a session expiry interval) the broker keeps what we did not
acknowledge across a crash or a reconnect and sends it again. The MQTT v5 Receive Maximum bounds how
many unacknowledged messages the broker sends us, so the queue is bounded and a slow database slows the
broker down instead of filling our memory.

    c = MqttConsumer(settings.mqtt, log); c.start()
    msg = c.messages.get(timeout=0.2); ...; c.ack(msg)

Subscriptions are made in on_connect, so a reconnect restores them (also after the broker lost the
session). Topic: `<topic_root>/+/up/#` at QoS 1, or `$share/<share_group>/<topic_root>/+/up/#` when a
share group is set: several bridge instances with the same group split the load, none holds anything
another needs. The default is the group "bridge" (see settings.MqttSettings.share_group for what a
broker restart costs on mosquitto: resends by the boards, nothing lost).
"""
import queue
import ssl
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions


class Message:
    __slots__ = ("topic", "payload", "qos", "mid", "generation", "recv_ms", "dup")

    def __init__(self, topic, payload, qos, mid, generation, recv_ms, dup):
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.mid = mid
        self.generation = generation
        self.recv_ms = recv_ms
        self.dup = dup


class MqttConsumer:
    def __init__(self, mqtt_settings, log=None):
        s = mqtt_settings
        self.s = s
        self.log = log
        self.topic = "%s/+/up/#" % s.topic_root
        if s.share_group:
            self.topic = "$share/%s/%s" % (s.share_group, self.topic)
        self.messages = queue.Queue()
        self.generation = 0          # +1 per connection: acks of an older connection are not sent
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.connects = 0
        self._lock = threading.Lock()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=s.client_id, protocol=mqtt.MQTTv5,
                        manual_ack=True)
        if s.username:
            c.username_pw_set(s.username, s.password or None)
        if s.tls:
            c.tls_set(ca_certs=s.ca_file or None, cert_reqs=ssl.CERT_REQUIRED)
        # paho's delays are whole seconds in its signature but used as numbers; keep >= 1 s on real
        # brokers, tests may use less.
        c.reconnect_delay_set(s.reconnect_min_s, s.reconnect_max_s)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        self.client = c

    def start(self):
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.s.session_expiry_s
        props.ReceiveMaximum = self.s.receive_maximum
        self.client.connect_async(self.s.host, self.s.port, keepalive=self.s.keepalive_s,
                                  clean_start=False, properties=props)
        self.client.loop_start()

    def stop(self):
        """Disconnect cleanly; un-acknowledged messages stay with the broker for the next run."""
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()

    # --- paho callbacks (network thread: keep them short) ---
    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            if self.log:
                self.log.error("mqtt connect refused", extra={"reason": str(reason_code)})
            return
        with self._lock:
            self.generation += 1
            self.connects += 1
        self.connected.set()
        if self.log:
            self.log.info("mqtt connected", extra={"session_present": bool(flags.session_present),
                                                   "generation": self.generation})
        # Retain handling 1: retained messages only when the subscription is new (status is retained;
        # a reconnect must not deliver the same retained status again).
        client.subscribe(self.topic, options=SubscribeOptions(qos=1, retainHandling=1))

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        bad = [str(rc) for rc in reason_codes if rc.is_failure]
        if bad:
            if self.log:
                self.log.error("mqtt subscribe refused", extra={"topic": self.topic, "reasons": bad})
            return
        self.subscribed.set()
        if self.log:
            self.log.info("mqtt subscribed", extra={"topic": self.topic})

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self.connected.clear()
        self.subscribed.clear()
        if self.log:
            self.log.warning("mqtt disconnected", extra={"reason": str(reason_code)})

    def _on_message(self, client, userdata, msg):
        try:
            topic = msg.topic
        except UnicodeDecodeError:   # a broker must refuse such topics; if one does not, reject it
            topic = "\ufffdinvalid-utf8:" + repr(msg._topic[:200])
        self.messages.put(Message(topic, msg.payload, msg.qos, msg.mid, self.generation,
                                  int(time.time() * 1000), bool(msg.dup)))

    # --- called by the bridge thread ---
    def publish(self, topic, payload, qos=1):
        """Publish (downlink receipts). False when paho could not queue it (not connected): the board
        then sends those frames again and they are confirmed on the next round."""
        return self.client.publish(topic, payload, qos=qos).rc == mqtt.MQTT_ERR_SUCCESS

    def ack(self, msg):
        """Acknowledge one message. Skipped when the connection it came on is gone: the broker will
        send it again on the new connection (with a new packet id), and writing it again is harmless."""
        if msg.qos == 0 or msg.generation != self.generation:
            return False
        return self.client.ack(msg.mid, msg.qos) == mqtt.MQTT_ERR_SUCCESS
