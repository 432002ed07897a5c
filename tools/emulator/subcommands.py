"""Subcommands of the emulated BQ76952 (mixin of BQ76952): 0x3E/0x3F, the 0x40 buffer, 0x60/0x61.

Reference section 3: a code written to 0x3E/0x3F runs after a busy time; writes put data at 0x40..
and commit when 0x61 (length) is written with a valid checksum; data memory 0x9180..0x93FF is read
always and written only in CONFIG_UPDATE; security keys move SEALED -> UNSEALED -> FULLACCESS.

    chip.i2c_write(b"\x3e\x01\x00", True)   # DEVICE_NUMBER; read 0x40.. after ~0.5 ms
"""
import struct

from tools.emulator import registers as R
from tools.emulator.crc import subcommand_checksum
from tools.emulator.datamem import in_range as dm_in_range
from tools.emulator.units import clamp16, k10

# Subcommands a SEALED chip still executes. [U]: the TRM's per-command access column is not in the
# reference; balancing works sealed (reference section 5), RESET does not (section 3).
SEALED_OK = (R.DEVICE_NUMBER, R.FW_VERSION, R.HW_VERSION, R.CB_ACTIVE_CELLS, R.CB_SET_LVL,
            R.CBSTATUS1, R.CBSTATUS2, R.CBSTATUS3, R.DSG_PDSG_OFF, R.CHG_PCHG_OFF, R.ALL_FETS_OFF,
            R.ALL_FETS_ON, R.SLEEP_ENABLE, R.SLEEP_DISABLE, R.OCDL_RECOVER, R.SCDL_RECOVER,
            R.PTO_RECOVER, R.DASTATUS1, R.DASTATUS1 + 1, R.DASTATUS1 + 2, R.DASTATUS1 + 3,
            R.DASTATUS1 + 4, R.DASTATUS6, R.DASTATUS1 + 6)


