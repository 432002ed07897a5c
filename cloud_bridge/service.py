"""The bridge service: MQTT messages in, verified and mapped points out, acks only after the write.

Delivery receipts (docs/comms.md "Delivery"): once a batch is durable, every board whose frames it held
gets a signed receipt naming them (`bms/<device>/down/receipt`, QoS 1, coalesced to one per device per
`receipt_interval_ms`); only then does the board forget them. Frames refused as replays are named too:
they are copies of frames already stored (a resend), and naming them stops the resending.

Three threads, each with one job: paho's network thread queues messages (mqtt_consumer); the main
loop verifies, decodes and maps them into a batch and owns the registry and the reject store (SQLite
connections stay in one thread); a writer thread writes one batch at a time to the database, with
retries, while the main loop builds the next (so decoding overlaps the database's latency). When a batch
comes back written, the main loop records it and acknowledges its messages. Every message is
acknowledged only after everything it caused is durable (its points confirmed by the database, or its
reject recorded), and acknowledgements go out in receive order.

    bridge = Bridge(settings.load("bridge.toml")); bridge.run()     # until bridge.stop()

Run it with `cloud-bridge run --config bridge.toml` (cloud_bridge/cli_run.py).
"""
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


def _now_ms():
    return int(time.time() * 1000)


class _Job:
    """One batch on its way to the database and back."""
    __slots__ = ("entries", "acks", "seen", "status", "windows", "named", "results", "stopped", "t0")

    def __init__(self, entries, acks, seen, status, windows, named):
        self.entries = entries
        self.acks = acks
        self.seen = seen
        self.status = status
        self.windows = windows
        self.named = named        # device -> {boot: [seq]} to name in receipts once written
        self.results = None
        self.stopped = False
        self.t0 = time.monotonic()


