"""Host stand-in for MicroPython's `network` module (esp32 port): WLAN state in simulated time.

Runs in CPython and in the MicroPython VM; never deployed. Only the Wi-Fi link state is modelled
(sockets on the host use the host's loopback); tests steer it through `network.SIM`.

    wlan = network.WLAN(network.STA_IF); wlan.active(True); wlan.connect("ssid", "key")
    network.SIM.fail_next_connect(network.STAT_WRONG_PASSWORD); network.SIM.drop()

connect() returns at once; the link comes up SIM.connect_delay_ms later in simclock.CLOCK time,
or ends in a failure status. Nothing reconnects by itself unless SIM.auto_reconnect is set
(the esp32 port retries per WLAN.config(reconnects=...); the firmware's link layer must not rely on it).
"""
from simclock import CLOCK

STA_IF = 0
AP_IF = 1

# esp32 port values (ports/esp32/network_wlan.c: its own IDLE/CONNECTING/GOT_IP, and the
# ESP-IDF wifi_err_reason_t numbers for failures).
STAT_IDLE = 1000
STAT_CONNECTING = 1001
STAT_GOT_IP = 1010
STAT_BEACON_TIMEOUT = 200
STAT_NO_AP_FOUND = 201
STAT_WRONG_PASSWORD = 202
STAT_ASSOC_FAIL = 203
STAT_HANDSHAKE_TIMEOUT = 204

_FAILURES = (STAT_BEACON_TIMEOUT, STAT_NO_AP_FOUND, STAT_WRONG_PASSWORD, STAT_ASSOC_FAIL,
             STAT_HANDSHAKE_TIMEOUT)

_hostname = ["esp32"]


def hostname(name=None):
    if name is None:
        return _hostname[0]
    _hostname[0] = name
    return None


class _Sim:
    """Host-only control of the simulated Wi-Fi (one access point, one station)."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.ap_up = True            # the access point is in range and answering
        self.ssid = None             # when set, connect() needs this ssid ...
        self.key = None              # ... and this key (None: any ssid/key is accepted)
        self.connect_delay_ms = 1500  # association + DHCP; measured boards take 1-4 s
        self.auto_reconnect = False
        self.rssi = -60
        self.blackhole = False       # link up, but nothing beyond the AP answers (umqtt stand-in)
        self.ip = ("192.168.4.2", "255.255.255.0", "192.168.4.1", "192.168.4.1")
        self.connects = 0            # connect() calls
        self.drops = 0               # links lost (drop(), AP down)
        self._fail_next = None
        self._state = STAT_IDLE
        self._up_at_us = 0
        self._requested = False
        self._sta_active = False
        self._ap_active = False
        self._ssid_now = None
        self._want_ssid = None
        self._want_key = None

    # --- test controls ---
    def set_network(self, ssid, key):
        self.ssid = ssid
        self.key = key

    def fail_next_connect(self, status):
        """The next connection attempt ends with `status` (a STAT_* failure) after the delay."""
        if status not in _FAILURES:
            raise ValueError("not a failure status: %r" % (status,))
        self._fail_next = status

    def set_ap(self, up):
        """Access point in range (True) or gone (False: a live link drops with BEACON_TIMEOUT)."""
        self.ap_up = bool(up)
        if not up:
            self._update()
            if self._state in (STAT_GOT_IP, STAT_CONNECTING):
                self._lose(STAT_BEACON_TIMEOUT if self._state == STAT_GOT_IP else STAT_NO_AP_FOUND)

    def drop(self, reason=STAT_BEACON_TIMEOUT):
        """Drop a live link now (the station sees `reason`)."""
        self._update()
        if self._state == STAT_GOT_IP:
            self._lose(reason)

    def link_ok(self):
        """True when a socket would get through: the station has an IP and nothing is black-holed.
        When the station was never activated the host's own network is used, so also True."""
        if not self._sta_active and not self._requested:
            return not self.blackhole
        self._update()
        return self._state == STAT_GOT_IP and not self.blackhole

    def sta_in_use(self):
        return self._sta_active

    # --- model ---
    def _lose(self, reason):
        self.drops += 1
        self._state = reason
        self._ssid_now = None
        if self.auto_reconnect and self._requested:
            self._start()
        else:
            self._requested = False

    def _start(self):
        self._state = STAT_CONNECTING
        self._up_at_us = CLOCK.now_us() + self.connect_delay_ms * 1000

    def _update(self):
        if self._state != STAT_CONNECTING or CLOCK.now_us() < self._up_at_us:
            return
        if self._fail_next is not None:
            outcome = self._fail_next
            self._fail_next = None
        elif not self.ap_up or (self.ssid is not None and self._want_ssid != self.ssid):
            outcome = STAT_NO_AP_FOUND
        elif self.key is not None and self._want_key != self.key:
            outcome = STAT_WRONG_PASSWORD
        else:
            outcome = STAT_GOT_IP
        if outcome == STAT_GOT_IP:
            self._state = STAT_GOT_IP
            self._ssid_now = self._want_ssid
        else:
            self._state = outcome
            if self.auto_reconnect:
                self._start()
            else:
                self._requested = False


