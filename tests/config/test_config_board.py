"""Board descriptions: every committed board loads; bad descriptions name the key; overrides feed config."""
import json
import os

import pytest

from firmware import board
from firmware.config import defaults, validate

BOARDS = os.path.join(os.path.dirname(__file__), "..", "..", "boards")


COMMITTED = sorted(f[:-5] for f in os.listdir(BOARDS) if f.endswith(".json") and not f.startswith("secrets"))


def test_every_committed_board_is_checked():
    assert {"sim16_lfp", "sim4_nmc", "esp32_bq76952_evm"} <= set(COMMITTED)


@pytest.mark.parametrize("name", COMMITTED)
def test_committed_boards_load_and_give_a_valid_config(name):
    b = board.load(os.path.join(BOARDS, name + ".json"))
    over = board.overrides(b)
    cfg = validate.check(defaults.build(b["chemistry"], over))
    assert cfg["cell_count"] == b["cell_count"] and cfg["temp_count"] == len(b["thermistors"])


def test_evm_board_pins():
    b = board.load(os.path.join(BOARDS, "esp32_bq76952_evm.json"))
    assert (b["i2c"]["sda"], b["i2c"]["scl"]) == (21, 22) and b["alert_pin"] >= 0 and b["led_pin"] >= 0


def test_vc_inputs_become_vcell_mode():
    b = board.load(os.path.join(BOARDS, "sim4_nmc.json"))
    assert board.overrides(b)["vcell_mode"] == 0b1000000000000111


@pytest.mark.parametrize("key, value, words", [
    ("cell_count", 17, "cell_count"), ("chemistry", "pb", "chemistry"), ("thermistors", ["TS4"], "thermistors"),
    ("vc_inputs", [1, 2, 2, 16], "vc_inputs"), ("alert_pin", 99, "alert_pin")])
def test_bad_board_names_the_key(tmp_path, key, value, words):
    b = json.load(open(os.path.join(BOARDS, "sim4_nmc.json")))
    b[key] = value
    p = tmp_path / "b.json"
    p.write_text(json.dumps(b))
    with pytest.raises(ValueError, match=words):
        board.load(str(p))


def test_bad_i2c_frequency(tmp_path):
    b = json.load(open(os.path.join(BOARDS, "sim16_lfp.json")))
    b["i2c"]["freq"] = 1000000
    p = tmp_path / "b.json"
    p.write_text(json.dumps(b))
    with pytest.raises(ValueError, match="i2c.freq"):
        board.load(str(p))
