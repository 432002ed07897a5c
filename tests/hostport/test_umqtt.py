"""umqtt.simple stand-in against a REAL mosquitto started by the fixture (no mocked broker)."""
import errno
import queue
import socket
import time

import network
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from umqtt.simple import MQTTClient, MQTTException

TIMEOUT_S = 5.0  # the socket timeout given to connect(); bounds every wait in these tests
USERS = {"dev1": "pw-dev1", "dev2": "pw-dev2", "bridge": "pw-bridge"}


class Watcher:
    """A plain paho client on its own thread that records what the broker delivers."""

    def __init__(self, broker, topic, user=None, password=None):
        self.q = queue.Queue()
        self.c = paho.Client(CallbackAPIVersion.VERSION2, client_id="watcher", protocol=paho.MQTTv311)
        if user:
            self.c.username_pw_set(user, password)
        subscribed = queue.Queue()
        self.c.on_message = lambda c, u, m: self.q.put((m.topic, bytes(m.payload), m.retain))
        self.c.on_subscribe = lambda c, u, mid, rcs, p: subscribed.put([rc.value for rc in rcs])
        self.c.connect(broker.host, broker.port, 30)
        self.c.loop_start()
        self.c.subscribe(topic, qos=1)
        assert subscribed.get(timeout=TIMEOUT_S) == [1]

    def get(self, timeout=TIMEOUT_S):
        return self.q.get(timeout=timeout)

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def _poll_until(client, pred, attempts=500):
    """Call check_msg() until pred() (bounded: attempts x 10 ms)."""
    for _ in range(attempts):
        client.check_msg()
        if pred():
            return True
        time.sleep(0.01)
    return False


def test_connect_subscribe_publish_check_msg_round_trip(mosquitto):
    got = []
    sub = MQTTClient(b"sub", mosquitto.host, mosquitto.port, keepalive=30)
    assert sub.connect(timeout=TIMEOUT_S) is False    # clean session: no session present
    sub.set_callback(lambda t, m: got.append((t, m)))
    sub.subscribe(b"bms/dev1/down/#")
    assert sub.check_msg() is None and got == []      # nothing waiting: returns at once
    pub = MQTTClient("pub", mosquitto.host, mosquitto.port)
    pub.connect(timeout=TIMEOUT_S)
    pub.publish(b"bms/dev1/down/cmd", b"\x01\x02\x00\xff")
    pub.publish("bms/dev1/down/cfg", "text")
    assert _poll_until(sub, lambda: len(got) == 2)
    assert got == [(b"bms/dev1/down/cmd", b"\x01\x02\x00\xff"), (b"bms/dev1/down/cfg", b"text")]
    pub.disconnect()
    sub.disconnect()


def test_wait_msg_blocks_for_one_message_and_consumes_the_ping_answer(mosquitto):
    got = []
    sub = MQTTClient("sub", mosquitto.host, mosquitto.port)
    sub.connect(timeout=1.0)
    sub.set_callback(lambda t, m: got.append(m))
    sub.subscribe("t/#", qos=1)
    assert sub.sock.timeout is None              # upstream: the SUBACK came through wait_msg()
    pub = MQTTClient("pub", mosquitto.host, mosquitto.port)
    pub.connect(timeout=TIMEOUT_S)
    pub.publish("t/a", b"one", qos=1)
    assert sub.wait_msg() is None and got == [b"one"]   # blocked until the message came
    sub.ping()
    assert sub.wait_msg() is None and got == [b"one"]   # the PINGRESP: handled, nothing delivered
    sub.sock.settimeout(1.0)                              # what firmware/comms/link.py does
    with pytest.raises(OSError) as e:
        sub.wait_msg()                                    # nothing more: the socket timeout ends it
    assert e.value.args[0] == errno.ETIMEDOUT
    pub.disconnect()
    sub.disconnect()


def test_qos1_publish_is_delivered_and_waits_for_its_puback(mosquitto):
    w = Watcher(mosquitto, "bms/#")
    c = MQTTClient("dev1", mosquitto.host, mosquitto.port)
    c.connect(timeout=1.0)
    c.publish(b"bms/dev1/up/status", b"online", retain=True, qos=1)
    assert w.get() == ("bms/dev1/up/status", b"online", False)
    assert c.sock.timeout is None               # the PUBACK was read through wait_msg()
    c.sock.settimeout(1.0)
    # with the broker frozen no PUBACK can come: QoS 0 returns, QoS 1 ends on the socket timeout
    mosquitto.pause()
    try:
        c.publish(b"bms/dev1/up/t", b"q0", qos=0)
        t0 = time.monotonic()
        with pytest.raises(OSError) as e:
            c.publish(b"bms/dev1/up/t", b"q1", qos=1)
        assert e.value.args[0] == errno.ETIMEDOUT
        assert time.monotonic() - t0 >= 1.0   # it did wait the whole timeout (lower bound only)
    finally:
        mosquitto.resume()
    w.close()


