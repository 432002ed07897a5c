"""The fixed-period cycle: measure -> protect -> state/FETs -> balance -> SOC -> hand the sample to comms.

    app = App(cfg, afe, Sample(16, 3), comms=comms, wdt=machine.WDT(timeout=5000))
    app.start(); app.run()            # or main() on a board: /main.py does `from firmware.app import main; main()`

The watchdog is fed only at the end of a completed cycle, so a hung cycle resets the board. A cycle
that ends after its deadline counts as an overrun and the schedule re-anchors (no burst of catch-up
cycles). Comms get a copy of the sample and a bounded poll; without comms a NullComms stands in.
The steady cycle allocates nothing; strings are made only on fault and state transitions.
"""
import sys
import time

from firmware.balancing.policy import Balancer
from firmware.log import LOG
from firmware.pack import protection as _prot
from firmware.pack.protection import Protection
from firmware.pack.soc import Soc
from firmware.pack.state import EVENT_CLEAR, EVENT_FAULT, EVENT_INFO, PackState

# Info codes (event kind 3), beside the state codes 16..21 (firmware.pack.state.INFO_STATE).
INFO_CONFIG = 32        # config file problem at boot; value 1 missing, 2 corrupt, 3 invalid
INFO_OVERRUN = 33       # cycle overruns since boot (value = count): the first at once, then at most once a minute
INFO_RESET = 34         # explicit fault reset; value = bits cleared
INFO_SOC_STATE = 35     # stored SOC/SOH state at boot; value 1 missing, 2 corrupt, 3 other pack, 4 write failed
INFO_MAX_CYCLE = 36     # longest cycle since boot except the first (ms), sent with INFO_OVERRUN
REPORT_MS = 60000       # health reports (overruns; "running on defaults" every REPORT_CONFIG_EVERY reports)
REPORT_CONFIG_EVERY = 60
_CONFIG_CODES = {"missing": 1, "corrupt": 2, "invalid": 3}

# Needed only to build and configure (and again on a rare config command): imported inside the functions
# that use them and unloaded by release_boot_modules(), so their code leaves the heap once the board runs
# (measured: docs/memory.md). No module-level `from ... import` of these may stay anywhere in the firmware.
BOOT_MODULES = ("firmware.board", "firmware.config.store", "firmware.config.validate", "firmware.config.defaults",
                "firmware.config.presets", "firmware.afe.bq76952_settings", "firmware.version",
                "firmware.config.atomic", "firmware.pack.soc_store")
# The SOC state file's modules: loaded for a boot restore or a (rare) write, then dropped again.
SOC_MODULES = ("firmware.pack.soc_store", "firmware.config.atomic")


def release_boot_modules(names=BOOT_MODULES):
    """Drop boot-only modules from sys.modules and their package, so the collector can free their code.

    MicroPython only (on CPython nothing is gained and tests hold module references). A later import
    loads the module again. Returns how many were dropped.
    """
    if sys.implementation.name != "micropython":
        return 0
    n = 0
    for name in names:
        mods = sys.modules
        if name in mods:
            del mods[name]
            n += 1
        # The import also bound the module as an attribute of its package: that reference goes too.
        pkg, _, leaf = name.rpartition(".")
        parent = mods.get(pkg)
        if parent is not None and leaf in parent.__dict__:
            delattr(parent, leaf)
    return n


class NullComms:
    """Stands in when the comms layer is absent: counts what it was offered."""

    def __init__(self):
        self.samples = 0
        self.events = 0
        self.polls = 0

    def offer_sample(self, sample):
        self.samples += 1

    def offer_event(self, kind, code, value):
        self.events += 1

    def poll(self, budget_ms):
        self.polls += 1


