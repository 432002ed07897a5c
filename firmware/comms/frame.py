"""The frame codec: the one implementation of docs/frame-format.md, for the board and the bridge.

The board encodes telemetry, events, status and acks into one preallocated buffer (nothing is allocated
per appended sample) and verifies downlink commands; the bridge decodes and verifies uplink frames.

    enc = Encoder("bms-01", key, boot=7); enc.begin_telemetry(seq, t0_ms, up_s, up_ms, 16, 3)
    enc.add_sample(sample); mv = enc.finish();  d = decode(bytes(mv), "bms-01", key)

Every decoding failure raises a subclass of FrameError (a ValueError) with a `reason` string.
"""
import struct

from firmware.comms import auth

try:
    from micropython import const
except ImportError:  # plain CPython (the bridge) without the host port on sys.path
    def const(x):
        return x

VERSION = const(1)
KIND_TELEMETRY = const(1)
KIND_EVENT = const(2)
KIND_STATUS = const(3)
KIND_ACK = const(4)
KIND_COMMAND = const(5)
KIND_RECEIPT = const(6)         # downlink: the bridge has stored these frames (docs/comms.md, Delivery)
FLAG_WALL = const(1)
TAG_LEN = auth.TAG_LEN
MAX_FRAME = const(8192)         # bytes; larger is refused unread (a bridge must not parse megabytes)
EVENT_RAISED = const(1)
EVENT_CLEARED = const(2)
EVENT_INFO = const(3)
PARAM_INT = const(0)
PARAM_STR = const(1)
MAX_PARAMS = const(32)
MAX_EVENT_VALUES = const(8)
MAX_CELLS = const(16)           # as firmware.sample.MAX_CELLS
MAX_TEMPS = const(3)            # as firmware.sample.MAX_TEMPS
WALL_EPOCH_UNIX_S = const(946684800)  # 2000-01-01T00:00:00Z: MicroPython's epoch on the ESP32

_HDR = const(17)                # uplink header without wall clock
_HDR_WALL = const(23)
HDR_BYTES = _HDR                # public copies for frame_decode (a `_` const is not a module attribute)
HDR_WALL_BYTES = _HDR_WALL
_CMD_HDR = const(9)             # version, kind, flags, counter u32, code, n_params
RECEIPT_HDR = const(8)          # version, kind, flags, boot u32, n_runs; then the runs
MAX_RECEIPT_RUNS = const(64)    # runs of consecutive seqs per receipt (8 + 64 x 5 + 12 = 340 bytes)
_U32_MAX = const(0xFFFFFFFF)
# Worst case of one coded sample: 28 signed varints (t, 16 cells, 3 voltages, current, 3 temps, die temp,
# SOC, SOH, state) at 5 bytes, the `changed` byte, 8 words at 5 bytes. The buffer has this much slack
# past its capacity so a sample is written first and rolled back if it does not fit.
_SAMPLE_MAX = const(181)
_EVENT_MAX = const(52)          # dt 5 + event 1 + code 5 + count 1 + 8 values x 5
# Ticks as MicroPython's ticks_ms(): period 2**30 on the ESP32 (reference/micropython-esp32.md).
_TICKS_MAX = const(0x3FFFFFFF)
_TICKS_HALF = const(0x20000000)
_HDR_FMT = "<BBBIIIH"


# ---------------------------------------------------------------- errors
class FrameError(ValueError):
    """A frame that cannot be accepted; `reason` names why (docs/frame-format.md, Errors)."""
    reason = "frame"


class Truncated(FrameError):
    reason = "truncated"


class Oversized(FrameError):
    reason = "oversized"


class UnknownVersion(FrameError):
    reason = "version"


class UnknownKind(FrameError):
    reason = "kind"


class BadTag(FrameError):
    reason = "tag"


class Malformed(FrameError):
    reason = "malformed"


