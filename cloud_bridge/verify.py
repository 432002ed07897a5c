"""Verification of every uplink message: topic, device, tag, replay window; then decoding.

Uses the one codec (`firmware/comms/frame.py`, `docs/frame-format.md`) with the per-device key from the
registry. A message is either accepted (decoded frame + tags + time anchor), an offline notice (the
board's last will), or rejected with a reason string (the codec's `err.reason`, or one of ours).

    v = Verifier(registry)
    verdict = v.check("bms/bms-0001/up/telemetry", payload, recv_ms)   # verdict.reason is None if good
    w = v.take_pending(); ... after the database confirmed the batch's points: v.commit(w)

Replay protection: per device a window over (boot, seq): a frame of an older boot, a seq more than
`window` below the highest accepted, or one already accepted is rejected as `replay`. The window advances
in memory at check time and is stored in the registry only by `commit()`, called after the write of
that batch was confirmed: if the bridge dies first, the broker redelivers and the frames are accepted again (and
overwrite themselves, see docs/influx-schema.md).

The stored windows are cached in memory, so a message costs no registry read: a commit writes the
cache through (with the window as stored, merged with what another instance stored meanwhile), and the
cache is dropped whenever another connection has written the registry file (SQLite's
`PRAGMA data_version`), looked at no more often than every WINDOW_REFRESH_S. Within one instance the
window is therefore exactly what it was without the cache: every frame this instance accepted is in the
cache, in a pending or in-flight window, or stored (a dropped cache is re-read from the registry, which
holds all committed windows). Between two instances of one share group (DESIGN.md decision 11) a frame
accepted by the other one is seen here once the other has written it and committed its window, as
before, plus at most WINDOW_REFRESH_S; a copy that arrives here within that gap is accepted a second
time, which stores the same points again (same series and timestamps: they overwrite themselves) and
names the frame in a receipt, exactly as a copy arriving while the other's write is in flight always was.

Keys: the verifier keeps an `auth.Authenticator` per device (keyed once, per key) instead of the key
bytes: `key_entry()` returns it in place of the key, which the codec's functions accept wherever they
take a key.

Last will: the board's link sets a last will on `bms/<device>/up/status` with the plain payload
`WILL_PAYLOAD` (b"offline", retained). It carries no tag (the broker publishes it when the board is gone,
and a constant signed payload would be replayable anyway); the broker's ACL, which lets only the device
itself publish under its id, is what makes it trustworthy.
"""
import time

from firmware.comms import auth as _auth
from firmware.comms import frame as _frame

WILL_PAYLOAD = b"offline"
KIND_BY_TOPIC = {"telemetry": _frame.KIND_TELEMETRY, "event": _frame.KIND_EVENT,
                 "status": _frame.KIND_STATUS, "ack": _frame.KIND_ACK}
_WINDOW_FULL = (1 << 64) - 1
KEY_CACHE_S = 5.0   # a new device or a rotated key is picked up within this time
WINDOW_REFRESH_S = 0.05   # how often the registry is asked whether another connection changed it
_CACHE_MAX = 100000       # entries per cache, bound against floods of made-up ids


# --- the sequence window: (boot, high_seq, mask), bit i of mask = high_seq - i accepted ---
def window_check(win, boot, seq, size=64):
    """None when (boot, seq) is new for the window, else why it is a replay."""
    if win is None:
        return None
    wboot, high, mask = win
    if boot > wboot:
        return None
    if boot < wboot:
        return "boot %d older than %d" % (boot, wboot)
    if seq > high:
        return None
    back = high - seq
    if back >= size:
        return "seq %d more than %d below %d" % (seq, size, high)
    if (mask >> back) & 1:
        return "seq %d already accepted" % seq
    return None


def window_advance(win, boot, seq):
    if win is None or boot > win[0]:
        return (boot, seq, 1)
    wboot, high, mask = win
    if seq > high:
        shift = seq - high
        mask = ((mask << shift) | 1) & _WINDOW_FULL if shift < 64 else 1
        return (wboot, seq, mask)
    return (wboot, high, mask | (1 << (high - seq)))


def merge_window(a, b):
    """Union of two windows (what two bridge instances accepted)."""
    if a is None:
        return b
    if b is None:
        return a
    if a[0] != b[0]:
        return a if a[0] > b[0] else b
    high = max(a[1], b[1])

    def shifted(w):
        s = high - w[1]
        return (w[2] << s) & _WINDOW_FULL if s < 64 else 0
    return (a[0], high, shifted(a) | shifted(b))


