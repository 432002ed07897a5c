"""TLS and keepalive of the link against a real mosquitto.

TLS: a CA and a server certificate are made at test time with the openssl CLI; the broker gets a TLS
listener (extra_config) and the firmware builds its context as a board does (Comms.from_board: PEM
from secrets.json converted to DER for cadata). Keepalive: with no traffic of its own the link pings
within the keepalive, and the broker keeps the session (no last will) over several keepalive periods."""
import json
import shutil
import subprocess
import time as _time

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from firmware.comms import frame
from firmware.comms.service import _ca_der as ca_der
from firmware.comms.service import Comms
from tests.comms.comms_helpers import DEV, KEY, PW, Subscriber, broker_users, make_comms, make_link, wifi_instant
from tools.testservers.ports import free_port


def _openssl(*args, cwd):
    subprocess.run(("openssl",) + args, cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def certs(tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI missing")
    d = tmp_path / "pki"
    d.mkdir()
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
             "-keyout", "ca.key", "-out", "ca.pem", cwd=d)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "srv.key",
             "-out", "srv.csr", cwd=d)
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", "2", "-extfile", "ext.cnf", "-out", "srv.pem", cwd=d)
    return d


def tls_broker(mosquitto_factory, certs):
    port = free_port()
    b = mosquitto_factory(users=broker_users(), acl=True, extra_config=[
        "listener %d 127.0.0.1" % port, "cafile %s" % (certs / "ca.pem"),
        "certfile %s" % (certs / "srv.pem"), "keyfile %s" % (certs / "srv.key")])
    return b, port


def test_ca_der_takes_the_pem_body():
    pem = "-----BEGIN CERTIFICATE-----\nAAEC\nAwQ=\n-----END CERTIFICATE-----\n"
    assert ca_der(pem) == bytes([0, 1, 2, 3, 4])
    with pytest.raises(ValueError, match="mqtt_ca"):
        ca_der("not a certificate")


def test_firmware_link_publishes_over_tls_as_built_from_secrets(tmp_path, sim_clock, mosquitto_factory, certs):
    """The context from_board builds (PEM -> DER cadata, CERT_REQUIRED, hostname checked) talks to the
    TLS listener; a subscriber on the plain listener decodes what arrived."""
    wifi_instant()
    broker, tls_port = tls_broker(mosquitto_factory, certs)
    sec = {"device_id": DEV, "key": KEY.hex(), "wifi_ssid": "sim-ap",
           "wifi_key": "wifi-key", "mqtt_host": "127.0.0.1", "mqtt_port": tls_port,
           "mqtt_password": PW[DEV], "mqtt_tls": True, "mqtt_ca": (certs / "ca.pem").read_text()}
    p = tmp_path / "secrets.json"
    p.write_text(json.dumps(sec))
    from firmware.config import defaults
    cfg = defaults.build("lfp", {"cell_count": 4, "temp_count": 1})
    comms = Comms.from_board({"name": "sim4", "secrets_path": str(p),
                              "comms": {"spill_dir": str(tmp_path / "ob"), "state_dir": str(tmp_path / "st"),
                                        "receipts": False}}, cfg)
    assert comms.link.ssl is not None
    sub = Subscriber(broker)
    end = _time.monotonic() + 10
    while _time.monotonic() < end and not (comms.link.up and comms.frames_sent >= 1):
        comms.poll(3000)
        sim_clock.advance_ms(250)
        _time.sleep(0.01)
    assert comms.link.up and comms.frames_sent >= 1, comms.link.last_error
    assert sub.wait_for(lambda x: any(d["kind"] == frame.KIND_STATUS for d in x.frames), 10)
    sub.close()
    # the same context refuses a server it cannot verify: the plain listener is not TLS at all
    comms.link.close()


def test_tls_with_another_ca_is_refused(tmp_path, sim_clock, mosquitto_factory, certs):
    import ssl
    wifi_instant()
    broker, tls_port = tls_broker(mosquitto_factory, certs)
    other = tmp_path / "other"
    other.mkdir()
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=other-ca",
             "-keyout", "o.key", "-out", "o.pem", cwd=other)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cadata=ca_der((other / "o.pem").read_text()))
    lk = make_link(None, port=tls_port, ssl=ctx, backoff_min_ms=20, backoff_max_ms=50)
    comms = make_comms(tmp_path, lk)
    for _ in range(20):
        comms.poll(3000)
        sim_clock.advance_ms(250)
    assert not lk.up and lk.sessions == 0 and lk.failures >= 1


def test_idle_link_pings_within_keepalive_and_the_broker_keeps_the_session(tmp_path, mosquitto_factory):
    """Real time (the broker's keepalive is real): keepalive 10 s, nothing to publish for 20 s. The
    link pings every ~5 s, the broker neither drops the client nor publishes its will."""
    wifi_instant()
    broker = mosquitto_factory(users=broker_users(), acl=True)
    wills = []
    w = paho.Client(CallbackAPIVersion.VERSION2, client_id="will-watch", protocol=paho.MQTTv311)
    w.username_pw_set("bridge", broker_users()["bridge"])
    w.on_message = lambda c, u, m: wills.append(bytes(m.payload)) if m.payload == b"offline" else None
    w.connect(broker.host, broker.port, 30)
    w.loop_start()
    w.subscribe("bms/+/up/status", qos=1)
    lk = make_link(broker, keepalive_s=10)
    end = _time.monotonic() + 5
    while not lk.up and _time.monotonic() < end:
        lk.begin(100)
        lk.poll()
        _time.sleep(0.02)
    assert lk.up
    client = lk._client
    t_end = _time.monotonic() + 20                 # two keepalive periods, 1.5 x keepalive is the limit
    while _time.monotonic() < t_end:
        lk.begin(100)
        lk.poll()
        _time.sleep(0.05)
    assert lk.up and lk.failures == 0 and lk._client is client
    assert 3 <= client.pings <= 5                  # one per keepalive/2 of silence
    assert "timed out" not in broker.log_text() and "exceeded timeout" not in broker.log_text()
    lk.begin(100)
    assert lk.publish(lk.topic_by_kind[1], b"still here")   # the same session still works
    assert wills == []
    # A dead broker: the pings go into the TCP buffer unanswered; the next publish finds out
    broker.pause()
    try:
        lk.begin(100)
        assert not lk.publish(lk.topic_by_kind[1], b"x") and not lk.up and lk.failures == 1
    finally:
        broker.resume()
    w.loop_stop()
