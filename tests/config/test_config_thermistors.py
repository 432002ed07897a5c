"""Thermistor pins travel by name from the board description to the AFE settings; none is refused.

Boards list the TS pins their thermistors sit on (boards/*.json "thermistors"); the config carries
them as temp_pins (bit0 TS1, bit1 TS2, bit2 TS3) and the driver settings as ts_pins.
"""
import json
import os

import pytest

from firmware import board
from firmware.afe import bq76952_settings as drv
from firmware.config import defaults, validate

BOARDS = os.path.join(os.path.dirname(__file__), "..", "..", "boards")


def _cfg(name):
    b = board.load(os.path.join(BOARDS, name + ".json"))
    return b, validate.check(defaults.build(b["chemistry"], board.overrides(b)))


@pytest.mark.parametrize("name, pins", [("esp32_bq76952_evm", 0b101), ("sim4_nmc", 0b101), ("sim16_lfp", 0b111)])
def test_board_pins_reach_the_driver_settings(name, pins):
    b, cfg = _cfg(name)
    assert cfg["temp_pins"] == pins and cfg["temp_count"] == len(b["thermistors"])
    chip = validate.chip_settings(cfg)
    assert chip["ts_pins"] == pins
    items, _ = drv.plan(chip)
    ts_cfg = {a: v for a, n, v in items if 0x92FD <= a <= 0x92FF}     # raw TS1..TS3 Config addresses
    assert ts_cfg == {0x92FD + i: (0x07 if pins >> i & 1 else 0x00) for i in range(3)}


def test_config_without_a_board_uses_ts1_upwards():
    cfg = validate.check(defaults.build("lfp", {"temp_count": 2}))
    assert validate.chip_settings(cfg)["ts_pins"] == 0b011


def _load(tmp_path, **change):
    b = json.load(open(os.path.join(BOARDS, "sim4_nmc.json")))
    b.update(change)
    p = tmp_path / "b.json"
    p.write_text(json.dumps(b))
    return board.load(str(p))


def test_a_board_with_zero_thermistors_is_refused_naming_the_key(tmp_path):
    with pytest.raises(ValueError, match="thermistors.*at least one"):
        _load(tmp_path, thermistors=[])


def test_a_board_naming_a_pin_twice_is_refused(tmp_path):
    with pytest.raises(ValueError, match="thermistors"):
        _load(tmp_path, thermistors=["TS1", "TS1"])


def test_a_config_with_zero_thermistors_is_refused_naming_the_key():
    with pytest.raises(ValueError, match="temp_count"):
        validate.check(defaults.build("lfp", {"temp_count": 0}))


@pytest.mark.parametrize("pins, words", [(0b011, "exactly temp_count=1"), (0, "1..7"), (8, "1..7"),
                                         (True, "1..7")])
def test_temp_pins_must_agree_with_temp_count(pins, words):
    with pytest.raises(ValueError, match="temp_pins.*" + words):
        validate.check(defaults.build("lfp", {"temp_count": 1, "temp_pins": pins}))
