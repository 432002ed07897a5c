"""Several batches at the writers at once (influx.writes_in_flight): they may come back in any order,
but are completed in the order they were made: acks in receive order, replay windows stored in turn,
nothing acknowledged or stored past a batch that was not written. Also: one registry commit a batch.

The bridge's main loop is driven here step by step with an in-memory consumer and back ends whose
writes the test holds and releases (no servers needed).
"""
import logging
import queue
import threading
import time

from cloud_bridge import settings as _settings
from cloud_bridge.mqtt_consumer import Message
from cloud_bridge.registry import Registry
from cloud_bridge.service import Bridge
from cloud_bridge.writer import WriteError
from tests.bridge.frames import KEY, Board

DEVICE = "bms-0001"


class FakeConsumer:
    topic = "bms/+/up/#"

    def __init__(self):
        self.messages = queue.Queue()
        self.acked = []
        self.published = []
        self.generation = 1

    def start(self):
        pass

    def stop(self):
        pass

    def ack(self, msg):
        self.acked.append(msg.mid)
        return True

    def publish(self, topic, payload, qos=1):
        self.published.append(topic)
        return True


class HeldWrites:
    """Back ends sharing one rule: a write holding `hold_text` waits for `release` (or fails while
    `fail` is set); every write's body is recorded once it returns."""

    def __init__(self, hold_text):
        self.hold_text = hold_text
        self.release = threading.Event()
        self.fail = False
        self.written = []          # bodies, in the order their writes returned
        self.lock = threading.Lock()

    def backend(self):
        outer = self

        class Backend:
            def write(self, lines):
                body = "\n".join(lines)
                if outer.hold_text in body:
                    if outer.fail:
                        raise WriteError("database away")      # transient: the batcher retries
                    outer.release.wait(10)
                with outer.lock:
                    outer.written.append(body)

            def close(self):
                pass
        return Backend()


def make_bridge(tmp_path, held, writers=2):
    reg_path = str(tmp_path / "registry.sqlite")
    reg = Registry(reg_path)
    reg.add_device(DEVICE, KEY)
    reg.close()
    s = _settings.load(None, env={}, overrides={
        "influx": {"batch_points": 200, "flush_ms": 50, "retry_min_s": 0.01, "retry_max_s": 0.02},
        "bridge": {"registry": reg_path, "rejects": str(tmp_path / "rejects.sqlite"),
                   "instance": "t", "receipt_interval_ms": 0}})
    log = logging.getLogger("test-write-pipeline")
    consumer = FakeConsumer()
    br = Bridge(s, log=log, backend=[held.backend() for _ in range(writers)], consumer=consumer)
    br.start_writers()
    return br, consumer, reg_path


def feed(consumer, board, n):
    """n telemetry frames of 10 samples x 16 cells + 3 temps (200 points: one batch each)."""
    for mid in range(n):
        consumer.messages.put(Message("bms/%s/up/telemetry" % DEVICE, board.telemetry(10), 1, mid + 1,
                                      1, int(time.time() * 1000), False))


def steps_until(br, cond, timeout_s=10):
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        br.step(0.01)


def stored_window(reg_path):
    reg = Registry(reg_path)
    try:
        return reg.load_window(DEVICE)
    finally:
        reg.close()


def seq0_text():
    # the first frame's pack lines end with its boot and seq fields
    return "boot=1i,seq=0i "