# ---------------------------------------------------------------- encoding helpers (no allocation)
def _ticks_diff(new, old):
    return ((new - old + _TICKS_HALF) & _TICKS_MAX) - _TICKS_HALF


def _put_uv(buf, pos, v):
    """Write v >= 0 as an unsigned varint at pos; return the position after it. At most 5 bytes."""
    if v < 0:
        raise ValueError("negative value for an unsigned field")
    n = 0
    while v >= 0x80:
        if n == 4:
            raise ValueError("value needs more than a 5-byte varint")
        buf[pos] = (v & 0x7F) | 0x80
        v >>= 7
        pos += 1
        n += 1
    buf[pos] = v
    return pos + 1


def _put_sv(buf, pos, v):
    """Write a signed value zig-zag coded (0,-1,1,-2 -> 0,1,2,3) as a varint."""
    if v >= 0:
        return _put_uv(buf, pos, v << 1)
    return _put_uv(buf, pos, ((-v) << 1) - 1)


def _check_range(name, v, lo, hi):
    if not lo <= v <= hi:
        raise ValueError("%s out of range: %d" % (name, v))


def _utf8(name, s, max_len):
    b = s.encode("utf-8") if isinstance(s, str) else bytes(s)
    if len(b) > max_len:
        raise ValueError("%s longer than %d bytes" % (name, max_len))
    return b


