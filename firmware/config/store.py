"""Atomic persistence of the config: temp file + checksum + os.rename; a bad file never crashes boot.

    from firmware.config import store
    cfg, status = store.load("/config.json", "lfp")   # status: "ok", "missing", "corrupt" or "invalid"
    store.save("/config.json", cfg)

File layout (firmware/config/atomic.py): the JSON of the overrides (keys that differ from the
chemistry's defaults), a newline, then `#` and the checksum of the JSON bytes as 8 hex digits. `save`
writes `<path>.tmp` and renames it over `<path>`; on LittleFS (and POSIX) the rename replaces
atomically, so power loss leaves either the old or the new file, never a torn one. Flash wears: call
save on a change, not every cycle.
"""
import json

from firmware.config import defaults, validate
from firmware.config.atomic import checksum, read, seal, unseal, write_atomic   # noqa: F401 (checksum: API)

STATUS_OK = "ok"
STATUS_MISSING = "missing"
STATUS_CORRUPT = "corrupt"
STATUS_INVALID = "invalid"


def _overrides(cfg):
    base = defaults.build(cfg["chemistry"])
    out = {"chemistry": cfg["chemistry"]}
    for k in cfg:
        v = cfg[k]
        if isinstance(v, tuple):
            v = list(v)
        b = base.get(k)
        if isinstance(b, tuple):
            b = list(b)
        if v != b:
            out[k] = v
    return out


def encode(cfg):
    return seal(json.dumps(_overrides(cfg)).encode())


def decode(data):
    """The overrides dict from file bytes; ValueError when the checksum or JSON is bad."""
    body = unseal(data)
    obj = json.loads(body)
    if not isinstance(obj, dict):
        raise ValueError("not an object")
    if "ocv_table" in obj and isinstance(obj["ocv_table"], list):
        obj["ocv_table"] = tuple(obj["ocv_table"])
    return obj


def save(path, cfg):
    """Validate and write atomically. Raises ValueError (bad config) or OSError (file system)."""
    validate.check(cfg)
    write_atomic(path, encode(cfg))


def load(path, chemistry="lfp", board_overrides=None):
    """(cfg, status). Never raises for a missing, torn or invalid file: safe defaults + a status to report.

    board_overrides (cell_count, capacity, shunt... from the board description) apply under the file's
    own overrides; if the merged result is invalid the defaults with only the board values are used.
    """
    safe = defaults.build(chemistry, board_overrides)
    try:
        data = read(path)
    except OSError:
        return validate.check(safe), STATUS_MISSING
    try:
        over = decode(data)
    except ValueError:
        return validate.check(safe), STATUS_CORRUPT
    merged = dict(board_overrides or {})
    merged.update(over)
    try:
        cfg = defaults.build(over.get("chemistry", chemistry), merged)
        validate.check(cfg)
    except ValueError:
        return validate.check(safe), STATUS_INVALID
    return cfg, STATUS_OK
