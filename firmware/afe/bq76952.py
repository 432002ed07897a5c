"""Driver for the TI BQ76952 battery monitor over I2C: configure, measure, FETs, balancing, alarms.

Registers only: the pack logic decides, this module talks to the chip. It takes any machine.I2C-like
bus (readfrom_mem_into, writeto_mem), frames bytes with or without the chip's CRC-8, runs subcommands
with bounded polling and verified checksums, and fills a preallocated Sample without allocating.

    afe = BQ76952(machine.I2C(0), crc=False); afe.probe()
    applied = afe.configure({"cell_count": 4, "cov_mv": 3650, "cuv_mv": 2800}); afe.fet_enable(); afe.read(sample)

Settings keys (dict of ints in fixed units; absent keys take the defaults in bq76952_settings.DEFAULTS;
ranges, units and rounding in docs/afe-driver.md): cell_count, vcell_mode, shunt_uohm, user_amps_ma,
cov_mv, cov_delay_ms, cov_hyst_mv, cuv_mv, cuv_delay_ms, cuv_hyst_mv, occ_ma, occ_delay_ms, ocd1_ma,
ocd1_delay_ms, ocd2_ma, ocd2_delay_ms, scd_ma, scd_delay_us, otc_dc, otd_dc, utc_dc, utd_dc, otint_dc,
temp_recovery_dc, temp_delay_s, recovery_time_s, ts_pins, balance_max_cells, balance_allow_adjacent,
host_watchdog_s, sleep_current_ma, sleep_allowed, sleep_chg_fet, balance_no_sleep, balance_in_sleep,
alarm_enable.

Errors: ValueError for bad settings or requests, raised before the bus is touched; OSError for bus,
CRC, checksum and timeout trouble (errno ENODEV, EIO, ETIMEDOUT or EACCES, with a message).
"""
import errno
import time

from micropython import const

from firmware.afe import bq76952_regs as R
from firmware.afe.bq76952_bus import Transport
from firmware.sample import (TEMP_INVALID_DC, TRIP_AFE_OT, TRIP_CELL_OV, TRIP_CELL_UV, TRIP_CHG_OC,
                             TRIP_CHG_OT, TRIP_CHG_UT, TRIP_DSG_OC, TRIP_DSG_OT, TRIP_DSG_UT, TRIP_PF,
                             TRIP_SHORT)

# Burst layout of read(): four transactions cover everything a sample needs. 0x08/0x09 are not
# documented, so the burst over the status bytes stops at 0x07; the next starts at PF Status A (PF
# Alert A at 0x0A is not used), giving the register map's bound of 76 bytes in 4 transactions.
_B1_REG = const(0x02)       # Safety Alert/Status A..C, 0x02..0x07
_B1_LEN = const(6)
_B1_OFF = const(0)
_B2_REG = const(0x0B)       # PF Status A, PF Alert/Status B..D, Battery Status, cells 1..16, stack, PACK, LD, CC2
_B2_LEN = const(49)         # 0x0B..0x3B
_B2_OFF = const(6)
_B3_REG = const(0x62)       # Alarm Status, Raw, Enable, internal temp, 3 pin temps, TS1..TS3
_B3_LEN = const(20)         # 0x62..0x75
_B3_OFF = const(55)
_B4_REG = const(0x7F)       # FET Status
_B4_OFF = const(75)
_DATA_LEN = const(76)

_KELVIN_DC = const(2731)    # 0.1 K -> 0.1 degC: 273.15 K rounded half up at 0.1 K resolution

RECOVER_OCDL = "OCDL"
RECOVER_SCDL = "SCDL"
RECOVER_PTO = "PTO"
_RECOVER = {RECOVER_OCDL: R.SC_OCDL_RECOVER, RECOVER_SCDL: R.SC_SCDL_RECOVER, RECOVER_PTO: R.SC_PTO_RECOVER}



def _popcount(x):
    # Also in bq76952_settings, which is unloaded after boot; check_balancing runs on every mask change.
    n = 0
    while x:
        x &= x - 1
        n += 1
    return n


