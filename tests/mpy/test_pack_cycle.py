"""The pack control cycle inside the MicroPython VM: the steady cycle allocates nothing (heap locked).

Runs the compiled firmware (.mpy): App.cycle() with the real BQ76952 driver on the emulated chip
(tools/emulator through the host machine.I2C, which unlocks the heap for the emulator's side only),
so heap_lock wraps firmware code only. A second test drives protection, state, balancing and SOC
without any bus. MicroPython only (micropython.heap_lock, gc.mem_alloc).

    import test_pack_cycle as t; t.test_app_cycle_steady_state_allocates_nothing()
"""
import gc

import vmtest

from firmware.app import App
from firmware.balancing.policy import Balancer
from firmware.config import defaults
from firmware.pack.protection import Protection
from firmware.pack.soc import Soc
from firmware.pack.state import CHARGE, PackState
from firmware.sample import Sample

CYCLES = 200


def _emulated_app(clock):
    import machine
    from tools.emulator import make_emulated_board

    from firmware.afe.bq76952 import BQ76952

    emu = make_emulated_board(cells=16, chemistry="LFP", capacity_mah=100000, seed=1, soc=0.96)
    emu.pack.set_soc(0.985, cell=4)         # one high cell: balancing is active in the measured window
    emu.pack.set_profile(lambda t: 20000)   # charging at 20 A
    i2c = machine.I2C(0, scl=machine.Pin(22), sda=machine.Pin(21), freq=400000)
    # fet_refresh_ms long: the periodic FET re-send (a 1-byte subcommand payload) stays out of the window.
    cfg = defaults.build("lfp", {"fet_refresh_ms": 600000, "bal_min_cell_mv": 3300})
    app = App(cfg, BQ76952(i2c), Sample(16, 3))
    app.start()
    return emu, app


def test_app_cycle_steady_state_allocates_nothing():
    with vmtest.use_sim_clock(start_ms=0) as clock:
        emu, app = _emulated_app(clock)
        for _ in range(40):                 # warm up: init -> idle -> charge, balancing chosen
            app.cycle()
            clock.advance_ms(250)
        if app.sm.state != CHARGE or not app.sample.balance_mask:
            raise AssertionError("not in the steady charge-with-balancing state: state %d mask 0x%x faults 0x%x"
                                 % (app.sm.state, app.sample.balance_mask, app.prot.faults))
        mask = app.sample.balance_mask
        for _ in range(CYCLES):
            vmtest.assert_no_alloc(app.cycle)
            clock.advance_ms(250)
        if app.read_errors or app.prot.faults or app.sample.balance_mask != mask:
            raise AssertionError("window was not steady: read errors %d faults 0x%x mask 0x%x"
                                 % (app.read_errors, app.prot.faults, app.sample.balance_mask))
        print("app.cycle: %d cycles under heap_lock, 0 bytes allocated, cells bleeding 0x%x"
              % (CYCLES, mask))


class _QuietAFE:
    def set_fets(self, chg_on, dsg_on):
        pass

    def set_balancing(self, mask):
        return mask

    def set_sleep_allowed(self, allowed):
        pass


class _Rig:
    """Pack logic without a bus. A class, not a closure: MicroPython heap-allocates the argument array
    of a closure call with more than 5 closed-over values plus arguments (objclosure.c)."""

    def __init__(self):
        cfg = defaults.build("lfp", {"fet_refresh_ms": 600000})
        afe = _QuietAFE()
        s = Sample(16, 3)
        for i in range(16):
            s.cell_mv[i] = 3400 + (30 if i in (2, 9) else 0)
        for i in range(3):
            s.temp_dc[i] = 250
        s.int_temp_dc = 300
        s.current_ma = 20000
        self.s = s
        self.p = Protection(cfg)
        self.sm = PackState(cfg, afe)
        self.b = Balancer(cfg, afe)
        self.soc = Soc(cfg)
        self.now = 0

    def cycles(self, n):
        s = self.s
        for _ in range(n):
            self.now += 250
            s.t_ms = self.now
            self.p.update(s, True, self.now, 250)
            self.sm.update(s, self.p, 250)
            self.b.update(s, self.p, self.sm, 250)
            self.soc.update(s, self.p, 250)

    def thousand(self):
        self.cycles(1000)


def test_pack_logic_allocates_nothing_per_cycle():
    r = _Rig()
    r.cycles(50)
    if r.sm.state != CHARGE or r.s.balance_mask != (1 << 2) | (1 << 9):
        raise AssertionError("unexpected steady state %d mask 0x%x" % (r.sm.state, r.s.balance_mask))
    vmtest.assert_no_alloc(r.thousand)
    gc.collect()
    delta = vmtest.mem_alloc_delta(r.thousand)
    if delta:
        raise AssertionError("1000 cycles allocated %d bytes" % delta)
    print("pack logic: 1000 cycles, %d bytes allocated (gc.mem_alloc delta)" % delta)


def test_soc_state_survives_a_reboot_in_the_vm():
    """soc_store on the VM's file system: write atomically, read back, damage is refused (ValueError)."""
    import os

    from firmware.pack import soc_store
    path = "/soc_vm_test.dat"
    soc = Soc(defaults.build("lfp", {"capacity_mah": 100000}))
    soc.soc_cpct = 1234
    soc.learn(93000)
    soc_store.save(path, soc)
    got = soc_store.load(path)
    if got != (1234, 93000, 100000) or soc.save_due():
        raise AssertionError("round trip gave %r (save_due %r)" % (got, soc.save_due()))
    if "soc_vm_test.dat.tmp" in os.listdir("/"):
        raise AssertionError("temporary file left behind")
    again = Soc(defaults.build("lfp", {"capacity_mah": 100000}))
    again.restore(*got)
    if again.capacity_mah != 93000 or again.soh_cpct != 9300:
        raise AssertionError("restore: capacity %d soh %d" % (again.capacity_mah, again.soh_cpct))
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[:-1] + b"0" if data[-1:] != b"0" else data[:-1] + b"1")
    try:
        soc_store.load(path)
        raise AssertionError("a damaged file was accepted")
    except ValueError:
        pass
    os.remove(path)
    print("soc state: round trip on the VM file system, damage refused")
