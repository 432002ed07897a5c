"""Pure mapping from a decoded frame to InfluxDB points (the schema is docs/influx-schema.md).

No I/O, no clock: the same decoded frame, tags and anchor always give the same points, which is what
makes redelivery idempotent. A point is a tuple (measurement, tags, fields, time_ns).

    pts = map_frame(frame.decode(b, "bms-0001", key), tags={"device": "bms-0001", ...}, anchor_ms=t0)
    lines = [to_line(p) for p in pts]

Timestamps are device time: a sample's `unix_ms` when the board had a wall clock, else
`anchor_ms + uptime_ms` (anchor: Unix ms at uptime 0 of that boot, kept in the registry).
Samples (pack/cell/temp) are stamped on the exact millisecond. Events, acks and status points add a
sub-millisecond discriminator `(seq % 1000) * 1000 + index` nanoseconds, so two events of one device in
the same millisecond never overwrite each other while a redelivery still lands on the same instant.
"""
from operator import itemgetter

from firmware.comms import frame as _frame

TEMP_INVALID_DC = -32768   # firmware/sample.py: a thermistor the chip cannot read
NS_PER_MS = 1000000

# Raw words written as integer fields of `pack`, names as in firmware/sample.py.
_PACK_INT = ("stack_mv", "pack_mv", "ld_mv", "current_ma", "int_temp_dc", "soc_cpct", "soh_cpct",
             "state", "faults", "safety_alert", "safety_status", "pf_status", "battery_status",
             "alarm_status", "fet_status", "balance_mask")
_EVENT_NAMES = {_frame.EVENT_RAISED: "raised", _frame.EVENT_CLEARED: "cleared",
                _frame.EVENT_INFO: "info"}
_ACK_RESULTS = {0: "ok"}


def _time_ms(item, anchor_ms):
    t = item.get("unix_ms")
    if t is not None:
        return t
    if anchor_ms is None:
        raise ValueError("frame has no wall clock and no anchor was given")
    return anchor_ms + item["uptime_ms"]


def _disc_ns(seq, index):
    return (seq % 1000) * 1000 + index


def map_frame(d, tags, anchor_ms=None):
    """Points for one decoded uplink frame (a dict from frame.decode). tags: device/site/group/board."""
    kind = d["kind"]
    if kind == _frame.KIND_TELEMETRY:
        return map_telemetry(d, tags, anchor_ms)
    if kind == _frame.KIND_EVENT:
        return map_events(d, tags, anchor_ms)
    if kind == _frame.KIND_STATUS:
        return map_status(d, tags, anchor_ms)
    if kind == _frame.KIND_ACK:
        return map_ack(d, tags, anchor_ms)
    raise ValueError("no mapping for frame kind %r" % (kind,))


def map_telemetry(d, tags, anchor_ms=None):
    out = []
    boot, seq = d["boot"], d["seq"]
    for s in d["samples"]:
        t_ns = _time_ms(s, anchor_ms) * NS_PER_MS
        fields = {}
        for name in _PACK_INT:
            if name in s:
                fields[name] = int(s[name])
        cells = s.get("cell_mv") or []
        if cells:
            lo, hi = min(cells), max(cells)
            fields["cell_min_mv"] = lo
            fields["cell_max_mv"] = hi
            fields["cell_delta_mv"] = hi - lo
            fields["cell_sum_mv"] = sum(cells)
        if "stack_mv" in s:
            fields["stack_v"] = s["stack_mv"] / 1000.0
        if "current_ma" in s:
            fields["current_a"] = s["current_ma"] / 1000.0
            if "stack_mv" in s:
                fields["power_w"] = s["stack_mv"] * s["current_ma"] / 1e6
        if "soc_cpct" in s:
            fields["soc_pct"] = s["soc_cpct"] / 100.0
        if "soh_cpct" in s:
            fields["soh_pct"] = s["soh_cpct"] / 100.0
        fields["boot"] = boot
        fields["seq"] = seq
        out.append(("pack", tags, fields, t_ns))
        mask = s.get("balance_mask", 0)
        for i, mv in enumerate(cells):
            ctags = dict(tags)
            ctags["cell"] = "%02d" % (i + 1)
            out.append(("cell", ctags, {"mv": int(mv), "v": mv / 1000.0,
                                        "balancing": (mask >> i) & 1}, t_ns))
        for j, dc in enumerate(s.get("temp_dc") or []):
            ttags = dict(tags)
            ttags["sensor"] = "ts%d" % (j + 1)
            tf = {"dc": int(dc)}
            if dc != TEMP_INVALID_DC:
                tf["degc"] = dc / 10.0
            out.append(("temp", ttags, tf, t_ns))
    return out


