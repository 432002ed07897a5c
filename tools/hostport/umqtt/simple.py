"""Host stand-in for micropython-lib `umqtt.simple` 1.8.0 that talks to a real broker (paho-mqtt 2.x).

CPython only; never deployed (the board installs the real one with `mpremote mip install umqtt.simple`).
Same API and the same blocking behaviour, driven synchronously: every call runs paho's socket I/O
itself (no background thread), MQTT 3.1.1, nothing automatic (no reconnect, no keepalive ping).

    c = MQTTClient("dev1", "127.0.0.1", port, keepalive=30); c.connect(timeout=5)
    c.publish(b"bms/dev1/up/status", b"online", retain=True, qos=1)

Semantics kept from the real client (micropython-lib's umqtt/simple.py; the shared reference
micropython-esp32.md says the timeout stays, the upstream code says otherwise, and this follows the code):
- `sock` is the session's socket as far as timeouts go (_StreamSock): connect(timeout=t) calls
  sock.settimeout(t) (None waits forever). check_msg() calls sock.setblocking(False) and then
  wait_msg(); wait_msg() reads the first byte with whatever the socket's timeout is and then calls
  sock.setblocking(True), which on MicroPython clears the timeout (waits forever). subscribe() and a
  QoS 1 publish() wait through wait_msg(). So after the first check_msg()/subscribe()/QoS 1 publish
  every wait is unbounded unless the caller sets the timeout again (sock.settimeout), as on a board.
- refused CONNACK -> MQTTException(return code); network trouble -> OSError.
- publish qos 0 or 1; qos 1 waits for its PUBACK, never retransmits; only the timeout bounds it.
- check_msg(): handles at most one waiting packet, never blocks; wait_msg() blocks for one;
  a closed connection -> OSError(-1). ping() only sends PINGREQ; the PINGRESP is consumed by a
  later check_msg()/wait_msg() as on the board.
- callback f(topic: bytes, msg: bytes); incoming QoS 1 messages are acknowledged by paho before
  the callback runs (the real client acknowledges right after it).
Waits are in real time (sockets are real), not simclock time.

Wi-Fi: when the firmware activated network.WLAN(STA_IF) (the host network stand-in), the link state
gates this client: no link at connect() -> OSError(EHOSTUNREACH); link lost or SIM.blackhole during
a session -> writes vanish, waits end in OSError(ETIMEDOUT) after the timeout (advanced on the
simulated clock when it is simulated), check_msg() finds nothing. The TCP session itself stays
open, so the broker notices only through keepalive, as with a real radio drop.
"""
import errno
import select
import socket
import struct
import time

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

# MQTT 3.1.1 CONNACK return codes by the names paho gives them (paho reports MQTT 5 reason codes)
_CONNACK_RC = {
    "Unsupported protocol version": 1,
    "Client identifier not valid": 2,
    "Server unavailable": 3,
    "Bad user name or password": 4,
    "Not authorized": 5,
}
_FOREVER_SLICE_S = 1.0  # how long one select() waits when the caller set no timeout
# A blocking read on a dead radio link with no timeout: lwIP gives up only after its TCP retransmission
# time (minutes). Simulated time jumps this far; in real time the wait is shortened to
# _FOREVER_REAL_S so a test that hits it fails by overrunning its budget instead of hanging.
_FOREVER_SIM_S = 120.0
_FOREVER_REAL_S = 5.0
_NO_TIMEOUT_CONNECT_S = 60.0  # TCP connect bound when timeout=None (paho needs one; lwIP's is similar)


class MQTTException(Exception):
    pass


def _text(s):
    return s.decode() if isinstance(s, (bytes, bytearray)) else s


def _bytes(s):
    return s.encode() if isinstance(s, str) else bytes(s)


def _link_ok():
    try:
        import network
    except ImportError:
        return True
    sim = getattr(network, "SIM", None)
    return sim is None or sim.link_ok()


class _StreamSock:
    """The timeout side of a MicroPython socket: settimeout(t) sets it, setblocking(False) is
    settimeout(0), setblocking(True) is settimeout(None) (MicroPython's socket docs). close() closes
    the real TCP socket under the paho session."""

    def __init__(self, timeout):
        self.timeout = timeout
        self.raw = None
        self.settimeouts = 0             # host-only: how often the caller set the timeout

    def settimeout(self, t):
        self.timeout = t
        self.settimeouts += 1

    def setblocking(self, flag):
        self.timeout = None if flag else 0

    def close(self):
        if self.raw is not None:
            self.raw.close()


