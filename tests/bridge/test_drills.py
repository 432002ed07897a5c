"""Drills with real servers: the database goes away under load (the bridge kept running, or killed
with SIGKILL in the middle of it); a flood of garbage payloads.

BRIDGE_OUTAGE_S sets the outage length (default 8 s here; the drills issue runs it with 60)."""
import os
import random
import sqlite3
import threading
import time

import pytest

from cloud_bridge.registry import Registry
from cloud_bridge.verify import WILL_PAYLOAD
from firmware.comms import frame
from tests.bridge.conftest import DEVICE_PASSWORDS
from tests.bridge.frames import KEY, Board
from tests.bridge.harness import RECEIVE_MAX, BridgeProc, Publisher, wait_until

pytestmark = pytest.mark.servers
DEV = "bms-0001"
OUTAGE_S = float(os.environ.get("BRIDGE_OUTAGE_S", "8"))


def count(db, meas="pack", field="stack_mv"):
    return db.count("bms", meas, field)


@pytest.mark.parametrize("outage_s", [OUTAGE_S])
@pytest.mark.parametrize("kill_bridge", [False, True], ids=["bridge-stays", "bridge-killed-too"])
def test_database_outage_under_load_holds_acks_then_catches_up(tmp_path, broker, influxdb1, outage_s,
                                                              kill_bridge):
    br = BridgeProc(tmp_path, broker, influxdb1.url)
    Registry(br.registry).add_device(DEV, KEY)
    br.start()
    pub = Publisher(broker, DEV, DEVICE_PASSWORDS[DEV])
    b = Board(DEV, cells=4, temps=1)
    rate = 150                                   # frames/s, 5 samples each
    n_frames = int(rate * (outage_s + 3))
    items = [("bms/%s/up/telemetry" % DEV, b.telemetry(5)) for _ in range(n_frames)]
    sender = threading.Thread(target=pub.publish_all, args=(items,),
                              kwargs={"rate_per_s": rate, "timeout_s": outage_s + 60})
    sender.start()
    wait_until(lambda: count(influxdb1) > 0, 20, "first points")
    influxdb1.stop()
    log_mark = len(br.log_lines())
    time.sleep(outage_s)
    during = br.log_lines()[log_mark:]
    if kill_bridge:
        # The harshest proof that nothing was acknowledged unwritten: everything the bridge held
        # in memory dies with it, and still nothing may be missing in the end.
        br.kill9()
    influxdb1.start()
    if kill_bridge:
        br.start()
    sender.join(outage_s + 60)
    total = n_frames * 5
    wait_until(lambda: count(influxdb1) >= total, 60, "catch-up after the outage")
    assert count(influxdb1) == total                 # nothing lost, nothing doubled
    assert count(influxdb1, "cell", "mv") == total * 4
    assert br.alive
    assert br.stop() == 0
    # While the database was down the bridge retried, and acknowledged nothing: the broker never had
    # more than Receive Maximum messages in flight to it, and held the rest.
    retries = [d for d in during if d.get("msg") == "write failed, retrying"]
    assert retries, "no retries logged during the outage"
    m = [d for d in during if d.get("msg") == "metrics" and d.get("db_down")]
    assert m, "no metrics logged during the outage"
    assert max(d["queue_depth"] for d in m) <= RECEIVE_MAX
    assert m[-1]["frames_in"] - m[0]["frames_in"] <= RECEIVE_MAX
    assert m[-1]["frames_stored"] == m[0]["frames_stored"]