def test_later_batch_written_first_waits_for_the_earlier_one(tmp_path):
    held = HeldWrites(seq0_text())
    br, consumer, reg_path = make_bridge(tmp_path, held)
    try:
        feed(consumer, Board(DEVICE), 2)
        # batch 2 (seq 1) is written while batch 1 (seq 0) is still held by the database
        steps_until(br, lambda: len(held.written) == 1)
        assert "seq=1i" in held.written[0]
        for _ in range(20):
            br.step(0.01)
        assert consumer.acked == []                    # nothing acked past an unwritten batch
        assert stored_window(reg_path) is None         # nor any replay window stored
        assert consumer.published == []               # nor any receipt sent
        held.release.set()
        steps_until(br, lambda: len(consumer.acked) == 2)
        assert consumer.acked == [1, 2]                # receive order
        assert stored_window(reg_path)[1:] == (1, 0b11)    # both seqs, high 1
        assert consumer.published == ["bms/%s/down/receipt" % DEVICE] * 2   # one per batch
    finally:
        held.release.set()
        br.stop()
        br._shutdown()


def test_nothing_after_an_unwritten_batch_is_acked_or_stored(tmp_path):
    held = HeldWrites(seq0_text())
    held.fail = True                                   # batch 1 cannot be written
    br, consumer, reg_path = make_bridge(tmp_path, held)
    try:
        feed(consumer, Board(DEVICE), 2)
        steps_until(br, lambda: len(held.written) == 1)    # batch 2 is written
        br.stop()                                      # batch 1 gives up: Stopped
        br._shutdown()
        assert consumer.acked == []
        # batch 2's window holds seq 0 too: storing it would refuse batch 1's frame on redelivery
        assert stored_window(reg_path) is None
        assert br._unwritten == 2
    finally:
        held.release.set()


def test_one_writer_still_acks_in_order(tmp_path):
    held = HeldWrites("never in a body")
    br, consumer, reg_path = make_bridge(tmp_path, held, writers=1)
    try:
        feed(consumer, Board(DEVICE), 5)
        steps_until(br, lambda: len(consumer.acked) == 5)
        assert consumer.acked == [1, 2, 3, 4, 5]
        assert len(held.written) == 5
        assert stored_window(reg_path)[1:] == (4, 0b11111)
    finally:
        br.stop()
        br._shutdown()


def test_registry_transaction_commits_once_and_rolls_back_whole(tmp_path):
    reg = Registry(str(tmp_path / "r.sqlite"))
    reg.add_device(DEVICE, KEY)
    other = Registry(str(tmp_path / "r.sqlite"))
    statements = []
    reg._db.set_trace_callback(statements.append)
    try:
        with reg.transaction():
            reg.save_windows({DEVICE: (1, 5, 1)})
            reg.record_seen({DEVICE: 1234})
            assert other.load_window(DEVICE) is None       # not committed yet
        assert [q for q in statements if q in ("BEGIN IMMEDIATE", "COMMIT")] == \
            ["BEGIN IMMEDIATE", "COMMIT"]                  # one commit for both
        assert other.load_window(DEVICE) == (1, 5, 1)
        assert other.get(DEVICE)["last_seen_ms"] == 1234
        try:
            with reg.transaction():
                reg.save_windows({DEVICE: (1, 9, 1)})
                reg.record_seen({DEVICE: 5678})
                raise RuntimeError("disk trouble")
        except RuntimeError:
            pass
        assert other.load_window(DEVICE) == (1, 5, 1)      # neither change kept
        assert other.get(DEVICE)["last_seen_ms"] == 1234
    finally:
        other.close()
        reg.close()


# --- online state: silence is judged only while the bridge keeps up; traffic brings a board back ---
QUIET = "bms-0002"


class SwitchableBackend:
    """A database that refuses every write (transient) while `down` is set; records the bodies."""

    def __init__(self):
        self.down = threading.Event()
        self.bodies = []

    def write(self, lines):
        if self.down.is_set():
            raise WriteError("database away")
        self.bodies.append("\n".join(lines))

    def close(self):
        pass

    def status_lines(self, device):
        return [line for body in self.bodies for line in body.split("\n")
                if line.startswith("status,") and "device=%s," % device in line]


