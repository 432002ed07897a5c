"""The bridge service: MQTT messages in, verified and mapped points out, acks only after the write.

Delivery receipts (docs/comms.md "Delivery"): once a batch is durable, every board whose frames it held
gets a signed receipt naming them (`bms/<device>/down/receipt`, QoS 1, coalesced to one per device per
`receipt_interval_ms`); only then does the board forget them. Frames refused as replays are named too:
they are copies of frames already stored (a resend), and naming them stops the resending.

Threads, each with one job: paho's network thread queues messages (mqtt_consumer); the main loop
verifies, decodes and maps them into a batch and owns the registry and the reject store (SQLite
connections stay in one thread); `influx.writes_in_flight` writer threads (each with its own database
connection) write batches to the database, with retries, while the main loop builds the next (so
decoding overlaps the database's latency, and with two or more writes in flight the database works on
one batch while it answers the other: a single write at a time leaves it waiting for the network round
trip and for us, measured in docs/bridge-throughput.md). Batches are completed strictly in the order
they were made: when the oldest comes back written, the main loop records it (replay windows, last seen,
status: one registry transaction) and acknowledges its messages. Every message is acknowledged only
after everything it caused is durable (its points confirmed by the database, or its reject recorded),
and acknowledgements go out in receive order. If a batch is not written (we are stopping), neither it
nor any later batch is acknowledged or has its replay windows stored, even if a later one was written:
its windows include the unwritten one's frames, which must be accepted again when the broker
redelivers them; rewriting the later one's points then is harmless (writes are idempotent).

    bridge = Bridge(settings.load("bridge.toml")); bridge.run()     # until bridge.stop()

Run it with `cloud-bridge run --config bridge.toml` (cloud_bridge/cli_run.py).
"""
import collections
import os
import queue
import socket
import threading
import time

from cloud_bridge import log as _log
from cloud_bridge import mapper
from cloud_bridge.metrics import Metrics
from cloud_bridge.mqtt_consumer import MqttConsumer
from cloud_bridge.registry import Registry
from cloud_bridge.rejects import RejectStore
from cloud_bridge.verify import Verifier
from cloud_bridge.writer import Batcher, Stopped, make_writer
from firmware.comms import frame as _frame

DRAIN_MAX = 500        # messages handled between two checks of the flush deadline
SILENCE_SWEEP_S = 5.0  # how often boards that went quiet are looked for
BEHIND_MAX_S = 5.0     # the bridge is "behind" (stalled) when a message waits longer than this


def _now_ms():
    return int(time.time() * 1000)


class _Job:
    """One batch on its way to the database and back."""
    __slots__ = ("entries", "acks", "seen", "status", "windows", "named", "results", "stopped", "t0",
                 "written")

    def __init__(self, entries, acks, seen, status, windows, named):
        self.entries = entries
        self.acks = acks
        self.seen = seen
        self.status = status
        self.windows = windows
        self.named = named        # device -> {boot: [seq]} to name in receipts once written
        self.results = None
        self.stopped = False
        self.written = False      # the writer thread is done with it (set by the main loop)
        self.t0 = time.monotonic()


