"""Comms: what the protection cycle calls. Batches samples into telemetry frames, queues events and
acks, runs the link, the downlink commands and time sync, and drains the outboxes within a budget.

    comms = Comms("bms-0001", key, link, spill_dir="/outbox", state_dir="/comms")
    comms.offer_sample(sample); comms.offer_event(kind, code, value); comms.poll(budget_ms)  # each cycle

- offer_sample() never blocks and allocates nothing: at most one sample per `sample_every_ms` is
  delta-coded straight into the open telemetry frame (the encoder's preallocated buffer is the batch).
- poll() closes the batch every `batch_ms` (HMAC, push to the telemetry outbox), closes the open event
  frame, advances the link, answers commands, syncs time, and publishes queued frames with QoS 1 while
  the link's budget allows (link.py).
- Delivery (docs/comms.md): with `receipts` on, a frame leaves its outbox only when the bridge's signed
  receipt (`bms/<id>/down/receipt`, sent after the database confirmed the write) names it; a PUBACK only
  moves it past the outbox's `sent` mark. Frames sent but not confirmed are published again after a new
  MQTT session and after `receipt_timeout_ms` without progress (doubling up to `receipt_timeout_max_ms`):
  a broker that crashes after its PUBACK, before it saved or forwarded the frame, loses nothing. The bridge
  drops the duplicates by (boot, seq). With `receipts` off a frame leaves at its PUBACK.
- Two outboxes: events, acks and status in a small one, telemetry in a large one, so a long outage
  that fills the flash drops old telemetry, never an event. Frames go out in (boot, seq) order, except
  that an event/ack/status frame may overtake at most REORDER_MAX queued telemetry frames: the bridge
  refuses a seq more than its window (64) below the highest it accepted (cloud_bridge/verify.py).
- Sequence numbers count every frame of this boot; the boot counter is persisted (bootcount.py).
  Seq 0 is kept for the hello: the first status frame that carries the wall clock (sent as soon as the
  clock is synced). A board that booted offline drains frames made before that sync; the bridge places
  them in time by an anchor of the boot (uptime 0 in Unix ms) and takes the exact one from the hello.
  Being seq 0 it is inside the bridge's replay window whatever the backlog, and it overtakes it:
  the bridge refuses a seq more than 64 below the highest it accepted, so a hello with a new seq
  could not go ahead of a backlog longer than REORDER_MAX (docs/comms.md "Time").
"""
import time

from firmware.comms import auth, frame
from firmware.comms import bootcount
from firmware.comms.commands import Commands
from firmware.comms.link import Link
from firmware.comms.outbox import Outbox
from firmware.comms.timesync import TimeSync

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

REORDER_MAX = const(32)          # half the bridge's replay window of 64 frames
MAX_UNCONFIRMED = const(32)      # frames sent and not yet named by a receipt: resends stay in that window
_CONF_SLOTS = const(64)          # receipts remembered for frames behind an unconfirmed head (seq & 63)
REBOOT_GRACE_MS = const(5000)    # after a reboot command: wait this long at most for its ack to go out
# Info event (kind 3) of comms, beside the app's 32..36 (firmware/app.py): frames the outboxes lost.
# Values: telemetry frames dropped, event frames dropped, spill segments found corrupt (all since boot).
INFO_OUTBOX_DROPPED = const(40)
_DROP_REPORT_MS = const(60000)    # at most one drop report a minute while frames are being dropped


