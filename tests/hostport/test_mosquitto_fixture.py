"""tools/testservers/mosquitto.py: start, restart on the same port with persistence, kill, clear errors."""
import queue
import socket

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tools.testservers import mosquitto as mq


def _retained(broker, topic, user=None, password=None):
    """The retained payload on topic, read by a fresh paho client (bounded waits)."""
    got = queue.Queue()
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id="reader", protocol=paho.MQTTv311)
    if user:
        c.username_pw_set(user, password)
    c.on_message = lambda cl, u, m: got.put(bytes(m.payload))
    c.connect(broker.host, broker.port, 30)
    c.loop_start()
    try:
        c.subscribe(topic, qos=1)
        try:
            return got.get(timeout=3)
        except queue.Empty:
            return None
    finally:
        c.disconnect()
        c.loop_stop()


def _publish_retained(broker, topic, payload):
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id="writer", protocol=paho.MQTTv311)
    c.connect(broker.host, broker.port, 30)
    c.loop_start()
    c.publish(topic, payload, qos=1, retain=True).wait_for_publish(timeout=5)
    c.disconnect()
    c.loop_stop()


def test_fixture_broker_accepts_connections_on_loopback(mosquitto):
    assert mosquitto.host == "127.0.0.1" and mosquitto.running()
    with socket.create_connection((mosquitto.host, mosquitto.port), timeout=5):
        pass
    conf = open(mosquitto.conf_path).read()
    assert "allow_anonymous true" in conf and "max_queued_messages 100000" in conf


def test_restart_keeps_the_port_and_persisted_retained_messages(mosquitto_factory):
    b = mosquitto_factory(persistence=True)
    port = b.port
    _publish_retained(b, "bms/dev1/up/status", b"online")
    b.restart()
    assert b.port == port and b.running()
    assert _retained(b, "bms/dev1/up/status") == b"online"


def test_without_persistence_a_restart_forgets(mosquitto_factory):
    b = mosquitto_factory()
    _publish_retained(b, "bms/dev1/up/status", b"online")
    b.restart()
    assert _retained(b, "bms/dev1/up/status") is None


def test_kill_stops_it_hard_and_start_brings_it_back(mosquitto_factory):
    b = mosquitto_factory()
    b.kill()
    assert not b.running()
    with pytest.raises(OSError):
        socket.create_connection((b.host, b.port), timeout=2).close()
    b.start()
    assert b.running()


def test_context_manager_and_acl_needs_users(tmp_path):
    with pytest.raises(ValueError):
        mq.Mosquitto(tmp_path, acl=True)
    with mq.Mosquitto(tmp_path, users={"dev1": "pw"}) as b:
        assert b.running()
        assert "allow_anonymous false" in open(b.conf_path).read()
        assert "pw" not in open(tmp_path / "passwd").read().split(":", 1)[1]  # stored hashed
    assert not b.running()


def test_missing_binary_error_names_the_install_command():
    with pytest.raises(mq.MosquittoError) as e:
        mq._find("mosquitto-not-installed-here")
    assert "apt-get install -y mosquitto" in str(e.value)
