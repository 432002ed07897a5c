"""The link: Wi-Fi station + one MQTT session (umqtt.simple), with every blocking call bounded by a budget.

    link = Link("bms-0001", "ssid", "wifi-key", "10.0.0.5", user="bms-0001", password="...")
    link.begin(budget_ms); link.poll(); link.up and link.publish(topic, frame)   # each cycle

Why a budget (DESIGN.md decision 4: comms never block the protection cycle): umqtt.simple blocks in
every call until the broker answers, bounded only by the socket timeout it was given at connect()
(reference/micropython-esp32.md). So the socket timeout of a session is derived from the cycle's
budget: `timeout_ms = budget left // CONNECT_UNITS` at connect(), and an operation is started only when its worst case
(the number of blocking socket steps it has, times the timeout) fits in what is left of this cycle's
budget. A broker that is down, slow, or accepts TCP and never answers therefore costs at most one budget
per cycle; any failure (OSError, a refused CONNACK, a protocol error) closes the session and the next
attempt waits a jittered, capped exponential backoff. Wi-Fi `connect()` returns at once (the link comes
up later), so waiting for it costs nothing.
Delivery: every uplink publish is QoS 1 and counts as delivered only when publish() returned (PUBACK);
the caller keeps the frame until then (docs/comms.md). Keepalive: a PINGREQ goes out when nothing was
sent for half the keepalive; liveness is proven by the PUBACKs of the regular traffic (a telemetry
frame at least every batch interval), since umqtt.simple gives no signal for a PINGRESP.
The timeout does not stay by itself: umqtt.simple's wait_msg() calls sock.setblocking(True) after its
first read, and on MicroPython that clears the socket timeout (settimeout(None)). check_msg(),
subscribe() and every QoS 1 publish() go through wait_msg(), so after the first of them each read
would wait forever on a broker that froze. _rearm() sets the session's timeout again after every such
call, before every publish and ping, and in the message callback (which runs between the packets a
publish reads while it waits for its PUBACK). What stays unbounded is the rest of one packet after its
first byte (a broker freezing in the middle of writing a packet).
Costs in socket-timeout units, from umqtt.simple 1.8.0's code path: connect = TCP connect + CONNECT
write + CONNACK read (3); subscribe and publish = write + ack read (2); ping = write (1).
"""
import time

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

CONNECT_UNITS = const(3)
_SUBSCRIBE_UNITS = const(2)
_PUBLISH_UNITS = const(2)
_PING_UNITS = const(1)
_MAX_INBOX = const(4)             # commands held between polls (commands are rare)
_LOG_MIN_MS = const(10000)       # link state lines on the console: at most one per 10 s (a flapping link)

# states
_DOWN = const(0)                  # Wi-Fi not yet requested
_WIFI_WAIT = const(1)             # wlan.connect() issued, waiting for an IP
_WIFI_BACKOFF = const(2)          # Wi-Fi attempt failed; retry after the backoff
_MQTT_WAIT = const(3)             # Wi-Fi up, no MQTT session (connect after the backoff, when it fits)
_SUBSCRIBE = const(4)             # session up, subscription to the downlink topics pending
_UP = const(5)                    # session up and subscribed: publish, receive
STATE_NAMES = ("down", "wifi_wait", "wifi_backoff", "mqtt_wait", "subscribe", "up")

WILL_PAYLOAD = b"offline"        # as cloud_bridge/verify.py WILL_PAYLOAD: the bridge maps it to offline


