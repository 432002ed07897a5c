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
    with mq.Mosquitto(tmp_path, users={"dev1": "pw!~"}) as b:
        assert b.running()
        assert "allow_anonymous false" in open(b.conf_path).read()
        stored = open(tmp_path / "passwd").read().split(":", 1)[1]
        # stored hashed; "!~" cannot occur in the hash's base64 by chance (plain "pw" once did, in CI)
        assert stored.startswith("$7$") and "pw!~" not in stored
    assert not b.running()


def test_missing_binary_error_names_the_install_command():
    with pytest.raises(mq.MosquittoError) as e:
        mq._find("mosquitto-not-installed-here")
    assert "apt-get install -y mosquitto" in str(e.value)


def test_free_port_lies_outside_the_ephemeral_range_and_is_free():
    """Restarted servers keep their port; an ephemeral port could meanwhile be any client's source port."""
    from tools.testservers import ports
    lo, hi = ports.ephemeral_range()
    seen = set()
    for _ in range(20):
        port = ports.free_port()
        if lo - 1 > ports.LOWEST_PORT:
            assert ports.LOWEST_PORT <= port < lo
        with socket.socket() as s:          # nobody holds it: we can listen on it; held, it is never offered
            # as a server binds (mosquitto sets SO_REUSEADDR): a TIME_WAIT left by an earlier test's
            # connection on that port does not count as holding it
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
            s.listen(1)
            for _ in range(50):
                assert ports.free_port() != port
        seen.add(port)
    assert len(seen) > 1                     # random, so concurrent test runs rarely collide


def test_restart_retries_while_its_port_is_briefly_held(tmp_path):
    """Someone holds the port when the broker comes back: start() retries instead of failing at once."""
    import threading
    broker = mq.Mosquitto(tmp_path).start()
    port = broker.port
    broker.kill()
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", port))
    threading.Timer(1.2, squatter.close).start()
    try:
        broker.start()
        assert broker.port == port and broker.running()
        assert "Address already in use" in broker.log_text()
    finally:
        broker.stop()
        squatter.close()