class Verdict:
    __slots__ = ("reason", "detail", "device", "topic_kind", "frame", "tags", "anchor_ms", "offline",
                 "boot", "seq")

    def __init__(self, reason=None, detail="", device=None, topic_kind=None, frame=None, tags=None,
                 anchor_ms=None, offline=False, boot=None, seq=None):
        self.reason = reason
        self.detail = detail
        self.device = device
        self.topic_kind = topic_kind
        self.frame = frame
        self.tags = tags
        self.anchor_ms = anchor_ms
        self.offline = offline
        self.boot = boot        # (boot, seq) of a frame whose tag verified (accepted or a replay):
        self.seq = seq          # what a delivery receipt to the board names (docs/comms.md)


MISSING_TRACK_MAX = 4096   # missing seqs remembered per device (beyond: counted, not remembered)


class Verifier:
    def __init__(self, registry, topic_root="bms", window=64, clock=time.monotonic):
        self.registry = registry
        self.root = topic_root
        self.window = window
        self._clock = clock
        self._keys = {}        # device -> (expires, (Authenticator, tags) or None, key bytes)
        self._windows = {}     # device -> stored window (or None) as last read or committed
        self._data_version = registry.data_version()
        self._next_refresh = clock() + WINDOW_REFRESH_S
        self._pending = {}     # device -> window accepted in memory, batch being built
        self._inflight = []    # windows of batches handed to the writer, not yet confirmed
        self._anchors = {}     # (device, boot) -> Unix ms at uptime 0
        self._exact = set()    # (device, boot) whose anchor came from a frame with wall clock
        self._gaps = {}        # device -> [boot, highest seq heard, set of seqs missing below it]
        self.missing_done = 0  # seqs missing from boots that ended (a newer boot was heard)

    def parse_topic(self, topic):
        """(device, kind_name) of `<root>/<device>/up/<kind>`, or None."""
        parts = topic.split("/")
        if len(parts) != 4 or parts[0] != self.root or parts[2] != "up" or parts[3] not in KIND_BY_TOPIC:
            return None
        return parts[1], parts[3]

    def _lookup(self, device):
        now = self._clock()
        hit = self._keys.get(device)
        if hit is not None and hit[0] > now:
            return hit[1]
        entry = self.registry.key(device)
        key = None
        if entry is not None:
            key, tags = entry
            if hit is not None and hit[2] == key:
                entry = hit[1]                      # same key: keep its Authenticator
            else:
                try:
                    entry = (_auth.Authenticator(key), tags)
                except ValueError:
                    pass    # an unusable stored key: decode() raises on it as it always did
        if len(self._keys) >= _CACHE_MAX:
            self._keys.clear()
        self._keys[device] = (now + KEY_CACHE_S, entry, key)
        return entry

    def _stored_window(self, device):
        """The device's committed window: from the cache, or from the registry when another
        connection may have changed it (see the module's docstring)."""
        now = self._clock()
        if now >= self._next_refresh:
            self._next_refresh = now + WINDOW_REFRESH_S
            version = self.registry.data_version()
            if version != self._data_version:
                self._data_version = version
                self._windows.clear()
        try:
            return self._windows[device]
        except KeyError:
            pass
        win = self.registry.load_window(device)
        if len(self._windows) >= _CACHE_MAX:
            self._windows.clear()
        self._windows[device] = win
        return win

    def key_entry(self, device):
        """(key, tags) of a registered device, or None (cached like check()'s lookups). The key is an
        auth.Authenticator for it (what frame.encode_receipts and the other codec functions take)."""
        return self._lookup(device)

    def check(self, topic, payload, recv_ms):
        parsed = self.parse_topic(topic)
        if parsed is None:
            return Verdict("bad_topic", "topic %r" % topic[:200])
        device, kind_name = parsed
        entry = self._lookup(device)
        if entry is None:
            return Verdict("unknown_device", device=device, topic_kind=kind_name)
        key, tags = entry
        if kind_name == "status" and payload == WILL_PAYLOAD:
            return Verdict(device=device, topic_kind=kind_name, tags=tags, offline=True)
        try:
            d = _frame.decode(payload, device, key)
        except _frame.FrameError as e:
            return Verdict(e.reason, str(e)[:200], device=device, topic_kind=kind_name)
        if d["kind"] != KIND_BY_TOPIC[kind_name]:
            return Verdict("kind", "frame kind %d on topic %s" % (d["kind"], kind_name), device=device,
                           topic_kind=kind_name)
        boot, seq = d["boot"], d["seq"]
        win = merge_window(self._stored_window(device), self._pending.get(device))
        for w in self._inflight:
            win = merge_window(win, w.get(device))
        why = window_check(win, boot, seq, self.window)
        if why is not None:
            return Verdict("replay", why, device=device, topic_kind=kind_name, boot=boot, seq=seq)
        self._pending[device] = window_advance(win, boot, seq)
        self._note_seq(device, boot, seq)
        anchor = None
        if d.get("unix_ms") is None:
            anchor = self._anchors.get((device, boot))
            if anchor is None:   # stored once per boot; fixed from then on (see registry.anchor)
                anchor = self.registry.anchor(device, boot, recv_ms - d["uptime_ms"])
                if len(self._anchors) > 100000:
                    self._anchors.clear()
                self._anchors[(device, boot)] = anchor
        elif (device, boot) not in self._exact:
            self._exact_anchor(device, boot, d["unix_ms"] - d["uptime_ms"])
        return Verdict(device=device, topic_kind=kind_name, frame=d, tags=tags, anchor_ms=anchor,
                       boot=boot, seq=seq)

    def _note_seq(self, device, boot, seq):
        """Gap detection: seqs skipped above the highest heard of a boot are missing until they
        arrive. Counted from the first frame heard of each boot; idempotent for redeliveries."""
        g = self._gaps.get(device)
        if g is None or boot > g[0]:
            if g is not None:
                self.missing_done += len(g[2])
            self._gaps[device] = [boot, seq, set()]
            return
        if boot < g[0]:
            return
        if seq > g[1]:
            holes = g[2]
            for s in range(max(g[1] + 1, seq - MISSING_TRACK_MAX), seq):
                holes.add(s)
            if len(holes) > MISSING_TRACK_MAX:   # bound memory: the oldest holes count as lost
                for s in sorted(holes)[:len(holes) - MISSING_TRACK_MAX]:
                    holes.discard(s)
                    self.missing_done += 1
            self.missing_done += max(0, seq - g[1] - 1 - MISSING_TRACK_MAX)
            g[1] = seq
        else:
            g[2].discard(seq)

    def missing(self, device=None):
        """Frames missing (seq gaps not filled yet) of a device's current boot, or in total (all
        devices, ended boots included) when device is None: metric frames_missing."""
        if device is not None:
            g = self._gaps.get(device)
            return 0 if g is None else len(g[2])
        return self.missing_done + sum(len(g[2]) for g in self._gaps.values())

    def _exact_anchor(self, device, boot, anchor_ms):
        """A frame with wall clock gives the boot's anchor exactly (Unix ms - uptime ms): it replaces
        the estimate (receive time - uptime of the first frame heard), which is wrong by however long
        that frame waited on the board. Frames of this boot without wall clock handled from now on
        (a backlog drained after a late first sync: the board sends its hello, seq 0, ahead of it) get
        exact times; points already written keep theirs."""
        self.registry.set_anchor(device, boot, anchor_ms)
        if len(self._exact) > 100000:
            self._exact.clear()
        self._exact.add((device, boot))
        if len(self._anchors) > 100000:
            self._anchors.clear()
        self._anchors[(device, boot)] = anchor_ms

    def take_pending(self):
        """The windows advanced since the last take (one batch's worth). They still count for
        check() until commit(windows) stores them or forget(windows) drops them."""
        w, self._pending = self._pending, {}
        if w:
            self._inflight.append(w)
        return w

    def commit(self, windows=None):
        """Store windows from take_pending() (default: everything pending), after the write of
        their frames was confirmed."""
        if windows is None:
            windows = self.take_pending()
        if windows:
            stored = self.registry.save_windows(windows, merge=merge_window)
            if len(self._windows) + len(stored) > _CACHE_MAX:
                self._windows.clear()
            self._windows.update(stored)        # write-through: what the registry now holds
        self.forget(windows)

    def forget(self, windows):
        """Drop windows whose frames were not written (they will be redelivered and accepted)."""
        for i, w in enumerate(self._inflight):
            if w is windows:
                del self._inflight[i]
                break
