"""The decoding half of the frame codec (docs/frame-format.md): uplink frames back into dicts.

Used by the bridge and the tools, through `frame.decode` or directly. It is its own module because a
board never decodes uplink frames: kept apart, its functions never take heap on the board (frozen, a
module's function objects and globals live in RAM once imported; docs/memory.md). Formats, constants,
errors and the tag check are frame.py's, shared with the encoder.
"""
import struct

from firmware.comms.frame import (FLAG_WALL, HDR_BYTES, HDR_WALL_BYTES, KIND_COMMAND, KIND_EVENT,
                                  KIND_STATUS, KIND_TELEMETRY, MAX_CELLS, MAX_EVENT_VALUES, MAX_TEMPS,
                                  TAG_LEN, WALL_EPOCH_UNIX_S, Malformed, UnknownKind, _check_tag, _Reader,
                                  peek_header)


def decode(b, device_id, key):
    """Verify and decode an uplink frame into a dict (docs/frame-format.md, Decoder); frame.decode
    forwards here. Raises only FrameError subclasses (tests/comms: hypothesis fuzzing)."""
    b = bytes(b)
    hdr = peek_header(b)
    kind = hdr["kind"]
    if kind == KIND_COMMAND:
        raise UnknownKind("a command frame is not an uplink frame")
    _check_tag(b, device_id, key)
    flags = hdr["flags"]
    if flags & ~FLAG_WALL:
        raise Malformed("reserved flag bits set")
    up_s, up_ms = struct.unpack_from("<IH", b, 11)
    if up_ms > 999:
        raise Malformed("uptime_ms > 999")
    d = hdr
    d["uptime_ms"] = up_s * 1000 + up_ms
    d["unix_ms"] = None
    pos = HDR_BYTES
    if flags & FLAG_WALL:
        w_s, w_ms = struct.unpack_from("<IH", b, HDR_BYTES)
        if w_ms > 999:
            raise Malformed("wall_ms > 999")
        d["unix_ms"] = (w_s + WALL_EPOCH_UNIX_S) * 1000 + w_ms
        pos = HDR_WALL_BYTES
    r = _Reader(b, pos, len(b) - TAG_LEN)
    if kind == KIND_TELEMETRY:
        _telemetry(r, d)
    elif kind == KIND_EVENT:
        _events(r, d)
    elif kind == KIND_STATUS:
        d["fw_version"] = r.text()
        d["board"] = r.text()
        d["config_hash"], d["reset_cause"], d["cell_count"], d["temp_count"] = r.unpack("<IBBB", 7)
    else:
        d["counter"], d["code"], d["result"] = r.unpack("<IBB", 6)
        d["message"] = r.text()
    r.end()
    return d


# Zig-zag value of every one-byte varint (0..127): nearly every delta of a sample fits in one byte.
# Made on the first telemetry decode.
_zz = None


def _uv_tail(b, pos, v):
    """The rest of an unsigned varint whose first byte (>= 0x80) was v: (value, position after it).
    Reading past the end of b raises IndexError (the caller's body ends where b ends)."""
    v &= 0x7F
    shift = 7
    for _ in range(4):
        c = b[pos]
        pos += 1
        v |= (c & 0x7F) << shift
        if c < 0x80:
            return v, pos
        shift += 7
    raise Malformed("varint longer than 5 bytes")


def _svs(b, pos, n, out):
    """Append n signed varints read from b at pos to out; return the position after them."""
    global _zz
    zz = _zz
    if zz is None:
        zz = _zz = tuple([(c >> 1) ^ -(c & 1) for c in range(128)])
    for _ in range(n):
        c = b[pos]
        pos += 1
        if c < 0x80:
            out.append(zz[c])
        else:
            c, pos = _uv_tail(b, pos, c)
            out.append((c >> 1) ^ -(c & 1))
    return pos


def _telemetry(r, d):
    nc = r.u8()
    nt = r.u8()
    n = r.u8()
    if not 1 <= nc <= MAX_CELLS or nt > MAX_TEMPS or n == 0:
        raise Malformed("bad counts: %d cells, %d temps, %d samples" % (nc, nt, n))
    d["cell_count"] = nc
    d["temp_count"] = nt
    t_up = d["uptime_ms"]
    t_unix = d["unix_ms"]
    # The body is read inline (the same fields in the same order as _Reader would, with the same
    # errors): the body cut at its end, so a field running past it raises IndexError.
    b = r.b[:r.endpos]
    pos = r.pos
    nv = 9 + nc + nt                 # signed varints per sample: dt, cells, 4 scalars, temps, 4 scalars
    c0 = 1 + nc                      # where the scalars start in them
    t0 = c0 + 4                      # where the temperatures start
    p = [0] * 8                      # previous sample's stack, pack, ld, current, int_temp, soc, soh, state
    w = [0] * 8                      # previous sample's status words, bit order of the `changed` byte
    pc = None                        # previous sample's cells
    pt = [0] * nt                    # previous sample's temperatures
    samples = []
    try:
        for _ in range(n):
            v = []
            pos = _svs(b, pos, nv, v)
            dt = v[0]
            t_up += dt
            if t_unix is not None:
                t_unix += dt
            if pc is None:
                cells = []
                pred = 0
                for i in range(1, c0):
                    pred += v[i]
                    cells.append(pred)
            else:
                cells = [pc[i] + v[i + 1] for i in range(nc)]
            for i in range(4):
                p[i] += v[c0 + i]
                p[4 + i] += v[t0 + nt + i]
            temps = [pt[i] + v[t0 + i] for i in range(nt)]
            changed = b[pos]
            pos += 1
            if changed:
                for bit in range(8):
                    if changed & (1 << bit):
                        c = b[pos]
                        pos += 1
                        if c >= 0x80:
                            c, pos = _uv_tail(b, pos, c)
                        w[bit] = c
            s = {"dt_ms": dt, "uptime_ms": t_up, "unix_ms": t_unix, "cell_mv": cells,
                 "stack_mv": p[0], "pack_mv": p[1], "ld_mv": p[2], "current_ma": p[3],
                 "temp_dc": temps, "int_temp_dc": p[4], "soc_cpct": p[5], "soh_cpct": p[6],
                 "state": p[7], "safety_alert": w[0], "safety_status": w[1], "pf_status": w[2],
                 "battery_status": w[3], "alarm_status": w[4], "fet_status": w[5],
                 "balance_mask": w[6], "faults": w[7]}
            samples.append(s)
            pc = cells
            pt = temps
    except IndexError:
        raise Malformed("field runs past the end of the body")
    r.pos = pos
    d["samples"] = samples


def _events(r, d):
    n = r.u8()
    if n == 0:
        raise Malformed("no events")
    t_up = d["uptime_ms"]
    t_unix = d["unix_ms"]
    events = []
    for _ in range(n):
        dt = r.sv()
        t_up += dt
        if t_unix is not None:
            t_unix += dt
        ev = r.u8()
        code = r.uv()
        nv = r.u8()
        if nv > MAX_EVENT_VALUES:
            raise Malformed("more than %d values" % MAX_EVENT_VALUES)
        values = [r.sv() for _ in range(nv)]
        events.append({"dt_ms": dt, "uptime_ms": t_up, "unix_ms": t_unix, "event": ev, "code": code,
                       "values": values})
    d["events"] = events