def test_wrong_password_is_a_refused_connack(mosquitto_factory):
    broker = mosquitto_factory(users=USERS, acl=True)
    for user, password in (("dev1", "nope"), ("nobody", "x"), (None, None)):
        c = MQTTClient("dev1", broker.host, broker.port, user=user, password=password)
        with pytest.raises(MQTTException) as e:
            c.connect(timeout=TIMEOUT_S)
        assert e.value.args[0] in (4, 5)   # bad user name or password / not authorized
    ok = MQTTClient("dev1", broker.host, broker.port, user="dev1", password=USERS["dev1"])
    assert ok.connect(timeout=TIMEOUT_S) is False
    ok.disconnect()


def test_persistent_session_reports_session_present(mosquitto):
    c = MQTTClient("keep", mosquitto.host, mosquitto.port)
    assert c.connect(clean_session=False, timeout=TIMEOUT_S) is False
    c.disconnect()
    assert c.connect(clean_session=False, timeout=TIMEOUT_S) is True
    c.disconnect()


def test_last_will_is_published_when_the_socket_dies_not_on_disconnect(mosquitto):
    w = Watcher(mosquitto, "bms/+/up/status")
    clean = MQTTClient("dev2", mosquitto.host, mosquitto.port, keepalive=30)
    clean.set_last_will(b"bms/dev2/up/status", b"offline-2", retain=True, qos=1)
    clean.connect(timeout=TIMEOUT_S)
    clean.disconnect()                          # a clean DISCONNECT discards the will
    c = MQTTClient("dev1", mosquitto.host, mosquitto.port, keepalive=30)
    c.set_last_will(b"bms/dev1/up/status", b"offline", retain=True, qos=1)
    c.connect(timeout=TIMEOUT_S)
    c.publish(b"bms/dev1/up/status", b"online", retain=True, qos=1)
    assert w.get() == ("bms/dev1/up/status", b"online", False)
    c.sim_kill_socket()                         # power loss: no DISCONNECT
    assert w.get() == ("bms/dev1/up/status", b"offline", False)
    assert w.q.empty()                          # and dev2's will never came
    w.close()


def test_acl_refuses_a_device_publishing_on_another_devices_topic(mosquitto_factory):
    broker = mosquitto_factory(users=USERS, acl=True)
    w = Watcher(broker, "bms/+/up/#", "bridge", USERS["bridge"])
    c = MQTTClient("dev1", broker.host, broker.port, user="dev1", password=USERS["dev1"])
    c.connect(timeout=TIMEOUT_S)
    c.publish(b"bms/dev2/up/telemetry", b"forged", qos=1)   # acknowledged, but dropped by the ACL
    c.publish(b"bms/dev1/up/telemetry", b"mine", qos=1)
    # one connection's messages arrive in order: once "mine" is in, "forged" would have been first
    assert w.get() == ("bms/dev1/up/telemetry", b"mine", False)
    assert w.q.empty()
    # subscribing to another device's commands: refused (SUBACK 0x80) or granted but never delivered
    got = []
    c.set_callback(lambda t, m: got.append((t, m)))
    try:
        c.subscribe(b"bms/dev2/down/cmd", qos=1)
    except MQTTException as e:
        assert e.args[0] == 0x80
    c.subscribe(b"bms/dev1/down/cmd", qos=1)
    w.c.publish("bms/dev2/down/cmd", b"for-dev2", qos=1)   # the bridge may write every down topic
    w.c.publish("bms/dev1/down/cmd", b"for-dev1", qos=1)
    assert _poll_until(c, lambda: len(got) >= 1)
    assert got == [(b"bms/dev1/down/cmd", b"for-dev1")]
    w.close()


def test_dead_broker_makes_publish_raise_oserror(mosquitto):
    c = MQTTClient("dev1", mosquitto.host, mosquitto.port)
    c.connect(timeout=TIMEOUT_S)
    mosquitto.kill()
    raised = None
    for _ in range(50):          # the first write after a peer reset may still land in the kernel
        try:
            c.publish(b"bms/dev1/up/t", b"x")
        except OSError as e:
            raised = e
            break
        time.sleep(0.02)
    assert raised is not None
    with pytest.raises(OSError):
        c.publish(b"bms/dev1/up/t", b"x", qos=1)
    with pytest.raises(OSError) as e:
        c.wait_msg()
    assert e.value.args[0] == -1
    with pytest.raises(OSError):
        MQTTClient("dev1", mosquitto.host, mosquitto.port).connect(timeout=TIMEOUT_S)  # refused


