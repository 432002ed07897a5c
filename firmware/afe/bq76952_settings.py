"""BQ76952 settings: validate a dict of ints in fixed units and encode it as data-memory writes.

Pure functions, no bus: the driver calls `plan()` before it touches the chip, writes the items in one
CONFIG_UPDATE, reads them back and calls `applied()` on what the chip holds. docs/afe-driver.md lists
every key with its unit, range and rounding direction.

    items, ctx = plan({"cell_count": 4, "cov_mv": 3650, "shunt_uohm": 1000})
    applied(ctx, {addr: raw for addr, size, raw in items})   # -> {"cov_mv": 3644, ...}

Rounding: every threshold and delay goes to the chip code on the safe side of the request (a trip
threshold never beyond the request, a delay never longer, a hysteresis never smaller), and the applied
value is reported as an int rounded so that feeding it back selects the same code.
"""
from firmware.afe import bq76952_regs as R

# SCD threshold codes 0..15 in mV across the shunt (reference section 4, S5).
SCD_TABLE_MV = (10, 20, 40, 60, 80, 100, 125, 150, 175, 200, 250, 300, 350, 400, 450, 500)

# Temperature threshold range in degC for the I1 OT/UT fields: [U] (the reference gives no range;
# sibling TRMs use -40..120).
TEMP_MIN_C = -40
TEMP_MAX_C = 120
# CUV/COV delay setting range: [U] (1..2047 as in sibling TRMs; 0 would disable the protection).
CV_DELAY_MAX = 2047

# Data memory for the sleep/balancing interplay (reference section 3, S1 [V]).
_DM_FET_OPTIONS = 0x9308         # 5 FET_INIT_OFF, 4 PDSG_EN, 3 FET_CTRL_EN, 2 HOST_FET_EN, 1 SLEEPCHG, 0 SFET
_DM_BALANCING_CONFIG = 0x9335    # 4 CB_NO_CMD, 3 CB_NOSLEEP, 2 CB_SLEEP, 1 CB_RLX, 0 CB_CHG

# Every key the driver understands, with the value used when the key is absent. Current keys
# default to the chip's default code (given as a code, because mA depends on the shunt).
DEFAULTS = {
    "cell_count": 16,
    "vcell_mode": 0,            # 0 = the lowest cell_count inputs
    "shunt_uohm": 1000,         # 1 mOhm
    "user_amps_ma": 1,
    "cov_mv": 4352, "cov_delay_ms": 251, "cov_hyst_mv": 101,
    "cuv_mv": 2530, "cuv_delay_ms": 251, "cuv_hyst_mv": 101,
    "occ_ma": None, "occ_delay_ms": 20,
    "ocd1_ma": None, "ocd1_delay_ms": 10,
    "ocd2_ma": None, "ocd2_delay_ms": 30,
    "scd_ma": None, "scd_delay_us": 15,
    "otc_dc": 550, "otd_dc": 600, "utc_dc": 0, "utd_dc": 0, "otint_dc": 850,
    "temp_recovery_dc": 50, "temp_delay_s": 2,
    "recovery_time_s": 3,
    "ts_pins": 0b001,           # thermistor pins fitted: bit0 TS1, bit1 TS2, bit2 TS3 (chip default: TS1)
    "balance_max_cells": 1, "balance_allow_adjacent": 0,
    "host_watchdog_s": 0,
    "sleep_current_ma": 20, "sleep_allowed": 1,
    "sleep_chg_fet": 1, "balance_no_sleep": 1, "balance_in_sleep": 0,   # FET Options 0x9308 / Balancing Configuration 0x9335
    "alarm_enable": 0xF800,     # Alarm Enable / Default Alarm Mask bits (0xF800 = chip default)
}
# Chip default codes for the current thresholds (2 mV units; SCD: table index).
_DEFAULT_CODES = {"occ_ma": 2, "ocd1_ma": 4, "ocd2_ma": 3, "scd_ma": 0}

KEYS = tuple(sorted(DEFAULTS))


def _bad(key, lo, hi, val):
    return ValueError("%s must be %d..%d, got %r" % (key, lo, hi, val))