class Encoder:
    """Encodes uplink frames into one buffer allocated here; signs them with the device's key.

    telemetry=False: an encoder for events, status and acks only (the board's second encoder): its
    buffer has the slack of one event instead of one sample, and it has no sample predictors."""

    def __init__(self, device_id, key, boot, capacity=1024, telemetry=True):
        if not _HDR_WALL + 3 + TAG_LEN + _SAMPLE_MAX <= capacity <= MAX_FRAME:
            raise ValueError("capacity must be %d..%d bytes" % (_HDR_WALL + 3 + TAG_LEN + _SAMPLE_MAX, MAX_FRAME))
        _check_range("boot", boot, 0, _U32_MAX)
        self._dev = auth.device_id_bytes(device_id)
        self._auth = key if isinstance(key, auth.Authenticator) else auth.Authenticator(key)
        self.boot = boot
        self._cap = capacity
        self._telemetry = telemetry
        self._buf = bytearray(capacity + (_SAMPLE_MAX if telemetry else _EVENT_MAX))
        self._mv = memoryview(self._buf)
        self._pos = 0
        self._kind = 0
        self._count_at = 0      # offset of the n_samples / n_events byte
        self.count = 0
        self._cells = 0
        self._temps = 0
        self._pt = 0            # ticks of the previous sample/event (the reference for the first)
        if telemetry:
            self._pc = [0] * MAX_CELLS   # previous sample's values, the predictors (lists: no long-int boxing)
            self._ptd = [0] * MAX_TEMPS
            self._ps = [0] * 8      # stack, pack, ld, current, int_temp, soc, soh, state
            self._pm = [0] * 8      # the eight status words, bit order of the `changed` byte

    @property
    def length(self):
        return self._pos

    def _header(self, kind, seq, ref_ticks, uptime_s, uptime_ms, wall_s, wall_ms):
        _check_range("seq", seq, 0, _U32_MAX)
        _check_range("uptime_s", uptime_s, 0, _U32_MAX)
        _check_range("uptime_ms", uptime_ms, 0, 999)
        buf = self._buf
        struct.pack_into(_HDR_FMT, buf, 0, VERSION, kind, 0, self.boot, seq, uptime_s, uptime_ms)
        pos = _HDR
        if wall_s >= 0:
            _check_range("wall_s", wall_s, 0, _U32_MAX)
            _check_range("wall_ms", wall_ms, 0, 999)
            buf[2] = FLAG_WALL
            struct.pack_into("<IH", buf, _HDR, wall_s, wall_ms)
            pos = _HDR_WALL
        self._kind = kind
        self._pt = ref_ticks
        self.count = 0
        return pos

    # ---- telemetry
    def begin_telemetry(self, seq, ref_ticks, uptime_s, uptime_ms, cell_count, temp_count, wall_s=-1, wall_ms=0):
        """Start a telemetry frame; ref_ticks is ticks_ms() at the instant the uptime/wall fields describe."""
        if not self._telemetry:
            raise ValueError("an encoder made with telemetry=False")
        _check_range("cell_count", cell_count, 1, MAX_CELLS)
        _check_range("temp_count", temp_count, 0, MAX_TEMPS)
        pos = self._header(KIND_TELEMETRY, seq, ref_ticks, uptime_s, uptime_ms, wall_s, wall_ms)
        buf = self._buf
        buf[pos] = cell_count
        buf[pos + 1] = temp_count
        buf[pos + 2] = 0
        self._count_at = pos + 2
        self._pos = pos + 3
        self._cells = cell_count
        self._temps = temp_count
        # First sample: everything predicted by 0 (cells by the previous cell, see add_sample).
        for i in range(MAX_CELLS):
            self._pc[i] = 0
        for i in range(MAX_TEMPS):
            self._ptd[i] = 0
        for i in range(8):
            self._ps[i] = 0
            self._pm[i] = 0

    def add_sample(self, s):
        """Append a Sample (delta-coded against the previous one). False, writing nothing, if full."""
        if self._kind != KIND_TELEMETRY:
            raise ValueError("begin_telemetry() first")
        if s.cell_count != self._cells or s.temp_count != self._temps:
            raise ValueError("sample shape differs from the frame's")
        if self.count >= 255:
            return False
        buf = self._buf
        pos0 = self._pos
        pc = self._pc
        ps = self._ps
        pm = self._pm
        ptd = self._ptd
        try:
            pos = _put_sv(buf, pos0, _ticks_diff(s.t_ms, self._pt))
            cells = s.cell_mv
            if self.count == 0:
                pred = 0
                for i in range(self._cells):
                    v = cells[i]
                    pos = _put_sv(buf, pos, v - pred)
                    pred = v
            else:
                for i in range(self._cells):
                    pos = _put_sv(buf, pos, cells[i] - pc[i])
            pos = _put_sv(buf, pos, s.stack_mv - ps[0])
            pos = _put_sv(buf, pos, s.pack_mv - ps[1])
            pos = _put_sv(buf, pos, s.ld_mv - ps[2])
            pos = _put_sv(buf, pos, s.current_ma - ps[3])
            temps = s.temp_dc
            for i in range(self._temps):
                pos = _put_sv(buf, pos, temps[i] - ptd[i])
            pos = _put_sv(buf, pos, s.int_temp_dc - ps[4])
            pos = _put_sv(buf, pos, s.soc_cpct - ps[5])
            pos = _put_sv(buf, pos, s.soh_cpct - ps[6])
            pos = _put_sv(buf, pos, s.state - ps[7])
            at = pos
            changed = 0
            pos += 1
            if s.safety_alert != pm[0]:
                changed |= 1
                pos = _put_uv(buf, pos, s.safety_alert)
            if s.safety_status != pm[1]:
                changed |= 2
                pos = _put_uv(buf, pos, s.safety_status)
            if s.pf_status != pm[2]:
                changed |= 4
                pos = _put_uv(buf, pos, s.pf_status)
            if s.battery_status != pm[3]:
                changed |= 8
                pos = _put_uv(buf, pos, s.battery_status)
            if s.alarm_status != pm[4]:
                changed |= 16
                pos = _put_uv(buf, pos, s.alarm_status)
            if s.fet_status != pm[5]:
                changed |= 32
                pos = _put_uv(buf, pos, s.fet_status)
            if s.balance_mask != pm[6]:
                changed |= 64
                pos = _put_uv(buf, pos, s.balance_mask)
            if s.faults != pm[7]:
                changed |= 128
                pos = _put_uv(buf, pos, s.faults)
            buf[at] = changed
        except ValueError:
            self._pos = pos0        # nothing of a rejected sample stays in the frame
            raise
        if pos + TAG_LEN > self._cap:
            return False            # written into the slack only: dropped
        # Commit: this sample predicts the next one.
        self._pos = pos
        self._pt = s.t_ms
        for i in range(self._cells):
            pc[i] = cells[i]
        for i in range(self._temps):
            ptd[i] = temps[i]
        ps[0] = s.stack_mv
        ps[1] = s.pack_mv
        ps[2] = s.ld_mv
        ps[3] = s.current_ma
        ps[4] = s.int_temp_dc
        ps[5] = s.soc_cpct
        ps[6] = s.soh_cpct
        ps[7] = s.state
        pm[0] = s.safety_alert
        pm[1] = s.safety_status
        pm[2] = s.pf_status
        pm[3] = s.battery_status
        pm[4] = s.alarm_status
        pm[5] = s.fet_status
        pm[6] = s.balance_mask
        pm[7] = s.faults
        self.count += 1
        return True

    # ---- events
    def begin_events(self, seq, ref_ticks, uptime_s, uptime_ms, wall_s=-1, wall_ms=0):
        """Start an event frame (fault raised/cleared with the values that caused it)."""
        pos = self._header(KIND_EVENT, seq, ref_ticks, uptime_s, uptime_ms, wall_s, wall_ms)
        self._buf[pos] = 0
        self._count_at = pos
        self._pos = pos + 1

    def add_event(self, t_ms, event, code, value):
        """Append one event with one value; False, writing nothing, if the frame is full."""
        return self._event(t_ms, event, code, 1, value, None)

    def add_event_values(self, t_ms, event, code, values):
        """Append one event with 0..8 values (tuple, list or array)."""
        if len(values) > MAX_EVENT_VALUES:
            raise ValueError("at most %d values per event" % MAX_EVENT_VALUES)
        return self._event(t_ms, event, code, len(values), 0, values)

    def _event(self, t_ms, event, code, n, value, values):
        if self._kind != KIND_EVENT:
            raise ValueError("begin_events() first")
        _check_range("event", event, 0, 255)
        if self.count >= 255:
            return False
        buf = self._buf
        pos0 = self._pos
        try:
            pos = _put_sv(buf, pos0, _ticks_diff(t_ms, self._pt))
            buf[pos] = event
            pos = _put_uv(buf, pos + 1, code)
            buf[pos] = n
            pos += 1
            if values is None:
                pos = _put_sv(buf, pos, value)
            else:
                for i in range(n):
                    pos = _put_sv(buf, pos, values[i])
        except ValueError:
            self._pos = pos0
            raise
        if pos + TAG_LEN > self._cap:
            return False
        self._pos = pos
        self._pt = t_ms
        self.count += 1
        return True

    # ---- one-shot frames
    def status(self, seq, ref_ticks, uptime_s, uptime_ms, fw_version, board, config_hash, reset_cause,
               cell_count, temp_count, wall_s=-1, wall_ms=0):
        """Encode and sign a status (hello) frame; returns a memoryview into the buffer."""
        fw = _utf8("fw_version", fw_version, 64)
        bd = _utf8("board", board, 64)
        _check_range("config_hash", config_hash, 0, _U32_MAX)
        _check_range("reset_cause", reset_cause, 0, 255)
        _check_range("cell_count", cell_count, 0, 255)
        _check_range("temp_count", temp_count, 0, 255)
        pos = self._header(KIND_STATUS, seq, ref_ticks, uptime_s, uptime_ms, wall_s, wall_ms)
        pos = self._put_str(pos, fw)
        pos = self._put_str(pos, bd)
        struct.pack_into("<IBBB", self._buf, pos, config_hash, reset_cause, cell_count, temp_count)
        self._pos = pos + 7
        return self.finish()

    def ack(self, seq, ref_ticks, uptime_s, uptime_ms, counter, code, result, message, wall_s=-1, wall_ms=0):
        """Encode and sign a command acknowledgement; returns a memoryview into the buffer."""
        msg = _utf8("message", message, 255)
        _check_range("counter", counter, 0, _U32_MAX)
        _check_range("code", code, 0, 255)
        _check_range("result", result, 0, 255)
        pos = self._header(KIND_ACK, seq, ref_ticks, uptime_s, uptime_ms, wall_s, wall_ms)
        struct.pack_into("<IBB", self._buf, pos, counter, code, result)
        self._pos = self._put_str(pos + 6, msg)
        return self.finish()

    def _put_str(self, pos, b):
        self._buf[pos] = len(b)
        self._buf[pos + 1:pos + 1 + len(b)] = b
        return pos + 1 + len(b)

    def finish(self):
        """Close the open frame: write its count, append the tag; return a memoryview of the frame."""
        kind = self._kind
        if kind == 0:
            raise ValueError("no frame open")
        if kind == KIND_TELEMETRY or kind == KIND_EVENT:
            if self.count == 0:
                raise ValueError("a frame needs at least one sample/event")
            self._buf[self._count_at] = self.count
        pos = self._pos
        self._auth.tag_into(self._dev, self._mv[:pos], self._buf, pos)
        self._kind = 0
        return self._mv[:pos + TAG_LEN]