class App:
    def __init__(self, cfg, afe, sample, comms=None, wdt=None, log=LOG, config_status="ok"):
        from firmware.config import validate
        validate.check(cfg)
        self.cfg = cfg
        self.afe = afe
        self.sample = sample
        self.comms = comms if comms is not None else NullComms()
        self.wdt = wdt
        self.log = log
        self.period_ms = cfg["period_ms"]
        self.budget_ms = cfg["comms_budget_ms"]
        self.prot = Protection(cfg)
        self.sm = PackState(cfg, afe, events=self.comms, log=log)
        self.bal = Balancer(cfg, afe)
        self.soc = Soc(cfg)
        self.config_status = config_status
        self.cfg_path = None     # where CMD_SET_CONFIG persists (set by build())
        self.soc_path = None     # where SOC/SOH persist across reboots (set by build(); None: not kept)
        self.soc_status = "none"  # the state file at boot: ok, missing, corrupt, other pack; later "write failed"
        self.soc_writes = 0
        self.applied = None      # the driver's configure() result
        self.cycles = 0
        self.overruns = 0
        self.read_errors = 0
        self.max_cycle_ms = 0
        self._last_ms = time.ticks_ms()
        self._soc_started = False
        self._report_ms = 0
        self._reports = 0
        self._overruns_sent = 0

    def start(self):
        """Probe and configure the chip (hardware protections from the same config), enable FET control.

        Bus trouble here is not fatal: the cycle then sees failed reads, raises afe_comm and keeps the
        FETs commanded off; a later reset retries configuration through `recover()`.
        """
        if self.config_status != "ok":
            self.log.info("config %s: running on safe defaults" % self.config_status)
            self.comms.offer_event(EVENT_INFO, INFO_CONFIG, _CONFIG_CODES.get(self.config_status, 9))
        if self.soc_path is not None:
            self._soc_file(False)
        from firmware.config import validate
        try:
            self.afe.probe()
            self.applied = self.afe.configure(validate.chip_settings(self.cfg))
            self.afe.fet_enable()
            self.sm.boot()
        except OSError as e:
            self.log.info("afe start failed: %r" % (e,))
        self._last_ms = time.ticks_ms()

    def _soc_file(self, save):
        """Restore (boot) or write (Soc.save_due: rare) the SOC/SOH state file; firmware.pack.soc_store
        does the work and reports trouble. Its modules are dropped again afterwards (heap)."""
        from firmware.pack import soc_store
        if save:
            soc_store.save_app(self)
        else:
            soc_store.restore_app(self)
        soc_store = None   # noqa: F841 (no reference may keep the module alive)
        release_boot_modules(SOC_MODULES)

    def cycle(self):
        """One protection cycle. Returns nothing; results are in self.sample and the counters."""
        s = self.sample
        now = time.ticks_ms()
        dt = time.ticks_diff(now, self._last_ms)
        self._last_ms = now
        ok = True
        try:
            self.afe.read(s)
        except OSError:
            ok = False
            self.read_errors += 1
        prot = self.prot
        prot.update(s, ok, now, dt)
        if prot.raised or prot.cleared:
            self._report(prot)
        if ok and not self._soc_started:
            self._soc_started = True
            self.soc.start(s, prot)
        self.sm.update(s, prot, dt)
        self.bal.update(s, prot, self.sm, dt)
        self.sm.keep_awake = self.bal.mask != 0   # next cycle: no chip SLEEP while cells bleed
        if ok and self._soc_started:
            self.soc.update(s, prot, dt)
        s.faults = prot.faults
        self.comms.offer_sample(s)
        self.comms.poll(self.budget_ms)
        if self.wdt is not None:
            self.wdt.feed()
        # The rare flash write (at most every 10 min, or on a full/empty mark) goes last: the FETs are
        # commanded, the sample handed over and the watchdog fed before the file system can take its time.
        if ok and self._soc_started and self.soc_path is not None and self.soc.save_due():
            self._soc_file(True)
        self.cycles += 1
        took = time.ticks_diff(time.ticks_ms(), now)
        if took > self.max_cycle_ms and self.cycles > 1:   # the first cycle imports and allocates
            self.max_cycle_ms = took
        self._report_ms += dt
        if self._report_ms >= REPORT_MS:
            self._report_ms = 0
            self._health()

    def _health(self):
        """Once a minute: new overruns (count and longest cycle); every hour: still running on defaults.
        Integers only; offer_event copies into the comms queue."""
        self._reports += 1
        if self.overruns != self._overruns_sent:
            self._overruns_sent = self.overruns
            self.comms.offer_event(EVENT_INFO, INFO_OVERRUN, self.overruns)
            self.comms.offer_event(EVENT_INFO, INFO_MAX_CYCLE, self.max_cycle_ms)
        if self.config_status != "ok" and self._reports % REPORT_CONFIG_EVERY == 0:
            self.comms.offer_event(EVENT_INFO, INFO_CONFIG, _CONFIG_CODES.get(self.config_status, 9))

    def _report(self, prot):
        # Rare: a fault raised or cleared. Allocation is allowed here. One event per fault bit.
        if prot.raised:
            self.log.info("fault raised %s (now %s)" % (_prot.names(prot.raised), _prot.names(prot.faults)))
        if prot.cleared:
            self.log.info("fault cleared %s (now %s)" % (_prot.names(prot.cleared), _prot.names(prot.faults)))
        for i in range(_prot.N_FAULTS):
            bit = 1 << i
            if prot.raised & bit:
                self.comms.offer_event(EVENT_FAULT, i, prot.cause(i))
            if prot.cleared & bit:
                self.comms.offer_event(EVENT_CLEAR, i, prot.cause(i))

    def reset_faults(self, mask=0x7FFF):
        """Explicit reset (operator command or button): clears latched faults; tries to recover the chip."""
        bits = self.prot.reset(mask)
        self.log.info("reset requested: cleared %s" % _prot.names(bits))
        if bits & _prot.F_SHORT:
            for kind in ("SCDL", "OCDL"):   # the driver's RECOVER_SCDL / RECOVER_OCDL
                try:
                    self.afe.recover(kind)
                except (OSError, ValueError):
                    pass
        if bits & _prot.F_AFE_COMM and self.applied is None:
            self.start()
        self.comms.offer_event(EVENT_INFO, INFO_RESET, bits)
        for i in range(_prot.N_FAULTS):
            if bits & (1 << i):
                self.comms.offer_event(EVENT_CLEAR, i, self.prot.cause(i))
        return bits

    def apply_config(self):
        """Re-read self.cfg into every layer and re-configure the chip's protections (config change)."""
        self.prot.configure(self.cfg)
        self.sm.configure(self.cfg)
        self.bal.configure(self.cfg)
        self.soc.configure(self.cfg)
        self.period_ms = self.cfg["period_ms"]
        self.budget_ms = self.cfg["comms_budget_ms"]
        from firmware.config import validate
        self.applied = self.afe.configure(validate.chip_settings(self.cfg))
        self.log.info("config applied")

    def handle_command(self, code, params):
        """The comms layer's command hook: (result, message). Codes and results: firmware.comms.command_codes.

        Called from comms.poll() between cycles, rarely; allocation is fine here.
        """
        from firmware.comms import command_codes as cc
        if code == cc.CMD_FAULT_RESET:
            before = self.prot.faults
            bits = self.reset_faults(params.get("mask", 0x7FFF))
            if before and not bits:
                return cc.RESULT_REFUSED, "condition still present: " + _prot.names(self.prot.present & before)
            return cc.RESULT_OK, "cleared " + _prot.names(bits)
        if code == cc.CMD_BALANCING:
            self.bal.enabled = bool(params["on"])
            self.log.info("balancing %s by command" % ("allowed" if self.bal.enabled else "off"))
            return cc.RESULT_OK, "balancing " + ("on" if self.bal.enabled else "off")
        if code == cc.CMD_FET:
            chg = 1 if params.get("chg", 1) else 0
            dsg = 1 if params.get("dsg", 1) else 0
            # A refused request is not stored: it must not close a FET later, once the fault clears.
            if (chg and not self.prot.chg_allowed()) or (dsg and not self.prot.dsg_allowed()):
                return cc.RESULT_REFUSED, "protection holds a FET open: " + _prot.names(self.prot.faults)
            self.sm.user_chg = chg
            self.sm.user_dsg = dsg
            self.log.info("fet request chg=%d dsg=%d by command" % (chg, dsg))
            return cc.RESULT_OK, "fets chg=%d dsg=%d" % (chg, dsg)
        if code == cc.CMD_GET_CONFIG:
            from firmware.comms import commands
            return commands.get_config(self.cfg, params["key"])
        if code == cc.CMD_SET_CONFIG:
            try:
                return self._set_config(params)
            finally:
                release_boot_modules()   # store/validate/settings were loaded again for this command
        return cc.RESULT_UNSUPPORTED, "no handler for command %d" % code

    def _set_config(self, params):
        from firmware.comms import command_codes as cc
        from firmware.comms import commands
        result, msg = commands.set_config(self.cfg, params["key"], params["value"], self.cfg_path)
        if result == cc.RESULT_OK:
            # The status frame reports the hash of the applied config: keep it current.
            if hasattr(self.comms, "config_hash"):
                from firmware.config import store
                self.comms.config_hash = store.checksum(store.encode(self.cfg))
            try:
                self.apply_config()
            except OSError as e:
                return cc.RESULT_FAILED, "saved; chip configure failed: %s" % (e,)
        return result, msg

    def run(self, cycles=-1):
        """Run cycles at the fixed period (forever when cycles < 0)."""
        period = self.period_ms
        deadline = time.ticks_add(time.ticks_ms(), period)
        while cycles != 0:
            self.cycle()
            if cycles > 0:
                cycles -= 1
            wait = time.ticks_diff(deadline, time.ticks_ms())
            if wait < 0:
                self.overruns += 1
                if self.overruns == 1:   # the first at once; later ones in the minute report (_health)
                    self._overruns_sent = 1
                    self.comms.offer_event(EVENT_INFO, INFO_OVERRUN, 1)
                    self.comms.offer_event(EVENT_INFO, INFO_MAX_CYCLE, self.max_cycle_ms)
                deadline = time.ticks_add(time.ticks_ms(), period)
            else:
                time.sleep_ms(wait)
                deadline = time.ticks_add(deadline, period)