def map_events(d, tags, anchor_ms=None):
    out = []
    for i, e in enumerate(d["events"]):
        etags = dict(tags)
        etags["kind"] = _EVENT_NAMES.get(e["event"], str(e["event"]))
        fields = {"code": int(e["code"]), "n_values": len(e["values"]), "boot": d["boot"],
                  "seq": d["seq"]}
        for k, v in enumerate(e["values"]):
            fields["value" if k == 0 else "value_%d" % k] = int(v)
        t_ns = _time_ms(e, anchor_ms) * NS_PER_MS + _disc_ns(d["seq"], i)
        out.append(("event", etags, fields, t_ns))
    return out


def map_status(d, tags, anchor_ms=None):
    fields = {"online": 1, "source": "status", "fw": d["fw_version"], "board": d["board"],
              "config_hash": "%08x" % d["config_hash"], "reset_cause": d["reset_cause"],
              "cell_count": d["cell_count"], "temp_count": d["temp_count"],
              "boot": d["boot"], "seq": d["seq"]}
    t_ns = _time_ms(d, anchor_ms) * NS_PER_MS + _disc_ns(d["seq"], 0)
    return [("status", tags, fields, t_ns)]


def map_offline(tags, source, t_ms):
    """The status point of a last will or of silence (bridge time: there is no device time)."""
    return [("status", tags, {"online": 0, "source": source}, t_ms * NS_PER_MS)]


def map_online(tags, source, t_ms):
    """The status point of a board heard again after silence (source 'traffic'; bridge time)."""
    return [("status", tags, {"online": 1, "source": source}, t_ms * NS_PER_MS)]


def map_ack(d, tags, anchor_ms=None):
    atags = dict(tags)
    atags["result"] = _ACK_RESULTS.get(d["result"], "r%d" % d["result"])
    fields = {"cmd_counter": d["counter"], "cmd_code": d["code"], "result_code": d["result"],
              "message": d["message"], "boot": d["boot"], "seq": d["seq"]}
    t_ns = _time_ms(d, anchor_ms) * NS_PER_MS + _disc_ns(d["seq"], 0)
    return [("ack", atags, fields, t_ns)]


# --- line protocol (https://docs.influxdata.com/influxdb/v1/write_protocols/line_protocol_reference/)
def _esc_key(s):
    # measurement names escape comma and space; tag keys/values and field keys also '='
    return s.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def _esc_meas(s):
    return s.replace("\\", "\\\\").replace(",", "\\,").replace(" ", "\\ ")


def _field_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return "%di" % v
    if isinstance(v, float):
        return repr(v)
    s = str(v).replace("\\", "\\\\").replace('"', '\\"')
    return '"%s"' % s


_CACHE_MAX = 100000
_key_cache = {}      # field key -> escaped
_series_cache = {}   # (measurement, tag items) -> "meas,k=v,..." (the bridge sees few distinct series)


def _series(meas, tags):
    ck = (meas, tuple(tags.items()))
    s = _series_cache.get(ck)
    if s is None:
        parts = [_esc_meas(meas)]
        for k in sorted(tags):
            v = tags[k]
            if v == "":
                continue   # line protocol has no empty tag values
            parts.append("%s=%s" % (_esc_key(k), _esc_key(str(v))))
        s = ",".join(parts)
        if len(_series_cache) >= _CACHE_MAX:
            _series_cache.clear()
        _series_cache[ck] = s
    return s


def _fkey(k):
    e = _key_cache.get(k)
    if e is None:
        e = _esc_key(k)
        if len(_key_cache) >= _CACHE_MAX:
            _key_cache.clear()
        _key_cache[k] = e
    return e


def to_line(point):
    """One point as line protocol with a nanosecond timestamp. Tags sorted (InfluxDB's advice)."""
    meas, tags, fields, t_ns = point
    fs = []
    for k, v in fields.items():
        if type(v) is int:
            fs.append("%s=%di" % (_fkey(k), v))
        else:
            fs.append("%s=%s" % (_fkey(k), _field_value(v)))
    return "%s %s %d" % (_series(meas, tags), ",".join(fs), t_ns)