class Bridge:
    """backend: a database writer, or a list of them, to use instead of influx.writes_in_flight
    writers from make_writer(settings.influx) (tests): one writer thread per back end."""

    def __init__(self, settings, log=None, backend=None, consumer=None):
        self.s = settings
        self.log = log or _log.get()
        b = settings.bridge
        self.instance = b.instance or "%s:%d" % (socket.gethostname(), os.getpid())
        self.metrics = Metrics(self.instance)
        self.registry = Registry(b.registry)
        self.rejects = RejectStore(b.rejects, keep=b.rejects_keep)
        self.verifier = Verifier(self.registry, settings.mqtt.topic_root, b.replay_window)
        self._stop = threading.Event()
        inf = settings.influx
        if backend is not None:
            self.backends = list(backend) if isinstance(backend, (list, tuple)) else [backend]
        else:
            self.backends = [make_writer(inf) for _ in range(inf.writes_in_flight)]
        self.batcher = Batcher(self.backends[0], inf.batch_points, inf.flush_ms, inf.retry_min_s,
                               inf.retry_max_s, metrics=self.metrics, should_stop=self._stop.is_set,
                               log=self.log)
        self.consumer = consumer or MqttConsumer(settings.mqtt, self.log)
        self._acks = []          # messages of the batch being built, in receive order
        self._seen = {}          # device -> bridge ms of the newest accepted message
        self._status = []        # (device, online, source, ms, fw, config_hash) for the registry
        self._named = {}         # device -> {boot: [seq]}: frames of the batch being built
        self._to_confirm = {}    # device -> {boot: set(seq)}: durable, receipt not yet sent
        self._last_receipt = {}  # device -> monotonic s of its last receipt
        self._lag_samples = {}   # device -> (device ms of its newest sample this interval, recv ms)
        self._jobs = queue.Queue()
        self._done = queue.Queue()
        self._inflight = collections.deque()   # _Jobs handed to the writers, oldest first
        self._unwritten = 0      # messages left un-acked because we stopped before writing them
        self._writer_threads = []
        self._next_metrics = time.monotonic() + b.metrics_interval_s
        self._next_sweep = time.monotonic() + SILENCE_SWEEP_S
        # Silence is judged only over a stretch where the bridge kept up: since its start, and again
        # since it caught up after a stall (database away or slow: it then receives nothing new, so a
        # board's "silence" would be our own). None while behind.
        self._keeping_up_since_ms = _now_ms()

    # --- life cycle ---
    def stop(self):
        self._stop.set()

    def run(self):
        self.log.info("bridge starting", extra={"instance": self.instance, "topic": self.consumer.topic,
                                                "settings": self.s.redacted()})
        self.start_writers()
        self.consumer.start()
        try:
            while not self._stop.is_set():
                self.step()
        finally:
            self._shutdown()

    def start_writers(self):
        """One writer thread per back end (run() does this; tests that drive step() call it)."""
        for i, backend in enumerate(self.backends):
            t = threading.Thread(target=self._writer_loop, args=(backend,), name="influx-writer-%d" % i,
                                 daemon=True)
            t.start()
            self._writer_threads.append(t)

    def _shutdown(self):
        # One last try to write what was read (the database may be down: the write then gives up
        # at once, because stop is set, and the broker keeps the un-acked messages).
        try:
            self._wait_inflight()
            if self._acks and self._unwritten == 0:
                self._dispatch()
                self._wait_inflight()
        finally:
            for _ in self._writer_threads:
                self._jobs.put(None)
            deadline = time.monotonic() + 30
            for t in self._writer_threads:
                t.join(max(0.0, deadline - time.monotonic()))
            self._send_receipts(force=True)
            unacked = self._unwritten + self._unacked()
            if unacked:
                self.log.warning("stopped with unwritten messages; the broker keeps them",
                                 extra={"messages": unacked})
            self.consumer.stop()
            self.rejects.close()
            self.registry.close()
            self.log.info("bridge stopped", extra=self.metrics.summary())

    def step(self, max_wait_s=0.2):
        """Handle what arrived (waiting at most max_wait_s), write when due, housekeeping."""
        self._collect()
        wait = self.batcher.seconds_until_due()
        wait = max_wait_s if wait is None else min(wait, max_wait_s)
        if self._inflight:
            wait = min(wait, 0.01)
        q = self.consumer.messages
        try:
            msg = q.get(timeout=wait)
        except queue.Empty:
            msg = None
        n = 0
        while msg is not None:
            self.handle(msg)
            n += 1
            if n >= DRAIN_MAX or self.batcher.due():
                break
            try:
                msg = q.get_nowait()
            except queue.Empty:
                msg = None
        if self.batcher.due() or (self._acks and not len(self.batcher)):
            # At most writes_in_flight batches at the writers (order and backpressure). When they are
            # all busy we wait for the oldest; the next batch goes to a writer as soon as one is free,
            # before the written batch's bookkeeping (registry commit, acks), so the database never
            # waits for our SQLite commits.
            if len(self._inflight) >= len(self.backends):
                self._wait_oldest_written()
            self._dispatch()
        self._collect()
        self.metrics.queue_depth = self._unacked() + q.qsize()
        self._send_receipts()
        self._note_keeping_up()
        now = time.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + SILENCE_SWEEP_S
            self._sweep_silent()
        if now >= self._next_metrics:
            self._next_metrics = now + self.s.bridge.metrics_interval_s
            self._emit_metrics()

    def _unacked(self):
        return len(self._acks) + sum(len(job.acks) for job in self._inflight)

    # --- per message ---
    def handle(self, msg):
        self.metrics.frames_in += 1
        self._acks.append(msg)
        try:
            v = self.verifier.check(msg.topic, msg.payload, msg.recv_ms)
            if v.seq is not None and self.s.bridge.receipts:
                self._named.setdefault(v.device, {}).setdefault(v.boot, []).append(v.seq)
            if v.reason is not None:
                self._reject(v.reason, msg, v.device, v.detail)
                return
            points = None
            if v.offline:
                lines = [mapper.to_line(p) for p in mapper.map_offline(v.tags, "will", msg.recv_ms)]
                self._status.append((v.device, False, "will", msg.recv_ms, None, None))
            else:
                self._seen[v.device] = msg.recv_ms
                d = v.frame
                if v.topic_kind == "telemetry":
                    # the hot path: the frame's lines as one piece of text, straight from the samples
                    # (mapper.telemetry_text; writer.Batcher takes pieces with their point count)
                    text, points = mapper.telemetry_text(d, v.tags, v.anchor_ms)
                    lines = [text] if points else []
                    t_ms = mapper.last_sample_ms(d, v.anchor_ms)
                    if t_ms is not None:
                        newest = self._lag_samples.get(v.device)
                        if newest is None or t_ms > newest[0]:
                            self._lag_samples[v.device] = (t_ms, msg.recv_ms)
                else:
                    lines = [mapper.to_line(p) for p in mapper.map_frame(d, v.tags, v.anchor_ms)]
                if v.topic_kind == "status":
                    self._status.append((v.device, True, "status", msg.recv_ms, d["fw_version"],
                                         "%08x" % d["config_hash"]))
        except Exception as e:   # a payload must never stop the bridge: keep it aside instead
            self.log.exception("internal error on a message", extra={"topic": msg.topic[:200]})
            self._reject("internal", msg, None, "%s: %s" % (type(e).__name__, e))
            return
        self.batcher.add(lines, msg, points)

    def _reject(self, reason, msg, device, detail):
        self.metrics.reject(reason)
        self.rejects.add(reason, msg.topic, msg.payload, device=device, detail=detail, t_ms=msg.recv_ms)

    # --- batches: dispatch to the writer threads, complete in order when written ---
    def _dispatch(self):
        job = _Job(self.batcher.take(), self._acks, self._seen, self._status,
                   self.verifier.take_pending(), self._named)
        self._acks, self._seen, self._status, self._named = [], {}, [], {}
        self._inflight.append(job)
        self._jobs.put(job)

    def _writer_loop(self, backend):
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                job.results = self.batcher.write(job.entries, backend)
            except Stopped:
                job.stopped = True
            except Exception as e:
                # A bug, not an outage: stop (a supervisor restarts us) rather than ack or spin.
                # The messages stay un-acked, so the broker sends them again to the next run.
                job.stopped = True
                self.log.exception("writer failed, stopping", extra={"error": str(e)[:300]})
                self._stop.set()
            self._done.put(job)

    def _oldest_written(self, timeout_s=0.0):
        """True when the oldest batch in flight is back from its writer (waiting at most timeout_s)."""
        oldest = self._inflight[0]
        deadline = time.monotonic() + timeout_s
        while not oldest.written:
            left = deadline - time.monotonic()
            try:
                job = self._done.get(timeout=left) if left > 0 else self._done.get_nowait()
            except queue.Empty:
                return False
            job.written = True       # any batch: they come back in any order, complete in order
        return True

    def _collect(self, timeout_s=0.0):
        """Complete the written batches at the head of the line, oldest first (a later one waits for
        every earlier one). True when none is left in flight."""
        while self._inflight and self._oldest_written(timeout_s):
            self._complete(self._inflight.popleft())
            timeout_s = 0.0
        return not self._inflight

    def _wait_oldest_written(self):
        """Block until the oldest batch in flight is back from its writer (the database may be slow
        or away: we acknowledge nothing meanwhile, the broker holds the rest)."""
        retries0 = self.metrics.write_retries
        while not self._oldest_written(0.1):
            self._note_keeping_up()
            self.metrics.queue_depth = self._unacked() + self.consumer.messages.qsize()
            now = time.monotonic()
            if now >= self._next_metrics:
                self._next_metrics = now + self.s.bridge.metrics_interval_s
                self.log.info("metrics", extra=dict(self.metrics.summary(),
                                                    db_down=self.metrics.write_retries > retries0))

    def _wait_inflight(self):
        """Block until every batch in flight is completed."""
        while self._inflight:
            self._wait_oldest_written()
            self._complete(self._inflight.popleft())

    def _complete(self, job):
        if job.stopped or self._unwritten:
            # Not written (or an earlier batch was not): no acks, no windows; the broker redelivers
            # them to the next run. A later batch's windows hold the unwritten one's frames too.
            self.verifier.forget(job.windows)
            self._unwritten += len(job.acks)
            return
        stored = points = 0
        for tag, n_points, refusal in job.results:
            if tag is None:
                continue                         # our own metrics / silence points
            if refusal is None:
                stored += 1
                points += n_points
            else:
                self._reject("db_rejected", tag, None, refusal)
        self.metrics.frames_stored += stored
        self.metrics.points_stored += points
        try:
            self.rejects.flush()
            # replay windows, last seen and status in one registry transaction (one commit a batch)
            with self.registry.transaction():
                self.verifier.commit(job.windows)
                back = self.registry.record_seen(job.seen)
                for device, online, source, t_ms, fw, ch in job.status:
                    self.registry.set_status(device, online, source, t_ms, fw, ch)
        except BaseException:
            # (SQLite trouble: we stop.) Not acknowledged, so no later batch may be either.
            self.verifier.forget(job.windows)
            self._unwritten += len(job.acks)
            raise
        for device, t_ms in back:       # heard again after silence: online, source 'traffic'
            tags = self.registry.tags(device)
            if tags:
                self.batcher.add([mapper.to_line(p) for p in mapper.map_online(tags, "traffic", t_ms)],
                                 None)
        for msg in job.acks:
            self.consumer.ack(msg)
        for device, boots in job.named.items():
            pending = self._to_confirm.setdefault(device, {})
            for boot, seqs in boots.items():
                pending.setdefault(boot, set()).update(seqs)
        self._send_receipts()
        self.log.debug("batch done", extra={"messages": len(job.acks), "stored": stored,
                                            "ms": round((time.monotonic() - job.t0) * 1000, 2)})

    # --- delivery receipts ---
    def _send_receipts(self, force=False):
        """Receipts for durable frames, at most one per device per receipt_interval_ms unless force."""
        if not self._to_confirm:
            return
        now = time.monotonic()
        gap = self.s.bridge.receipt_interval_ms / 1000.0
        root = self.s.mqtt.topic_root
        for device in list(self._to_confirm):
            if not force and now - self._last_receipt.get(device, -1e9) < gap:
                continue
            boots = self._to_confirm.pop(device)
            entry = self.verifier.key_entry(device)
            if entry is None:
                continue                 # removed from the registry meanwhile: nobody to confirm to
            topic = "%s/%s/down/receipt" % (root, device)
            for boot, seqs in boots.items():
                for payload in _frame.encode_receipts(device, entry[0], boot, seqs):
                    self.consumer.publish(topic, payload)
                    self.metrics.receipts_sent += 1
            self._last_receipt[device] = now
        if len(self._last_receipt) > 100000:    # bound memory against floods of made-up ids
            self._last_receipt.clear()

    # --- housekeeping ---
    def _oldest_pending_ms(self):
        """Receive time of the oldest message not yet completed (in flight, in the batch being built,
        or still queued), or None: the registry's last_seen is complete only up to there."""
        for job in self._inflight:
            if job.acks:
                return job.acks[0].recv_ms
        if self._acks:
            return self._acks[0].recv_ms
        q = self.consumer.messages
        with q.mutex:            # peek at the head of the queue.Queue without taking it
            return q.queue[0].recv_ms if q.queue else None

    def _note_keeping_up(self):
        """Track whether the bridge keeps up: behind while a message has waited longer than
        BEHIND_MAX_S (or half of offline_after_s, if smaller) to be completed."""
        t = _now_ms()
        oldest = self._oldest_pending_ms()
        limit_ms = min(BEHIND_MAX_S, self.s.bridge.offline_after_s / 2.0) * 1000
        if oldest is not None and t - oldest > limit_ms:
            self._keeping_up_since_ms = None
        elif self._keeping_up_since_ms is None:
            self._keeping_up_since_ms = t
            self.log.info("caught up; judging silence again after offline_after_s",
                          extra={"offline_after_s": self.s.bridge.offline_after_s})

    def _sweep_silent(self):
        t = _now_ms()
        after_ms = self.s.bridge.offline_after_s * 1000
        since = self._keeping_up_since_ms
        if since is None or t - since < after_ms:
            return               # behind, or not listening long enough to call anyone silent
        for device in self.registry.mark_silent(after_ms, t, self._oldest_pending_ms()):
            tags = self.registry.tags(device)
            if tags:
                self.batcher.add([mapper.to_line(p) for p in mapper.map_offline(tags, "silence", t)],
                                 None)

    def _interval_lag_ms(self):
        """Lag of this interval: the largest (receive time - device time) of each device's newest
        sample, over the devices heard; 0 when none was (idle: nothing is behind). Per device, so a
        board whose clock runs ahead cannot hide another's lag, nor a board's outbox replay of old
        samples count once its fresh ones arrived."""
        lag = max((recv - t for t, recv in self._lag_samples.values()), default=0)
        self._lag_samples = {}
        return max(lag, 0)

    def _emit_metrics(self):
        self.metrics.lag_ms = self._interval_lag_ms()
        self.metrics.frames_missing = self.verifier.missing()   # same thread as Verifier.check
        self.log.info("metrics", extra=self.metrics.summary())
        self.batcher.add([mapper.to_line(p) for p in self.metrics.points(_now_ms())], None)
        self.metrics.end_interval()