# ---------------------------------------------------------------- commands (downlink envelope)
def encode_command(device_id, key, counter, code, params=None):
    """Signed command frame (bytes). params: dict of ASCII key (1..32 bytes) -> int | str, sent sorted."""
    dev = auth.device_id_bytes(device_id)
    a = key if isinstance(key, auth.Authenticator) else auth.Authenticator(key)
    _check_range("counter", counter, 0, _U32_MAX)
    _check_range("code", code, 0, 255)
    params = params or {}
    if len(params) > MAX_PARAMS:
        raise ValueError("at most %d params" % MAX_PARAMS)
    out = bytearray(_CMD_HDR)
    struct.pack_into("<BBBIBB", out, 0, VERSION, KIND_COMMAND, 0, counter, code, len(params))
    tmp = bytearray(5)
    for k in sorted(params):
        kb = _utf8("param key", k, 32)
        if not kb or max(kb) >= 0x80:
            raise ValueError("param keys are 1..32 ASCII bytes")
        out.append(len(kb))
        out.extend(kb)
        v = params[k]
        if isinstance(v, bool) or not isinstance(v, (int, str)):
            raise ValueError("param %s: int or str only" % k)
        if isinstance(v, int):
            _check_range("param " + k, v, -0x80000000, 0x7FFFFFFF)
            out.append(PARAM_INT)
            out.extend(tmp[:_put_sv(tmp, 0, v)])
        else:
            vb = _utf8("param " + k, v, 255)
            out.append(PARAM_STR)
            out.append(len(vb))
            out.extend(vb)
    body = bytes(out)
    if len(body) + TAG_LEN > MAX_FRAME:
        raise ValueError("command longer than MAX_FRAME")
    return body + a.tag(dev, body)


