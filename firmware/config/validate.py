"""Validation of a config dict: every key known, every value an int in its allowed range.

Raises ValueError naming the key and the allowed range, before any hardware is touched.

    from firmware.config import defaults, validate
    validate.check(defaults.build("nmc"))   # returns the dict, or raises ValueError

Also maps the config to the AFE driver's settings keys (`chip_settings`), widening each limit by the
chip_*_margin keys so the chip is the backstop (docs/protection.md).
"""
from firmware.config.presets import PRESETS
from firmware.sample import MAX_CELLS, MAX_TEMPS

# key: (min, max) for ints. Ranges are what the firmware can represent sensibly, not recommendations.
RANGES = {
    "cell_count": (3, MAX_CELLS), "temp_count": (1, MAX_TEMPS),   # 0: no temperature protection at all
    "capacity_mah": (100, 2000000), "shunt_uohm": (100, 10000), "vcell_mode": (0, 0xFFFF),
    "period_ms": (50, 2000), "comms_budget_ms": (0, 200), "wdt_ms": (1000, 60000),
    "cell_ov_mv": (1500, 4500), "cell_ov_delay_ms": (0, 60000), "cell_ov_hyst_mv": (10, 500),
    "cell_uv_mv": (1000, 3500), "cell_uv_delay_ms": (0, 60000), "cell_uv_hyst_mv": (10, 800),
    "chg_oc_ma": (100, 500000), "chg_oc_delay_ms": (0, 60000),
    "dsg_oc_ma": (100, 500000), "dsg_oc_delay_ms": (0, 60000),
    "oc_recovery_ms": (1000, 3600000),
    "chg_ot_dc": (0, 850), "chg_ut_dc": (-400, 200),
    "dsg_ot_dc": (0, 850), "dsg_ut_dc": (-400, 200),
    "temp_delay_ms": (0, 60000), "temp_hyst_dc": (10, 200),
    "temp_valid_min_dc": (-500, 0), "temp_valid_max_dc": (600, 1500),
    "imbalance_mv": (20, 2000), "imbalance_delay_ms": (0, 600000),
    "stale_ms": (100, 60000), "afe_fail_cycles": (1, 100), "recovery_ms": (0, 600000),
    "chip_cell_margin_mv": (0, 500), "chip_cell_delay_ms": (10, 6000),
    "chip_oc_margin_pct": (10, 200), "chip_oc_delay_ms": (10, 426),
    "ocd2_ma": (1000, 1000000), "ocd2_delay_ms": (10, 426),
    "scd_ma": (1000, 2000000), "scd_delay_us": (0, 500),
    "chip_temp_margin_dc": (0, 300), "otint_dc": (300, 1200), "chip_recovery_s": (1, 255),
    "host_watchdog_s": (1, 255), "sleep_current_ma": (0, 5000),
    "idle_current_ma": (10, 10000), "state_confirm_ms": (0, 60000),
    "sleep_after_ms": (1000, 86400000), "fet_refresh_ms": (250, 600000),
    "bal_start_mv": (2, 500), "bal_stop_mv": (0, 500), "bal_min_cell_mv": (1000, 4500),
    "bal_settle_ms": (0, 86400000), "bal_max_cells": (1, 16), "bal_allow_adjacent": (0, 1),
    "bal_derate_dc": (0, 850), "bal_stop_dc": (0, 850), "bal_max_int_dc": (0, 1200),
    "full_cell_mv": (1000, 4500), "full_current_ma": (0, 100000), "empty_cell_mv": (1000, 4500),
    "rest_ma": (0, 10000), "ocv_rest_ms": (0, 86400000),
    "ocv_lo_cpct": (0, 10000), "ocv_hi_cpct": (0, 10000), "initial_soc_cpct": (-1, 10000),
}


def _bad(key, value, why):
    raise ValueError("config %s=%r: %s" % (key, value, why))


