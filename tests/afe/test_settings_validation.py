"""Every settings key at its minimum, its maximum and just outside; bad settings never reach the bus.

Ranges come from the reference section 4 encodings (docs/afe-driver.md has the table). A recording
bus proves that a ValueError is raised before any transaction.
"""
import pytest

from firmware.afe import bq76952_settings as S
from firmware.afe.bq76952 import BQ76952

from afe_fakebus import FakeBQ

# key -> (min, max) at the default 1000 uOhm shunt (current keys scale with the shunt)
RANGES = {
    "cell_count": (3, 16),
    "shunt_uohm": (50, 100000),
    "cov_mv": (1012, 5566),            # 20..110 x 50.6 mV
    "cov_delay_ms": (10, 6762),        # (1..2047 + 2) x 3.3 ms
    "cov_hyst_mv": (101, 1012),        # 2..20 x 50.6 mV
    "cuv_mv": (1012, 4554),            # 20..90 x 50.6 mV
    "cuv_delay_ms": (10, 6762),
    "cuv_hyst_mv": (101, 1012),
    "occ_ma": (4000, 124000),          # 2..62 x 2 mV / 1 mOhm
    "occ_delay_ms": (10, 426),         # (1..127 + 2) x 3.3 ms
    "ocd1_ma": (4000, 200000),         # 2..100 x 2 mV
    "ocd1_delay_ms": (10, 426),
    "ocd2_ma": (4000, 200000),
    "ocd2_delay_ms": (10, 426),
    "scd_ma": (10000, 500000),         # 10..500 mV table
    "scd_delay_us": (0, 450),          # (1..31 - 1) x 15 us
    "otc_dc": (-400, 1200),
    "otd_dc": (-400, 1200),
    "otint_dc": (-400, 1200),
    "utc_dc": (-400, 1200),
    "utd_dc": (-400, 1200),
    "temp_recovery_dc": (10, 200),
    "temp_delay_s": (0, 255),
    "recovery_time_s": (0, 255),
    "ts_pins": (0, 7),             # bit0 TS1, bit1 TS2, bit2 TS3
    "balance_max_cells": (0, 16),
    "balance_allow_adjacent": (0, 1),
    "host_watchdog_s": (0, 65535),
    "sleep_current_ma": (0, 32767),
    "sleep_allowed": (0, 1),
    "sleep_chg_fet": (0, 1),          # FET Options SLEEPCHG
    "balance_no_sleep": (0, 1),       # Balancing Configuration CB_NOSLEEP
    "balance_in_sleep": (0, 1),       # Balancing Configuration CB_SLEEP
    "vcell_mode": (0, 0xFFFF),
    "alarm_enable": (0, 0xFFFF),
}
# Temperature thresholds need room for the default 5 degC hysteresis inside -40..120 degC.
CONTEXT = {
    "otc_dc": {"temp_recovery_dc": 10}, "otd_dc": {"temp_recovery_dc": 10},
    "otint_dc": {"temp_recovery_dc": 10}, "utc_dc": {"temp_recovery_dc": 10},
    "utd_dc": {"temp_recovery_dc": 10},
}


def test_every_key_has_a_range_test():
    assert set(RANGES) == set(S.KEYS) - {"user_amps_ma"}


def _settings(key, value):
    s = dict(CONTEXT.get(key, {}))
    if key == "vcell_mode":
        s["cell_count"] = 16           # 0xFFFF has 16 bits; 0 selects the default
    s[key] = value
    return s


@pytest.mark.parametrize("key", sorted(RANGES))
def test_minimum_and_maximum_are_accepted(key):
    lo, hi = RANGES[key]
    for v in (lo, hi):
        s = _settings(key, v)
        if key in ("otc_dc", "otd_dc", "otint_dc") and v == lo:
            continue                    # an OT threshold at -40 degC has no room for its recovery below
        if key in ("utc_dc", "utd_dc") and v == hi:
            continue                    # a UT threshold at 120 degC has no room for its recovery above
        S.plan(s)


@pytest.mark.parametrize("key", sorted(RANGES))
def test_out_of_range_raises_value_error_naming_key_before_any_bus_traffic(key):
    lo, hi = RANGES[key]
    bus = FakeBQ()
    afe = BQ76952(bus)
    for v in (lo - 1, hi + 1):
        with pytest.raises(ValueError) as e:
            afe.configure(_settings(key, v))
        assert key in str(e.value)
        assert "%d..%d" % (lo, hi) in str(e.value) or key in ("vcell_mode",)
    assert bus.traffic() == 0