class SubcommandMixin:
    def _issue(self, code):
        """A subcommand word was written to 0x3E/0x3F (command or read request, or a security key)."""
        now = self._t
        if self._security_key(code, now):
            return
        self._start(code, None, now)

    def _start(self, code, data, now):
        busy = self.opt["subcmd_busy_us"]
        if data is None and code == R.SET_CFGUPDATE:
            busy = self.opt["set_cfgupdate_us"]
        elif data is None and code == R.EXIT_CFGUPDATE:
            busy = self.opt["exit_cfgupdate_us"]
        if self._extra_busy_us:
            busy += self._extra_busy_us
            self._extra_busy_us = 0
        f = self.faults
        if f is not None:
            busy += f.take_late_us()
        self._sub_pending = (code, data)
        self._sub_done_us = now + busy
        self._complete_subcommand(now)

    def _commit(self):
        """0x61 written: validate checksum and length over 0x3E/0x3F + data; commit or drop."""
        length = self._buf_len
        if length < 4 or length > 36:
            return
        data = bytes(self._buf[:length - 4])
        if subcommand_checksum(self._sub_code, data) != self._buf_chk:
            return
        self._start(self._sub_code, data, self._t)

    def _complete_subcommand(self, now):
        p = self._sub_pending
        if p is None or now < self._sub_done_us:
            return
        self._sub_pending = None
        code, data = p
        if data is None:
            self._run_command(code)
        else:
            self._run_write(code, data)

    def _respond(self, data, length=None):
        n = len(data)
        for k in range(32):
            self._buf[k] = data[k] if k < n else 0
        self._buf_chk = subcommand_checksum(self._sub_code, data)
        self._buf_len = (n + 4) if length is None else length

    def _security_key(self, code, now):
        win = self.opt["key_window_ms"] * 1000
        if self.sec == R.SEC_SEALED:
            keys = self.opt["unseal_keys"]
            nxt = R.SEC_UNSEALED
        elif self.sec == R.SEC_UNSEALED:
            keys = self.opt["full_access_keys"]
            nxt = R.SEC_FULLACCESS
        else:
            return False
        if self._key_stage == 1 and code == keys[1] and now - self._key_t <= win:
            self.sec = nxt
            self._key_stage = 0
            return True
        if code == keys[0]:
            self._key_stage = 1
            self._key_t = now
            return True
        self._key_stage = 0
        return False

    def _run_command(self, code):
        """Command-only or read subcommand, at completion time."""
        if self.sec == R.SEC_SEALED and code not in SEALED_OK and not dm_in_range(code):
            return
        if dm_in_range(code):
            if self.sec == R.SEC_SEALED and not self.opt["dm_read_when_sealed"]:
                return
            self._respond(self.dm.read(code, 32))
            return
        h = _COMMANDS.get(code)
        if h is None:
            if self.opt["unknown_subcmd"] == "zero":
                self._respond(b"")
            return
        h(self)

    def _run_write(self, code, data):
        if self.sec == R.SEC_SEALED and code not in SEALED_OK:
            return
        if dm_in_range(code):
            if self.cfgupdate:
                self.dm.write(code, data)
            return
        if code == R.CB_ACTIVE_CELLS and len(data) >= 2:
            self._set_cb_mask(data[0] | data[1] << 8)
        elif code == R.CB_SET_LVL and len(data) >= 2:
            if not self.cfg.get("BALANCING_CONFIG") >> 4 & 1:
                self.cb_lvl_mv = data[0] | data[1] << 8
                self._cb_loop(self._t)
        elif code == R.FET_CONTROL and len(data) >= 1:
            self._fet_control(data[0])
        elif code == R.SECURITY_KEYS and len(data) >= 8 and self.sec == R.SEC_FULLACCESS:
            w = struct.unpack("<HHHH", data[:8])
            self.opt["unseal_keys"] = (w[0], w[1])
            self.opt["full_access_keys"] = (w[2], w[3])
        elif code == R.MANUFACTURINGSTATUS:
            pass  # written through OTP/Mfg Status Init on the part; ignored here
        elif code in _COMMANDS:
            _COMMANDS[code](self)

    def _host_fets_allowed(self):
        return self.fet_en() and self.cfg.get("FET_OPTIONS") >> R.FO_HOST_FET_EN & 1

    def _fet_control(self, v):
        if not self._host_fets_allowed():
            return
        if self.opt["fet_control_order"] == "S7":
            # S7: 3 PCHG_OFF, 2 CHG_OFF, 1 PDSG_OFF, 0 DSG_OFF
            off = ((v >> 2 & 1) << R.FS_CHG_FET) | ((v >> 3 & 1) << R.FS_PCHG_FET) | \
                  ((v & 1) << R.FS_DSG_FET) | ((v >> 1 & 1) << R.FS_PDSG_FET)
        else:
            off = v & 0x0F   # S5 writes the FET Status bit order
        self.host_off = off

    # --- individual commands (called at completion) ---
    def _c_device_number(self):
        self._respond(struct.pack("<H", self.opt["device_number"]))

    def _c_fw_version(self):
        self._respond(self.opt["fw_version"], self.opt["fw_version_length"])

    def _c_hw_version(self):
        self._respond(struct.pack("<H", self.opt["hw_version"]))

    def _c_reset(self):
        if self.sec == R.SEC_SEALED:
            return
        self._power_on(self._t, booting=True)

    def _c_fet_enable(self):
        self.mfg ^= 1 << R.MS_FET_EN
        self.mfg &= ~((1 << R.MS_CHG_TEST) | (1 << R.MS_DSG_TEST) | (1 << R.MS_PCHG_TEST) | (1 << R.MS_PDSG_TEST))

    def _c_test(self, bit):
        if not self.fet_en():
            self.mfg ^= 1 << bit

    def _c_seal(self):
        self.sec = R.SEC_SEALED
        self._key_stage = 0

    def _c_mfg(self):
        self._respond(struct.pack("<H", self.mfg))

    def _c_set_cfgupdate(self):
        self.cfgupdate = True

    def _c_exit_cfgupdate(self):
        if not self.cfgupdate:
            return
        self.cfgupdate = False
        self.por = False
        old_comm = self.cfg.get("COMM_TYPE")
        old_sleep = self.cfg.get("POWER_CONFIG") >> 8 & 1
        self.cfg = self.dm.snapshot()
        new_sleep = self.cfg.get("POWER_CONFIG") >> 8 & 1
        if new_sleep != old_sleep:
            self.sleep_en = bool(new_sleep)     # Power Config[SLEEP] takes effect like any setting
            if not new_sleep and self.sleep:
                self._exit_sleep(self._t)
        self.prot.configure(self.cfg, self.opt["sense_mohm"])
        if self.opt["comm_type_on_cfg_exit"] and self.cfg.get("COMM_TYPE") != old_comm:
            self._apply_comm_type()
        self._anchor_adc(self._t)

    def _apply_comm_type(self):
        self.crc_mode = self.otp_crc or self.cfg.get("COMM_TYPE") in self.opt["crc_comm_types"]

    def _c_swap_comm(self):
        self._apply_comm_type()

    def _c_host_off(self, bits):
        if self._host_fets_allowed():
            self.host_off |= bits

    def _c_all_on(self):
        if self._host_fets_allowed():
            self.host_off = 0

    def _c_sleep(self, on):
        self.sleep_en = on
        if not on and self.sleep:
            self._exit_sleep(self._t)

    def _c_cb_active(self):
        self._respond(struct.pack("<H", self.cb_mask))

    def _c_cb_lvl(self):
        self._respond(struct.pack("<H", self.cb_lvl_mv))

    def _c_cbstatus1(self):
        t = 0
        if self._cb_effective():
            t = (self._t - self.cb_start_us) // 1000000
        self._respond(struct.pack("<H", min(t, 0xFFFF)))

    def _c_cbstatus(self, first):
        out = bytearray(32)
        for k in range(8):
            struct.pack_into("<I", out, 4 * k, self.cb_time_us[first + k] // 1000000)
        self._respond(out)

    def _c_dastatus(self, idx):
        out = bytearray(32)
        ua = self.user_amps_ma()
        cur = clamp16(int(self.cc2_ma / ua))
        if idx <= 4:
            # [U] layout: per cell (voltage counts I4, current counts I4); counts given as mV / userA.
            for k in range(4):
                struct.pack_into("<ii", out, 8 * k, self.cell_reg[(idx - 1) * 4 + k], cur)
        elif idx == 5:
            m = self.meas
            struct.pack_into("<hhhhhhhhhhhhii", out, 0, 0, 0, m.max_cell_mv, m.min_cell_mv,
                             clamp16(self.stack_mv // 10), k10(m.max_cell_dc or 0),
                             k10(m.fet_dc or 0), k10(m.max_cell_dc or 0), k10(m.min_cell_dc or 0),
                             k10(m.max_cell_dc or 0), cur, cur, 0, 0)
        elif idx == 6:
            # Accumulated charge: integer userAh (I4), fraction (U4, of 2^32 [U]), time (U4 s).
            uah = self.accum_mas / 3600.0 / ua
            whole = int(uah)
            if uah < 0 and whole != uah:
                whole -= 1          # floor, so the fraction is always positive
            frac = int((uah - whole) * 4294967296.0) & 0xFFFFFFFF
            struct.pack_into("<iII", out, 0, whole, frac, self.accum_t_us // 1000000)
        self._respond(out)

    def _c_reset_passq(self):
        self.accum_mas = 0.0
        self.accum_t_us = 0

    def _c_ocdl_recover(self):
        self.prot.ocdl.release()

    def _c_scdl_recover(self):
        self.prot.scdl.release()

    def _c_pto_recover(self):
        self.prot.pto = False


def _make_commands():
    C = SubcommandMixin
    t = {
        R.DEVICE_NUMBER: C._c_device_number,
        R.FW_VERSION: C._c_fw_version,
        R.HW_VERSION: C._c_hw_version,
        R.RESET: C._c_reset,
        R.FET_ENABLE: C._c_fet_enable,
        R.PDSGTEST: lambda s: s._c_test(R.MS_PDSG_TEST),
        R.PCHGTEST: lambda s: s._c_test(R.MS_PCHG_TEST),
        R.CHGTEST: lambda s: s._c_test(R.MS_CHG_TEST),
        R.DSGTEST: lambda s: s._c_test(R.MS_DSG_TEST),
        R.SEAL: C._c_seal,
        R.MANUFACTURINGSTATUS: C._c_mfg,
        R.SET_CFGUPDATE: C._c_set_cfgupdate,
        R.EXIT_CFGUPDATE: C._c_exit_cfgupdate,
        R.SWAP_COMM_MODE: C._c_swap_comm,
        R.DSG_PDSG_OFF: lambda s: s._c_host_off((1 << R.FS_DSG_FET) | (1 << R.FS_PDSG_FET)),
        R.CHG_PCHG_OFF: lambda s: s._c_host_off((1 << R.FS_CHG_FET) | (1 << R.FS_PCHG_FET)),
        R.ALL_FETS_OFF: lambda s: s._c_host_off(0x0F),
        R.ALL_FETS_ON: C._c_all_on,
        R.SLEEP_ENABLE: lambda s: s._c_sleep(True),
        R.SLEEP_DISABLE: lambda s: s._c_sleep(False),
        R.CB_ACTIVE_CELLS: C._c_cb_active,
        R.CB_SET_LVL: C._c_cb_lvl,
        R.CBSTATUS1: C._c_cbstatus1,
        R.CBSTATUS2: lambda s: s._c_cbstatus(0),
        R.CBSTATUS3: lambda s: s._c_cbstatus(8),
        R.RESET_PASSQ: C._c_reset_passq,
        R.OCDL_RECOVER: C._c_ocdl_recover,
        R.SCDL_RECOVER: C._c_scdl_recover,
        R.PTO_RECOVER: C._c_pto_recover,
    }
    for k in range(7):
        t[R.DASTATUS1 + k] = (lambda idx: (lambda s: s._c_dastatus(idx)))(k + 1)
    return t


_COMMANDS = _make_commands()