def check(cfg):
    """Return cfg if valid, else raise ValueError naming the key and the allowed range."""
    for key in cfg:
        if key not in RANGES and key not in ("chemistry", "ocv_table", "temp_pins"):
            _bad(key, cfg[key], "unknown key")
    for key in RANGES:
        if key not in cfg:
            _bad(key, None, "missing")
        v = cfg[key]
        lo, hi = RANGES[key]
        if not isinstance(v, int) or isinstance(v, bool):
            _bad(key, v, "must be an int in %d..%d" % (lo, hi))
        if not lo <= v <= hi:
            _bad(key, v, "out of range %d..%d" % (lo, hi))
    if cfg.get("chemistry") not in PRESETS:
        _bad("chemistry", cfg.get("chemistry"), "must be one of " + ", ".join(sorted(PRESETS)))
    _check_ocv(cfg.get("ocv_table"))
    _check_temp_pins(cfg)
    # Cross-key rules: each names both keys.
    if cfg["cell_uv_mv"] + cfg["cell_uv_hyst_mv"] >= cfg["cell_ov_mv"] - cfg["cell_ov_hyst_mv"]:
        _bad("cell_uv_mv", cfg["cell_uv_mv"], "cell_uv_mv + hysteresis must stay below cell_ov_mv - hysteresis")
    if not cfg["empty_cell_mv"] < cfg["full_cell_mv"] <= cfg["cell_ov_mv"]:
        _bad("full_cell_mv", cfg["full_cell_mv"], "needs empty_cell_mv < full_cell_mv <= cell_ov_mv")
    if cfg["bal_stop_mv"] >= cfg["bal_start_mv"]:
        _bad("bal_stop_mv", cfg["bal_stop_mv"], "must be below bal_start_mv=%d" % cfg["bal_start_mv"])
    if cfg["bal_derate_dc"] > cfg["bal_stop_dc"]:
        _bad("bal_derate_dc", cfg["bal_derate_dc"], "must not exceed bal_stop_dc=%d" % cfg["bal_stop_dc"])
    if cfg["chg_ut_dc"] + cfg["temp_hyst_dc"] >= cfg["chg_ot_dc"] - cfg["temp_hyst_dc"]:
        _bad("chg_ut_dc", cfg["chg_ut_dc"], "charge temperature window (with hysteresis) is empty")
    if cfg["dsg_ut_dc"] + cfg["temp_hyst_dc"] >= cfg["dsg_ot_dc"] - cfg["temp_hyst_dc"]:
        _bad("dsg_ut_dc", cfg["dsg_ut_dc"], "discharge temperature window (with hysteresis) is empty")
    if cfg["temp_valid_min_dc"] >= min(cfg["chg_ut_dc"], cfg["dsg_ut_dc"]) - cfg["chip_temp_margin_dc"]:
        _bad("temp_valid_min_dc", cfg["temp_valid_min_dc"], "must be below the chip's under-temperature limits")
    vm = cfg["vcell_mode"]
    if vm:
        n = 0
        while vm:
            n += vm & 1
            vm >>= 1
        if n != cfg["cell_count"]:
            _bad("vcell_mode", cfg["vcell_mode"], "must have exactly cell_count=%d bits set" % cfg["cell_count"])
    if cfg["stale_ms"] < 2 * cfg["period_ms"]:
        _bad("stale_ms", cfg["stale_ms"], "must be at least 2 * period_ms=%d" % cfg["period_ms"])
    if cfg["wdt_ms"] < 4 * cfg["period_ms"]:
        _bad("wdt_ms", cfg["wdt_ms"], "must be at least 4 * period_ms=%d" % cfg["period_ms"])
    # The chip 's OCD2 and SCD must sit above the firmware's discharge limit or the layering inverts.
    if cfg["ocd2_ma"] <= cfg["dsg_oc_ma"]:
        _bad("ocd2_ma", cfg["ocd2_ma"], "must exceed dsg_oc_ma=%d" % cfg["dsg_oc_ma"])
    if cfg["scd_ma"] <= cfg["ocd2_ma"]:
        _bad("scd_ma", cfg["scd_ma"], "must exceed ocd2_ma=%d" % cfg["ocd2_ma"])
    return cfg


def _check_temp_pins(cfg):
    # Optional (a board description sets it): which TS pins carry the temp_count thermistors.
    pins = cfg.get("temp_pins")
    if pins is None:
        return
    if not isinstance(pins, int) or isinstance(pins, bool) or not 1 <= pins <= 7:
        _bad("temp_pins", pins, "must be a TS pin bitmask 1..7 (bit0 TS1, bit1 TS2, bit2 TS3)")
    if _bits(pins) != cfg["temp_count"]:
        _bad("temp_pins", pins, "must have exactly temp_count=%d bits set" % cfg["temp_count"])


def _bits(x):
    n = 0
    while x:
        n += x & 1
        x >>= 1
    return n