def _cdiv(a, b):
    return -((-a) // b)


def _int(s, key, lo, hi):
    v = s[key]
    if not isinstance(v, int) or isinstance(v, bool) or v < lo or v > hi:
        raise _bad(key, lo, hi, v)
    return v


def _down(s, key, cmin, cmax, num, den, off):
    """Largest code c in cmin..cmax with (c+off)*num/den <= request (trip no later than asked)."""
    lo = _cdiv((cmin + off) * num, den)
    hi = _cdiv((cmax + off) * num, den)
    v = _int(s, key, lo, hi)
    c = (v * den) // num - off
    return max(cmin, min(cmax, c))


def _down_value(c, num, den, off):
    return _cdiv((c + off) * num, den)


def _up(s, key, cmin, cmax, num, den, off):
    """Smallest code c in cmin..cmax with (c+off)*num/den >= request."""
    lo = ((cmin + off) * num) // den
    hi = ((cmax + off) * num) // den
    v = _int(s, key, lo, hi)
    c = _cdiv(v * den, num) - off
    return max(cmin, min(cmax, c))


def _up_value(c, num, den, off):
    return ((c + off) * num) // den


def popcount(x):
    n = 0
    while x:
        x &= x - 1
        n += 1
    return n


def low_bits(n):
    return (1 << n) - 1


def merged(settings):
    """Defaults overlaid with `settings`; unknown keys raise ValueError (typos must not pass silently)."""
    if not isinstance(settings, dict):
        raise ValueError("settings must be a dict")
    s = dict(DEFAULTS)
    for k in settings:
        if k not in DEFAULTS:
            raise ValueError("unknown setting %r (known: %s)" % (k, ", ".join(KEYS)))
        s[k] = settings[k]
    return s


def plan(settings):
    """Validate every key (ValueError naming key and range) and return (items, ctx).

    items: list of (data-memory address, size in bytes, unsigned raw value) to write.
    ctx: what `applied()` and the driver need (cell map, units, interlocks)."""
    s = merged(settings)
    cell_count = _int(s, "cell_count", 3, 16)
    vmode = _int(s, "vcell_mode", 0, 0xFFFF)
    if vmode == 0:
        vmode = low_bits(cell_count)
    elif popcount(vmode) != cell_count:
        raise ValueError("vcell_mode 0x%04x must have exactly cell_count=%d bits set" % (vmode, cell_count))
    shunt = _int(s, "shunt_uohm", 50, 100000)
    amps = s["user_amps_ma"]
    if amps not in (1, 10, 100) or isinstance(amps, bool):
        raise ValueError("user_amps_ma must be one of 1, 10, 100, got %r" % (amps,))
    amps_code = {1: 1, 10: 2, 100: 3}[amps]
    # One 2 mV code in mA across the shunt: num/den = 2e6 / shunt_uohm.
    for k in _DEFAULT_CODES:
        if s[k] is None:
            code = _DEFAULT_CODES[k]
            mv = SCD_TABLE_MV[code] if k == "scd_ma" else 2 * code
            s[k] = _cdiv(mv * 1000000, shunt)
    items = []
    add = items.append
    add((R.DM_VCELL_MODE, 2, vmode))
    add((R.DM_DA_CONFIG, 1, 0x04 | amps_code))          # USER_VOLTS_CV = 1 (cV), USER_AMPS
    add((R.DM_COV_THRESHOLD, 1, _down(s, "cov_mv", 20, 110, 506, 10, 0)))
    add((R.DM_COV_DELAY, 2, _down(s, "cov_delay_ms", 1, CV_DELAY_MAX, 33, 10, 2)))
    add((R.DM_COV_HYST, 1, _up(s, "cov_hyst_mv", 2, 20, 506, 10, 0)))
    add((R.DM_CUV_THRESHOLD, 1, _up(s, "cuv_mv", 20, 90, 506, 10, 0)))
    add((R.DM_CUV_DELAY, 2, _down(s, "cuv_delay_ms", 1, CV_DELAY_MAX, 33, 10, 2)))
    add((R.DM_CUV_HYST, 1, _up(s, "cuv_hyst_mv", 2, 20, 506, 10, 0)))
    add((R.DM_OCC_THRESHOLD, 1, _down(s, "occ_ma", 2, 62, 2000000, shunt, 0)))
    add((R.DM_OCC_DELAY, 1, _down(s, "occ_delay_ms", 1, 127, 33, 10, 2)))
    add((R.DM_OCD1_THRESHOLD, 1, _down(s, "ocd1_ma", 2, 100, 2000000, shunt, 0)))
    add((R.DM_OCD1_DELAY, 1, _down(s, "ocd1_delay_ms", 1, 127, 33, 10, 2)))
    add((R.DM_OCD2_THRESHOLD, 1, _down(s, "ocd2_ma", 2, 100, 2000000, shunt, 0)))
    add((R.DM_OCD2_DELAY, 1, _down(s, "ocd2_delay_ms", 1, 127, 33, 10, 2)))
    add((R.DM_SCD_THRESHOLD, 1, _scd_code(s, shunt)))
    add((R.DM_SCD_DELAY, 1, _down(s, "scd_delay_us", 1, 31, 15, 1, -1)))
    hyst_c = _up(s, "temp_recovery_dc", 1, 20, 10, 1, 0)
    tdelay = _int(s, "temp_delay_s", 0, 255)
    for key, addr, over in (("otc_dc", R.DM_OTC_THRESHOLD, 1), ("otd_dc", R.DM_OTD_THRESHOLD, 1),
                            ("otint_dc", R.DM_OTINT_THRESHOLD, 1), ("utc_dc", R.DM_UTC_THRESHOLD, 0),
                            ("utd_dc", R.DM_UTD_THRESHOLD, 0)):
        if over:
            t = _down(s, key, TEMP_MIN_C, TEMP_MAX_C, 10, 1, 0)
            rec = t - hyst_c
        else:
            t = _up(s, key, TEMP_MIN_C, TEMP_MAX_C, 10, 1, 0)
            rec = t + hyst_c
        if not TEMP_MIN_C <= rec <= TEMP_MAX_C:
            raise ValueError("temp_recovery_dc=%r puts the %s recovery at %d degC, outside %d..%d"
                             % (s["temp_recovery_dc"], key, rec, TEMP_MIN_C, TEMP_MAX_C))
        add((addr, 1, t & 0xFF))
        add((addr + 1, 1, tdelay))
        add((addr + 2, 1, rec & 0xFF))
    add((R.DM_RECOVERY_TIME, 1, _int(s, "recovery_time_s", 0, 255)))
    # Pins by name, not by count: a board may fit TS1 and TS3 only, and a pin configured as a
    # thermistor with nothing fitted reads open and raises the cell temperature protections.
    ts_pins = _int(s, "ts_pins", 0, 7)
    for i in range(3):
        add((R.DM_TS1_CONFIG + i, 1, R.PIN_TS_CELL_18K if ts_pins >> i & 1 else R.PIN_UNUSED))
    max_cells = _int(s, "balance_max_cells", 0, 16)
    add((R.DM_CB_MAX_CELLS, 1, max_cells))
    adjacent = _int(s, "balance_allow_adjacent", 0, 1)
    hwd_s = _int(s, "host_watchdog_s", 0, 65535)
    if hwd_s:
        add((R.DM_HWD_DELAY, 2, hwd_s))
    add((R.DM_SLEEP_CURRENT, 2, _int(s, "sleep_current_ma", 0, 32767)))
    sleep_allowed = _int(s, "sleep_allowed", 0, 1)
    # FET Options (0x9308, default 0x0D = SFET | HOST_FET_EN | FET_CTRL_EN, kept) with SLEEPCHG (bit 1):
    # the CHG FET stays on in SLEEP, so a charger tapering below Sleep Current is not cut off and
    # re-admitted every few seconds (docs/balancing.md "Sleep"). Protections stay active in SLEEP.
    add((_DM_FET_OPTIONS, 1, 0x0D | (_int(s, "sleep_chg_fet", 0, 1) << 1)))
    # Balancing Configuration (0x9335): CB_NOSLEEP (bit 3) keeps the chip out of SLEEP while cells
    # bleed; CB_SLEEP (bit 2) lets balancing continue in SLEEP. CB_CHG/CB_RLX (autonomous) and
    # CB_NO_CMD stay 0: the host commands balancing.
    add((_DM_BALANCING_CONFIG, 1, (_int(s, "balance_no_sleep", 0, 1) << 3) | (_int(s, "balance_in_sleep", 0, 1) << 2)))
    alarm_enable = _int(s, "alarm_enable", 0, 0xFFFF)
    add((R.DM_DEFAULT_ALARM_MASK, 2, alarm_enable))
    # Hardware protections on: COV, CUV, OCC, OCD1, OCD2, SCD; OTINT always; the cell temperature
    # protections only with a thermistor to measure (an unused TS pin would read as a fault).
    prot_b = R.SB_OTINT
    if ts_pins:
        prot_b |= R.SB_OTC | R.SB_OTD | R.SB_UTC | R.SB_UTD
    add((R.DM_ENABLED_PROT_A, 1, R.SA_COV | R.SA_CUV | R.SA_OCC | R.SA_OCD1 | R.SA_OCD2 | R.SA_SCD))
    add((R.DM_ENABLED_PROT_B, 1, prot_b))
    add((R.DM_ENABLED_PROT_C, 1, R.SC_HWDF if hwd_s else 0))
    ctx = {"shunt_uohm": shunt, "cell_count": cell_count, "vcell_mode": vmode,
           "balance_allow_adjacent": adjacent, "sleep_allowed": sleep_allowed, "hwd": hwd_s,
           "alarm_enable": alarm_enable}
    return items, ctx


def _scd_code(s, shunt):
    lo = _cdiv(SCD_TABLE_MV[0] * 1000000, shunt)
    hi = _cdiv(SCD_TABLE_MV[-1] * 1000000, shunt)
    v = _int(s, "scd_ma", lo, hi)
    code = 0
    for i in range(len(SCD_TABLE_MV)):
        # never above the request: the largest table entry whose current is <= the request
        if SCD_TABLE_MV[i] * 1000000 <= v * shunt:
            code = i
    return code


def _s8(v):
    return v - 256 if v & 0x80 else v


def applied(ctx, raw):
    """Decode the raw values read back (dict address -> unsigned int) into the settings' keys/units."""
    shunt = ctx["shunt_uohm"]
    a = {}
    vmode = raw[R.DM_VCELL_MODE] or 0xFFFF
    a["vcell_mode"] = vmode
    a["cell_count"] = popcount(vmode)
    a["shunt_uohm"] = shunt
    a["user_amps_ma"] = (0, 1, 10, 100)[raw[R.DM_DA_CONFIG] & 3]     # 0 would be 0.1 mA
    a["cov_mv"] = _down_value(raw[R.DM_COV_THRESHOLD], 506, 10, 0)
    a["cov_delay_ms"] = _down_value(raw[R.DM_COV_DELAY], 33, 10, 2)
    a["cov_hyst_mv"] = _up_value(raw[R.DM_COV_HYST], 506, 10, 0)
    a["cuv_mv"] = _up_value(raw[R.DM_CUV_THRESHOLD], 506, 10, 0)
    a["cuv_delay_ms"] = _down_value(raw[R.DM_CUV_DELAY], 33, 10, 2)
    a["cuv_hyst_mv"] = _up_value(raw[R.DM_CUV_HYST], 506, 10, 0)
    for key, addr in (("occ", R.DM_OCC_THRESHOLD), ("ocd1", R.DM_OCD1_THRESHOLD), ("ocd2", R.DM_OCD2_THRESHOLD)):
        a[key + "_ma"] = _down_value(raw[addr], 2000000, shunt, 0)
        a[key + "_delay_ms"] = _down_value(raw[addr + 1], 33, 10, 2)
    a["scd_ma"] = _cdiv(SCD_TABLE_MV[raw[R.DM_SCD_THRESHOLD] & 15] * 1000000, shunt)
    a["scd_delay_us"] = (raw[R.DM_SCD_DELAY] - 1) * 15
    hyst = None
    for key, addr, over in (("otc_dc", R.DM_OTC_THRESHOLD, 1), ("otd_dc", R.DM_OTD_THRESHOLD, 1),
                            ("otint_dc", R.DM_OTINT_THRESHOLD, 1), ("utc_dc", R.DM_UTC_THRESHOLD, 0),
                            ("utd_dc", R.DM_UTD_THRESHOLD, 0)):
        t = _s8(raw[addr])
        a[key] = t * 10
        a["temp_delay_s"] = raw[addr + 1]
        h = (t - _s8(raw[addr + 2])) if over else (_s8(raw[addr + 2]) - t)
        # report the smallest hysteresis found: the least margin the chip actually applies
        hyst = h if hyst is None else min(hyst, h)
    a["temp_recovery_dc"] = hyst * 10
    a["recovery_time_s"] = raw[R.DM_RECOVERY_TIME]
    ts = 0
    for i in range(3):
        if raw[R.DM_TS1_CONFIG + i] == R.PIN_TS_CELL_18K:
            ts |= 1 << i
    a["ts_pins"] = ts
    a["balance_max_cells"] = raw[R.DM_CB_MAX_CELLS]
    a["balance_allow_adjacent"] = ctx["balance_allow_adjacent"]
    hwd_on = raw[R.DM_ENABLED_PROT_C] & R.SC_HWDF
    a["host_watchdog_s"] = raw.get(R.DM_HWD_DELAY, 0) if hwd_on else 0
    cur = raw[R.DM_SLEEP_CURRENT]
    a["sleep_current_ma"] = cur - 65536 if cur & 0x8000 else cur
    a["sleep_allowed"] = ctx["sleep_allowed"]
    a["sleep_chg_fet"] = raw[_DM_FET_OPTIONS] >> 1 & 1
    a["balance_no_sleep"] = raw[_DM_BALANCING_CONFIG] >> 3 & 1
    a["balance_in_sleep"] = raw[_DM_BALANCING_CONFIG] >> 2 & 1
    a["alarm_enable"] = raw[R.DM_DEFAULT_ALARM_MASK]
    return a
