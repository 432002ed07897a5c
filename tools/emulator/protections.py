"""Safety protections of the emulated BQ76952: alert -> status after the delay -> recovery.

Reference section 5: first detection sets the Safety Alert bit; if the condition persists for the
delay, Alert clears and Status sets; Status clears by itself once the recovery condition has held for
Recovery Time (SCD: after SCD Recovery Time). COVL/OCDL/SCDL count trips against a latch limit.

    from tools.emulator.protections import Protections
    p = Protections(); p.configure(dm_snapshot, sense_mohm=1.0); p.evaluate(t_us, meas)
"""

# Safety register A/B/C bit positions (reference section 2).
A_SCD = 7
A_OCD2 = 6
A_OCD1 = 5
A_OCC = 4
A_COV = 3
A_CUV = 2
B_OTF = 7
B_OTINT = 6
B_OTD = 5
B_OTC = 4
B_UTINT = 2
B_UTD = 1
B_UTC = 0
C_OCD3 = 7
C_SCDL = 6
C_OCDL = 5
C_COVL = 4
C_PTO = 2
C_HWDF = 1

# SCD threshold codes 0-15 in mV across the shunt (reference section 4).
SCD_MV = (10, 20, 40, 60, 80, 100, 125, 150, 175, 200, 250, 300, 350, 400, 450, 500)

_CV_STEP_UV = 50600   # CUV/COV threshold and hysteresis step, uV (50.6 mV)


def fast_delay_us(setting):
    """CUV/COV/OCC/OCD delay: 3.3 ms x (2 + setting) (reference section 4)."""
    return 3300 * (2 + setting)


def scd_delay_us(setting):
    """SCD delay: (setting - 1) x 15 us; 0 and 1 both mean no added delay."""
    return max(0, setting - 1) * 15


class Prot:
    """One protection's alert/status state machine."""

    def __init__(self, name, reg, bit):
        self.name = name
        self.reg = reg          # 0 = A, 1 = B, 2 = C
        self.bit = bit
        self.enabled = False
        self.delay_us = 0
        self.rec_time_us = 0
        self.alert = False
        self.alert_t = 0
        self.status = False
        self.status_t = 0
        self.rec_t = -1

    def clear(self):
        self.alert = False
        self.status = False
        self.rec_t = -1

    def update(self, t, trip, recovered):
        """Advance at time t (us). Returns True when Status has just been set."""
        if not self.enabled:
            self.clear()
            return False
        if not self.status:
            if trip:
                if not self.alert:
                    self.alert = True
                    self.alert_t = t
                if t - self.alert_t >= self.delay_us:
                    self.alert = False
                    self.status = True
                    self.status_t = t
                    self.rec_t = -1
                    return True
            else:
                self.alert = False
            return False
        if recovered:
            if self.rec_t < 0:
                self.rec_t = t
            if t - self.rec_t >= self.rec_time_us:
                self.status = False
                self.rec_t = -1
        else:
            self.rec_t = -1
        return False

    def deadline(self):
        """Next time (us) this machine changes state on its own, or -1."""
        if not self.enabled:
            return -1
        if self.alert and not self.status:
            return self.alert_t + self.delay_us
        if self.status and self.rec_t >= 0:
            return self.rec_t + self.rec_time_us
        return -1


class Latch:
    """COVL/OCDL/SCDL: counts base-protection trips; latches at the limit; counter decays."""

    def __init__(self, name, bit):
        self.name = name
        self.bit = bit
        self.enabled = False
        self.limit = 0
        self.dec_us = 10000000
        self.count = 0
        self.last_dec_t = 0
        self.status = False
        self.status_t = 0

    def trip(self, t):
        if self.count == 0:
            self.last_dec_t = t
        self.count += 1
        if self.enabled and self.limit and self.count >= self.limit and not self.status:
            self.status = True
            self.status_t = t

    def tick(self, t):
        if self.count > 0 and self.dec_us > 0:
            while self.count > 0 and t - self.last_dec_t >= self.dec_us:
                self.count -= 1
                self.last_dec_t += self.dec_us
        if not self.enabled:
            self.status = False

    def release(self):
        self.status = False
        self.count = 0

    def deadline(self):
        if self.count > 0 and self.dec_us > 0:
            return self.last_dec_t + self.dec_us
        return -1


class Meas:
    """What the protections look at (filled by the chip model): mV, mA, 0.1 degC; None = no sensor."""

    def __init__(self):
        self.max_cell_mv = 0
        self.min_cell_mv = 0
        self.current_ma = 0
        self.stack_mv = 0
        self.pack_mv = 0
        self.max_cell_dc = None
        self.min_cell_dc = None
        self.int_dc = 250
        self.fet_dc = None