def temp_pins(cfg):
    """TS pin bitmask of the configured thermistors: the board's pins, else TS1..TS<temp_count>."""
    pins = cfg.get("temp_pins")
    return pins if pins is not None else (1 << cfg["temp_count"]) - 1


def _check_ocv(table):
    if not isinstance(table, (tuple, list)) or len(table) < 4 or len(table) % 2:
        _bad("ocv_table", table, "must be an even-length list of (mV, 0.01 %) pairs, at least 2 pairs")
    prev_mv = -1
    prev_c = -1
    for i in range(0, len(table), 2):
        mv = table[i]
        c = table[i + 1]
        if not isinstance(mv, int) or not isinstance(c, int) or not 0 <= c <= 10000 or not 500 <= mv <= 5000:
            _bad("ocv_table", table, "pair %d out of range (mV 500..5000, SOC 0..10000)" % (i // 2))
        if mv <= prev_mv or c <= prev_c:
            _bad("ocv_table", table, "must rise in both mV and SOC (pair %d)" % (i // 2))
        prev_mv = mv
        prev_c = c


# COV/CUV recovery hysteresis on the chip: 2..20 steps of 50.6 mV (reference section 4).
_CHIP_HYST_MIN_MV = 101
_CHIP_HYST_MAX_MV = 1012


def _clamp(v, lo, hi):
    return lo if v < lo else hi if v > hi else v


def chip_settings(cfg):
    """The AFE driver's settings dict, from a validated config.

    Cell and current limits are widened by the chip margins so the firmware trips first; OCD2 and SCD
    have no firmware counterpart fast enough, so they are passed as configured.
    """
    m_mv = cfg["chip_cell_margin_mv"]
    pct = 100 + cfg["chip_oc_margin_pct"]
    m_dc = cfg["chip_temp_margin_dc"]
    rec_s = cfg["chip_recovery_s"]
    return {
        "cell_count": cfg["cell_count"],
        "vcell_mode": cfg["vcell_mode"],
        "shunt_uohm": cfg["shunt_uohm"],
        "user_amps_ma": 1 if cfg["dsg_oc_ma"] < 30000 and cfg["scd_ma"] < 30000 else 10,
        "cov_mv": cfg["cell_ov_mv"] + m_mv, "cov_delay_ms": cfg["chip_cell_delay_ms"],
        "cov_hyst_mv": _clamp(cfg["cell_ov_hyst_mv"], _CHIP_HYST_MIN_MV, _CHIP_HYST_MAX_MV),
        "cuv_mv": cfg["cell_uv_mv"] - m_mv, "cuv_delay_ms": cfg["chip_cell_delay_ms"],
        "cuv_hyst_mv": _clamp(cfg["cell_uv_hyst_mv"], _CHIP_HYST_MIN_MV, _CHIP_HYST_MAX_MV),
        "occ_ma": cfg["chg_oc_ma"] * pct // 100, "occ_delay_ms": cfg["chip_oc_delay_ms"],
        "ocd1_ma": cfg["dsg_oc_ma"] * pct // 100, "ocd1_delay_ms": cfg["chip_oc_delay_ms"],
        "ocd2_ma": cfg["ocd2_ma"], "ocd2_delay_ms": cfg["ocd2_delay_ms"],
        "scd_ma": cfg["scd_ma"], "scd_delay_us": cfg["scd_delay_us"],
        "otc_dc": cfg["chg_ot_dc"] + m_dc, "otd_dc": cfg["dsg_ot_dc"] + m_dc,
        "utc_dc": cfg["chg_ut_dc"] - m_dc, "utd_dc": cfg["dsg_ut_dc"] - m_dc,
        "otint_dc": cfg["otint_dc"],
        "temp_recovery_dc": cfg["temp_hyst_dc"],
        "temp_delay_s": (cfg["temp_delay_ms"] + 999) // 1000,
        "recovery_time_s": rec_s,
        "ts_pins": temp_pins(cfg),
        "balance_max_cells": cfg["bal_max_cells"],
        "balance_allow_adjacent": cfg["bal_allow_adjacent"],
        "host_watchdog_s": cfg["host_watchdog_s"],
        "sleep_current_ma": cfg["sleep_current_ma"],
        "sleep_allowed": 0,   # the state machine allows chip SLEEP only in its sleep state
        "sleep_chg_fet": 1,     # CHG FET stays on in chip SLEEP: a tapering charger is not chopped
        "balance_no_sleep": 1,  # the chip stays awake while cells bleed (docs/balancing.md)
        "balance_in_sleep": 0,
    }
