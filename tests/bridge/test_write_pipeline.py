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