@pytest.mark.parametrize("bad", [{"cov_mv": 3650.0}, {"cov_mv": "3650"}, {"cov_mv": True},
                                 {"user_amps_ma": 5}, {"user_amps_ma": 0}, {"no_such_key": 1},
                                 {"cell_count": 4, "vcell_mode": 0x0007}, "cov_mv=3650"])
def test_malformed_settings_raise_before_bus(bad):
    bus = FakeBQ()
    with pytest.raises(ValueError):
        BQ76952(bus).configure(bad)
    assert bus.traffic() == 0


def test_user_amps_accepts_1_10_100():
    for v in (1, 10, 100):
        items, _ = S.plan({"user_amps_ma": v})
        da = [raw for a, n, raw in items if a == 0x9303][0]
        assert da == 0x04 | {1: 1, 10: 2, 100: 3}[v]


def test_current_ranges_scale_with_the_shunt():
    S.plan({"shunt_uohm": 500, "occ_ma": 8000})           # 4 mV across 0.5 mOhm
    with pytest.raises(ValueError, match="occ_ma must be 8000..248000"):
        S.plan({"shunt_uohm": 500, "occ_ma": 7999})


def _code(items, addr):
    return [raw for a, n, raw in items if a == addr][0]


def test_scd_is_rounded_down_to_the_table_never_above_the_request():
    # 1 mOhm: table 10, 20, 40, 60, 80, 100, 125 ... mV = 10 A, 20 A, 40 A ...
    items, ctx = S.plan({"scd_ma": 59999})
    assert _code(items, 0x9286) == 2                         # 40 mV, below the requested 59.999 mV
    items, ctx = S.plan({"scd_ma": 60000})
    assert _code(items, 0x9286) == 3                         # exactly 60 mV
    items, ctx = S.plan({"scd_ma": 10000})
    assert _code(items, 0x9286) == 0


def test_thresholds_round_to_the_safe_side():
    items, _ = S.plan({"cov_mv": 3650, "cuv_mv": 2800, "cov_hyst_mv": 150, "otc_dc": 455, "utc_dc": 5,
                       "cov_delay_ms": 1000, "scd_delay_us": 100})
    assert _code(items, 0x9278) == 72        # 72 x 50.6 = 3643.2 <= 3650 (73 would be 3693.8)
    assert _code(items, 0x9275) == 56        # 56 x 50.6 = 2833.6 >= 2800 (55 would be 2783)
    assert _code(items, 0x927C) == 3         # hysteresis up: 151.8 >= 150
    assert _code(items, 0x929A) == 45        # OTC down to 45 degC
    assert _code(items, 0x92A6) == 1         # UTC up to 1 degC
    assert _code(items, 0x9279) == 301       # (301 + 2) x 3.3 = 999.9 ms <= 1000
    assert _code(items, 0x9287) == 7         # (7 - 1) x 15 = 90 us <= 100


def test_applied_is_idempotent_for_every_key():
    req = {"cell_count": 5, "cov_mv": 3650, "cuv_mv": 2800, "cov_hyst_mv": 150, "cuv_hyst_mv": 120,
           "cov_delay_ms": 1000, "cuv_delay_ms": 2000, "occ_ma": 33333, "occ_delay_ms": 77,
           "ocd1_ma": 55555, "ocd1_delay_ms": 100, "ocd2_ma": 77777, "ocd2_delay_ms": 33,
           "scd_ma": 123456, "scd_delay_us": 100, "otc_dc": 455, "otd_dc": 601, "utc_dc": 5, "utd_dc": -99,
           "otint_dc": 851, "temp_recovery_dc": 33, "shunt_uohm": 750}
    items, ctx = S.plan(req)
    first = S.applied(ctx, {a: raw for a, n, raw in items})
    items2, ctx2 = S.plan(first)
    assert items2 == items
    assert S.applied(ctx2, {a: raw for a, n, raw in items2}) == first
    # and the applied values sit on the safe side of the request
    assert first["cov_mv"] <= 3650 and first["cuv_mv"] >= 2800
    assert first["scd_ma"] <= 123456 and first["otc_dc"] <= 455 and first["utc_dc"] >= 5
