"""Config: presets, validation messages naming key and range, chip mapping, atomic store with fallbacks."""
import os

import pytest

from firmware.config import defaults, presets, store, validate


@pytest.mark.parametrize("chem", ["lfp", "nmc", "lto"])
def test_every_preset_validates(chem):
    cfg = validate.check(defaults.build(chem))
    assert cfg["cell_ov_mv"] == presets.PRESETS[chem]["cell_ov_mv"]


def test_out_of_range_names_key_and_range():
    cfg = defaults.build("lfp", {"cell_ov_mv": 9000})
    with pytest.raises(ValueError, match=r"cell_ov_mv=9000.*1500\.\.4500"):
        validate.check(cfg)


@pytest.mark.parametrize("key, lo, hi, extra", [
    ("period_ms", 50, 2000, {"stale_ms": 5000, "wdt_ms": 9000}), ("bal_max_cells", 1, 16, {})])
def test_range_edges(key, lo, hi, extra):
    validate.check(defaults.build("lfp", dict(extra, **{key: lo})))
    validate.check(defaults.build("lfp", dict(extra, **{key: hi})))
    for bad in (lo - 1, hi + 1):
        with pytest.raises(ValueError, match=key):
            validate.check(defaults.build("lfp", dict(extra, **{key: bad})))


def test_unknown_key_float_and_cross_rules():
    with pytest.raises(ValueError, match="bogus"):
        validate.check(defaults.build("lfp", {"bogus": 1}))
    with pytest.raises(ValueError, match="must be an int"):
        validate.check(defaults.build("lfp", {"cell_ov_mv": 3650.0}))
    with pytest.raises(ValueError, match="bal_stop_mv"):
        validate.check(defaults.build("lfp", {"bal_stop_mv": 30}))
    with pytest.raises(ValueError, match="ocd2_ma"):
        validate.check(defaults.build("lfp", {"ocd2_ma": 90000}))
    with pytest.raises(ValueError, match="ocv_table"):
        validate.check(defaults.build("lfp", {"ocv_table": (3000, 0, 2900, 100)}))
    with pytest.raises(ValueError, match="chemistry"):
        defaults.build("leadacid")


def test_chip_settings_are_wider_than_firmware_limits():
    cfg = defaults.build("nmc")
    chip = validate.chip_settings(cfg)
    assert chip["cov_mv"] > cfg["cell_ov_mv"] and chip["cuv_mv"] < cfg["cell_uv_mv"]
    assert chip["occ_ma"] > cfg["chg_oc_ma"] and chip["ocd1_ma"] > cfg["dsg_oc_ma"]
    assert chip["otc_dc"] > cfg["chg_ot_dc"] and chip["utc_dc"] < cfg["chg_ut_dc"]
    assert chip["otd_dc"] > cfg["dsg_ot_dc"] and chip["utd_dc"] < cfg["dsg_ut_dc"]
    assert chip["scd_ma"] > chip["ocd2_ma"] > cfg["dsg_oc_ma"]
    assert set(chip) == {
        "cell_count", "vcell_mode", "shunt_uohm", "user_amps_ma", "cov_mv", "cov_delay_ms", "cov_hyst_mv",
        "cuv_mv", "cuv_delay_ms", "cuv_hyst_mv", "occ_ma", "occ_delay_ms", "ocd1_ma", "ocd1_delay_ms",
        "ocd2_ma", "ocd2_delay_ms", "scd_ma", "scd_delay_us", "otc_dc", "otd_dc", "utc_dc", "utd_dc",
        "otint_dc", "temp_recovery_dc", "recovery_time_s", "ts_pins", "balance_max_cells",
        "balance_allow_adjacent", "host_watchdog_s", "sleep_current_ma", "temp_delay_s", "sleep_allowed",
        "sleep_chg_fet", "balance_no_sleep", "balance_in_sleep"}


@pytest.mark.parametrize("chem, over", [
    ("lfp", {}), ("nmc", {}), ("lto", {}),
    ("nmc", {"cell_count": 4, "capacity_mah": 5000, "chg_oc_ma": 5000, "dsg_oc_ma": 15000,
             "ocd2_ma": 25000, "scd_ma": 40000})])
def test_chip_settings_accepted_by_the_driver(chem, over):
    from firmware.afe import bq76952_settings as drv
    items, ctx = drv.plan(validate.chip_settings(validate.check(defaults.build(chem, over))))
    assert ctx["cell_count"] == over.get("cell_count", 16) and items


def test_save_then_load_round_trip(tmp_path):
    path = str(tmp_path / "config.json")
    cfg = defaults.build("nmc", {"cell_count": 4, "chg_oc_ma": 5000})
    store.save(path, cfg)
    assert not os.path.exists(path + ".tmp")
    got, status = store.load(path, "lfp")
    assert status == "ok" and got == cfg


def test_missing_file_gives_defaults_and_status(tmp_path):
    got, status = store.load(str(tmp_path / "none.json"), "lfp", {"cell_count": 8})
    assert status == "missing" and got["cell_count"] == 8 and got["cell_ov_mv"] == 3650


@pytest.mark.parametrize("damage", [
    lambda b: b[: len(b) // 2],                        # torn write
    lambda b: b.replace(b"5000", b"5001", 1),          # flipped value, checksum no longer matches
    lambda b: b"",
    lambda b: b"\xff" * 40,
])
def test_corrupt_file_gives_defaults_never_raises(tmp_path, damage):
    path = str(tmp_path / "c.json")
    store.save(path, defaults.build("nmc", {"chg_oc_ma": 5000}))
    data = open(path, "rb").read()
    open(path, "wb").write(damage(data))
    got, status = store.load(path, "lfp")
    assert status == "corrupt" and got == defaults.build("lfp")


def test_valid_checksum_but_invalid_values_gives_defaults(tmp_path):
    path = str(tmp_path / "c.json")
    body = b'{"chemistry": "lfp", "cell_ov_mv": 99999}'
    open(path, "wb").write(body + b"\n#" + (b"%08x" % store.checksum(body)))
    got, status = store.load(path, "lfp")
    assert status == "invalid" and got["cell_ov_mv"] == 3650


def test_save_refuses_invalid_config(tmp_path):
    with pytest.raises(ValueError):
        store.save(str(tmp_path / "c.json"), defaults.build("lfp", {"cell_ov_mv": 1}))
    assert not os.listdir(tmp_path)
