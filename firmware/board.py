"""Board descriptions: one JSON file per board under boards/ (pins, I2C, cells, shunt, thermistors, chemistry).

    from firmware import board
    b = board.load("boards/sim16_lfp.json")      # dict, validated (ValueError names the key)

`overrides(b)` gives the config keys a board fixes (cell count, shunt, capacity, thermistor pins).
"""
import json

from firmware.config.presets import PRESETS

_INT_KEYS = {
    "cell_count": (3, 16), "shunt_uohm": (100, 10000), "capacity_mah": (100, 2000000),
}
_PIN = (-1, 48)   # -1: not fitted


def _bad(key, value, why):
    raise ValueError("board %s=%r: %s" % (key, value, why))


def check(b):
    if not isinstance(b, dict):
        raise ValueError("board description must be a JSON object")
    if not isinstance(b.get("name"), str):
        _bad("name", b.get("name"), "must be a string")
    for key in _INT_KEYS:
        lo, hi = _INT_KEYS[key]
        v = b.get(key)
        if not isinstance(v, int) or not lo <= v <= hi:
            _bad(key, v, "must be an int in %d..%d" % (lo, hi))
    if b.get("chemistry") not in PRESETS:
        _bad("chemistry", b.get("chemistry"), "must be one of " + ", ".join(sorted(PRESETS)))
    th = b.get("thermistors")
    if not isinstance(th, list) or len(th) > 3:
        _bad("thermistors", th, "must be a list of at most 3 pin names (TS1, TS2, TS3)")
    if not th:
        # Without a cell thermistor neither the chip nor the firmware has any temperature protection.
        _bad("thermistors", th, "must name at least one cell thermistor pin (TS1, TS2 or TS3)")
    for t in th:
        if t not in ("TS1", "TS2", "TS3") or th.count(t) != 1:
            _bad("thermistors", th, "entries must be distinct pin names TS1, TS2 or TS3")
    vc = b.get("vc_inputs")
    if vc is not None:
        if not isinstance(vc, list) or len(vc) != b["cell_count"]:
            _bad("vc_inputs", vc, "must list one VC input (1..16) per cell")
        for n in vc:
            if not isinstance(n, int) or not 1 <= n <= 16 or vc.count(n) != 1:
                _bad("vc_inputs", vc, "entries must be distinct VC inputs 1..16")
    i2c = b.get("i2c")
    if not isinstance(i2c, dict):
        _bad("i2c", i2c, "must be an object with id, sda, scl, freq, addr")
    for key in ("sda", "scl"):
        v = i2c.get(key)
        if not isinstance(v, int) or not 0 <= v <= _PIN[1]:
            _bad("i2c." + key, v, "must be a GPIO number 0..%d" % _PIN[1])
    if i2c.get("freq") not in (100000, 400000):
        _bad("i2c.freq", i2c.get("freq"), "must be 100000 or 400000 (BQ76952 I2C modes)")
    addr = i2c.get("addr", 8)
    if not isinstance(addr, int) or not 0x08 <= addr <= 0x77:
        _bad("i2c.addr", addr, "must be a 7-bit address 0x08..0x77")
    for key in ("alert_pin", "led_pin"):
        v = b.get(key, -1)
        if not isinstance(v, int) or not _PIN[0] <= v <= _PIN[1]:
            _bad(key, v, "must be a GPIO number, or -1 when not fitted")
    return b


def load(path):
    with open(path) as f:
        return check(json.load(f))


def ts_pins(names):
    """Thermistor pin names -> bitmask (bit0 TS1, bit1 TS2, bit2 TS3); sample slots follow pin order."""
    mask = 0
    for t in names:
        mask |= 1 << (int(t[2]) - 1)
    return mask


def overrides(b):
    """Config keys fixed by the board's hardware."""
    out = {
        "chemistry": b["chemistry"],
        "cell_count": b["cell_count"],
        "temp_count": len(b["thermistors"]),
        "temp_pins": ts_pins(b["thermistors"]),
        "shunt_uohm": b["shunt_uohm"],
        "capacity_mah": b["capacity_mah"],
    }
    vc = b.get("vc_inputs")
    if vc:
        mask = 0
        for n in vc:
            mask |= 1 << (n - 1)
        out["vcell_mode"] = mask
    cfg = b.get("config")
    if isinstance(cfg, dict):
        out.update(cfg)
    return out