# --- fast path for telemetry: the same lines as [to_line(p) for p in map_telemetry(...)], built
# straight from the decoded samples. Telemetry is nearly all of the bridge's traffic and building a
# tuple, a tag dict and a field dict per cell point before formatting them cost ~0.8 ms of a 10-sample,
# 16-cell frame (cProfile, tools/bench); series prefixes are made once per tag set instead.
# telemetry_text() goes one step further for the bridge: a frame becomes one string (one %-template
# per sample fills the cell and thermistor lines), which the writer joins per frame, not per line
# (docs/bridge-throughput.md). telemetry_lines() is that text split into lines, and
# tests/bench/test_mapper_fastpath.py pins it to the general path.
_prefix_cache = {}   # tag items -> (pack series + " ", cell "series mv=" per cell, temp "series dc=")


def _prefixes(tags):
    ck = tuple(tags.items())
    p = _prefix_cache.get(ck)
    if p is None:
        cells = []
        for i in range(_frame.MAX_CELLS):
            ctags = dict(tags)
            ctags["cell"] = "%02d" % (i + 1)
            cells.append(_series("cell", ctags) + " mv=")
        temps = []
        for j in range(_frame.MAX_TEMPS):
            ttags = dict(tags)
            ttags["sensor"] = "ts%d" % (j + 1)
            temps.append(_series("temp", ttags) + " dc=")
        p = (_series("pack", tags) + " ", cells, temps)
        if len(_prefix_cache) >= _CACHE_MAX // 100:
            _prefix_cache.clear()
        _prefix_cache[ck] = p
    return p


_PACK_ALL = frozenset(_PACK_INT)
_PACK_FMT = ",".join("%s=%%di" % n for n in _PACK_INT)
_pack_values = itemgetter(*_PACK_INT)     # the tuple of a sample's _PACK_INT values, in that order
_cell_vals = {}      # mv -> "<mv>i,v=<mv/1000>": cells repeat a few hundred values, repr(float) is dear
_temp_vals = {}      # dc -> "<dc>i,degc=<dc/10>" (or "<dc>i" for an unreadable thermistor)
_BAL = (",balancing=0i ", ",balancing=1i ")


def _cell_val(mv):
    v = _cell_vals.get(mv)
    if v is None:
        v = "%di,v=%r" % (mv, mv / 1000.0)
        if len(_cell_vals) >= _CACHE_MAX:
            _cell_vals.clear()
        _cell_vals[mv] = v
    return v


def _temp_val(dc):
    v = _temp_vals.get(dc)
    if v is None:
        v = "%di,degc=%r" % (dc, dc / 10.0) if dc != TEMP_INVALID_DC else "%di" % dc
        if len(_temp_vals) >= _CACHE_MAX:
            _temp_vals.clear()
        _temp_vals[dc] = v
    return v


def _sample_template(tags, n_cells, n_temps):
    """A %-template for the cell and thermistor lines of one sample with these tags: per cell two
    slots (value text, ",balancing=<b>i <t_ns>"), per thermistor two (value text, " <t_ns>"), each
    line preceded by "\n". One % operation per sample replaces 19 string concatenations."""
    ck = (tuple(tags.items()), n_cells, n_temps)
    t = _template_cache.get(ck)
    if t is None:
        _, cell_prefix, temp_prefix = _prefixes(tags)
        parts = ["\n%s%%s%%s" % cell_prefix[i].replace("%", "%%") for i in range(n_cells)]
        parts += ["\n%s%%s%%s" % temp_prefix[j].replace("%", "%%") for j in range(n_temps)]
        t = "".join(parts)
        if len(_template_cache) >= _CACHE_MAX // 100:
            _template_cache.clear()
        _template_cache[ck] = t
    return t


def _mask_bits(mask, n_cells):
    """(bit 0, bit 1, ...) of a balance mask for n_cells cells (masks repeat: cached)."""
    ck = (mask, n_cells)
    b = _bits_cache.get(ck)
    if b is None:
        b = tuple((mask >> i) & 1 for i in range(n_cells))
        if len(_bits_cache) >= _CACHE_MAX // 100:
            _bits_cache.clear()
        _bits_cache[ck] = b
    return b


_template_cache = {}   # (tag items, cells, temps) -> _sample_template
_bits_cache = {}       # (mask, cells) -> bits


# the pack line of a sample that has every field (the firmware always sends them all): one % operation
_PACK_FULL = frozenset(_PACK_INT + ("cell_mv",))
_PACK_FULL_FMT = (_PACK_FMT + ",cell_min_mv=%di,cell_max_mv=%di,cell_delta_mv=%di,cell_sum_mv=%di"
                  ",stack_v=%r,current_a=%r,power_w=%r,soc_pct=%r,soh_pct=%r,%s%s")


