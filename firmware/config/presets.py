"""Chemistry presets: cell limits and the open-circuit-voltage curve of LFP, NMC and LTO cells.

A preset overrides the chemistry-dependent keys of the defaults (firmware.config.defaults).

    from firmware.config import presets
    ov_mv = presets.PRESETS["nmc"]["cell_ov_mv"]

Values are typical datasheet limits for each chemistry family (cell makers differ by tens of mV), so
every one is a config key an operator can change. OCV tables are (cell mV, SOC 0.01 %) pairs, rising,
for a rested cell at room temperature; ocv_lo_cpct..ocv_hi_cpct is the band in which the curve is too
flat for a voltage reading to correct the coulomb counter (LFP's plateau).
"""

PRESETS = {
    "lfp": {
        "cell_ov_mv": 3650, "cell_uv_mv": 2500, "cell_ov_hyst_mv": 150, "cell_uv_hyst_mv": 300,
        "full_cell_mv": 3550, "empty_cell_mv": 2700,
        "bal_min_cell_mv": 3300,
        "chg_ut_dc": 0, "chg_ot_dc": 450, "dsg_ut_dc": -200, "dsg_ot_dc": 600,
        # LFP: flat from ~15 % to ~90 %; only the knees correct SOC.
        "ocv_lo_cpct": 1500, "ocv_hi_cpct": 9000,
        "ocv_table": (2500, 0, 3000, 500, 3200, 1500, 3250, 3000, 3280, 5000,
                      3300, 7000, 3330, 9000, 3400, 9700, 3600, 10000),
    },
    "nmc": {
        "cell_ov_mv": 4200, "cell_uv_mv": 3000, "cell_ov_hyst_mv": 100, "cell_uv_hyst_mv": 200,
        "full_cell_mv": 4150, "empty_cell_mv": 3200,
        "bal_min_cell_mv": 3800,
        "chg_ut_dc": 0, "chg_ot_dc": 450, "dsg_ut_dc": -200, "dsg_ot_dc": 600,
        # NMC's curve has a usable slope everywhere: correction allowed at any SOC.
        "ocv_lo_cpct": 10000, "ocv_hi_cpct": 0,
        "ocv_table": (3000, 0, 3300, 500, 3450, 1000, 3600, 2000, 3680, 3000, 3740, 4000,
                      3800, 5000, 3880, 6000, 3970, 7000, 4060, 8000, 4120, 9000, 4200, 10000),
    },
    "lto": {
        "cell_ov_mv": 2700, "cell_uv_mv": 1800, "cell_ov_hyst_mv": 100, "cell_uv_hyst_mv": 200,
        "full_cell_mv": 2650, "empty_cell_mv": 1900,
        "bal_min_cell_mv": 2400,
        # LTO charges well below freezing.
        "chg_ut_dc": -200, "chg_ot_dc": 500, "dsg_ut_dc": -300, "dsg_ot_dc": 600,
        "temp_valid_min_dc": -390,
        "ocv_lo_cpct": 10000, "ocv_hi_cpct": 0,
        "ocv_table": (1800, 0, 2100, 500, 2200, 1000, 2250, 2000, 2300, 4000,
                      2350, 6000, 2400, 8000, 2500, 9000, 2700, 10000),
    },
}


def names():
    """The chemistry names a board description or config may use."""
    return tuple(sorted(PRESETS))
