"""The firmware rig the VM benchmarks share: emulated 16-cell pack, the real driver and app, and comms.

Runs inside the MicroPython VM only (node tools/mpvm/run.mjs --tests tools/bench/vm). The MQTT client
is the loopback stand-in that vmtest.install_loopback_umqtt() writes into /lib/umqtt (the VM has no
sockets): every publish is acknowledged at once and counted, allocating nothing, so what the heap
figures count is the firmware.

    import benchrig; rig = benchrig.Rig(clock, comms=True); rig.run(400); rig.app.cycle()
"""
import os

import vmtest

KEY = b"0123456789abcdef0123456789abcdef"
DEVICE = "bms-0001"


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
    vmtest.install_loopback_umqtt()
    import umqtt.simple
    from firmware.comms.auth import parse_key
    umqtt.simple.RECEIPT_KEY = parse_key(KEY)      # the stand-in broker confirms frames like the bridge
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