class MQTTClient:
    def __init__(self, client_id, server, port=0, user=None, password=None, keepalive=0, ssl=None,
                 ssl_params={}):
        if port == 0:
            port = 8883 if ssl else 1883
        if keepalive >= 65536:
            raise ValueError("keepalive must be < 65536")
        self.client_id = client_id
        self.server = server
        self.port = port
        self.ssl = ssl
        self.ssl_params = ssl_params
        self.user = user
        self.pswd = password
        self.keepalive = keepalive
        self.cb = None
        self.lw_topic = None
        self.lw_msg = None
        self.lw_qos = 0
        self.lw_retain = False
        self._paho = None
        self.sock = None
        self.pings = 0  # host-only: PINGREQs sent
        self._reset_session()

    def _reset_session(self):
        self._connack = None  # (rc311, session_present) once CONNACK arrived
        self._closed = True
        self._events = []  # ("msg", topic, payload) or ("pingresp",) in arrival order
        self._pings_out = 0
        self._want_ack = set()  # qos 1 mids sent, PUBACK not seen yet
        self._acked = set()  # qos 1 mids whose PUBACK arrived
        self._subacks = {}  # mid -> list of reason codes

    def set_callback(self, f):
        self.cb = f

    def set_last_will(self, topic, msg, retain=False, qos=0):
        if not 0 <= qos <= 2:
            raise ValueError("qos must be 0..2")
        if not topic:
            raise ValueError("empty will topic")
        self.lw_topic = topic
        self.lw_msg = msg
        self.lw_qos = qos
        self.lw_retain = retain

    # --- paho callbacks: record only; the caller's thread acts on them ---
    def _on_connect(self, client, userdata, flags, reason_code, properties):
        rc = 0 if not reason_code.is_failure else _CONNACK_RC.get(reason_code.getName(), reason_code.value)
        self._connack = (rc, bool(flags.session_present))
        self._closed = rc != 0

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self._closed = True

    def _on_message(self, client, userdata, message):
        self._events.append(("msg", _bytes(message.topic), bytes(message.payload)))

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        if mid in self._want_ack:  # paho also reports qos 0 messages once written: ignore those
            self._want_ack.discard(mid)
            self._acked.add(mid)

    def _on_subscribe(self, client, userdata, mid, reason_code_list, properties):
        self._subacks[mid] = [rc.value for rc in reason_code_list]

    # --- socket pump ---
    def _pump(self, wait_s):
        """Move bytes both ways once, waiting up to wait_s for something to read."""
        c = self._paho
        s = None if c is None else c.socket()
        if s is None or self._closed and self._connack is not None:
            return
        try:
            r, w, _ = select.select([s], [s] if c.want_write() else [], [], wait_s)
        except (OSError, ValueError):  # socket closed under us (sim_kill_socket)
            self._closed = True
            return
        if w:
            c.loop_write()
        if r:
            c.loop_read()
        if self._pings_out and c._ping_t == 0:  # paho clears _ping_t on PINGRESP (paho 2.x internals)
            self._pings_out -= 1
            self._events.append(("pingresp",))

    def _timeout(self):
        return None if self.sock is None else self.sock.timeout

    def _deadline(self):
        t = self._timeout()
        return None if t is None else time.monotonic() + t

    def _wait(self, done, deadline):
        """Pump until done() or the deadline; OSError(ETIMEDOUT) at the deadline, OSError(-1) if closed."""
        while not done():
            if self._closed:
                raise OSError(-1)
            if deadline is None:
                self._pump(_FOREVER_SLICE_S)
            else:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise OSError(errno.ETIMEDOUT)
                self._pump(left)

    def _blackholed_wait(self):
        """The link is gone: a blocking read ends when the socket timeout expires (or, with no
        timeout, when TCP gives up: see _FOREVER_SIM_S)."""
        t = self._timeout()
        import simclock
        if simclock.CLOCK.simulated:
            simclock.CLOCK.advance_us(int((_FOREVER_SIM_S if t is None else t) * 1000000))
        else:
            time.sleep(_FOREVER_REAL_S if t is None else t)
        raise OSError(errno.ETIMEDOUT)

    def _wait_packet(self, done):
        """One wait_msg() step inside subscribe()/publish(): wait for done() or a packet with the
        socket's timeout, then setblocking(True) as upstream wait_msg() does after its first read."""
        if not self._events:
            self._wait(lambda: done() or bool(self._events), self._deadline())
        self.sock.setblocking(True)
        self._deliver()

    def _need_session(self):
        if self._paho is None or self._connack is None:
            raise OSError(errno.ENOTCONN)

    def _deliver(self):
        """Handle one waiting packet as wait_msg() does; True if there was one."""
        if not self._events:
            return False
        ev = self._events.pop(0)
        if ev[0] == "msg" and self.cb is not None:
            self.cb(ev[1], ev[2])
        return True

    # --- API ---
    def connect(self, clean_session=True, timeout=None):
        self._close_paho()
        self._reset_session()
        self.sock = _StreamSock(None)
        self.sock.settimeout(timeout)
        if not _link_ok():
            raise OSError(errno.EHOSTUNREACH)
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=_text(self.client_id),
                        clean_session=clean_session, protocol=paho.MQTTv311,
                        reconnect_on_failure=False)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_publish = self._on_publish
        c.on_subscribe = self._on_subscribe
        if self.user:
            c.username_pw_set(_text(self.user), None if self.pswd is None else _text(self.pswd))
        if self.lw_topic:
            c.will_set(_text(self.lw_topic), _bytes(self.lw_msg), self.lw_qos, self.lw_retain)
        if self.ssl:
            if self.ssl is True:
                c.tls_set()
            else:
                c.tls_set_context(self.ssl)
        c.connect_timeout = timeout if timeout else _NO_TIMEOUT_CONNECT_S
        self._paho = c
        try:
            c.connect(self.server, self.port, self.keepalive)
        except socket.timeout:
            raise OSError(errno.ETIMEDOUT)
        self.sock.raw = c.socket()
        self._closed = False
        deadline = self._deadline()
        self._wait(lambda: self._connack is not None, deadline)
        rc, present = self._connack
        if rc != 0:
            self._close_paho()
            raise MQTTException(rc)
        return present

    def disconnect(self):
        c = self._paho
        if c is None:
            raise OSError(errno.ENOTCONN)
        if c.socket() is not None and not self._closed and _link_ok():
            c.disconnect()
        self._close_paho()

    def ping(self):
        self._need_session()
        if not _link_ok():
            return  # written into the void
        if self._paho._send_pingreq() != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise OSError(-1)
        self._pings_out += 1
        self.pings += 1

    def publish(self, topic, msg, retain=False, qos=0):
        if qos not in (0, 1):
            raise ValueError("qos must be 0 or 1")  # the real client has no QoS 2 publish
        self._need_session()
        if not _link_ok():
            if qos == 1:
                self._blackholed_wait()
            return
        self._pump(0)  # take in what arrived (a dead connection shows up here)
        if self._closed:
            raise OSError(-1)
        info = self._paho.publish(_text(topic), _bytes(msg), qos, retain)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise OSError(-1)
        if qos == 1:
            self._want_ack.add(info.mid)  # paho only reads (and sees the PUBACK) in _pump()
        deadline = self._deadline()
        if qos == 0:
            self._wait(lambda: not self._paho.want_write(), deadline)
            return
        mid = info.mid
        # umqtt waits through wait_msg(): other packets are handled (and delivered) on the way, and
        # each step leaves the socket blocking (setblocking(True))
        while mid not in self._acked:
            self._wait_packet(lambda: mid in self._acked)
        self._acked.discard(mid)

    def subscribe(self, topic, qos=0):
        if self.cb is None:
            raise AssertionError("Subscribe callback is not set")  # same check as the real client
        self._need_session()
        if not _link_ok():
            self._blackholed_wait()
        rc, mid = self._paho.subscribe(_text(topic), qos)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise OSError(-1)
        while mid not in self._subacks:
            self._wait_packet(lambda: mid in self._subacks)
        codes = self._subacks.pop(mid)
        if codes and codes[0] == 0x80:
            raise MQTTException(0x80)

    def wait_msg(self):
        """One packet; its first byte waits as the socket's timeout says (0: not at all), then the
        socket is left blocking (setblocking(True)), as upstream."""
        self._need_session()
        t = self._timeout()
        try:
            if self._events:
                pass
            elif not _link_ok():
                if t == 0:
                    return None
                self._blackholed_wait()
            elif t == 0:
                self._pump(0)
                if not self._events:
                    if self._closed:
                        raise OSError(-1)
                    return None
            else:
                self._wait(lambda: bool(self._events), self._deadline())
        finally:
            self.sock.setblocking(True)
        self._deliver()
        return None

    def check_msg(self):
        self._need_session()
        self.sock.setblocking(False)
        return self.wait_msg()

    # --- host-only ---
    def sim_kill_socket(self):
        """Host-only: the TCP connection dies without DISCONNECT (reset), as when the board loses power."""
        s = None if self._paho is None else self._paho.socket()
        if s is not None:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST
            s.close()
        self._closed = True

    def _close_paho(self):
        c = self._paho
        self._paho = None
        self._closed = True
        if c is None:
            return
        s = c.socket()
        if s is not None:
            try:
                s.close()
            except OSError:
                pass
