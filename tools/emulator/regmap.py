"""Direct-command register image, Alarm Status latching and the ALERT pin (mixin of BQ76952).

Reference section 2 (addresses, bits) and 5 (Alarm Status latches Raw AND Enable; ALERT asserts while
any latched bit is set and the pin is configured as the alarm output).

    img = chip._direct_image()   # 0x80 bytes, little-endian registers
"""
import struct

from tools.emulator import registers as R
from tools.emulator.units import clamp16, k10


class RegisterMapMixin:
    def _alarm_raw(self):
        al_a, st_a, al_b, st_b, al_c, st_c = self.prot.registers()
        chg, dsg = self._fets
        raw = 0
        if st_b or st_c:
            raw |= 1 << R.AL_SSBC
        if st_a:
            raw |= 1 << R.AL_SSA
        if al_a or al_b or al_c:
            raw |= 1 << R.AL_MSK_SFALERT
        if not chg:
            raw |= 1 << R.AL_XCHG
        if not dsg:
            raw |= 1 << R.AL_XDSG
        if self._cb_effective():
            raw |= 1 << R.AL_CB
        return raw

    def _alarm_update(self, t):
        raw = self._alarm_raw()
        ev = self._events
        self._events = 0
        if self.opt["alarm_latch"] == "edge":
            self.alarm_latched |= (raw & ~self._prev_raw) & self.alarm_enable
        else:
            self.alarm_latched |= raw & self.alarm_enable
        self.alarm_latched |= ev & self.alarm_enable
        self._prev_raw = raw
        # Raw shows the event bits until the next update (ADSCAN/FULLSCAN pulse, see docs).
        self.alarm_raw = raw | ev
        self._drive_alert()

    def alert_asserted(self):
        return self.alarm_latched != 0 and self.cfg.get("PIN_ALERT") & 3 == 2

    def _drive_alert(self):
        if self.cfg.get("PIN_ALERT") & 3 != 2:
            self._alert_level = None     # not the alarm output: the chip leaves the pin alone
            return
        asserted = self.alert_asserted()
        if self.alert_pin is None or asserted == self._alert_level:
            self._alert_level = asserted
            return
        self._alert_level = asserted
        level = 1 if asserted == self.opt["alert_active_high"] else 0
        if callable(self.alert_pin) and not hasattr(self.alert_pin, "value"):
            self.alert_pin(level)
        else:
            self.alert_pin.value(level)

    # ------------------------------------------------------------------ direct-command image
    def _direct_image(self):
        img = bytearray(0x80)
        al_a, st_a, al_b, st_b, al_c, st_c = self.prot.registers()
        img[0x02] = al_a
        img[0x03] = st_a
        img[0x04] = al_b
        img[0x05] = st_b
        img[0x06] = al_c
        img[0x07] = st_c
        bs = self.sec << R.BS_SEC_SHIFT
        if self.sleep:
            bs |= 1 << R.BS_SLEEP
        if st_a or st_b or st_c:
            bs |= 1 << R.BS_SS
        if self.por:
            bs |= 1 << R.BS_POR
        if self.sleep_en:
            bs |= 1 << R.BS_SLEEP_EN
        if self.cfgupdate:
            bs |= 1 << R.BS_CFGUPDATE
        struct.pack_into("<H", img, R.BATTERY_STATUS, bs)
        for n in range(16):
            struct.pack_into("<h", img, R.CELL1_VOLTAGE + 2 * n, self.cell_reg[n])
        cv = 10 if self.cfg.get("DA_CONFIG") >> 2 & 1 else 1
        struct.pack_into("<h", img, R.STACK_VOLTAGE, clamp16(self.stack_mv // cv))
        struct.pack_into("<h", img, R.PACK_PIN_VOLTAGE, clamp16(self.pack_mv // cv))
        struct.pack_into("<h", img, R.LD_PIN_VOLTAGE, clamp16(self.ld_mv // cv))
        ua = self.user_amps_ma()
        cur = self.cc2_ma / ua
        struct.pack_into("<h", img, R.CC2_CURRENT, clamp16(int(cur + 0.5) if cur >= 0 else int(cur - 0.5)))
        struct.pack_into("<H", img, R.ALARM_STATUS, self.alarm_latched)
        struct.pack_into("<H", img, R.ALARM_RAW_STATUS, self.alarm_raw)
        struct.pack_into("<H", img, R.ALARM_ENABLE, self.alarm_enable)
        struct.pack_into("<h", img, R.INT_TEMPERATURE, k10(self.int_dc))
        for k in range(9):
            struct.pack_into("<h", img, R.CFETOFF_TEMPERATURE + 2 * k, self.pin_k10[k])
        chg, dsg = self._fets
        fs = (1 if chg else 0) << R.FS_CHG_FET | (1 if dsg else 0) << R.FS_DSG_FET
        if self._alert_level:
            fs |= 1 << R.FS_ALRT_PIN
        img[R.FET_STATUS] = fs
        return img

    def _read_byte(self, a, img):
        a &= 0xFF
        if a == R.CONTROL_STATUS and self.ctrl_a5:
            return 0xA5
        if a == R.CONTROL_STATUS + 1 and self.ctrl_a5:
            return 0xFF
        if a == R.SUBCMD_LO or a == R.SUBCMD_HI:
            if self._sub_pending is not None and self.opt["busy_reads_ffff"]:
                return 0xFF
            return (self._sub_code >> (8 if a == R.SUBCMD_HI else 0)) & 0xFF
        if R.TRANSFER_BUFFER <= a < R.TRANSFER_CHECKSUM:
            return self._buf[a - R.TRANSFER_BUFFER]
        if a == R.TRANSFER_CHECKSUM:
            return self._buf_chk
        if a == R.TRANSFER_LENGTH:
            return self._buf_len
        if a < 0x80:
            return img[a]
        return 0x00