class Link:
    def __init__(self, device_id, ssid, wifi_key, host, port=0, user=None, password=None, ssl=None,
                 keepalive_s=60, backoff_min_ms=1000, backoff_max_ms=60000, wifi_timeout_ms=20000,
                 topic_root="bms", seed=0, wlan=None):
        if not device_id or "/" in device_id or "+" in device_id or "#" in device_id:
            raise ValueError("device_id must be non-empty and free of / + #")
        if not host:
            raise ValueError("link needs a broker host")
        if not 0 < backoff_min_ms <= backoff_max_ms:
            raise ValueError("backoff: 0 < backoff_min_ms <= backoff_max_ms")
        if not 10 <= keepalive_s <= 65535:
            raise ValueError("keepalive_s must be 10..65535")
        self.device_id = device_id
        self.ssid = ssid
        self.wifi_key = wifi_key
        self.host = host
        self.port = port
        self.user = user
        self.password = password
        self.ssl = ssl
        self.keepalive_s = keepalive_s
        self.backoff_min_ms = backoff_min_ms
        self.backoff_max_ms = backoff_max_ms
        self.wifi_timeout_ms = wifi_timeout_ms
        prefix = topic_root + "/" + device_id
        self.topic_status = prefix + "/up/status"
        self.topic_cmd = prefix + "/down/cmd"
        self._topic_receipt_b = (prefix + "/down/receipt").encode()
        # Receipts are handed over at once (they come in bursts while a backlog drains, and a dropped
        # one would stall delivery until the resend timeout); commands wait in the inbox.
        self.on_receipt = None
        # uplink topics by frame kind (1 telemetry, 2 event, 3 status, 4 ack), made once
        self.topic_by_kind = (None, prefix + "/up/telemetry", prefix + "/up/event", self.topic_status,
                              prefix + "/up/ack")
        self._wlan = wlan
        self._client = None
        self._errs = None
        self.state = _DOWN
        self.timeout_ms = 0              # socket timeout of the current session
        self._timeout_s = None           # the same in seconds, made once per session (see _rearm)
        self.connect_timeout_ms = 0      # socket timeout given to the last connect attempt
        self.connects = 0                # connect attempts
        self._t0 = 0                     # ticks_us() at begin()
        self._budget_us = 0
        self._attempts = 0               # consecutive failures, drives the backoff
        self._retry_at = 0
        self._wifi_t = 0
        self._last_tx = 0
        self._rnd = (seed or 12345) & 0x3FFFFFFF
        self.inbox = []                  # (topic bytes, msg bytes) from the broker, oldest first
        # counters (status frames, tests, docs/comms.md)
        self.sessions = 0                # MQTT sessions established (subscribed)
        self.failures = 0                # sessions or attempts ended by an error
        self.wifi_failures = 0
        self.refused = 0                 # CONNACK refused (bad credentials, ...)
        self.inbox_dropped = 0
        self.published = 0
        self.max_op_us = 0               # longest single blocking call seen
        self.last_error = None
        # console line of the link state: ticks_ms of the last line with its low 3 bits replaced by
        # the state written then (one attribute; 8 ms resolution is plenty); -1 before the first
        self._logged = -1

    # ---------------------------------------------------------------- budget
    def begin(self, budget_ms):
        """Open this cycle's budget for network work."""
        self._t0 = time.ticks_us()
        self._budget_us = budget_ms * 1000
        if self.state >= _SUBSCRIBE and self.timeout_ms * _PUBLISH_UNITS * 1000 > self._budget_us:
            # The budget shrank (config change) below what this session's timeout needs: start a new
            # session whose timeout fits, at once (not a failure, so no backoff).
            self.close()
            self._retry_at = time.ticks_ms()

    def left_us(self):
        return self._budget_us - time.ticks_diff(time.ticks_us(), self._t0)

    def fits(self, units, timeout_ms=-1):
        t = self.timeout_ms if timeout_ms < 0 else timeout_ms
        return t > 0 and units * t * 1000 <= self.left_us()

    def _timed(self, t0):
        d = time.ticks_diff(time.ticks_us(), t0)
        if d > self.max_op_us:
            self.max_op_us = d

    # ---------------------------------------------------------------- state
    @property
    def up(self):
        return self.state == _UP

    def state_name(self):
        return STATE_NAMES[self.state]

    def _backoff(self):
        """Schedule the next attempt: capped exponential, jittered to 50..100 % (no fleet in lockstep)."""
        n = self._attempts if self._attempts < 16 else 16
        self._attempts += 1
        delay = self.backoff_min_ms << n
        if delay > self.backoff_max_ms or delay <= 0:
            delay = self.backoff_max_ms
        self._rnd = (self._rnd * 1103515245 + 12345) & 0x3FFFFFFF
        half = delay >> 1
        delay = half + (self._rnd >> 8) % (half + 1)
        self._retry_at = time.ticks_add(time.ticks_ms(), delay)
        return delay

    def _due(self):
        return time.ticks_diff(time.ticks_ms(), self._retry_at) >= 0

    def _drop(self, err):
        """End the session after any error: close the socket (no DISCONNECT: the will must fire)."""
        self.last_error = err
        self.failures += 1
        c = self._client
        if c is not None:
            s = getattr(c, "sock", None)
            if s is not None:
                try:
                    s.close()
                except OSError:
                    pass
        self.state = _MQTT_WAIT
        self._backoff()

    # ---------------------------------------------------------------- Wi-Fi
    def _wifi(self):
        if self._wlan is None:
            import network
            self._wlan = network.WLAN(network.STA_IF)
        return self._wlan

    def _wifi_start(self):
        w = self._wifi()
        try:
            if not w.active():
                w.active(True)
            w.connect(self.ssid, self.wifi_key)
        except OSError as e:
            self.last_error = e
            self.wifi_failures += 1
            self.state = _WIFI_BACKOFF
            self._backoff()
            return
        self._wifi_t = time.ticks_ms()
        self.state = _WIFI_WAIT

    def _poll_wifi(self):
        try:
            w = self._wifi()
        except ImportError:
            # No network module (the virtual board, a build without Wi-Fi): offline, say why, retry
            # rarely (backoff); the protection cycle goes on.
            if self.state != _WIFI_BACKOFF or self._due():
                self.last_error = "no network module"
                self.wifi_failures += 1
                self.state = _WIFI_BACKOFF
                self._backoff()
            return False
        if self.state == _DOWN or self.state == _WIFI_BACKOFF and self._due():
            self._wifi_start()
            return False
        if self.state == _WIFI_BACKOFF:
            return False
        if w.isconnected():
            if self.state == _WIFI_WAIT:
                self.state = _MQTT_WAIT
                self._attempts = 0       # a fresh network: try the broker at once
                self._retry_at = time.ticks_ms()
            return True
        if self.state != _WIFI_WAIT:
            # The link dropped under a session: the socket is dead, close it and start over.
            if self.state >= _SUBSCRIBE:
                self.failures += 1
                c = self._client
                s = None if c is None else getattr(c, "sock", None)
                if s is not None:
                    try:
                        s.close()
                    except OSError:
                        pass
            self._attempts = 0
            self._wifi_start()
            return False
        st = w.status()
        import network
        waited = time.ticks_diff(time.ticks_ms(), self._wifi_t)
        if st not in (network.STAT_CONNECTING, network.STAT_IDLE, network.STAT_GOT_IP) \
                or waited > self.wifi_timeout_ms:
            self.wifi_failures += 1
            self.last_error = st
            try:
                w.disconnect()
            except OSError:
                pass
            self.state = _WIFI_BACKOFF
            self._backoff()
        return False

    # ---------------------------------------------------------------- MQTT
    def _make_client(self):
        from umqtt.simple import MQTTClient
        c = MQTTClient(self.device_id, self.host, port=self.port, user=self.user, password=self.password,
                       keepalive=self.keepalive_s, ssl=self.ssl)
        c.set_last_will(self.topic_status, WILL_PAYLOAD, retain=True, qos=1)
        c.set_callback(self._on_msg)
        return c

    def _rearm(self):
        """Set the session's socket timeout again: umqtt.simple's wait_msg() leaves the socket blocking
        with no timeout (setblocking(True)), see the module doc. Allocates nothing (the float is made at
        connect; settimeout is called as a method, no bound method is made)."""
        t = self._timeout_s
        if t is not None:
            self._client.sock.settimeout(t)

    def _on_msg(self, topic, msg):
        # Runs inside umqtt calls (check_msg, or a publish waiting for its PUBACK), after wait_msg()
        # made the socket blocking: the next read of that call must be bounded again.
        self._rearm()
        if topic == self._topic_receipt_b and self.on_receipt is not None:
            self.on_receipt(msg)
            return
        if len(self.inbox) >= _MAX_INBOX:
            self.inbox_dropped += 1
            return
        self.inbox.append((topic, msg))

    def _errors(self):
        # What umqtt.simple raises besides OSError: MQTTException (refused CONNACK, failed SUBACK),
        # AssertionError/IndexError/TypeError from its packet parsing (asserts, read(1)[0] on a short
        # or non-blocking read returning None) when the stream is cut or garbled. Built once.
        if self._errs is None:
            from umqtt.simple import MQTTException
            self._errs = (OSError, MQTTException, AssertionError, IndexError, TypeError)
        return self._errs

    def _connect(self, timeout_ms):
        if self._client is None:
            try:
                self._client = self._make_client()
            except ImportError as e:
                # A board flashed without `mpremote mip install umqtt.simple` (make flash NO_MIP=1) stays
                # offline and keeps protecting; the status shows why, and retries back off.
                self._drop(OSError("umqtt.simple missing (%s): mpremote mip install umqtt.simple" % e))
                return False
        errs = self._errors()
        self.connect_timeout_ms = timeout_ms
        self.connects += 1
        t0 = time.ticks_us()
        try:
            # clean_session=False: commands published while the board was away are queued by the broker.
            self._client.connect(clean_session=False, timeout=timeout_ms / 1000)
        except errs as e:
            self._timed(t0)
            if not isinstance(e, OSError):
                self.refused += 1
            self._drop(e)
            return False
        self._timed(t0)
        self.timeout_ms = timeout_ms
        # None when the socket has no settimeout() (a TLS socket of an older port): docs/comms.md.
        self._timeout_s = timeout_ms / 1000 if hasattr(self._client.sock, "settimeout") else None
        self._last_tx = time.ticks_ms()
        self.state = _SUBSCRIBE
        return True

    def _subscribe(self):
        t0 = time.ticks_us()
        try:
            # one SUBSCRIBE for commands and receipts (the topic is made per session, not kept)
            self._client.subscribe(self.topic_cmd[:-3] + "#", qos=1)
        except self._errors() as e:
            self._timed(t0)
            self._drop(e)
            return False
        self._timed(t0)
        self._rearm()                    # the SUBACK was read through wait_msg()
        self._last_tx = time.ticks_ms()
        self._attempts = 0
        self.sessions += 1
        self.state = _UP
        return True

    def log_state(self):
        """One console line when the link state changed (Wi-Fi up/down, MQTT up, offline and why), at
        most one per _LOG_MIN_MS: a board without network says so in its log. poll() calls it first, for
        the state the previous poll left; allocates only when it writes."""
        st = self.state
        last = self._logged
        if last >= 0 and ((last & 7) == st or time.ticks_diff(time.ticks_ms(), last & ~7) < _LOG_MIN_MS):
            return                       # unchanged, or the latest state is written once the period is over
        if st == _SUBSCRIBE or st == _DOWN:
            return                       # a passing state, or nothing tried yet
        self._logged = (time.ticks_ms() & ~7) | st
        if st == _UP:
            print("comms: mqtt up (%s, session %d)" % (self.host, self.sessions))
        elif st == _WIFI_WAIT:
            print("comms: wifi connecting to %s" % self.ssid)
        elif st == _MQTT_WAIT and self.last_error is None:
            print("comms: wifi up, mqtt connecting to %s" % self.host)
        else:
            what = "wifi" if st <= _WIFI_BACKOFF else "mqtt"
            print("comms: mqtt offline (%s: %s)" % (what, self.last_error))

    def poll(self):
        """Advance Wi-Fi and the session within the budget opened by begin(); take in waiting messages."""
        self.log_state()
        if not self._poll_wifi():
            return
        if self.state == _MQTT_WAIT:
            if not self._due():
                return
            # The session's socket timeout: what is left of this budget shared by the connect's steps.
            t = self.left_us() // 1000 // CONNECT_UNITS
            if t < 1:
                return
            if not self._connect(t):
                return
        if self.state == _SUBSCRIBE:
            if not self.fits(_SUBSCRIBE_UNITS) or not self._subscribe():
                return
        # Waiting downlink packets: check_msg() never blocks for the first byte (non-blocking read);
        # the rest of a packet is read with the socket timeout, so it costs one unit.
        for _ in range(_MAX_INBOX):
            if not self.fits(1):
                break
            n = len(self.inbox)
            t0 = time.ticks_us()
            try:
                self._client.check_msg()
            except self._errors() as e:
                self._timed(t0)
                self._drop(e)
                return
            self._timed(t0)
            self._rearm()                # check_msg() ends with the socket blocking and no timeout
            if len(self.inbox) == n:
                break
        if time.ticks_diff(time.ticks_ms(), self._last_tx) >= self.keepalive_s * 500 \
                and self.fits(_PING_UNITS):
            self._rearm()
            t0 = time.ticks_us()
            try:
                self._client.ping()
            except self._errors() as e:
                self._timed(t0)
                self._drop(e)
                return
            self._timed(t0)
            self._last_tx = time.ticks_ms()

    def publish(self, topic, msg, retain=False):
        """QoS 1 publish if it fits the budget. True once the broker acknowledged it (PUBACK)."""
        if self.state != _UP or not self.fits(_PUBLISH_UNITS):
            return False
        self._rearm()                    # whatever umqtt call came last left no timeout
        t0 = time.ticks_us()
        try:
            self._client.publish(topic, msg, retain, 1)
        except self._errors() as e:
            self._timed(t0)
            self._drop(e)
            return False
        self._timed(t0)
        self._rearm()
        self._last_tx = time.ticks_ms()
        self.published += 1
        return True

    def close(self):
        """Orderly end (DISCONNECT: the broker drops the will). For tests and a planned reboot."""
        if self.state >= _SUBSCRIBE and self._client is not None:
            try:
                self._client.disconnect()
            except self._errors():
                pass
        self.state = _MQTT_WAIT if self.state >= _MQTT_WAIT else self.state
