"""The firmware rig the VM benchmarks share: emulated 16-cell pack, the real driver and app, and comms.

Runs inside the MicroPython VM only (node tools/mpvm/run.mjs --tests tools/bench/vm). The MQTT client
is a loopback stand-in written into the VM's /lib/umqtt (the VM has no sockets): every publish is
acknowledged at once and counted, allocating nothing, so what the heap figures count is the firmware.

    import benchrig; rig = benchrig.Rig(clock, comms=True); rig.run(400); rig.app.cycle()
"""
import os

_UMQTT = '''
class MQTTException(Exception):
    pass


class MQTTClient:
    """Loopback stand-in: a broker that acknowledges everything at once (bench only)."""

    def __init__(self, client_id, server, port=0, user=None, password=None, keepalive=0, ssl=None,
                 ssl_params=None):
        self.sock = None
        self.published = 0
        self.bytes = 0
        self.cb = None

    def set_last_will(self, topic, msg, retain=False, qos=0):
        pass

    def set_callback(self, f):
        self.cb = f

    def connect(self, clean_session=True, timeout=None):
        return False

    def disconnect(self):
        pass

    def ping(self):
        pass

    def subscribe(self, topic, qos=0):
        pass

    def check_msg(self):
        return None

    def wait_msg(self):
        return None

    def publish(self, topic, msg, retain=False, qos=0):
        self.published += 1
        self.bytes += len(msg)
'''

KEY = b"0123456789abcdef0123456789abcdef"
DEVICE = "bms-0001"


def install_umqtt():
    """Put the loopback MQTT client at /lib/umqtt/simple.py (once per VM)."""
    try:
        os.mkdir("/lib/umqtt")
    except OSError:
        pass
    with open("/lib/umqtt/__init__.py", "w") as f:
        f.write("")
    with open("/lib/umqtt/simple.py", "w") as f:
        f.write(_UMQTT)


def _mkdir(p):
    try:
        os.mkdir(p)
    except OSError:
        pass


def make_board():
    """The emulated chip on machine.I2C(0): 16 LFP cells charging at 20 A, one cell high (balancing)."""
    from tools.emulator import make_emulated_board
    emu = make_emulated_board(cells=16, chemistry="LFP", capacity_mah=100000, seed=1, soc=0.96)
    emu.pack.set_soc(0.985, cell=4)
    emu.pack.set_profile(_charge)
    return emu


def _charge(t_s):
    return 20000


class Rig:
    """App (+ Comms with a Link on the loopback client) on the emulated board, in simulated time."""

    def __init__(self, clock, comms=True, emu=None, start=True):
        import machine
        from firmware.afe.bq76952 import BQ76952
        from firmware.app import App
        from firmware.config import defaults
        from firmware.sample import Sample
        self.clock = clock
        self.emu = emu if emu is not None else make_board()
        self.i2c = machine.I2C(0, scl=machine.Pin(22), sda=machine.Pin(21), freq=400000)
        # fet_refresh_ms long: the periodic FET re-send stays out of the measured windows (as in
        # tests/mpy/test_pack_cycle.py); bal_min_cell_mv low enough for the charged pack to balance.
        cfg = defaults.build("lfp", {"fet_refresh_ms": 600000, "bal_min_cell_mv": 3300})
        self.period_ms = cfg["period_ms"]
        self.comms = None
        if comms:
            self.comms = make_comms()
        self.afe = BQ76952(self.i2c)
        self.app = App(cfg, self.afe, Sample(16, 3), comms=self.comms)
        if start:
            self.app.start()

    def run(self, n):
        app, clock, p = self.app, self.clock, self.period_ms
        for _ in range(n):
            app.cycle()
            clock.advance_ms(p)


def make_comms():
    install_umqtt()
    from firmware.comms.link import Link
    from firmware.comms.service import Comms
    _mkdir("/bench_outbox")
    _mkdir("/bench_comms")
    link = Link(DEVICE, "bench-ssid", "bench-wifi-key", "127.0.0.1", port=1883, user=DEVICE,
                password="bench")
    return Comms(DEVICE, KEY, link, spill_dir="/bench_outbox", state_dir="/bench_comms",
                 cell_count=16, temp_count=3)


def emit(name, figures):
    """One machine-readable line the host side (tools/bench/firmware_vm.py) picks up."""
    import json
    print("BENCH " + json.dumps({"name": name, "figures": figures}))