class Comms:
    def __init__(self, device_id, key, link, spill_dir="/outbox", state_dir="/comms",
                 sample_every_ms=1000, batch_ms=10000, tlm_slots=2, tlm_slot_bytes=512,
                 tlm_max_segments=256, tlm_segment_bytes=4096, evt_slots=4, evt_slot_bytes=320, evt_max_segments=16,
                 timesync=None, fw_version="0", board_name="", config_hash=0, reset_cause=0,
                 cell_count=0, temp_count=0, reset_fn=None, receipts=True, receipt_timeout_ms=30000,
                 receipt_timeout_max_ms=600000):
        if not 100 <= sample_every_ms <= 60000 or not sample_every_ms <= batch_ms <= 600000:
            raise ValueError("comms: sample_every_ms 100..60000, batch_ms sample_every_ms..600000")
        if evt_slot_bytes < 320:
            raise ValueError("comms: evt_slot_bytes >= 320 (an ack with a 255-byte message)")
        if not 1000 <= receipt_timeout_ms <= receipt_timeout_max_ms <= 86400000:
            raise ValueError("comms: 1000 <= receipt_timeout_ms <= receipt_timeout_max_ms <= 86400000")
        self.device_id = device_id
        self._dev = auth.device_id_bytes(device_id)
        self._auth = key if isinstance(key, auth.Authenticator) else auth.Authenticator(key)
        self.link = link
        self.boot = bootcount.next_boot(state_dir + "/boot")
        self.seq = 1                     # 0 is the hello's (see the module doc)
        self._hello_sent = False
        self.ts = timesync if timesync is not None else TimeSync()
        self.commands = Commands(device_id, self._auth, bootcount.IntFile(state_dir + "/cmd_hwm"),
                                 timesync=self.ts)
        self.sample_every_ms = sample_every_ms
        self.batch_ms = batch_ms
        # A frame is closed before it outgrows an outbox slot: encoder capacity = slot size. Events,
        # status and acks share one encoder: an open event frame is closed before a status or ack.
        self._tlm = frame.Encoder(device_id, self._auth, self.boot, capacity=tlm_slot_bytes)
        self._evt = frame.Encoder(device_id, self._auth, self.boot, capacity=evt_slot_bytes, telemetry=False)
        # Telemetry: a small ring (with receipts it holds the frames of the last second or so while
        # online); spills while offline join the newest segment up to one 4 KiB flash block.
        self.tlm_box = Outbox(spill_dir + "/tlm", tlm_slots, tlm_slot_bytes, tlm_max_segments, tlm_segment_bytes)
        self.evt_box = Outbox(spill_dir + "/evt", evt_slots, evt_slot_bytes, evt_max_segments)
        self.fw_version = fw_version
        self.board_name = board_name
        self.config_hash = config_hash
        self.reset_cause = reset_cause
        self.cell_count = cell_count
        self.temp_count = temp_count
        self.reset_fn = reset_fn
        self.receipts = receipts
        self.receipt_timeout_ms = receipt_timeout_ms
        self.receipt_timeout_max_ms = receipt_timeout_max_ms
        # Per outbox (telemetry, events): a head that no receipt names is sent again after the timeout
        # even while the other outbox's frames are confirmed. The timeout doubles while receipts stay
        # away (a bridge that is down), and starts again at receipt_timeout_ms on progress.
        self._boxes = (self.tlm_box, self.evt_box)
        t = time.ticks_ms()
        self._rcpt_t = [t, t]                    # last head confirmed, or last time nothing waited
        self._rcpt_wait_ms = [receipt_timeout_ms, receipt_timeout_ms]
        link.on_receipt = self._receipt
        # seqs a receipt named that were not at an outbox head yet: slot seq & 63 holds the seq itself,
        # so an old entry never matches another frame (a collision only costs a resend)
        self._conf_seq = [-1] * _CONF_SLOTS
        self._conf_boot = -1
        self._topic_cmd = link.topic_cmd.encode()
        self._tlm_open = False
        self._tlm_t0 = 0
        self._evt_open = False
        self._next_sample = time.ticks_ms()
        self._sessions_seen = 0
        self._reboot_t = 0
        self._drops_told = 0             # drops + corrupt segments already reported (INFO_OUTBOX_DROPPED)
        self._drops_t = time.ticks_add(time.ticks_ms(), -_DROP_REPORT_MS)
        # counters (docs/comms.md)
        self.samples = 0                 # samples put into frames
        self.bad_samples = 0             # samples the encoder refused (shape or range)
        self.events = 0
        self.frames_sent = 0             # publishes acknowledged by the broker (resends included)
        self.frames_confirmed = 0        # frames the bridge's receipts named (left the outbox)
        self.resends = 0                 # times unconfirmed frames were rewound for publishing again
        self.fast_resends = 0            # of which because a later frame was confirmed before the head
        self.receipts_in = 0
        self.bad_receipts = 0            # receipts that failed verification (ignored)
        self.stray_downlink = 0          # downlink messages on topics we do not serve (ignored)
        self.polls = 0
        self.last_poll_us = 0            # duration of the last poll (diagnostics)
        self.max_poll_us = 0

    # ---------------------------------------------------------------- the app's hook
    @property
    def on_command(self):
        return self.commands.handler

    @on_command.setter
    def on_command(self, fn):
        """fn(code, params) -> (result, message) for the pack/config commands (command_codes)."""
        self.commands.handler = fn

    # ---------------------------------------------------------------- producer side (the cycle)
    def _next_seq(self):
        s = self.seq
        self.seq = s + 1
        return s

    def offer_sample(self, sample):
        """Copy one sample into the open telemetry frame (at most one per sample_every_ms). No blocking."""
        now = time.ticks_ms()
        lag = time.ticks_diff(now, self._next_sample)
        if lag < 0:
            return
        if lag >= self.sample_every_ms:      # a long stall: re-anchor rather than burst
            self._next_sample = time.ticks_add(now, self.sample_every_ms)
        else:
            self._next_sample = time.ticks_add(self._next_sample, self.sample_every_ms)
        try:
            if not self._tlm_open:
                self._begin_tlm(sample, now)
            if not self._tlm.add_sample(sample):
                # Frame full before batch_ms (large deltas): close it now (allocates for the HMAC; rare).
                self._close_tlm()
                self._begin_tlm(sample, now)
                if not self._tlm.add_sample(sample):
                    self.bad_samples += 1
                    return
        except ValueError:
            self.bad_samples += 1
            return
        self.samples += 1

    def _begin_tlm(self, sample, now):
        ts = self.ts
        ts.update()
        self._tlm.begin_telemetry(self._next_seq(), now, ts.up_s, ts.up_ms, sample.cell_count,
                                  sample.temp_count, ts.wall_s, ts.wall_ms)
        self._tlm_open = True
        self._tlm_t0 = now

    def _close_tlm(self):
        if not self._tlm_open:
            return
        self._tlm_open = False
        if self._tlm.count:
            self.tlm_box.push(self._tlm.finish())

    def offer_event(self, kind, code, value):
        """Queue an event; kind is the frame's event byte (1 raised, 2 cleared, 3 info: the app uses the
        frame's numbering, firmware.pack.state). It goes out with the next poll."""
        ev = kind
        now = time.ticks_ms()
        try:
            if not self._evt_open:
                self._begin_evt(now)
            if not self._evt.add_event(now, ev, code, value):
                self._close_evt()
                self._begin_evt(now)
                self._evt.add_event(now, ev, code, value)
        except ValueError:
            return
        self.events += 1

    def _begin_evt(self, now):
        ts = self.ts
        ts.update()
        self._evt.begin_events(self._next_seq(), now, ts.up_s, ts.up_ms, ts.wall_s, ts.wall_ms)
        self._evt_open = True

    def _close_evt(self):
        if not self._evt_open:
            return
        self._evt_open = False
        if self._evt.count:
            self.evt_box.push(self._evt.finish())

    def _report_drops(self, now):
        """An info event when the outboxes lost frames since the last report (at most one a minute):
        a long outage that fills the flash is then visible in the cloud, not only on the board."""
        tb = self.tlm_box
        eb = self.evt_box
        n = tb.dropped + eb.dropped + tb.corrupt + eb.corrupt
        if n == self._drops_told or time.ticks_diff(now, self._drops_t) < _DROP_REPORT_MS:
            return
        self._drops_told = n
        self._drops_t = now
        v = (tb.dropped, eb.dropped, tb.corrupt + eb.corrupt)   # allocates: at most once a minute
        try:
            if not self._evt_open:
                self._begin_evt(now)
            if not self._evt.add_event_values(now, frame.EVENT_INFO, INFO_OUTBOX_DROPPED, v):
                self._close_evt()
                self._begin_evt(now)
                self._evt.add_event_values(now, frame.EVENT_INFO, INFO_OUTBOX_DROPPED, v)
        except ValueError:
            return
        self.events += 1

    def _push_one(self, mv):
        self.evt_box.push(mv)

    def _status(self):
        self._close_evt()                # the encoder is shared: events queued so far go first
        ts = self.ts
        now = ts.update()
        if ts.synced and not self._hello_sent:
            self._hello_sent = True      # the hello: seq 0, with the wall clock (module doc)
            seq = 0
        else:
            seq = self._next_seq()
        self._push_one(self._evt.status(seq, now, ts.up_s, ts.up_ms, self.fw_version,
                                        self.board_name, self.config_hash, self.reset_cause,
                                        self.cell_count, self.temp_count, ts.wall_s, ts.wall_ms))

    def _ack(self, counter, code, result, message):
        self._close_evt()                # the encoder is shared: events queued so far go first
        ts = self.ts
        now = ts.update()
        self._push_one(self._evt.ack(self._next_seq(), now, ts.up_s, ts.up_ms, counter, code, result,
                                     message, ts.wall_s, ts.wall_ms))

    # ---------------------------------------------------------------- poll
    def poll(self, budget_ms):
        """Bounded network work (see link.py for how the budget bounds every blocking call)."""
        t0 = time.ticks_us()
        self.polls += 1
        link = self.link
        link.begin(budget_ms)
        now = self.ts.update()
        if self._tlm_open and time.ticks_diff(now, self._tlm_t0) >= self.batch_ms - self.sample_every_ms // 2:
            self._close_tlm()
        self._report_drops(now)
        self._close_evt()
        link.poll()
        new_session = link.sessions != self._sessions_seen
        if new_session:
            # A new session: publish again whatever the bridge has not confirmed: the broker we had
            # may have acknowledged frames it never stored (a crash), and receipts sent while we were
            # away are gone. Then announce ourselves (below, after the time sync).
            self._sessions_seen = link.sessions
            self._rewind(now)
        # Time sync before the status and before draining: the status (the hello, when it is the
        # first synced one) then carries the wall clock, ahead of what was queued before the sync.
        if link.up and self.ts.due() and link.fits(1):
            self.ts.sync(link.timeout_ms)
        if new_session or not self._hello_sent and self.ts.synced:
            # retained status replaces the broker's "offline" will; the hello goes out once synced
            self._status()
        while link.inbox:
            topic, msg = link.inbox.pop(0)
            if topic == self._topic_cmd:
                r = self.commands.handle(msg)
                if r is not None:
                    self._ack(r[0], r[1], r[2], r[3])
            else:
                self.stray_downlink += 1
        if self.receipts:
            self._receipt_timer(now)
        self._drain()
        if self.commands.reboot_requested:
            self._maybe_reboot(now)
        d = time.ticks_diff(time.ticks_us(), t0)
        self.last_poll_us = d
        if d > self.max_poll_us:
            self.max_poll_us = d

    # ---------------------------------------------------------------- delivery receipts
    def _receipt(self, msg):
        """Remember what a verified receipt names, then forget the confirmed frames at the heads.

        Called by the link as the receipt arrives, inside an umqtt call (also while _drain waits for
        a PUBACK: popping heads then is safe, the `sent` mark moves with them)."""
        try:
            boot, runs = frame.check_receipt(msg, self._dev, self._auth)
        except ValueError:
            self.bad_receipts += 1
            return
        self.receipts_in += 1
        conf = self._conf_seq
        if boot != self._conf_boot:
            for i in range(_CONF_SLOTS):
                conf[i] = -1
            self._conf_boot = boot
        # Only seqs from the oldest held frame on can still be in an outbox, and only 64 of them fit.
        lo = -1
        for box in self._boxes:
            mv = box.peek()
            if mv is not None and frame.u32_at(mv, 3) == boot:
                s = frame.u32_at(mv, 7)
                if lo < 0 or s < lo:
                    lo = s
        if lo < 0:
            return
        hi = lo + _CONF_SLOTS
        pos = frame.RECEIPT_HDR
        for _ in range(runs):
            first = frame.u32_at(msg, pos)
            end = first + msg[pos + 4]
            pos += 5
            if first == 0 and end > 0:
                conf[0] = 0              # the hello (seq 0) may wait behind events with higher seqs
            if first < lo:
                first = lo
            if end > hi:
                end = hi
            for s in range(first, end):
                conf[s & 63] = s
        for i in range(2):
            box = self._boxes[i]
            done = 0
            while True:
                mv = box.peek()
                if mv is None or frame.u32_at(mv, 3) != boot:
                    break
                s = frame.u32_at(mv, 7)
                if conf[s & 63] != s:
                    break
                box.pop()
                done += 1
            if done:
                self.frames_confirmed += done
                self._rcpt_t[i] = time.ticks_ms()
                self._rcpt_wait_ms[i] = self.receipt_timeout_ms
            # A frame sent after the head is confirmed but the head is not: the bridge handles frames
            # in the order they arrive, so the head was lost on the way (a broker that acknowledged it
            # and died, a subscription missing after a broker restart): send again now.
            for j in range(1, box.sent):
                mv = box.peek_at(j)
                if mv is None:
                    break
                s = frame.u32_at(mv, 7)
                if conf[s & 63] == s and frame.u32_at(mv, 3) == boot:
                    box.rewind()
                    self.resends += 1
                    self.fast_resends += 1
                    self._rcpt_t[i] = time.ticks_ms()
                    break

    def _receipt_timer(self, now):
        for i in range(2):
            box = self._boxes[i]
            if not box.sent:
                self._rcpt_t[i] = now
            elif time.ticks_diff(now, self._rcpt_t[i]) >= self._rcpt_wait_ms[i] and self.link.up:
                box.rewind()
                self.resends += 1
                self._rcpt_t[i] = now
                w = self._rcpt_wait_ms[i] * 2
                self._rcpt_wait_ms[i] = w if w < self.receipt_timeout_max_ms else self.receipt_timeout_max_ms

    def _rewind(self, now):
        """A new session: send again everything not confirmed, in both outboxes."""
        for i in range(2):
            if self._boxes[i].sent:
                self.resends += 1
            self._boxes[i].rewind()
            self._rcpt_t[i] = now

    # ---------------------------------------------------------------- draining the outboxes
    def _pick(self):
        """The outbox whose next unsent frame goes next: (boot, seq) order, events may overtake
        REORDER_MAX frames, and no frame goes more than REORDER_MAX seqs ahead of the other outbox's
        oldest unconfirmed frame (its resend must stay inside the bridge's replay window)."""
        ev = self.evt_box.peek_unsent()
        tl = self.tlm_box.peek_unsent()
        if ev is None and tl is None:
            return None
        if ev is not None and tl is not None:
            be = frame.u32_at(ev, 3)
            bt = frame.u32_at(tl, 3)
            if be != bt:
                box = self.evt_box if be < bt else self.tlm_box
            elif frame.u32_at(ev, 7) - frame.u32_at(tl, 7) <= REORDER_MAX:
                box = self.evt_box
            else:
                box = self.tlm_box
        else:
            box = self.evt_box if tl is None else self.tlm_box
        mv = ev if box is self.evt_box else tl
        other = self.tlm_box.peek() if box is self.evt_box else self.evt_box.peek()
        if other is not None:
            bo = frame.u32_at(other, 3)
            b = frame.u32_at(mv, 3)
            if b > bo or (b == bo and frame.u32_at(mv, 7) - frame.u32_at(other, 7) > REORDER_MAX):
                return None              # wait until the other outbox's head is confirmed
        return box

    def _drain(self):
        link = self.link
        while link.up:
            if self.tlm_box.sent + self.evt_box.sent >= MAX_UNCONFIRMED:
                return                  # wait for receipts (or the timeout's resend)
            box = self._pick()
            if box is None:
                return
            mv = box.peek_unsent()
            kind = mv[1]
            if not 1 <= kind <= 4:      # cannot happen with our own encoder; never wedge the queue
                if box.sent:
                    box.mark_sent()
                else:
                    box.pop()
                continue
            ahead = box.sent
            popped = box.popped
            if not link.publish(link.topic_by_kind[kind], mv, kind == frame.KIND_STATUS):
                return
            if not self.receipts:
                box.pop()
            elif box.popped - popped <= ahead:
                box.mark_sent()
            # else: a receipt for an earlier copy of this very frame came during the publish and
            # already forgot it

            self.frames_sent += 1

    def _maybe_reboot(self, now):
        if self._reboot_t == 0:
            self._reboot_t = now | 1
        if len(self.evt_box) and time.ticks_diff(now, self._reboot_t) < REBOOT_GRACE_MS:
            return
        self.commands.reboot_requested = False
        self.link.close()
        if self.reset_fn is not None:
            self.reset_fn()
        else:
            import machine
            machine.reset()

    # ---------------------------------------------------------------- state for tests and status
    def pending(self):
        """Frames waiting in the outboxes (not counting the open batch)."""
        return len(self.tlm_box) + len(self.evt_box)

    def flush(self):
        """Close the open telemetry and event frames now (tests, before a planned reboot)."""
        self._close_tlm()
        self._close_evt()

    # ---------------------------------------------------------------- construction from a board
    @classmethod
    def from_board(cls, b, cfg, secrets_path=None):
        """Build from the board description and the site secrets file (docs/comms.md).

        ValueError when the secrets are missing or incomplete (the app then runs without comms)."""
        import json
        path = secrets_path or b.get("secrets_path", "/secrets.json")
        try:
            with open(path) as f:
                sec = json.load(f)
        except OSError:
            raise ValueError("comms: no secrets file %s" % path)
        for k in ("device_id", "key", "wifi_ssid", "wifi_key", "mqtt_host", "mqtt_password"):
            if not sec.get(k):
                raise ValueError("comms: secrets %s lacks %s" % (path, k))
        opts = b.get("comms", {})
        sizes = _outbox_sizes(opts)
        ssl = None
        if sec.get("mqtt_tls"):
            import ssl as _ssl
            ctx = _ssl.SSLContext(_ssl.PROTOCOL_TLS_CLIENT)
            if sec.get("mqtt_ca"):
                # MicroPython's load_verify_locations(cadata=) takes DER bytes; the secrets file
                # (JSON) holds the CA as PEM text. CPython takes DER bytes too.
                ctx.load_verify_locations(cadata=_ca_der(sec["mqtt_ca"]))
            ssl = ctx
        dev = sec["device_id"]
        link = Link(dev, sec["wifi_ssid"], sec["wifi_key"], sec["mqtt_host"], port=sec.get("mqtt_port", 0),
                    user=sec.get("mqtt_user", dev), password=sec["mqtt_password"], ssl=ssl,
                    keepalive_s=opts.get("keepalive_s", 60), topic_root=opts.get("topic_root", "bms"))
        ts = TimeSync(ntp_host=opts.get("ntp_host"))
        try:
            from firmware.config import store
            chash = store.checksum(store.encode(cfg))
        except (ImportError, ValueError):
            chash = 0
        try:
            import machine
            cause = machine.reset_cause()
        except (ImportError, AttributeError):
            cause = 0
        from firmware.version import FIRMWARE_VERSION
        return cls(dev, sec["key"], link, spill_dir=opts.get("spill_dir", "/outbox"),
                   receipts=opts.get("receipts", True),
                   receipt_timeout_ms=opts.get("receipt_timeout_ms", 30000),
                   receipt_timeout_max_ms=opts.get("receipt_timeout_max_ms", 600000),
                   state_dir=opts.get("state_dir", "/comms"),
                   sample_every_ms=opts.get("sample_every_ms", 1000), batch_ms=opts.get("batch_ms", 10000),
                   timesync=ts, fw_version=FIRMWARE_VERSION, board_name=b.get("name", ""),
                   config_hash=chash, reset_cause=cause & 0xFF, cell_count=cfg["cell_count"],
                   temp_count=cfg["temp_count"], **sizes)


