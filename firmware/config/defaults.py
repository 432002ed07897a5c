"""Default configuration: every key the pack logic, balancing and the cycle read, in fixed units.

`build(chemistry, overrides)` returns a fresh dict: defaults, then the chemistry preset, then overrides.

    from firmware.config import defaults
    cfg = defaults.build("lfp", {"cell_count": 16, "capacity_mah": 100000})

Layering (docs/protection.md): firmware limits are the second line and trip first and gently; the
chip's hardware protections are set from the same values widened by the chip_*_margin keys, so the
BQ76952 is the hard backstop. Short circuit is the reverse: only the chip can act in microseconds.
"""
from firmware.config.presets import PRESETS

DEFAULTS = {
    # --- pack ---
    "chemistry": "lfp",
    "cell_count": 16,
    "temp_count": 3,
    "capacity_mah": 100000,      # nominal capacity (mAh)
    "shunt_uohm": 1000,          # current sense resistor (micro-ohm)
    "vcell_mode": 0,             # AFE inputs wired to cells, bit n = VC(n+1); 0 = the lowest cell_count
    # --- cycle ---
    "period_ms": 250,            # fixed protection cycle
    "comms_budget_ms": 100,      # bounded network work per cycle (socket timeout = budget/3 = 33 ms: a LAN or nearby broker)
    "wdt_ms": 5000,              # ESP32 watchdog; fed only when a cycle completes
    # --- firmware protections (second line): threshold, delay, recovery hysteresis ---
    "cell_ov_mv": 3650, "cell_ov_delay_ms": 1000, "cell_ov_hyst_mv": 150,
    "cell_uv_mv": 2500, "cell_uv_delay_ms": 2000, "cell_uv_hyst_mv": 300,
    "chg_oc_ma": 50000, "chg_oc_delay_ms": 2000,
    "dsg_oc_ma": 100000, "dsg_oc_delay_ms": 2000,
    "oc_recovery_ms": 30000,     # an over-current fault retries after this long
    "chg_ot_dc": 450, "chg_ut_dc": 0,
    "dsg_ot_dc": 600, "dsg_ut_dc": -200,
    "temp_delay_ms": 2000, "temp_hyst_dc": 50,
    # A thermistor reading at or beyond these is an open or shorted sensor, not a temperature: an
    # open NTC reads at the cold end of the ADC range (the emulator's [U] model: -40.0 degC).
    "temp_valid_min_dc": -350, "temp_valid_max_dc": 1200,
    "imbalance_mv": 300, "imbalance_delay_ms": 10000,
    "stale_ms": 1500,            # newest good sample older than this: stale
    "afe_fail_cycles": 4,        # consecutive failed reads: AFE communication lost (latched)
    "recovery_ms": 3000,         # recovery condition must hold this long
    # --- chip hardware protections (first/backstop line), derived from the above ---
    "chip_cell_margin_mv": 100,  # chip COV at cell_ov_mv + margin, CUV at cell_uv_mv - margin
    "chip_cell_delay_ms": 1000,
    "chip_oc_margin_pct": 25,    # chip OCC/OCD1 at firmware limit * (100 + pct) / 100
    "chip_oc_delay_ms": 400,     # chip OCC/OCD1 delay (the chip's maximum is 426 ms: 3.3 ms * (2 + 127));
                                 # shorter than the firmware's, so its threshold must be the wider one
    "ocd2_ma": 200000, "ocd2_delay_ms": 100,
    "scd_ma": 300000, "scd_delay_us": 60,
    "chip_temp_margin_dc": 50,   # chip OT/UT limits this much outside the firmware's
    "otint_dc": 850,             # AFE die over-temperature
    "chip_recovery_s": 3,
    "host_watchdog_s": 5,        # chip opens the FETs if the host stops talking this long
    "sleep_current_ma": 200,
    # --- state machine ---
    "idle_current_ma": 300,      # |current| below this is rest
    "state_confirm_ms": 1000,    # a current direction must hold this long to change state
    "sleep_after_ms": 600000,    # rest this long: allow the chip to sleep
    "fet_refresh_ms": 10000,     # re-send the FET command this often even without a change
    # --- balancing ---
    "bal_start_mv": 15, "bal_stop_mv": 3,  # measured while bleeding: the bleed lowers the cell by I*R (~5 mV)
    "bal_min_cell_mv": 3300,     # no balancing below this cell voltage (LFP plateau is uninformative)
    "bal_settle_ms": 1800000,    # at rest: wait this long for voltages to settle
    "bal_max_cells": 4,          # chip limit on simultaneous cells (Cell Balance Max Cells)
    "bal_allow_adjacent": 0,     # the driver refuses adjacent cells; keep it 0 unless verified
    "bal_derate_dc": 450,        # above this, fewer cells bleed (heat)
    "bal_stop_dc": 550,          # above this, no cell bleeds
    "bal_max_int_dc": 700,       # AFE die limit for balancing
    # --- SOC / SOH ---
    "full_cell_mv": 3550, "full_current_ma": 2000,  # full: max cell above this with taper current
    "empty_cell_mv": 2700,
    "rest_ma": 200, "ocv_rest_ms": 1800000,         # OCV correction after 30 min rest
    "ocv_lo_cpct": 1500, "ocv_hi_cpct": 9000,
    "ocv_table": (2500, 0, 3000, 500, 3200, 1500, 3250, 3000, 3280, 5000,
                  3300, 7000, 3330, 9000, 3400, 9700, 3600, 10000),
    "initial_soc_cpct": -1,      # -1: stored state (soc.dat) or, without one, estimate from OCV at boot
}


def build(chemistry=None, overrides=None):
    """A fresh config dict: defaults, then the chemistry preset, then overrides."""
    cfg = dict(DEFAULTS)
    chem = chemistry if chemistry is not None else (overrides or {}).get("chemistry", cfg["chemistry"])
    if chem not in PRESETS:
        raise ValueError("chemistry must be one of %s, got %r" % (", ".join(sorted(PRESETS)), chem))
    cfg.update(PRESETS[chem])
    cfg["chemistry"] = chem
    if overrides:
        cfg.update(overrides)
        cfg["chemistry"] = chem
    return cfg