def test_closed_connection_makes_wait_and_check_raise_minus_one(mosquitto):
    c = MQTTClient("dev1", mosquitto.host, mosquitto.port)
    c.connect(timeout=TIMEOUT_S)
    mosquitto.stop()
    with pytest.raises(OSError) as e:
        c.wait_msg()
    assert e.value.args[0] == -1
    with pytest.raises(OSError) as e:
        c.check_msg()
    assert e.value.args[0] == -1


def test_server_that_accepts_tcp_and_never_answers_times_out_connect():
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)   # the kernel completes the handshake; nobody ever reads or writes
    try:
        c = MQTTClient("dev1", "127.0.0.1", silent.getsockname()[1])
        t0 = time.monotonic()
        with pytest.raises(OSError) as e:
            c.connect(timeout=0.5)
        assert e.value.args[0] == errno.ETIMEDOUT
        assert time.monotonic() - t0 >= 0.5
    finally:
        silent.close()


def test_no_wifi_link_means_no_broker(mosquitto, sim_clock):
    wlan = network.WLAN(network.STA_IF)
    wlan.active(True)
    c = MQTTClient("dev1", mosquitto.host, mosquitto.port)
    with pytest.raises(OSError) as e:
        c.connect(timeout=TIMEOUT_S)
    assert e.value.args[0] == errno.EHOSTUNREACH
    wlan.connect("ap", "key")
    sim_clock.advance_ms(network.SIM.connect_delay_ms)
    c.connect(timeout=2.0)
    w = Watcher(mosquitto, "bms/#")
    network.SIM.drop()
    c.publish(b"bms/dev1/up/t", b"lost")          # written into the void
    t0 = sim_clock.now_us()
    with pytest.raises(OSError) as e:
        c.publish(b"bms/dev1/up/t", b"lost-q1", qos=1)
    assert e.value.args[0] == errno.ETIMEDOUT
    assert sim_clock.now_us() - t0 == 2000000    # the socket timeout passed in simulated time
    assert c.check_msg() is None
    wlan.connect("ap", "key")
    sim_clock.advance_ms(network.SIM.connect_delay_ms)
    c.publish(b"bms/dev1/up/t", b"back", qos=1)
    assert w.get() == ("bms/dev1/up/t", b"back", False)
    assert w.q.empty()
    w.close()
    c.disconnect()


def test_blackholed_uplink_times_out_in_simulated_time(mosquitto, sim_clock):
    c = MQTTClient("dev1", mosquitto.host, mosquitto.port)
    c.connect(timeout=3.0)
    network.SIM.blackhole = True          # Wi-Fi up, nothing beyond the AP answers
    t0 = sim_clock.now_us()
    with pytest.raises(OSError) as e:
        c.wait_msg()
    assert e.value.args[0] == errno.ETIMEDOUT and sim_clock.now_us() - t0 == 3000000
    assert c.check_msg() is None
    network.SIM.blackhole = False
    c.publish(b"bms/dev1/up/t", b"ok", qos=1)   # the same session works again
    c.disconnect()


def test_check_msg_leaves_the_socket_without_timeout_as_upstream(mosquitto):
    """micropython-lib's wait_msg() ends with sock.setblocking(True) (no timeout on MicroPython):
    after a check_msg() a QoS 1 publish to a frozen broker waits until the broker comes back, not
    for the connect timeout. firmware/comms/link.py sets the timeout again (tests/comms/test_link.py)."""
    import threading
    c = MQTTClient("dev1", mosquitto.host, mosquitto.port)
    c.connect(timeout=0.3)
    assert c.sock.timeout == 0.3
    assert c.check_msg() is None
    assert c.sock.timeout is None
    mosquitto.pause()
    done = []
    t = threading.Thread(target=lambda: (c.publish(b"bms/dev1/up/t", b"q1", qos=1), done.append(1)))
    try:
        t.start()
        t.join(1.5)                              # five times the connect timeout
        assert t.is_alive() and not done         # still blocked
    finally:
        mosquitto.resume()
    t.join(TIMEOUT_S)
    assert done == [1]                           # the PUBACK came once the broker was back
    c.disconnect()