def _trips(ssa, ssb, ssc, pf):
    """Safety Status A, B, C and PF Status -> chip-independent firmware.sample TRIP_* bits."""
    t = 0
    if ssa & R.SA_COV or ssc & R.SC_COVL:
        t |= TRIP_CELL_OV
    if ssa & R.SA_CUV:
        t |= TRIP_CELL_UV
    if ssa & R.SA_OCC:
        t |= TRIP_CHG_OC
    if ssa & (R.SA_OCD1 | R.SA_OCD2) or ssc & (R.SC_OCD3 | R.SC_OCDL):
        t |= TRIP_DSG_OC
    if ssb & R.SB_OTC:
        t |= TRIP_CHG_OT
    if ssb & R.SB_UTC:
        t |= TRIP_CHG_UT
    if ssb & R.SB_OTD:
        t |= TRIP_DSG_OT
    if ssb & R.SB_UTD:
        t |= TRIP_DSG_UT
    if ssa & R.SA_SCD or ssc & R.SC_SCDL:
        t |= TRIP_SHORT
    if ssb & R.SB_OTINT:
        t |= TRIP_AFE_OT
    # HWDF (host watchdog) is left out on purpose: the firmware sees its own failed reads first, and
    # HWDF stays set for the chip's recovery time after the host talks again.
    if pf:
        t |= TRIP_PF
    return t