def _pack_line(pack_prefix, s, tail, t_str):
    cells = s.get("cell_mv")
    if cells and _PACK_FULL.issubset(s):
        lo, hi = min(cells), max(cells)
        mv, ma = s["stack_mv"], s["current_ma"]
        return pack_prefix + _PACK_FULL_FMT % (_pack_values(s) + (
            lo, hi, hi - lo, sum(cells), mv / 1000.0, ma / 1000.0, mv * ma / 1e6,
            s["soc_cpct"] / 100.0, s["soh_cpct"] / 100.0, tail, t_str))
    if _PACK_ALL.issubset(s):
        # %d formats an int (or bool, or float) exactly as "%d" % int(x) does
        fs = [_PACK_FMT % _pack_values(s)]
    else:
        fs = ["%s=%di" % (name, int(s[name])) for name in _PACK_INT if name in s]
    if cells:
        lo, hi = min(cells), max(cells)
        fs.append("cell_min_mv=%di,cell_max_mv=%di,cell_delta_mv=%di,cell_sum_mv=%di"
                  % (lo, hi, hi - lo, sum(cells)))
    if "stack_mv" in s:
        fs.append("stack_v=%r" % (s["stack_mv"] / 1000.0))
    if "current_ma" in s:
        fs.append("current_a=%r" % (s["current_ma"] / 1000.0))
        if "stack_mv" in s:
            fs.append("power_w=%r" % (s["stack_mv"] * s["current_ma"] / 1e6))
    if "soc_cpct" in s:
        fs.append("soc_pct=%r" % (s["soc_cpct"] / 100.0))
    if "soh_cpct" in s:
        fs.append("soh_pct=%r" % (s["soh_cpct"] / 100.0))
    fs.append(tail)
    return pack_prefix + ",".join(fs) + t_str


def telemetry_text(d, tags, anchor_ms=None):
    """(text, points): the line protocol of a decoded telemetry frame as one string, lines joined by
    "\n" (no trailing newline), and how many lines (points) it holds. text.split("\n") is exactly
    [to_line(p) for p in map_telemetry(...)]; the bridge hands the text to the writer whole."""
    pack_prefix = _prefixes(tags)[0]
    tail = "boot=%di,seq=%di" % (d["boot"], d["seq"])
    cell_get = _cell_vals.__getitem__
    temp_get = _temp_vals.__getitem__
    templates = {}       # (cells, temps) -> template, for this frame (its samples share the shape)
    pieces = []
    points = 0
    for s in d["samples"]:
        t = str(_time_ms(s, anchor_ms) * NS_PER_MS)
        t_str = " " + t
        cells = s.get("cell_mv") or ()
        temps = s.get("temp_dc") or ()
        n_cells, n_temps = len(cells), len(temps)
        try:
            cell_text = list(map(cell_get, cells))    # equal keys (3300, 3300.0, True/1) give equal text
        except KeyError:
            cell_text = [_cell_val(mv) for mv in cells]
        try:
            temp_text = list(map(temp_get, temps))
        except KeyError:
            temp_text = [_temp_val(dc) for dc in temps]
        # the template's slots, interleaved: value, suffix, value, suffix, ...
        slots = [None] * (2 * (n_cells + n_temps))
        split = 2 * n_cells
        slots[0:split:2] = cell_text
        bal = (_BAL[0] + t, _BAL[1] + t)
        slots[1:split:2] = map(bal.__getitem__, _mask_bits(s.get("balance_mask", 0), n_cells))
        slots[split::2] = temp_text
        slots[split + 1::2] = (t_str,) * n_temps
        tmpl = templates.get((n_cells, n_temps))
        if tmpl is None:
            tmpl = templates[(n_cells, n_temps)] = _sample_template(tags, n_cells, n_temps)
        pieces.append(_pack_line(pack_prefix, s, tail, t_str) + tmpl % tuple(slots))
        points += 1 + n_cells + n_temps
    return "\n".join(pieces), points


def telemetry_lines(d, tags, anchor_ms=None):
    """Line protocol of a decoded telemetry frame: exactly [to_line(p) for p in map_telemetry(...)]."""
    if not d["samples"]:
        return []
    return telemetry_text(d, tags, anchor_ms)[0].split("\n")


def last_sample_ms(d, anchor_ms=None):
    """Device time (Unix ms) of the newest sample of a decoded telemetry frame, None if it has none."""
    samples = d["samples"]
    return _time_ms(samples[-1], anchor_ms) if samples else None