def verify_command(b, device_id, key):
    """Check a command frame's tag against device_id/key and decode it; FrameError subclasses on failure."""
    b = bytes(b)
    hdr = peek_header(b)
    if hdr["kind"] != KIND_COMMAND:
        raise UnknownKind("not a command frame: kind %d" % hdr["kind"])
    _check_tag(b, device_id, key)
    if hdr["flags"] != 0:
        raise Malformed("reserved flag bits set")
    r = _Reader(b, 7, len(b) - TAG_LEN)
    code = r.u8()
    n = r.u8()
    if n > MAX_PARAMS:
        raise Malformed("too many params")
    params = {}
    for _ in range(n):
        kb = r.raw(r.u8())
        if not kb or max(kb) >= 0x80:
            raise Malformed("param key not 1..32 ASCII bytes")
        if len(kb) > 32:
            raise Malformed("param key longer than 32 bytes")
        k = kb.decode()
        if k in params:
            raise Malformed("duplicate param key")
        t = r.u8()
        if t == PARAM_INT:
            v = r.sv()
            if not -0x80000000 <= v <= 0x7FFFFFFF:
                raise Malformed("int param out of range")
        elif t == PARAM_STR:
            v = r.text()
        else:
            raise Malformed("unknown param type %d" % t)
        params[k] = v
    r.end()
    return {"version": VERSION, "kind": KIND_COMMAND, "flags": 0, "counter": hdr["counter"],
            "code": code, "params": params}