def make_status_bridge(tmp_path, backend, offline_after_s):
    reg_path = str(tmp_path / "registry.sqlite")
    reg = Registry(reg_path)
    reg.add_device(DEVICE, KEY)
    reg.add_device(QUIET, KEY)
    reg.close()
    s = _settings.load(None, env={}, overrides={
        "influx": {"flush_ms": 20, "retry_min_s": 0.05, "retry_max_s": 0.1},
        "bridge": {"registry": reg_path, "rejects": str(tmp_path / "rejects.sqlite"),
                   "instance": "t", "offline_after_s": offline_after_s, "receipts": False}})
    consumer = FakeConsumer()
    br = Bridge(s, log=logging.getLogger("test-online-state"), backend=[backend], consumer=consumer)
    br.start_writers()
    return br, consumer, Registry(reg_path)


def put(consumer, device, kind, payload, mid):
    consumer.messages.put(Message("bms/%s/up/%s" % (device, kind), payload, 1, mid, 1,
                                  int(time.time() * 1000), False))


def run_steps(br, seconds, watch=None):
    """Drive the bridge for `seconds` of real time; watch() is called after every step."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        br.step(0.01)
        if watch:
            watch()


def test_database_outage_longer_than_offline_after_marks_no_streaming_board_offline(tmp_path):
    offline_after_s, outage_s = 2, 5
    db = SwitchableBackend()
    br, consumer, reg = make_status_bridge(tmp_path, db, offline_after_s)
    streaming, quiet = Board(DEVICE, cells=4, temps=1), Board(QUIET, cells=4, temps=1)
    mids = iter(range(1, 1000000))
    stop = threading.Event()

    def stream():                # the board sends a frame every 0.1 s through the whole test
        while not stop.is_set():
            put(consumer, DEVICE, "telemetry", streaming.telemetry(1), next(mids))
            time.sleep(0.1)
    put(consumer, DEVICE, "status", streaming.status(), next(mids))
    put(consumer, QUIET, "status", quiet.status(), next(mids))     # then nothing more from it
    thread = threading.Thread(target=stream, daemon=True)
    seen_offline = []

    def watch():
        if reg.get(DEVICE)["online"] == 0:
            seen_offline.append(reg.get(DEVICE)["online_source"])
    try:
        thread.start()
        run_steps(br, 0.5, watch)
        assert reg.get(DEVICE)["online"] == 1 and reg.get(QUIET)["online"] == 1
        acked_during = []                            # acks 1 s into the outage, and at its end

        def database_back():
            acked_during.append(len(consumer.acked))
            db.down.clear()
        db.down.set()                                # longer than offline_after_s: the bridge stalls
        threading.Timer(1.0, lambda: acked_during.append(len(consumer.acked))).start()
        threading.Timer(outage_s, database_back).start()
        # the outage, then catching up, then offline_after_s of listening before silence is judged
        # again and two sweeps (SILENCE_SWEEP_S = 5 s) to find the quiet board
        run_steps(br, outage_s + offline_after_s + 2 * 5.0 + 1, watch)
        assert len(acked_during) == 2 and acked_during[0] == acked_during[1]    # acks held back
        assert br.metrics.write_retries > 0
    finally:
        stop.set()
        thread.join()
        br.stop()
        br._shutdown()
    try:
        assert seen_offline == []                    # never offline, not even for a moment
        assert reg.get(DEVICE)["online"] == 1
        assert not [line for line in db.status_lines(DEVICE) if "online=0i" in line]
        # the board that really went quiet is still found out
        assert (reg.get(QUIET)["online"], reg.get(QUIET)["online_source"]) == (0, "silence")
        assert [line for line in db.status_lines(QUIET) if 'online=0i,source="silence"' in line]
    finally:
        reg.close()


def test_board_marked_offline_by_silence_is_back_online_when_its_frames_arrive(tmp_path):
    db = SwitchableBackend()
    br, consumer, reg = make_status_bridge(tmp_path, db, offline_after_s=1)
    board = Board(DEVICE, cells=4, temps=1)
    try:
        put(consumer, DEVICE, "status", board.status(), 1)
        put(consumer, DEVICE, "telemetry", board.telemetry(1), 2)
        steps_until(br, lambda: reg.get(DEVICE)["online_source"] == "silence", timeout_s=15)
        marked_ms = reg.get(DEVICE)["online_ms"]
        put(consumer, DEVICE, "telemetry", board.telemetry(1), 3)    # same session: no status frame
        steps_until(br, lambda: reg.get(DEVICE)["online"] == 1)
        d = reg.get(DEVICE)
        assert d["online_source"] == "traffic" and d["online_ms"] >= marked_ms
        steps_until(br, lambda: any('online=1i,source="traffic"' in line
                                    for line in db.status_lines(DEVICE)))
    finally:
        br.stop()
        br._shutdown()
        reg.close()


# --- lag metric: per interval, the largest over devices of (receive time - newest sample time) ---
def test_lag_is_the_largest_per_device_lag_of_the_interval_and_zero_when_idle(tmp_path):
    from cloud_bridge import mapper
    from firmware.comms import frame
    db = SwitchableBackend()
    br, consumer, reg = make_status_bridge(tmp_path, db, offline_after_s=300)
    behind, ahead = Board(DEVICE, cells=4, temps=1), Board(QUIET, cells=4, temps=1)
    ahead.n = 1000                               # its samples are newer than any of `behind`

    def send(board, mid, lag_ms):
        payload = board.telemetry(2)
        t_ms = mapper.last_sample_ms(frame.decode(payload, board.device, KEY), None)
        consumer.messages.put(Message("bms/%s/up/telemetry" % board.device, payload, 1, mid, 1,
                                      t_ms + lag_ms, False))

    def lag_points():
        return [int(line.split("lag_ms=")[1].split("i")[0]) for body in db.bodies
                for line in body.split("\n") if line.startswith("bridge,")]
    try:
        send(behind, 1, 30000)                   # 30 s behind
        send(behind, 2, 25000)                   # its newest sample: 25 s behind
        send(ahead, 3, -60000)                   # a clock 60 s ahead, and the newest sample of all
        steps_until(br, lambda: len(consumer.acked) == 3)
        br._emit_metrics()
        assert br.metrics.lag_ms == 25000        # neither hidden by the clock ahead, nor negative
        send(ahead, 4, -60000)
        steps_until(br, lambda: len(consumer.acked) == 4)
        br._emit_metrics()
        assert br.metrics.lag_ms == 0            # only the clock ahead heard: nobody is behind
        br._emit_metrics()                       # an idle interval: no stale repetition
        assert br.metrics.lag_ms == 0
        steps_until(br, lambda: len(lag_points()) == 3)
        assert lag_points() == [25000, 0, 0]
    finally:
        br.stop()
        br._shutdown()
        reg.close()


def test_a_frame_that_never_arrives_is_counted_as_missing_in_the_bridge_metrics(tmp_path):
    db = SwitchableBackend()
    br, consumer, reg = make_status_bridge(tmp_path, db, offline_after_s=300)
    board = Board(DEVICE, cells=4, temps=1)

    def missing_points():
        return [int(line.split("frames_missing=")[1].split("i")[0]) for body in db.bodies
                for line in body.split("\n") if line.startswith("bridge,")]
    try:
        first = board.telemetry(2)
        board.telemetry(2)                       # lost on the way: never published
        third = board.telemetry(2)
        for mid, payload in ((1, first), (2, third)):
            consumer.messages.put(Message("bms/%s/up/telemetry" % DEVICE, payload, 1, mid, 1,
                                          int(time.time() * 1000), False))
        steps_until(br, lambda: len(consumer.acked) == 2)
        br._emit_metrics()
        assert br.metrics.frames_missing == 1
        steps_until(br, lambda: len(missing_points()) == 1)
        assert missing_points() == [1]
    finally:
        br.stop()
        br._shutdown()