SIM = _Sim()


class WLAN:
    def __init__(self, interface_id=STA_IF):
        if interface_id not in (STA_IF, AP_IF):
            raise ValueError("invalid WLAN interface identifier")
        self._if = interface_id

    def active(self, is_active=None):
        if is_active is None:
            return SIM._sta_active if self._if == STA_IF else SIM._ap_active
        if self._if == AP_IF:
            SIM._ap_active = bool(is_active)
            return None
        SIM._sta_active = bool(is_active)
        if not is_active:
            SIM._requested = False
            SIM._state = STAT_IDLE
            SIM._ssid_now = None
        return None

    def _sta(self):
        if self._if != STA_IF:
            raise OSError("STA required")
        if not SIM._sta_active:
            raise OSError("Wifi Not Started")

    def connect(self, ssid=None, key=None, bssid=None):
        self._sta()
        SIM.connects += 1
        SIM._want_ssid = ssid
        SIM._want_key = key
        SIM._requested = True
        SIM._ssid_now = None
        SIM._start()

    def disconnect(self):
        self._sta()
        SIM._requested = False
        SIM._ssid_now = None
        SIM._state = STAT_IDLE  # an explicit disconnect is not a failure

    def isconnected(self):
        if self._if == AP_IF:
            return False  # no stations are modelled on the access point
        if not SIM._sta_active:
            return False
        SIM._update()
        return SIM._state == STAT_GOT_IP

    def status(self, param=None):
        if param is None:
            if self._if == AP_IF or not SIM._sta_active:
                return STAT_IDLE
            SIM._update()
            return SIM._state
        if param == "rssi":
            if not self.isconnected():
                raise OSError("not connected")
            return SIM.rssi
        if param == "stations":
            return []
        raise ValueError("unknown status param")

    def ifconfig(self, config=None):
        if config is not None:
            SIM.ip = tuple(config)
            return None
        if self._if == STA_IF and not self.isconnected():
            return ("0.0.0.0", "0.0.0.0", "0.0.0.0", "0.0.0.0")
        return SIM.ip

    def scan(self):
        self._sta()
        if not SIM.ap_up:
            return []
        name = SIM.ssid if SIM.ssid is not None else "sim-ap"
        # (ssid, bssid, channel, RSSI, security, hidden) as the esp32 port returns them
        return [(name.encode(), b"\x02\x00\x00\x00\x00\x01", 6, SIM.rssi, 3, False)]

    def config(self, *args, **kwargs):
        if kwargs:
            for k in kwargs:
                if k == "hostname":
                    hostname(kwargs[k])
                elif k == "reconnects":
                    SIM.auto_reconnect = kwargs[k] != 0
                elif k not in ("txpower", "pm", "channel", "ssid", "essid", "key", "password",
                               "security", "authmode", "max_clients"):
                    raise ValueError("unknown config param")
            return None
        if len(args) != 1:
            raise TypeError("can query only one param")
        p = args[0]
        if p == "mac":
            import machine
            mac = bytearray(machine.unique_id()[:6])
            if self._if == AP_IF:
                mac[5] = (mac[5] + 1) & 0xFF  # esp32: softAP MAC = base MAC + 1
            return bytes(mac)
        if p in ("ssid", "essid"):
            return SIM._ssid_now if SIM._ssid_now is not None else ""
        if p in ("hostname", "dhcp_hostname"):
            return hostname()
        if p == "channel":
            return 6
        if p == "txpower":
            return 20
        if p == "reconnects":
            return -1 if SIM.auto_reconnect else 0
        raise ValueError("unknown config param")