# ---------------------------------------------------------------- delivery receipts (downlink)
def u32_at(b, pos):
    """Little-endian u32 at b[pos:pos+4] without allocating (below 2**30 it stays a small int)."""
    return b[pos] | (b[pos + 1] << 8) | (b[pos + 2] << 16) | (b[pos + 3] << 24)


def encode_receipts(device_id, key, boot, seqs):
    """Signed receipts (list of bytes) naming frames (boot, seq) the bridge has dealt with for good.

    seqs: any iterable of ints; sorted and merged into runs of consecutive numbers, at most
    MAX_RECEIPT_RUNS runs (of at most 255) per receipt, so many seqs make several receipts."""
    dev = auth.device_id_bytes(device_id)
    a = key if isinstance(key, auth.Authenticator) else auth.Authenticator(key)
    _check_range("boot", boot, 0, _U32_MAX)
    runs = []
    for s in sorted(set(seqs)):
        _check_range("seq", s, 0, _U32_MAX)
        if runs and runs[-1][0] + runs[-1][1] == s and runs[-1][1] < 255:
            runs[-1][1] += 1
        else:
            runs.append([s, 1])
    out = []
    for i in range(0, len(runs), MAX_RECEIPT_RUNS):
        part = runs[i:i + MAX_RECEIPT_RUNS]
        body = bytearray(RECEIPT_HDR + 5 * len(part))
        struct.pack_into("<BBBIB", body, 0, VERSION, KIND_RECEIPT, 0, boot, len(part))
        pos = RECEIPT_HDR
        for first, count in part:
            struct.pack_into("<IB", body, pos, first, count)
            pos += 5
        body = bytes(body)
        out.append(body + a.tag(dev, body))
    return out


def _check_start(b):
    """Length and version, the first checks of every frame read; returns the length."""
    n = len(b)
    if n > MAX_FRAME:
        raise Oversized("%d bytes > %d" % (n, MAX_FRAME))
    if n < 2:
        raise Truncated("%d bytes" % n)
    if b[0] != VERSION:
        raise UnknownVersion("version %d" % b[0])
    return n


def check_receipt(b, device_id, key):
    """Verify a receipt's tag and shape; return (boot, n_runs). FrameError subclasses on failure.

    On the board this is the only allocation a receipt costs (the HMAC); receipt_has() reads in place."""
    n = _check_start(b)
    if b[1] != KIND_RECEIPT:
        raise UnknownKind("not a receipt: kind %d" % b[1])
    if n < RECEIPT_HDR + 5 + TAG_LEN:
        raise Truncated("%d bytes" % n)
    _check_tag(b, device_id, key)
    runs = b[7]
    if b[2] != 0:
        raise Malformed("reserved flag bits set")
    if not 1 <= runs <= MAX_RECEIPT_RUNS or n != RECEIPT_HDR + 5 * runs + TAG_LEN:
        raise Malformed("%d runs in %d bytes" % (runs, n))
    for i in range(runs):
        if b[RECEIPT_HDR + 5 * i + 4] == 0:
            raise Malformed("empty run")
    return u32_at(b, 3), runs