def make_comms(b, cfg):
    """The comms layer if present and it can build itself from the board, else NullComms."""
    try:
        from firmware.comms.service import Comms
    except ImportError:
        LOG.info("comms absent: NullComms")
        return NullComms()
    try:
        return Comms.from_board(b, cfg)
    except ValueError as e:   # no or incomplete site secrets: protect the pack without comms
        LOG.info("comms disabled: %s" % (e,))
        return NullComms()


def build(b, cfg_path=None, i2c=None, comms=None, wdt=None):
    """Everything from a board description; i2c/comms/wdt may be passed in (tests, simboard)."""
    from firmware import board as _board
    from firmware.afe.bq76952 import BQ76952
    from firmware.config import store
    from firmware.sample import Sample

    _board.check(b)
    path = cfg_path if cfg_path is not None else b.get("config_path", "/config.json")
    cfg, status = store.load(path, b["chemistry"], _board.overrides(b))
    bus = b["i2c"]
    if i2c is None:
        import machine
        i2c = machine.I2C(bus.get("id", 0), scl=machine.Pin(bus["scl"]), sda=machine.Pin(bus["sda"]),
                          freq=bus["freq"])
    afe = BQ76952(i2c, addr=bus.get("addr", 8), crc=bool(bus.get("crc", False)))
    if comms is None:
        comms = make_comms(b, cfg)
    sample = Sample(cfg["cell_count"], cfg["temp_count"])
    app = App(cfg, afe, sample, comms=comms, wdt=wdt, config_status=status)
    app.cfg_path = path
    head, sep, _ = path.rpartition("/")
    app.soc_path = b.get("soc_path", head + sep + "soc.dat")   # beside the config file
    if hasattr(comms, "on_command"):
        comms.on_command = app.handle_command
    return app


def main(board_path="/board.json", cycles=-1, cfg_path=None):
    """Board entry point: build from the board description and the stored config, then run forever.

    cfg_path defaults to the board's config_path ("/config.json"); cycles < 0 runs forever.
    """
    import machine

    app = _build_from(board_path, cfg_path)
    app.wdt = machine.WDT(timeout=app.cfg["wdt_ms"])   # before start(): a hung configure resets the board
    app.start()
    release_boot_modules()   # main() never returns: no local of this frame may hold a boot module
    app.run(cycles)
    return app


def _build_from(board_path, cfg_path):
    from firmware import board as _board
    return build(_board.load(board_path), cfg_path=cfg_path)