# Boot-only helpers of from_board (module functions: on a frozen board a function object is all
# they keep in the heap).
def _ca_der(pem):
    """DER bytes of the first certificate in a PEM text; ValueError if there is none."""
    import binascii
    head = "-----BEGIN CERTIFICATE-----"
    b = pem.find(head)
    e = pem.find("-----END CERTIFICATE-----", b + 1)
    if b < 0 or e < 0:
        raise ValueError("comms: mqtt_ca must be a PEM certificate (-----BEGIN CERTIFICATE-----)")
    try:
        return binascii.a2b_base64("".join(pem[b + len(head):e].split()))
    except ValueError:
        raise ValueError("comms: mqtt_ca: bad base64 in the PEM certificate")


def _outbox_sizes(opts):
    """The outbox keyword arguments from a board's "comms" options; ValueError naming the key."""
    # key, default, min, max (a constant tuple: nothing resident). The defaults hold 7.1 h of 1 Hz
    # samples in 1 MiB of flash (docs/comms.md "Outbox capacity").
    out = {}
    for key, default, lo, hi in (("tlm_slots", 2, 1, 64), ("tlm_slot_bytes", 512, 256, 1024),
                                 ("tlm_max_segments", 256, 1, 4096), ("tlm_segment_bytes", 4096, 1024, 16384),
                                 ("evt_slots", 4, 1, 32), ("evt_slot_bytes", 320, 320, 1024),
                                 ("evt_max_segments", 16, 1, 1024)):
        v = opts.get(key, default)
        if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
            raise ValueError("comms: %s must be an integer %d..%d, got %r" % (key, lo, hi, v))
        out[key] = v
    if out["tlm_segment_bytes"] < out["tlm_slot_bytes"]:
        raise ValueError("comms: tlm_segment_bytes must be >= tlm_slot_bytes")
    return out