def _mutations(valid, rng):
    b = bytearray(valid)
    op = rng.randrange(7)
    if op == 0:                                  # flip one bit anywhere
        i = rng.randrange(len(b))
        b[i] ^= 1 << rng.randrange(8)
    elif op == 1:                                # truncate
        b = b[:rng.randrange(len(b))]
    elif op == 2:                                # append junk
        b += bytes(rng.randrange(256) for _ in range(rng.randrange(1, 20)))
    elif op == 3:                                # delete a byte
        del b[rng.randrange(len(b))]
    elif op == 4:                                # change version/kind/flags
        b[rng.randrange(3)] = rng.randrange(256)
    elif op == 5:                                # overwrite a run with random bytes
        i = rng.randrange(len(b))
        for j in range(i, min(len(b), i + rng.randrange(1, 8))):
            b[j] = rng.randrange(256)
    else:                                        # huge
        b = b * (frame.MAX_FRAME // len(b) + 2)
    return bytes(b)


def test_ten_thousand_random_and_mutated_payloads_are_all_counted(tmp_path, broker, influxdb1):
    rng = random.Random(1234)
    br = BridgeProc(tmp_path, broker, influxdb1.url, rejects_keep=20000)
    Registry(br.registry).add_device(DEV, KEY)
    br.start()
    pub = Publisher(broker, DEV, DEVICE_PASSWORDS[DEV])
    stranger = Publisher(broker, "bms-0003", DEVICE_PASSWORDS["bms-0003"])   # not in the registry
    b = Board(DEV, cells=4, temps=1)
    base = [b.telemetry(3), b.status(), b.events([1]), b.ack(1)]   # valid frames to mutate
    kinds = ["telemetry", "status", "event", "ack"]
    top = "bms/%s/up/" % DEV
    items, expect = [], {"unknown_device": 0, "bad_topic": 0, "replay": 0}
    n_valid = 0
    for i in range(10000):
        r = i % 10
        if r < 5:
            k = rng.randrange(4)
            items.append((top + kinds[k], _mutations(base[k], rng)))
        elif r < 8:
            items.append((top + rng.choice(kinds),
                          bytes(rng.randrange(256) for _ in range(rng.randrange(0, 200)))))
        elif i % 100 == 8:
            items.append((top + "telemetry", b.telemetry(1)))   # a good one now and then
            n_valid += 1
        elif i % 100 == 18:
            items.append((top + "telemetry", base[0]))          # replay of a stored frame
            expect["replay"] += 1
        elif i % 100 == 28:
            items.append((top + "nonsense", b.telemetry(1)))    # the ACL allows it, the bridge not
            expect["bad_topic"] += 1
        elif i % 100 == 38:
            items.append((top + "telemetry", WILL_PAYLOAD))     # a will payload on the wrong topic
        else:
            items.append((None, bytes(rng.randrange(256) for _ in range(rng.randrange(20, 80)))))
            expect["unknown_device"] += 1
    # the first copy of base[0] must be stored before its replays (seq order is otherwise fine)
    pub.publish_all([(top + "telemetry", base[0])])
    own = [(t, p) for t, p in items if t is not None]
    strange = [("bms/bms-0003/up/telemetry", p) for t, p in items if t is None]
    pub.publish_all(own, timeout_s=120)
    stranger.publish_all(strange, timeout_s=120)
    total = len(items) + 1
    con = sqlite3.connect(br.rejects)

    def rejected():
        try:
            return sum(n for _, n in con.execute("SELECT reason, n FROM reject_totals"))
        except sqlite3.OperationalError:
            return 0
    wait_until(lambda: rejected() >= total - 1 - n_valid, 60, "every payload counted")
    assert br.alive
    assert br.stop() == 0
    totals = dict(con.execute("SELECT reason, n FROM reject_totals"))
    assert sum(totals.values()) == total - 1 - n_valid
    assert "internal" not in totals
    for reason, n in expect.items():
        assert totals.get(reason, 0) >= n, (reason, totals)
    assert totals["unknown_device"] == expect["unknown_device"]
    assert totals["bad_topic"] == expect["bad_topic"]
    assert set(totals) <= {"truncated", "oversized", "version", "kind", "tag", "malformed",
                           "unknown_device", "bad_topic", "replay"}
    # every reject kept with its raw bytes
    assert con.execute("SELECT count(*) FROM rejects").fetchone()[0] == sum(totals.values())
    assert count(influxdb1) == 3 + n_valid          # the good ones, each once
    m = br.last_metrics()
    assert m["frames_in"] == total and m["frames_stored"] == 1 + n_valid
