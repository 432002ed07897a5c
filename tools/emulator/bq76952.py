"""Register-level emulation of the TI BQ76952 AFE as an I2C target (docs/architecture.md protocol).

Faithful to the chip as described in /work/shared/reference/bq76952.md, not to any driver: direct
commands, subcommands through 0x3E/0x3F + the 0x40 buffer + checksum/length, data memory gated by
CONFIG_UPDATE, optional CRC-8, protections, FET control, ADC loop timing, balancing, SLEEP, host
watchdog. Physics is lazy: every bus access (or update()) integrates the pack up to CLOCK.now_us().
Behaviour for unverified facts is chosen by the options in DEFAULT_OPTIONS (each marked [U]).

Split by concern: adc.py (loop, snapshot), balancing.py, regmap.py (direct commands, alarms, ALERT),
subcommands.py (0x3E/0x3F protocol, security, data memory); this file holds state, time and the bus.

    chip = BQ76952(Pack(cells=16), crc=False)
    chip.i2c_write(b"\\x14", False); chip.i2c_read(2)   # cell 1 voltage, little-endian mV
"""
from simclock import CLOCK

from tools.emulator import registers as R
from tools.emulator.adc import AdcMixin
from tools.emulator.balancing import BalancingMixin
from tools.emulator.crc import crc8
from tools.emulator.datamem import DataMemory
from tools.emulator.protections import Meas, Protections
from tools.emulator.regmap import RegisterMapMixin
from tools.emulator.rng import Rng
from tools.emulator.subcommands import SubcommandMixin
from tools.emulator.units import USER_AMPS_MA

# Options. Anything marked [U] is unverified on silicon and kept configurable on purpose.
DEFAULT_OPTIONS = {
    "sense_mohm": 1.0,             # shunt; CC2 is assumed calibrated for it
    "step_ms": 100,                # longest physics step (protection deadlines shorten it)
    "current_noise_ma": 2.0,       # sigma of the CC2 reading noise (seeded)
    "cell_noise_mv": 0.5,          # sigma of cell-voltage reading noise
    "device_number": 0x7695,       # [U] pattern from BQ76942 = 0x7694
    "fw_version": b"\x76\x95\x01\x00\x00\x23\x00",  # [U] 6 meaningful bytes (dev BE, fw BE, build BE) + 1 pad
    "fw_version_length": 11,       # 0x61 value E2E 1010048 reports for FW_VERSION (data = 7 bytes) [V per S9]
    "hw_version": 0x0002,          # [U]
    "subcmd_busy_us": 500,         # typical completion time (reference section 3)
    "busy_reads_ffff": True,       # [U] 0x3E/0x3F read 0xFF 0xFF while a subcommand is busy
    "set_cfgupdate_us": 2000,      # SET_CFGUPDATE completion (~2 ms)
    "exit_cfgupdate_us": 1000,     # EXIT_CFGUPDATE completion (~1 ms)
    "reset_boot_ms": 60,           # [U] boot after RESET during which the chip NACKs (S5 says 4.3 ms, TI waits 60)
    "fet_control_order": "S7",     # [U] conflict: "S7" 3 PCHG_OFF,2 CHG_OFF,1 PDSG_OFF,0 DSG_OFF; "S5" FET Status order
    "security_at_por": R.SEC_FULLACCESS,  # [U] security state at power-up/reset
    "unseal_keys": (0x0414, 0x3672),
    "full_access_keys": (0xFFFF, 0xFFFF),
    "key_window_ms": 4000,
    "cfgupdate_fets_off": True,    # [U] FETs off while in CONFIG_UPDATE
    "cfgupdate_stops_adc": True,   # [U] measurements and protections pause in CONFIG_UPDATE
    "dm_read_when_sealed": True,   # [U] reference section 4: data-memory reads "work in any mode"; False
                                   # models a sealed chip refusing them (stale buffer, checksum fails)
    "comm_type_on_cfg_exit": False,  # [U] TRM SLUUBY2B: mode changes on SWAP_COMM_MODE/RESET, not on exit
    "crc_comm_types": (0x11, 0x12),  # [X] BQ76922 TRM: 0x11 I2C+CRC, 0x12 I2C fast+CRC
    "cb_adjacent": "allow",        # [U] "allow" or "reject" adjacent cells in CB_ACTIVE_CELLS
    "cb_over_max": "reject",       # [U] "reject" (command ignored) or "truncate" (lowest cells kept)
    "cb_host_timeout_s": 0,        # [U] 0 = host balancing never times out (BQ7690x stops after 20 s)
    "hwd_recover_on_comm": True,   # [U] HWDF recovers (after Recovery Time) once the host talks again
    "therm_open_dc": -400,         # [U] open thermistor reads -40.0 degC (ADC at full scale)
    "therm_short_dc": 1500,        # [U] shorted thermistor reads +150.0 degC
    "therm_unconfigured_k10": 0,   # [U] a pin that is not a thermistor reads 0 (0.1 K)
    "alarm_latch": "level",        # [U] "level": latched |= raw & enable each loop; "edge": on 0->1 only
    "alert_active_high": False,    # [U] ALERT output polarity (active low, open drain by default)
    "charger_wakes_sleep": True,   # [U] a charger blocked by the sleeping CHG FET wakes the chip
    # [U] Host balancing (CB_ACTIVE_CELLS) and SLEEP: the reference does not say whether CB_SLEEP and
    # CB_NOSLEEP (Balancing Configuration 0x9335) apply to host-commanded balancing. "cb_sleep": it stops
    # in SLEEP unless CB_SLEEP is set (the cautious reading); "always": it continues in SLEEP regardless.
    "cb_host_in_sleep": "cb_sleep",
    "cb_nosleep_blocks": True,     # [U] CB_NOSLEEP keeps the chip out of SLEEP while host balancing is active
    "unknown_subcmd": "stale",     # [U] unknown code: readback completes, buffer/0x60/0x61 left stale
    "powered_up_at_start": True,   # construct as already booted (no boot NACK window at t0)
}