class Bridge:
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
        self.backend = backend or make_writer(inf)
        self.batcher = Batcher(self.backend, inf.batch_points, inf.flush_ms, inf.retry_min_s,
                               inf.retry_max_s, metrics=self.metrics, should_stop=self._stop.is_set,
                               log=self.log)
        self.consumer = consumer or MqttConsumer(settings.mqtt, self.log)
        self._acks = []          # messages of the batch being built, in receive order
        self._seen = {}          # device -> bridge ms of the newest accepted message
        self._status = []        # (device, online, source, ms, fw, config_hash) for the registry
        self._named = {}         # device -> {boot: [seq]}: frames of the batch being built
        self._to_confirm = {}    # device -> {boot: set(seq)}: durable, receipt not yet sent
        self._last_receipt = {}  # device -> monotonic s of its last receipt
        self._newest_ms = None   # device time of the newest sample mapped (lag metric)
        self._jobs = queue.Queue(maxsize=1)
        self._done = queue.Queue()
        self._inflight = None    # the _Job the writer thread has
        self._unwritten = 0      # messages left un-acked because we stopped before writing them
        self._writer_thread = None
        self._next_metrics = time.monotonic() + b.metrics_interval_s
        self._next_sweep = time.monotonic() + SILENCE_SWEEP_S

    # --- life cycle ---
    def stop(self):
        self._stop.set()

    def run(self):
        self.log.info("bridge starting", extra={"instance": self.instance, "topic": self.consumer.topic,
                                                "settings": self.s.redacted()})
        self._writer_thread = threading.Thread(target=self._writer_loop, name="influx-writer",
                                               daemon=True)
        self._writer_thread.start()
        self.consumer.start()
        try:
            while not self._stop.is_set():
                self.step()
        finally:
            self._shutdown()

    def _shutdown(self):
        # One last try to write what was read (the database may be down: the write then gives up
        # at once, because stop is set, and the broker keeps the un-acked messages).
        try:
            self._wait_inflight()
            if self._acks and self._unwritten == 0:
                self._dispatch()
                self._wait_inflight()
        finally:
            self._jobs.put(None)
            self._writer_thread.join(30)
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
        if self._inflight is not None:
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
        due = self.batcher.due() or bool(self._acks and not len(self.batcher))
        self._collect(dispatch_next=due)
        self.metrics.queue_depth = self._unacked() + q.qsize()
        if self.batcher.due() or (self._acks and not len(self.batcher)):
            if self._inflight is None:
                self._dispatch()
            else:
                # One batch in flight at a time (order and backpressure); the next one goes to the
                # writer as soon as the last is written, before that one's bookkeeping (registry and
                # window commits, acks), so the database never waits for our SQLite commits.
                self._wait_inflight(dispatch_next=True)
        self._send_receipts()
        now = time.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + SILENCE_SWEEP_S
            self._sweep_silent()
        if now >= self._next_metrics:
            self._next_metrics = now + self.s.bridge.metrics_interval_s
            self._emit_metrics()

    def _unacked(self):
        return len(self._acks) + (len(self._inflight.acks) if self._inflight else 0)

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
            if v.offline:
                lines = [mapper.to_line(p) for p in mapper.map_offline(v.tags, "will", msg.recv_ms)]
                self._status.append((v.device, False, "will", msg.recv_ms, None, None))
            else:
                self._seen[v.device] = msg.recv_ms
                d = v.frame
                if v.topic_kind == "telemetry":
                    # the hot path: lines straight from the samples (mapper.telemetry_lines)
                    lines = mapper.telemetry_lines(d, v.tags, v.anchor_ms)
                    t_ms = mapper.last_sample_ms(d, v.anchor_ms)
                    if t_ms is not None and (self._newest_ms is None or t_ms > self._newest_ms):
                        self._newest_ms = t_ms
                        self.metrics.lag_ms = msg.recv_ms - t_ms
                else:
                    lines = [mapper.to_line(p) for p in mapper.map_frame(d, v.tags, v.anchor_ms)]
                if v.topic_kind == "status":
                    self._status.append((v.device, True, "status", msg.recv_ms, d["fw_version"],
                                         "%08x" % d["config_hash"]))
        except Exception as e:   # a payload must never stop the bridge: keep it aside instead
            self.log.exception("internal error on a message", extra={"topic": msg.topic[:200]})
            self._reject("internal", msg, None, "%s: %s" % (type(e).__name__, e))
            return
        self.batcher.add(lines, msg)

    def _reject(self, reason, msg, device, detail):
        self.metrics.reject(reason)
        self.rejects.add(reason, msg.topic, msg.payload, device=device, detail=detail, t_ms=msg.recv_ms)

    # --- batches: dispatch to the writer thread, complete when written ---
    def _dispatch(self):
        job = _Job(self.batcher.take(), self._acks, self._seen, self._status,
                   self.verifier.take_pending(), self._named)
        self._acks, self._seen, self._status, self._named = [], {}, [], {}
        self._inflight = job
        self._jobs.put(job)

    def _writer_loop(self):
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                job.results = self.batcher.write(job.entries)
            except Stopped:
                job.stopped = True
            except Exception as e:
                # A bug, not an outage: stop (a supervisor restarts us) rather than ack or spin.
                # The messages stay un-acked, so the broker sends them again to the next run.
                job.stopped = True
                self.log.exception("writer failed, stopping", extra={"error": str(e)[:300]})
                self._stop.set()
            self._done.put(job)

    def _collect(self, timeout_s=0.0, dispatch_next=False):
        """Complete the in-flight batch if the writer is done with it; True when none is left.

        dispatch_next: hand the batch being built to the writer first, then complete the written one
        (its acks still go out before any of the next batch's, which completes later)."""
        if self._inflight is None:
            return True
        try:
            job = self._done.get(timeout=timeout_s) if timeout_s else self._done.get_nowait()
        except queue.Empty:
            return False
        self._inflight = None
        if dispatch_next and not job.stopped:
            self._dispatch()
            dispatch_next = False
        self._complete(job)
        if dispatch_next:
            self._dispatch()     # after a batch that was not written: in the original order
        return True

    def _wait_inflight(self, dispatch_next=False):
        retries0 = self.metrics.write_retries
        while not self._collect(0.1, dispatch_next):
            # the database is slow or away: we acknowledge nothing, the broker holds the rest
            self.metrics.queue_depth = self._unacked() + self.consumer.messages.qsize()
            now = time.monotonic()
            if now >= self._next_metrics:
                self._next_metrics = now + self.s.bridge.metrics_interval_s
                self.log.info("metrics", extra=dict(self.metrics.summary(),
                                                    db_down=self.metrics.write_retries > retries0))

    def _complete(self, job):
        if job.stopped:
            # not written: no acks, no windows; the broker redelivers them to the next run
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
        self.rejects.flush()
        self.verifier.commit(job.windows)
        self.registry.record_seen(job.seen)
        for device, online, source, t_ms, fw, ch in job.status:
            self.registry.set_status(device, online, source, t_ms, fw, ch)
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
    def _sweep_silent(self):
        t = _now_ms()
        for device in self.registry.mark_silent(self.s.bridge.offline_after_s * 1000, t):
            tags = self.registry.tags(device)
            if tags:
                self.batcher.add([mapper.to_line(p) for p in mapper.map_offline(tags, "silence", t)],
                                 None)

    def _emit_metrics(self):
        self.log.info("metrics", extra=self.metrics.summary())
        self.batcher.add([mapper.to_line(p) for p in self.metrics.points(_now_ms())], None)
        self.metrics.end_interval()