class BQ76952(Transport):
    def __init__(self, i2c, addr=R.I2C_ADDR, crc=False, retries=3,
                 device_number=R.DEVICE_NUMBER,          # [U] 0x7695 by pattern
                 unseal_keys=(0x0414, 0x3672),           # TI defaults; a production pack changes them
                 full_access_keys=(0xFFFF, 0xFFFF),
                 comm_type_crc=R.COMM_I2C_FAST_CRC,      # [U] code for BQ76952 (sibling TRMs: 0x12)
                 comm_type_plain=R.COMM_I2C_FAST,        # [U] (sibling TRMs: 0x08)
                 hwd_delay_addr=R.DM_HWD_DELAY,          # [U] not in the reference
                 sub_polls=20, sub_poll_ms=1,            # worst subcommand ~8.5 ms (IROM_SIG)
                 cfg_polls=50, cfg_poll_ms=2,            # S5 found the 2 ms / 1 ms CONFIG_UPDATE waits short
                 cmd_wait_ms=2, write_wait_ms=2,         # after command-only / write subcommands [U]
                 temp_valid_min_dc=-395, temp_valid_max_dc=1250):   # readings at/past these: open/short
        super().__init__(i2c, addr, crc, retries, sub_polls, sub_poll_ms, cmd_wait_ms, write_wait_ms)
        self._device_number = device_number
        self._unseal_keys = unseal_keys
        self._full_keys = full_access_keys
        self._comm_crc = comm_type_crc
        self._comm_plain = comm_type_plain
        self._hwd_addr = hwd_delay_addr
        self._cfg_polls = cfg_polls
        self._cfg_poll_ms = cfg_poll_ms
        self._tmin = temp_valid_min_dc
        self._tmax = temp_valid_max_dc
        # Preallocated buffers and views: read() slices nothing and allocates nothing.
        self._d = bytearray(_DATA_LEN)
        self._raw = bytearray(2 * _B2_LEN)
        d = memoryview(self._d)
        raw = memoryview(self._raw)
        self._v1, self._r1 = d[_B1_OFF:_B1_OFF + _B1_LEN], raw[0:2 * _B1_LEN]
        self._v2, self._r2 = d[_B2_OFF:_B2_OFF + _B2_LEN], raw[0:2 * _B2_LEN]
        self._v3, self._r3 = d[_B3_OFF:_B3_OFF + _B3_LEN], raw[0:2 * _B3_LEN]
        self._v4, self._r4 = d[_B4_OFF:_B4_OFF + 1], raw[0:2]
        # Chip state as the driver believes it; the power-up defaults until configure() runs.
        self._amps_ma = 1                    # DA Configuration USER_AMPS (default 1 mA)
        self._uv_mv = 10                     # USER_VOLTS_CV = 1 (cV) by default and as configured
        self._set_cells(0xFFFF)              # Vcell Mode 0x0000 = all 16
        self._ts_off = bytearray(3)          # data offset of the TS pin behind sample slot i
        self._set_ts(0b001)                  # TS1 is a cell thermistor by default (0x07)
        self._max_cells = 1                  # Cell Balance Max Cells default
        self._adjacent = 0
        self._cb_mask = 0                    # balancing mask last applied (logical cells)

    # ------------------------------------------------------------------ identity and modes
    def probe(self, detect_crc=True):
        """Check DEVICE_NUMBER. With detect_crc the framing is first found by a read-only check
        (the BQ7695202 powers up with CRC; a plain BQ76952 without)."""
        try:
            if detect_crc:
                self._crc = self.chip_talks_crc()
            found = self._sub_u16(R.SC_DEVICE_NUMBER)
        except OSError as e:
            raise OSError(errno.ENODEV, "No BQ76952 found at 0x%02x (%s)" % (self._addr, e))
        if found != self._device_number:
            raise OSError(errno.ENODEV, "No BQ76952 found at 0x%02x (DEVICE_NUMBER 0x%04x, expected 0x%04x)"
                          % (self._addr, found, self._device_number))
        return found

    def fw_version(self):
        """FW_VERSION: the chip reports length 11 but only the first 6 bytes mean something (S9)."""
        n = self._sub_read(R.SC_FW_VERSION)
        return bytes(self._s[2:2 + min(n, 6)])

    def battery_status(self):
        return self._read_u16(R.BATTERY_STATUS)

    def _wait_status(self, bit, want, what):
        for _ in range(self._cfg_polls):
            if bool(self.battery_status() & bit) == want:
                return
            time.sleep_ms(self._cfg_poll_ms)
        raise OSError(errno.ETIMEDOUT, "BQ76952@0x%02x: %s not confirmed by Battery Status after %d polls"
                      % (self._addr, what, self._cfg_polls))

    def _ensure_full_access(self):
        """Unseal (SEALED -> UNSEALED -> FULLACCESS) with the configured keys when needed."""
        sec = (self.battery_status() >> R.BS_SEC_SHIFT) & 3
        if sec == R.SEC_FULLACCESS:
            return
        steps = []
        if sec == R.SEC_SEALED:
            steps.append((self._unseal_keys, R.SEC_UNSEALED))
        steps.append((self._full_keys, R.SEC_FULLACCESS))
        for keys, want in steps:
            for k in keys:          # two key words, well within the 4 s the chip allows
                self._command(k, wait=False)
            time.sleep_ms(self._cmd_wait_ms)
            sec = (self.battery_status() >> R.BS_SEC_SHIFT) & 3
            if sec != want and sec != R.SEC_FULLACCESS:
                raise OSError(errno.EACCES, "BQ76952@0x%02x: security keys rejected (SEC=%d, wanted %d)"
                              % (self._addr, sec, want))
            if sec == R.SEC_FULLACCESS:
                return

    def _enter_cfg(self):
        self._command(R.SC_SET_CFGUPDATE)
        self._wait_status(R.BS_CFGUPDATE, True, "SET_CFGUPDATE")

    def _exit_cfg(self):
        self._command(R.SC_EXIT_CFGUPDATE)
        self._wait_status(R.BS_CFGUPDATE, False, "EXIT_CFGUPDATE")

    def _read_back(self, addrs):
        """Read data memory back in 32-byte windows; return dict address -> (bytes from the block)."""
        got = {}
        todo = sorted(addrs)
        while todo:
            start = todo[0]
            block = self.dm_read(start)
            rest = []
            for a in todo:
                if a + addrs[a] <= start + len(block):
                    off = a - start
                    got[a] = block[off] if addrs[a] == 1 else block[off] | (block[off + 1] << 8)
                else:
                    rest.append(a)
            if len(rest) == len(todo):
                raise OSError(errno.EIO, "BQ76952: data memory 0x%04x read back %d bytes" % (start, len(block)))
            todo = rest
        return got

    # ------------------------------------------------------------------ configuration
    def configure(self, settings):
        """Validate, write everything in one CONFIG_UPDATE, read back; return the applied settings."""
        # Imported here, not at module level: the settings conversion is boot-time code that
        # firmware.app.release_boot_modules() unloads once the board runs (docs/memory.md).
        from firmware.afe import bq76952_settings as S
        items, ctx = S.plan(settings)           # ValueError here, before any bus traffic
        items = [((self._hwd_addr if a == R.DM_HWD_DELAY else a), n, v) for a, n, v in items]
        self._ensure_full_access()
        self._enter_cfg()
        try:
            for a, n, v in items:
                self._dm_write(a, n, v)
            got = self._read_back({a: n for a, n, v in items})
        finally:
            self._exit_cfg()
        for a, n, v in items:
            if got[a] != v:
                raise OSError(errno.EIO, "BQ76952: data memory 0x%04x reads 0x%x after writing 0x%x"
                              % (a, got[a], v))
        if self._hwd_addr in got:
            got[R.DM_HWD_DELAY] = got[self._hwd_addr]
        self._amps_ma = (1, 1, 10, 100)[got[R.DM_DA_CONFIG] & 3]
        self._set_cells(got[R.DM_VCELL_MODE])
        ts = 0
        for i in range(3):
            if got[R.DM_TS1_CONFIG + i] == R.PIN_TS_CELL_18K:
                ts |= 1 << i
        self._set_ts(ts)
        self._max_cells = got[R.DM_CB_MAX_CELLS]
        self._adjacent = ctx["balance_allow_adjacent"]
        self._cb_mask = 0
        self.set_sleep_allowed(ctx["sleep_allowed"])
        applied = S.applied(ctx, got)
        # Alarm Enable itself (not only its power-up default) so the mask holds from now on.
        mask = ctx["alarm_enable"]
        self._write(R.ALARM_ENABLE, bytes((mask & 0xFF, mask >> 8)))
        applied["alarm_enable"] = self._read_u16(R.ALARM_ENABLE)
        if applied["alarm_enable"] != mask:
            raise OSError(errno.EIO, "BQ76952: Alarm Enable reads 0x%04x after writing 0x%04x"
                          % (applied["alarm_enable"], mask))
        return applied

    def _set_cells(self, vmode):
        """Map logical cells (sample order) to the data offsets of their Cell n Voltage registers."""
        self._vmode = vmode
        self._cell_inputs = bytearray([i for i in range(16) if vmode >> i & 1])
        self._cell_count = len(self._cell_inputs)
        self._cell_off = bytearray([_B2_OFF + R.CELL1_VOLTAGE - _B2_REG + 2 * i for i in self._cell_inputs])

    def _set_ts(self, pins):
        """Sample slot i reads the i-th thermistor pin in `pins` (bit0 TS1 .. bit2 TS3), e.g. TS1, TS3."""
        n = 0
        for i in range(3):
            if pins >> i & 1:
                self._ts_off[n] = _B3_OFF - _B3_REG + R.TS1_TEMPERATURE + 2 * i
                n += 1
        self._ts_n = n

    def set_crc(self, enabled):
        """Switch the chip's Comm Type (one CONFIG_UPDATE) and the driver's framing together."""
        enabled = bool(enabled)
        if enabled == self._crc:
            return
        code = self._comm_crc if enabled else self._comm_plain
        self._ensure_full_access()
        self._enter_cfg()
        try:
            self._dm_write(R.DM_COMM_TYPE, 1, code)
            got = self.dm_read(R.DM_COMM_TYPE)[0]
        except OSError:
            self._exit_cfg()
            raise
        if got != code:
            self._exit_cfg()
            raise OSError(errno.EIO, "BQ76952: Comm Type reads 0x%02x after writing 0x%02x" % (got, code))
        # The new mode takes effect on leaving CONFIG_UPDATE: send the exit in the old framing and
        # confirm it in the new one.
        # The reference says the new mode applies on leaving CONFIG_UPDATE; the TRM text also names
        # SWAP_COMM_MODE. Handle both: after the exit, a read-only CRC check tells which framing the
        # chip speaks; while it still speaks the old one (and has left CONFIG_UPDATE), SWAP_COMM_MODE.
        self._command(R.SC_EXIT_CFGUPDATE)
        old = self._crc
        swapped = False
        why = "no switch"
        for _ in range(self._cfg_polls):
            try:
                talks = self.chip_talks_crc()
                self._crc = talks
                if talks == enabled:
                    if not self.battery_status() & R.BS_CFGUPDATE:
                        return
                    why = "still in CONFIG_UPDATE"
                elif not swapped and not self.battery_status() & R.BS_CFGUPDATE:
                    self._command(R.SC_SWAP_COMM_MODE)
                    swapped = True
            except OSError as e:
                why = e
            time.sleep_ms(self._cfg_poll_ms)
        self._crc = old
        raise OSError(errno.ETIMEDOUT, "BQ76952@0x%02x: Comm Type change not confirmed (%s)" % (self._addr, why))

    # ------------------------------------------------------------------ measurement (hot path)
    def read(self, sample):
        """Fill `sample` in place from four burst reads; allocates nothing on success."""
        if sample.cell_count != self._cell_count:
            raise ValueError("sample has %d cells, the AFE is configured for %d"
                             % (sample.cell_count, self._cell_count))
        self._read(_B1_REG, self._v1, self._r1, _B1_LEN)
        self._read(_B2_REG, self._v2, self._r2, _B2_LEN)
        self._read(_B3_REG, self._v3, self._r3, _B3_LEN)
        self._read(_B4_REG, self._v4, self._r4, 1)
        d = self._d
        sample.safety_alert = d[0] | (d[2] << 8) | (d[4] << 16)
        sample.safety_status = d[1] | (d[3] << 8) | (d[5] << 16)
        o = _B2_OFF - _B2_REG
        sample.pf_status = (d[o + R.PF_STATUS_A] | (d[o + R.PF_STATUS_B] << 8)
                            | (d[o + R.PF_STATUS_C] << 16) | (d[o + R.PF_STATUS_D] << 24))
        sample.battery_status = d[o + R.BATTERY_STATUS] | (d[o + R.BATTERY_STATUS + 1] << 8)
        sample.chip_trips = _trips(d[1], d[3], d[5], sample.pf_status)
        cells = sample.cell_mv
        off = self._cell_off
        for i in range(self._cell_count):
            j = off[i]
            v = d[j] | (d[j + 1] << 8)
            cells[i] = v - 65536 if v & 0x8000 else v
        sample.stack_mv = self._s16(o + R.STACK_VOLTAGE) * self._uv_mv
        sample.pack_mv = self._s16(o + R.PACK_VOLTAGE) * self._uv_mv
        sample.ld_mv = self._s16(o + R.LD_VOLTAGE) * self._uv_mv
        sample.current_ma = self._s16(o + R.CC2_CURRENT) * self._amps_ma
        o = _B3_OFF - _B3_REG
        sample.alarm_status = d[o + R.ALARM_STATUS] | (d[o + R.ALARM_STATUS + 1] << 8)
        raw_alarm = d[o + R.ALARM_RAW_STATUS] | (d[o + R.ALARM_RAW_STATUS + 1] << 8)
        sample.int_temp_dc = self._s16(o + R.INT_TEMPERATURE) - _KELVIN_DC
        temps = sample.temp_dc
        ts_off = self._ts_off
        for i in range(sample.temp_count):
            t = TEMP_INVALID_DC
            if i < self._ts_n:
                t = self._s16(ts_off[i]) - _KELVIN_DC
                if t <= self._tmin or t >= self._tmax:   # at or past the chip's table end
                    t = TEMP_INVALID_DC       # open or shorted thermistor
            temps[i] = t
        sample.fet_status = d[_B4_OFF]
        # Bleeding now: the mask last applied, while the chip reports balancing active (Raw CB bit).
        sample.balance_mask = self._cb_mask if raw_alarm & R.AL_CB else 0
        sample.t_ms = time.ticks_ms()

    def _s16(self, j):
        d = self._d
        v = d[j] | (d[j + 1] << 8)
        return v - 65536 if v & 0x8000 else v

    # ------------------------------------------------------------------ control
    def fet_enable(self):
        """Leave FET test mode (FET_EN = 1). FET_ENABLE toggles, so it is sent only when FET_EN = 0."""
        for _ in range(2):
            if self._sub_u16(R.SC_MANUFACTURING_STATUS) & R.MS_FET_EN:
                return
            self._command(R.SC_FET_ENABLE)
        if not self._sub_u16(R.SC_MANUFACTURING_STATUS) & R.MS_FET_EN:
            raise OSError(errno.EIO, "BQ76952@0x%02x: FET_EN still 0 after FET_ENABLE" % self._addr)

    def set_fets(self, chg_on, dsg_on):
        """Allow (True) or force off (False) the CHG and DSG drivers (with PCHG/PDSG) via FET_CONTROL.

        Allowing is not forcing on: the chip's own protections still open a FET."""
        v = 0
        if not chg_on:
            v |= R.FC_CHG_OFF | R.FC_PCHG_OFF
        if not dsg_on:
            v |= R.FC_DSG_OFF | R.FC_PDSG_OFF
        self._sub_write(R.SC_FET_CONTROL, bytes((v,)))

    def fet_status(self):
        s = memoryview(self._s)
        self._read(R.FET_STATUS, s[0:1], memoryview(self._sraw)[0:2], 1)
        return self._s[0]

    def check_balancing(self, mask):
        """ValueError unless `mask` (bit i = sample cell i) is safe to bleed under the settings."""
        if not isinstance(mask, int) or mask < 0 or mask >> self._cell_count:
            raise ValueError("balancing mask 0x%x names cells outside 1..%d" % (mask, self._cell_count))
        n = _popcount(mask)
        if n > self._max_cells:
            raise ValueError("balancing mask 0x%x has %d cells, balance_max_cells is %d"
                             % (mask, n, self._max_cells))
        if not self._adjacent and mask & (mask >> 1):
            raise ValueError("balancing mask 0x%x has adjacent cells (balance_allow_adjacent=0)" % mask)

    def set_balancing(self, mask):
        """Bleed the cells in `mask` (bit i = sample cell i); 0 stops. Returns the mask the chip holds."""
        self.check_balancing(mask)
        chip = 0
        for i in range(self._cell_count):
            if mask >> i & 1:
                chip |= 1 << self._cell_inputs[i]
        self._sub_write(R.SC_CB_ACTIVE_CELLS, bytes((chip & 0xFF, chip >> 8)))
        got = self._sub_u16(R.SC_CB_ACTIVE_CELLS)
        applied = 0
        for i in range(self._cell_count):
            if got >> self._cell_inputs[i] & 1:
                applied |= 1 << i
        self._cb_mask = applied
        return applied

    def read_alarms(self):
        """Latched Alarm Status (0x62)."""
        return self._read_u16(R.ALARM_STATUS)

    def clear_alarms(self, mask):
        """Clear latched Alarm Status bits (write 1 to clear)."""
        if not isinstance(mask, int) or not 0 <= mask <= 0xFFFF:
            raise ValueError("alarm mask must be 0..0xffff, got %r" % (mask,))
        self._write(R.ALARM_STATUS, bytes((mask & 0xFF, mask >> 8)))

    def set_sleep_allowed(self, allowed):
        """SLEEP_ENABLE / SLEEP_DISABLE, confirmed by Battery Status SLEEP_EN."""
        self._command(R.SC_SLEEP_ENABLE if allowed else R.SC_SLEEP_DISABLE)
        self._wait_status(R.BS_SLEEP_EN, bool(allowed), "SLEEP_ENABLE" if allowed else "SLEEP_DISABLE")

    def recover(self, kind):
        """Release a latched fault: RECOVER_OCDL, RECOVER_SCDL or RECOVER_PTO."""
        if kind not in _RECOVER:
            raise ValueError("recover kind must be one of %s, got %r" % (", ".join(sorted(_RECOVER)), kind))
        self._command(_RECOVER[kind])