class BQ76952(AdcMixin, BalancingMixin, RegisterMapMixin, SubcommandMixin):
    """The chip. Attach to a host-port I2C bus at 0x08; see module docstring."""

    def __init__(self, pack, crc=False, alert_pin=None, seed=1, dm_overrides=None, dm_addr_overrides=None,
                 **options):
        for k in options:
            if k not in DEFAULT_OPTIONS:
                raise ValueError("unknown emulator option %r" % k)
        o = dict(DEFAULT_OPTIONS)
        o.update(options)
        self.opt = o
        if o["cb_host_in_sleep"] not in ("cb_sleep", "always"):
            raise ValueError("cb_host_in_sleep must be 'cb_sleep' or 'always'")
        if o["fet_control_order"] not in ("S7", "S5"):
            raise ValueError("fet_control_order must be 'S7' or 'S5'")
        if o["sense_mohm"] <= 0 or o["step_ms"] <= 0:
            raise ValueError("sense_mohm and step_ms must be > 0")
        self.pack = pack
        self.alert_pin = alert_pin
        self.otp_crc = bool(crc)        # the part powers up in CRC mode (BQ7695202 variant / OTP Comm Type)
        self.faults = None              # set by tools.emulator.faults.Faults
        self._rng = Rng(seed * 7919 + 13)
        self.dm = DataMemory(dm_overrides, dm_addr_overrides)
        self.prot = Protections()
        self.meas = Meas()
        now = CLOCK.now_us()
        self._t = now
        self._ptr = 0
        self._alert_level = None
        # Measurement snapshot registers (updated by the ADC loop).
        self.cell_reg = [0] * 16        # mV per VC input
        self._vals = [0.0] * 17
        self.stack_mv = 0
        self.pack_mv = 0
        self.ld_mv = 0
        self.cc2_ma = 0.0
        self.int_dc = 250
        self.pin_k10 = [0] * 9
        self.therm_fault = [None] * 9   # per pin: None, "open", "short"
        self.open_wire = 0              # bit n-1 set: VC input n's wire is open (faults)
        self.accum_mas = 0.0
        self.accum_t_us = 0
        self.cb_time_us = [0] * 16      # cumulative balancing time per VC input (CBSTATUS2/3)
        self._cb_eff_now = 0
        self.stats = {"steps": 0, "loops": 0, "fullscans": 0}
        self._power_on(now, booting=not o["powered_up_at_start"])
        self._measure(now)

    # ------------------------------------------------------------------ state
    def _power_on(self, now, booting):
        """Power-on / RESET: RAM settings reload from defaults, FET test mode, POR set."""
        self.dm.load_defaults()
        self.cfg = self.dm.snapshot()
        self.prot.reset()
        self.prot.configure(self.cfg, self.opt["sense_mohm"])
        self.sec = self.opt["security_at_por"]
        self.mfg = self.cfg.get("MFG_STATUS_INIT") & 0xFF
        self.host_off = 0               # FET bits the host turned off: FS_* positions
        self.cfgupdate = False
        self.por = True
        self.sleep = False
        self.sleep_en = bool(self.cfg.get("POWER_CONFIG") >> 8 & 1)
        self.sleep_block_until = now
        self.next_sleep_meas = now
        self.crc_mode = self.otp_crc or self.cfg.get("COMM_TYPE") in self.opt["crc_comm_types"]
        self.alarm_enable = self.cfg.get("DEFAULT_ALARM_MASK")
        self.alarm_latched = 0
        self.alarm_raw = 0
        self._prev_raw = 0
        self.cb_mask = 0                # host CB_ACTIVE_CELLS mask (VC input bits)
        self.cb_lvl_mv = 0              # CB_SET_LVL threshold (0 = off)
        self.cb_start_us = now
        self.ctrl_a5 = False
        self._buf = bytearray(32)
        self._buf_chk = 0xFF
        self._buf_len = 0x04
        self._sub_code = 0
        self._sub_pending = None        # (code, data or None)
        self._sub_done_us = 0
        self._extra_busy_us = 0
        self._key_stage = 0
        self._key_t = 0
        self._wrote = 0
        self._last_comm_us = now
        self.boot_until = now + self.opt["reset_boot_ms"] * 1000 if booting else now
        self._events = 1 << R.AL_INITCOMP
        self._anchor_adc(now)
        self._fets = (False, False)

    def _anchor_adc(self, now):
        self._adc_t0 = now
        self._adc_done = 0
        self._loop_us = self.loop_time_us()


    def user_amps_ma(self):
        return USER_AMPS_MA[self.cfg.get("DA_CONFIG") & 3]

    def vcell_mask(self):
        m = self.cfg.get("VCELL_MODE")
        return m if m else 0xFFFF

    def fet_en(self):
        return bool(self.mfg >> R.MS_FET_EN & 1)

    # ------------------------------------------------------------------ physics
    def update(self, now=None):
        """Integrate everything up to now (default CLOCK.now_us())."""
        if now is None:
            now = CLOCK.now_us()
        t = self._t
        step_us = int(self.opt["step_ms"] * 1000)
        while t < now:
            self._eval_current(t)
            end = t + step_us
            if end > now:
                end = now
            d = self._next_deadline(t)
            if t < d < end:
                end = d
            self._step(t, end)
            t = end
            self._t = t
            self._complete_subcommand(t)
        self._complete_subcommand(self._t)

    def _next_deadline(self, t):
        best = self.prot.deadline()
        for d in (self._hwd_deadline(), self.boot_until if self.boot_until > t else -1,
                  self._sub_done_us if self._sub_pending is not None else -1,
                  self.next_sleep_meas if self.sleep else -1):
            if d > t and (best <= t or d < best):
                best = d
        return best

    def _hwd_deadline(self):
        delay = self.cfg.get("HWD_DELAY")
        if delay and self.cfg.get("ENABLED_PROT_C") >> 1 & 1 and not self.prot.hwd_expired:
            return self._last_comm_us + delay * 1000000
        return -1

    def _fet_state(self):
        """(chg_on, dsg_on) the chip drives right now."""
        if self.cfgupdate and self.opt["cfgupdate_fets_off"]:
            return False, False
        if self.boot_until > self._t:
            return False, False
        if not self.fet_en():
            # FET test mode: only the *TEST subcommands drive the FETs.
            return bool(self.mfg >> R.MS_CHG_TEST & 1), bool(self.mfg >> R.MS_DSG_TEST & 1)
        fo = self.cfg.get("FET_OPTIONS")
        if not fo >> R.FO_FET_CTRL_EN & 1:
            return False, False
        al_a, st_a, al_b, st_b, al_c, st_c = self.prot.registers()
        g = self.cfg.get
        chg_block = (st_a & g("CHG_FET_PROT_A")) | (st_b & g("CHG_FET_PROT_B")) | (st_c & g("CHG_FET_PROT_C"))
        dsg_block = (st_a & g("DSG_FET_PROT_A")) | (st_b & g("DSG_FET_PROT_B")) | (st_c & g("DSG_FET_PROT_C"))
        chg = not chg_block and not self.host_off >> R.FS_CHG_FET & 1
        dsg = not dsg_block and not self.host_off >> R.FS_DSG_FET & 1
        if self.sleep and not fo >> R.FO_SLEEPCHG & 1:
            chg = False
        return chg, dsg

    def _adc_running(self):
        if self.boot_until > self._t:
            return False
        return not (self.cfgupdate and self.opt["cfgupdate_stops_adc"])

    def _step(self, t0, t1):
        pack = self.pack
        m = self.meas
        t_s = t0 / 1000000.0
        req = pack.requested_ma(t_s)
        running = self._adc_running()
        chg, dsg = self._fet_state()
        i_ma = pack.flow_ma(req, chg, dsg)
        if self.sleep:
            wake = abs(i_ma) > self.cfg.get("WAKE_COMPARATOR_CURRENT")
            if wake or self.prot.any_alert():
                self._exit_sleep(t0)
                chg, dsg = self._fet_state()
                i_ma = pack.flow_ma(req, chg, dsg)
        self._fets = (chg, dsg)
        dt_us = t1 - t0
        bleed_cells = self._bleed_cells()
        pack.step(dt_us / 1000000.0, i_ma, bleed_cells, chg, dsg)
        self.stats["steps"] += 1
        self.accum_mas += i_ma * dt_us / 1000000.0
        self.accum_t_us += dt_us
        if bleed_cells:
            eff = self._cb_eff_now
            for n in range(16):
                if eff >> n & 1:
                    self.cb_time_us[n] += dt_us
        if not running:
            self._alarm_update(t1)
            return
        if not self.sleep:
            self.cc2_ma = i_ma + self._rng.noise(self.opt["current_noise_ma"])
        # ADC loop: measurements are snapshots taken at loop boundaries.
        new_loops = 0
        if self.sleep:
            if t1 >= self.next_sleep_meas:
                new_loops = 1
                self.cc2_ma = i_ma + self._rng.noise(self.opt["current_noise_ma"])
                self.next_sleep_meas = t1 + self.cfg.get("VOLTAGE_TIME") * 1000000
                if self.opt["charger_wakes_sleep"] and req > 0 and not chg:
                    # [U] a charger held off by the sleeping CHG FET is seen at the sleep measurement
                    self._exit_sleep(t1)
        else:
            n = (t1 - self._adc_t0) // self._loop_us
            new_loops = n - self._adc_done
            self._adc_done = n
        if new_loops > 0:
            old = self.stats["loops"]
            self.stats["loops"] = old + new_loops
            self._events |= 1 << R.AL_ADSCAN
            full = (old + new_loops) // 3 - old // 3
            self._measure(t1, full > 0 or self.sleep)
            if full > 0:
                self.stats["fullscans"] += full
                self._events |= 1 << R.AL_FULLSCAN
            self._fill_meas()
            self.prot.evaluate_adc(t1, m)
            self._cb_loop(t1)
            if not self.sleep:
                self._maybe_enter_sleep(t1)
        m.current_ma = i_ma
        self.prot.hwd_expired = self._hwd_check(t1)
        self.prot.evaluate_current(t1, m)
        self.prot.tick(t1)
        self._fets = self._fet_state()
        self._alarm_update(t1)

    def _eval_current(self, t):
        """Current comparators (OCC/OCD/SCD) and the host watchdog act at once on the current that
        would flow from t on, before the step integrates it (so a short is caught at its start)."""
        if not self._adc_running():
            return
        pack = self.pack
        m = self.meas
        req = pack.requested_ma(t / 1000000.0)
        chg, dsg = self._fet_state()
        m.current_ma = pack.flow_ma(req, chg, dsg)
        m.stack_mv = self.stack_mv
        m.pack_mv = self.pack_mv
        self.prot.hwd_expired = self._hwd_check(t)
        self.prot.evaluate_current(t, m)

    def _hwd_check(self, t):
        d = self._hwd_deadline()
        if self.prot.hwd_expired:
            return not (self.opt["hwd_recover_on_comm"] and t - self._last_comm_us < self.cfg.get("HWD_DELAY") * 1000000)
        return d >= 0 and t >= d

    # ------------------------------------------------------------------ sleep
    def _maybe_enter_sleep(self, t):
        if not (self.sleep_en and self.fet_en()) or t < self.sleep_block_until:
            return
        if abs(self.cc2_ma) >= self.cfg.get("SLEEP_CURRENT") or self.prot.any_alert():
            return
        if self._cb_blocks_sleep():
            return
        self.sleep = True
        self.next_sleep_meas = t + self.cfg.get("VOLTAGE_TIME") * 1000000

    def _exit_sleep(self, t):
        self.sleep = False
        self.sleep_block_until = t + self.cfg.get("SLEEP_HYSTERESIS_TIME") * 1000000
        self._events |= 1 << R.AL_WAKE
        self._anchor_adc(t)

    # ------------------------------------------------------------------ I2C target protocol
    def _gate(self):
        """Faults and boot: returns False when the address must be NACKed; may raise ETIMEDOUT."""
        f = self.faults
        if f is not None:
            f.before_transaction()   # raises OSError(ETIMEDOUT) for a stuck bus
            if f.take_nack():
                return False
        now = CLOCK.now_us()
        self.update(now)
        if now < self.boot_until:
            return False
        return True

    def i2c_write(self, data, stop=True):
        if not self._gate():
            return -1
        self._last_comm_us = self._t
        n = len(data)
        if n == 0:
            return 0
        reg = data[0]
        self._ptr = reg
        self._wrote = 0
        acked = 1
        if self.crc_mode:
            i = 1
            first = True
            while i < n:
                d = data[i]
                if i + 1 >= n:
                    acked += 1       # data byte ACKed, its CRC never came: not committed
                    break
                want = crc8((0x10, reg, d)) if first else crc8((d,))
                if data[i + 1] != want:
                    # Bad CRC: the CRC byte is NACKed and the device goes idle (no triggers run).
                    return i + 1
                self._write_reg(self._ptr, d)
                self._ptr = (self._ptr + 1) & 0xFF
                first = False
                acked += 2
                i += 2
        else:
            for i in range(1, n):
                self._write_reg(self._ptr, data[i])
                self._ptr = (self._ptr + 1) & 0xFF
            acked = n
        self._end_write()
        return acked

    def i2c_read(self, n):
        if not self._gate():
            return None
        self._last_comm_us = self._t
        img = self._direct_image()
        out = bytearray(n)
        if self.crc_mode:
            first = True
            k = 0
            while k < n:
                d = self._read_byte(self._ptr, img)
                self._after_read_byte(self._ptr)
                self._ptr = (self._ptr + 1) & 0xFF
                out[k] = d
                if k + 1 < n:
                    out[k + 1] = crc8((0x10, (self._ptr - 1) & 0xFF, 0x11, d)) if first else crc8((d,))
                first = False
                k += 2
        else:
            for k in range(n):
                out[k] = self._read_byte(self._ptr, img)
                self._after_read_byte(self._ptr)
                self._ptr = (self._ptr + 1) & 0xFF
        f = self.faults
        if f is not None:
            f.corrupt_read(out)
        return bytes(out)

    def _after_read_byte(self, a):
        if a == R.CONTROL_STATUS + 1 and self.ctrl_a5:
            self.ctrl_a5 = False     # 0xFFA5 is returned once

    def _write_reg(self, a, v):
        if a == R.CONTROL_STATUS or a == R.CONTROL_STATUS + 1:
            self.ctrl_a5 = True      # legacy: next Control Status read returns 0xFFA5
        elif a == R.SUBCMD_LO:
            self._sub_code = (self._sub_code & 0xFF00) | v
            self._wrote |= 1
        elif a == R.SUBCMD_HI:
            self._sub_code = (self._sub_code & 0x00FF) | (v << 8)
            self._wrote |= 2
        elif R.TRANSFER_BUFFER <= a < R.TRANSFER_CHECKSUM:
            self._buf[a - R.TRANSFER_BUFFER] = v
            self._wrote |= 4
        elif a == R.TRANSFER_CHECKSUM:
            self._buf_chk = v
        elif a == R.TRANSFER_LENGTH:
            self._buf_len = v
            self._wrote |= 8
        elif a == R.ALARM_STATUS:
            self.alarm_latched &= ~v & 0xFFFF          # write 1 to clear
        elif a == R.ALARM_STATUS + 1:
            self.alarm_latched &= ~(v << 8) & 0xFFFF
        elif a == R.ALARM_ENABLE:
            self.alarm_enable = (self.alarm_enable & 0xFF00) | v
        elif a == R.ALARM_ENABLE + 1:
            self.alarm_enable = (self.alarm_enable & 0x00FF) | (v << 8)
        # every other direct command is read-only: the write is ACKed and ignored

    def _end_write(self):
        w = self._wrote
        self._wrote = 0
        if w & 2 and not w & 4 and not w & 8:
            self._issue(self._sub_code)
        if w & 8:
            self._commit()
        self._drive_alert()      # an Alarm Status clear or Enable change moves the pin at once

    # ------------------------------------------------------------------ helpers for tests and tools
    def now_fets(self):
        """(chg_on, dsg_on) after bringing the model up to date."""
        self.update()
        return self._fets
