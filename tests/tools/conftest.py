"""Fixtures for the tools' tests: identities made by tools/provision.py and a real mosquitto that uses
the password and ACL files it wrote (not the test helper's own users), and a small paho probe.

    def test_x(fleet): fleet.prov.create("d1"); fleet.start_broker(); fleet.connect("d1", pw)
"""
import signal
import threading

import paho.mqtt.client as mqtt
import pytest

from tools.provision import Paths, Provisioner
from tools.testservers.mosquitto import Mosquitto

CONNECT_TIMEOUT_S = 10.0


def broker_config(paths):
    """mosquitto lines that make it use provision's files. The helper writes `allow_anonymous true`
    when it has no users of its own; this later line overrides it (a plain boolean option)."""
    return ["allow_anonymous false", "password_file %s" % paths.passwd, "acl_file %s" % paths.acl]


class Client:
    """A paho client that reports connect results and received messages (bounded waits)."""

    def __init__(self, host, port, user, password, client_id):
        self.connected = threading.Event()
        self.rc = None
        self.messages = []
        self.got = threading.Event()
        self.subscribed = threading.Event()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
        if user is not None:
            self.c.username_pw_set(user, password)
        self.c.on_connect = self._on_connect
        self.c.on_message = self._on_message
        self.c.on_subscribe = lambda *a: self.subscribed.set()
        self.c.connect(host, port, keepalive=30)
        self.c.loop_start()
        self.connected.wait(CONNECT_TIMEOUT_S)

    def _on_connect(self, client, userdata, flags, rc, props=None):
        self.rc = rc
        self.connected.set()

    def _on_message(self, client, userdata, msg):
        self.messages.append((msg.topic, bytes(msg.payload)))
        self.got.set()

    @property
    def accepted(self):
        return self.rc is not None and not self.rc.is_failure

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


class Fleet:
    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.paths = Paths(str(tmp_path / "secrets"))
        self.prov = Provisioner(self.paths)
        self.broker = None
        self.clients = []

    def start_broker(self):
        self.broker = Mosquitto(self.tmp / "broker", extra_config=broker_config(self.paths))
        self.broker.start()
        return self.broker

    def reload(self):
        self.broker.proc.send_signal(signal.SIGHUP)

    def connect(self, user, password, client_id=None):
        c = Client(self.broker.host, self.broker.port, user, password, client_id or "%s-%d" % (user, len(self.clients)))
        self.clients.append(c)
        return c

    def close(self):
        for c in self.clients:
            c.close()
        if self.broker is not None:
            try:
                self.broker.stop()
            finally:
                self.broker.kill()


@pytest.fixture
def fleet(tmp_path):
    f = Fleet(tmp_path)
    yield f
    if f.broker is not None:
        print(f.broker.log_tail(60))
    f.close()