def receipt_has(b, runs, seq):
    """True if a checked receipt (check_receipt gave `runs`) names seq. Allocates nothing."""
    pos = RECEIPT_HDR
    for _ in range(runs):
        d = seq - u32_at(b, pos)
        if 0 <= d < b[pos + 4]:
            return True
        pos += 5
    return False


def receipt_seqs(b, device_id, key):
    """(boot, [seq, ...]) of a receipt, verified: for tools and tests."""
    boot, runs = check_receipt(b, device_id, key)
    seqs = []
    for i in range(runs):
        first = u32_at(b, RECEIPT_HDR + 5 * i)
        seqs.extend(range(first, first + b[RECEIPT_HDR + 5 * i + 4]))
    return boot, seqs


# ---------------------------------------------------------------- decoding (allocates freely)
class _Reader:
    """Reads the body of an authenticated frame; running past `end` is Malformed."""

    def __init__(self, b, pos, end):
        self.b = b
        self.pos = pos
        self.endpos = end

    def _need(self, n):
        if self.pos + n > self.endpos:
            raise Malformed("field runs past the end of the body")

    def u8(self):
        self._need(1)
        v = self.b[self.pos]
        self.pos += 1
        return v

    def unpack(self, fmt, size):
        self._need(size)
        v = struct.unpack_from(fmt, self.b, self.pos)
        self.pos += size
        return v

    def raw(self, n):
        self._need(n)
        v = self.b[self.pos:self.pos + n]
        self.pos += n
        return v

    def text(self):
        raw = self.raw(self.u8())
        try:
            return raw.decode("utf-8")
        except (UnicodeError, ValueError):
            raise Malformed("invalid UTF-8")

    def uv(self):
        v = 0
        shift = 0
        for _ in range(5):
            c = self.u8()
            v |= (c & 0x7F) << shift
            if c < 0x80:
                return v
            shift += 7
        raise Malformed("varint longer than 5 bytes")

    def sv(self):
        v = self.uv()
        return (v >> 1) if not v & 1 else -((v + 1) >> 1)

    def end(self):
        if self.pos != self.endpos:
            raise Malformed("%d trailing bytes" % (self.endpos - self.pos))


def peek_header(b):
    """Version, kind, flags and (boot, seq) or counter, without a key: for routing and counting only."""
    n = _check_start(b)
    kind = b[1]
    if KIND_TELEMETRY <= kind <= KIND_ACK:
        if n < _HDR + TAG_LEN or ((b[2] & FLAG_WALL) and n < _HDR_WALL + TAG_LEN):
            raise Truncated("%d bytes" % n)
        boot, seq = struct.unpack_from("<II", b, 3)
        return {"version": VERSION, "kind": kind, "flags": b[2], "boot": boot, "seq": seq}
    if kind == KIND_COMMAND:
        if n < _CMD_HDR + TAG_LEN:
            raise Truncated("%d bytes" % n)
        return {"version": VERSION, "kind": kind, "flags": b[2], "counter": struct.unpack_from("<I", b, 3)[0]}
    raise UnknownKind("kind %d" % kind)


def _check_tag(b, device_id, key):
    a = key if isinstance(key, auth.Authenticator) else auth.Authenticator(key)
    dev = auth.device_id_bytes(device_id)
    end = len(b) - TAG_LEN
    if not a.check(dev, memoryview(b)[:end], b[end:]):
        raise BadTag("tag does not match")


def decode(b, device_id, key):
    """Verify and decode an uplink frame into a dict (docs/frame-format.md, Decoder).

    The decoder is in frame_decode.py: only the bridge and tools decode uplink frames, so a board never
    loads it (its module objects would stay in the heap; docs/memory.md)."""
    from firmware.comms import frame_decode
    return frame_decode.decode(b, device_id, key)