class Protections:
    def __init__(self):
        self.cuv = Prot("CUV", 0, A_CUV)
        self.cov = Prot("COV", 0, A_COV)
        self.occ = Prot("OCC", 0, A_OCC)
        self.ocd1 = Prot("OCD1", 0, A_OCD1)
        self.ocd2 = Prot("OCD2", 0, A_OCD2)
        self.scd = Prot("SCD", 0, A_SCD)
        self.otc = Prot("OTC", 1, B_OTC)
        self.otd = Prot("OTD", 1, B_OTD)
        self.otf = Prot("OTF", 1, B_OTF)
        self.otint = Prot("OTINT", 1, B_OTINT)
        self.utc = Prot("UTC", 1, B_UTC)
        self.utd = Prot("UTD", 1, B_UTD)
        self.utint = Prot("UTINT", 1, B_UTINT)
        self.hwd = Prot("HWDF", 2, C_HWDF)
        self.all = (self.cuv, self.cov, self.occ, self.ocd1, self.ocd2, self.scd, self.otc, self.otd,
                    self.otf, self.otint, self.utc, self.utd, self.utint, self.hwd)
        self.covl = Latch("COVL", C_COVL)
        self.ocdl = Latch("OCDL", C_OCDL)
        self.scdl = Latch("SCDL", C_SCDL)
        self.latches = (self.covl, self.ocdl, self.scdl)
        self.pto = False          # precharge timeout: never set (precharge not modelled)
        self.covl_rec_us = 15000000
        self.covl_rec_t = -1
        self.hwd_expired = False  # set by the chip's host-watchdog timer

    def configure(self, dm, sense_mohm):
        """Take thresholds, delays and enables from a data-memory snapshot."""
        g = dm.get
        en_a = g("ENABLED_PROT_A")
        en_b = g("ENABLED_PROT_B")
        en_c = g("ENABLED_PROT_C")
        rec_us = g("RECOVERY_TIME") * 1000000
        for p in self.all:
            en = (en_a, en_b, en_c)[p.reg]
            p.enabled = bool((en >> p.bit) & 1)
            p.rec_time_us = rec_us
        ma_per_mv = 1000.0 / sense_mohm
        self.cuv_mv = g("CUV_THRESHOLD") * _CV_STEP_UV // 1000
        self.cuv_rec_mv = (g("CUV_THRESHOLD") + g("CUV_RECOVERY_HYST")) * _CV_STEP_UV // 1000
        d = g("CUV_DELAY")
        self.cuv.delay_us = fast_delay_us(d)
        if d == 0:
            self.cuv.enabled = False
        self.cov_mv = g("COV_THRESHOLD") * _CV_STEP_UV // 1000
        self.cov_rec_mv = (g("COV_THRESHOLD") - g("COV_RECOVERY_HYST")) * _CV_STEP_UV // 1000
        d = g("COV_DELAY")
        self.cov.delay_us = fast_delay_us(d)
        if d == 0:
            self.cov.enabled = False
        self.occ_ma = g("OCC_THRESHOLD") * 2 * ma_per_mv
        self.occ.delay_us = fast_delay_us(g("OCC_DELAY"))
        self.occ_rec_ma = g("OCC_RECOVERY_THRESHOLD")
        self.occ_delta_mv = g("OCC_PACK_TOS_DELTA") * 10
        self.ocd1_ma = g("OCD1_THRESHOLD") * 2 * ma_per_mv
        self.ocd1.delay_us = fast_delay_us(g("OCD1_DELAY"))
        self.ocd2_ma = g("OCD2_THRESHOLD") * 2 * ma_per_mv
        self.ocd2.delay_us = fast_delay_us(g("OCD2_DELAY"))
        self.ocd_rec_ma = g("OCD_RECOVERY_THRESHOLD")
        self.scd_ma = SCD_MV[g("SCD_THRESHOLD") & 0x0F] * ma_per_mv
        self.scd.delay_us = scd_delay_us(g("SCD_DELAY"))
        self.scd.rec_time_us = g("SCD_RECOVERY_TIME") * 1000000
        for p, key in ((self.otc, "OTC"), (self.otd, "OTD"), (self.otf, "OTF"), (self.otint, "OTINT"),
                       (self.utc, "UTC"), (self.utd, "UTD"), (self.utint, "UTINT")):
            p.thr_dc = g(key + "_THRESHOLD") * 10
            p.rec_dc = g(key + "_RECOVERY") * 10
            p.delay_us = g(key + "_DELAY") * 1000000
        self.hwd.delay_us = 0
        self.covl.enabled = bool(en_c >> C_COVL & 1)
        self.covl.limit = g("COVL_LATCH_LIMIT")
        self.covl.dec_us = g("COVL_COUNTER_DEC_DELAY") * 1000000
        self.covl_rec_us = g("COVL_RECOVERY_TIME") * 1000000
        self.ocdl.enabled = bool(en_c >> C_OCDL & 1)
        self.ocdl.limit = g("OCDL_LATCH_LIMIT")
        self.ocdl.dec_us = g("OCDL_COUNTER_DEC_DELAY") * 1000000
        self.scdl.enabled = bool(en_c >> C_SCDL & 1)
        self.scdl.limit = g("SCDL_LATCH_LIMIT")
        self.scdl.dec_us = g("SCDL_COUNTER_DEC_DELAY") * 1000000

    def reset(self):
        for p in self.all:
            p.clear()
        for l in self.latches:
            l.release()
        self.pto = False
        self.hwd_expired = False

    def evaluate_current(self, t, m):
        """Current-based protections (hardware comparators: checked every physics step)."""
        i = m.current_ma
        if self.occ.update(t, i >= self.occ_ma,
                           m.pack_mv <= m.stack_mv - self.occ_delta_mv or i <= self.occ_rec_ma):
            pass
        for p, thr in ((self.ocd1, self.ocd1_ma), (self.ocd2, self.ocd2_ma)):
            if p.update(t, -i >= thr, i >= self.ocd_rec_ma):
                self.ocdl.trip(t)
        # SCD recovers on time alone: 'recovered' is always true once Status is set.
        if self.scd.update(t, -i >= self.scd_ma, True):
            self.scdl.trip(t)
        self.hwd.update(t, self.hwd_expired, not self.hwd_expired)

    def evaluate_adc(self, t, m):
        """Voltage and temperature protections (from the ADC loop's measurements)."""
        self.cuv.update(t, m.min_cell_mv <= self.cuv_mv, m.min_cell_mv > self.cuv_rec_mv)
        if self.cov.update(t, m.max_cell_mv >= self.cov_mv, m.max_cell_mv < self.cov_rec_mv):
            self.covl.trip(t)
        if self.covl.status:
            if not self.cov.status and m.max_cell_mv < self.cov_rec_mv:
                if self.covl_rec_t < 0:
                    self.covl_rec_t = t
                if t - self.covl_rec_t >= self.covl_rec_us:
                    self.covl.status = False
                    self.covl.count = 0
                    self.covl_rec_t = -1
            else:
                self.covl_rec_t = -1
        hi = m.max_cell_dc
        lo = m.min_cell_dc
        if hi is None:
            for p in (self.otc, self.otd, self.utc, self.utd):
                p.update(t, False, True)
        else:
            for p in (self.otc, self.otd):
                p.update(t, hi >= p.thr_dc, hi <= p.rec_dc)
            for p in (self.utc, self.utd):
                p.update(t, lo <= p.thr_dc, lo >= p.rec_dc)
        self.otint.update(t, m.int_dc >= self.otint.thr_dc, m.int_dc <= self.otint.rec_dc)
        self.utint.update(t, m.int_dc <= self.utint.thr_dc, m.int_dc >= self.utint.rec_dc)
        if m.fet_dc is None:
            self.otf.update(t, False, True)
        else:
            self.otf.update(t, m.fet_dc >= self.otf.thr_dc, m.fet_dc <= self.otf.rec_dc)

    def tick(self, t):
        for l in self.latches:
            l.tick(t)

    def registers(self):
        """(alert_a, status_a, alert_b, status_b, alert_c, status_c)"""
        al = [0, 0, 0]
        st = [0, 0, 0]
        for p in self.all:
            if p.alert:
                al[p.reg] |= 1 << p.bit
            if p.status:
                st[p.reg] |= 1 << p.bit
        for l in self.latches:
            if l.status:
                st[2] |= 1 << l.bit
        if self.pto:
            st[2] |= 1 << C_PTO
        return al[0], st[0], al[1], st[1], al[2], st[2]

    def any_alert(self):
        for p in self.all:
            if p.alert:
                return True
        return False

    def deadline(self):
        best = -1
        for p in self.all:
            d = p.deadline()
            if d >= 0 and (best < 0 or d < best):
                best = d
        for l in self.latches:
            d = l.deadline()
            if d >= 0 and (best < 0 or d < best):
                best = d
        if self.covl_rec_t >= 0:
            d = self.covl_rec_t + self.covl_rec_us
            if best < 0 or d < best:
                best = d
        return best
