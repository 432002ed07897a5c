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
from firmware.comms import auth, frame
from tests.bridge.conftest import DEVICE_PASSWORDS
from tests.bridge.frames import KEY, Board
from tests.bridge.harness import RECEIVE_MAX, BridgeProc, Publisher, wait_until

pytestmark = pytest.mark.servers
DEV = "bms-0001"
SIGNER = "bms-0002"                 # registered; its frames are mutated and then signed validly
SIGNER_KEY = bytes(range(100, 132))
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
    if b == valid:                               # e.g. a byte overwritten with its own value
        b[-1] ^= 1
    return bytes(b)


def _value_mutation(valid, rng):
    """Random bytes over a few places after the header, length kept: the structure mostly holds, the
    values (cells, currents, text, counts) become anything."""
    b = bytearray(valid)
    for _ in range(rng.randrange(1, 6)):
        b[rng.randrange(frame.HDR_BYTES, len(b) - frame.TAG_LEN)] = rng.randrange(256)
    return bytes(b)


def _resign(payload, device, key):
    """The mutated frame with a valid tag over its (mutated) body: authentic but hostile, so it gets
    past the tag check into the decoder, the mapper, the writer and the database."""
    body = payload[:-frame.TAG_LEN] if len(payload) > frame.TAG_LEN else payload
    return body + auth.Authenticator(key).tag(auth.device_id_bytes(device), body)


def test_ten_thousand_random_and_mutated_payloads_are_all_counted(tmp_path, broker, influxdb1):
    rng = random.Random(1234)
    br = BridgeProc(tmp_path, broker, influxdb1.url, rejects_keep=20000)
    Registry(br.registry).add_device(DEV, KEY)
    Registry(br.registry).add_device(SIGNER, SIGNER_KEY)    # its key signs hostile mutations
    br.start()
    pub = Publisher(broker, DEV, DEVICE_PASSWORDS[DEV])
    signer = Publisher(broker, SIGNER, DEVICE_PASSWORDS[SIGNER])
    stranger = Publisher(broker, "bms-0003", DEVICE_PASSWORDS["bms-0003"])   # not in the registry
    b = Board(DEV, cells=4, temps=1)
    base = [b.telemetry(3), b.status(), b.events([1]), b.ack(1)]   # valid frames to mutate
    kinds = ["telemetry", "status", "event", "ack"]
    top = "bms/%s/up/" % DEV
    items, expect = [], {"unknown_device": 0, "bad_topic": 0, "replay": 0}
    n_valid = 0
    s_board = Board(SIGNER, cells=4, temps=1)
    # (topic, payload) of bms-0002, signed with its key after the mutation: values changed first (the
    # header kept, so most decode), then structure changed (a changed boot would refuse later frames)
    signed_values, signed = [], []
    for i in range(10000):
        r = i % 10
        if r < 2:
            # new frames each time (fresh seq numbers), so that many decode and are stored
            k = rng.randrange(4)
            valid = [s_board.telemetry(rng.randrange(1, 4)), s_board.status(),
                     s_board.events([rng.randrange(1, 40)]), s_board.ack(rng.randrange(1, 9))][k]
            if rng.random() < 0.5:
                signed_values.append(("bms/%s/up/%s" % (SIGNER, kinds[k]),
                                      _resign(_value_mutation(valid, rng), SIGNER, SIGNER_KEY)))
            else:
                signed.append(("bms/%s/up/%s" % (SIGNER, kinds[k]),
                               _resign(_mutations(valid, rng), SIGNER, SIGNER_KEY)))
        elif r < 5:
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
    signed = signed_values + signed
    own = [(t, p) for t, p in items if t is not None]
    strange = [("bms/bms-0003/up/telemetry", p) for t, p in items if t is None]
    pub.publish_all(own, timeout_s=120)
    stranger.publish_all(strange, timeout_s=120)
    signer.publish_all(signed, timeout_s=120)
    total = len(items) + 1 + len(signed)
    con = sqlite3.connect(br.rejects)

    def all_counted():          # every message in, and each one stored or rejected
        m = br.last_metrics()
        return m.get("frames_in") == total and m["frames_stored"] + m["rejected"] == total
    wait_until(all_counted, 90, "every payload counted")
    assert br.alive
    assert br.stop() == 0
    m = br.last_metrics()
    assert m["frames_in"] == total and m["frames_stored"] + m["rejected"] == total
    totals = dict(con.execute("SELECT reason, n FROM reject_totals"))
    assert sum(totals.values()) == m["rejected"]
    assert "internal" not in totals                 # no payload reached the catch-all
    # the hostile-but-authentic frames went through: many stored (mapper, writer, database), the
    # rest rejected with a reason (the database may refuse a point: db_rejected)
    hostile_stored = m["frames_stored"] - 1 - n_valid
    assert len(signed) // 10 < hostile_stored < len(signed), (hostile_stored, len(signed))
    assert influxdb1.count("bms", "pack", "stack_mv", "device = '%s'" % SIGNER) > 0
    own_rejects = con.execute("SELECT count(*) FROM rejects WHERE topic NOT LIKE ?",
                              ("bms/%s/%%" % SIGNER,)).fetchone()[0]
    assert own_rejects == total - len(signed) - 1 - n_valid    # bms-0001's and strangers' all refused
    for reason, n in expect.items():
        assert totals.get(reason, 0) >= n, (reason, totals)
    assert totals["unknown_device"] == expect["unknown_device"]
    assert totals["bad_topic"] == expect["bad_topic"]
    assert set(totals) <= {"truncated", "oversized", "version", "kind", "tag", "malformed",
                           "unknown_device", "bad_topic", "replay", "db_rejected"}
    # every reject kept with its raw bytes
    assert con.execute("SELECT count(*) FROM rejects").fetchone()[0] == sum(totals.values())
    assert influxdb1.count("bms", "pack", "stack_mv", "device = '%s'" % DEV) == 3 + n_valid
