"""Writer against real servers: InfluxDB 1.x through /write, VictoriaMetrics through influxdb-client's
v2 write API; idempotent rewrites, retries through an outage, isolation of refused points; InfluxDB
with logins (a write-only user; a wrong password is retried, nothing acked)."""
import logging
import threading
import time

import pytest

from cloud_bridge import mapper
from cloud_bridge import settings as _settings
from cloud_bridge.mqtt_consumer import Message
from cloud_bridge.registry import Registry
from cloud_bridge.service import Bridge
from cloud_bridge.metrics import Metrics
from cloud_bridge.writer import Batcher, Stopped, V1Writer, V2Writer, WriteError
from firmware.comms import frame
from tests.bridge.frames import KEY, Board
from tests.bridge.test_write_pipeline import FakeConsumer
from tools.testservers.influxdb import InfluxDB1, _http

pytestmark = pytest.mark.servers
TAGS = {"device": "bms-0001", "site": "plant-a", "group": "g1", "board": "sim"}


def frame_lines(board, n_samples=10):
    d = frame.decode(board.telemetry(n_samples), board.device, KEY)
    return [mapper.to_line(p) for p in mapper.map_frame(d, TAGS)]


def test_v1_write_and_query_back_integers(influxdb1):
    b = Board()
    w = V1Writer(influxdb1.url, "bms")
    w.write(frame_lines(b, 10))
    assert influxdb1.count("bms", "pack", "stack_mv") == 10
    assert influxdb1.count("bms", "cell", "mv") == 160
    rows = influxdb1.select("bms", "SELECT stack_mv, current_ma, soc_pct FROM pack WHERE device='bms-0001'")
    assert rows[3]["current_ma"] == -1497 and rows[3]["soc_pct"] == pytest.approx(79.97)
    # integers stay integers (the `i` suffix): InfluxQL reports the field type
    ft = influxdb1.query('SHOW FIELD KEYS FROM "pack"', db="bms")["results"][0]["series"][0]["values"]
    types = dict(ft)
    assert types["stack_mv"] == "integer" and types["stack_v"] == "float"


def test_v1_same_points_twice_are_stored_once(influxdb1):
    lines = frame_lines(Board(), 10)
    w = V1Writer(influxdb1.url, "bms")
    w.write(lines)
    w.write(lines)
    w.write(lines[::-1])
    assert influxdb1.count("bms", "pack", "stack_mv") == 10
    assert influxdb1.count("bms", "cell", "mv") == 160


def test_v2_write_api_into_victoria_metrics(victoria):
    lines = frame_lines(Board(), 10)
    w = V2Writer(victoria.url, bucket="bms", org="bms", token="not-checked")
    w.write(lines)
    w.write(lines)                                   # redelivery: same series + time
    w.close()
    series = victoria.export('{__name__="pack_stack_mv"}')
    assert len(series) == 1
    assert series[0]["metric"]["device"] == "bms-0001" and series[0]["metric"]["site"] == "plant-a"
    assert len(series[0]["values"]) == 10           # not 20: deduplicated per series and ms
    cells = victoria.export('{__name__="cell_mv", device="bms-0001"}')
    assert sorted(s["metric"]["cell"] for s in cells) == ["%02d" % i for i in range(1, 17)]
    assert all(len(s["values"]) == 10 for s in cells)


def test_v2_writer_reports_an_unreachable_server_as_transient(victoria):
    w = V2Writer(victoria.url, bucket="bms", timeout_s=2)
    victoria.stop()
    with pytest.raises(WriteError) as e:
        w.write(["m f=1i 1"])
    assert not e.value.permanent


def test_batcher_retries_through_an_outage_and_loses_nothing(influxdb1):
    m = Metrics("t")
    bat = Batcher(V1Writer(influxdb1.url, "bms", timeout_s=2), max_points=100000, flush_ms=0,
                  retry_min_s=0.05, retry_max_s=0.2, metrics=m)
    b = Board()
    for i in range(20):
        bat.add(frame_lines(b, 5), i)
    influxdb1.stop()
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("r", bat.flush()))
    t.start()
    deadline = time.monotonic() + 20
    while m.write_retries < 3 and time.monotonic() < deadline:   # it is failing and retrying
        time.sleep(0.05)
    assert m.write_retries >= 3
    assert t.is_alive()                               # still blocked: nothing confirmed yet
    influxdb1.start()
    t.join(30)
    assert not t.is_alive()
    assert [r[0] for r in result["r"]] == list(range(20))
    assert all(r[2] is None for r in result["r"])
    assert influxdb1.count("bms", "pack", "stack_mv") == 100


def test_batcher_isolates_the_message_the_database_refuses(influxdb1):
    bat = Batcher(V1Writer(influxdb1.url, "bms"), flush_ms=0, retry_min_s=0.01)
    b = Board()
    for i in range(7):
        bat.add(frame_lines(b, 2), "good%d" % i)
    # stack_mv as a string conflicts with the integer field already written: HTTP 400 partial write
    # (type conflicts are checked per shard: use the same time as real points)
    other = frame_lines(Board("bms-0002"), 1)
    V1Writer(influxdb1.url, "bms").write(other)
    bat.add(['pack,device=bms-0009 stack_mv="oops" %s' % other[0].rsplit(" ", 1)[1]], "bad")
    res = bat.flush()
    refused = [r[0] for r in res if r[2] is not None]
    assert refused == ["bad"]
    assert influxdb1.count("bms", "pack", "stack_mv", "device='bms-0001'") == 14


def test_batcher_gives_up_only_when_stopping(influxdb1):
    stop = threading.Event()
    bat = Batcher(V1Writer(influxdb1.url, "bms", timeout_s=1), flush_ms=0, retry_min_s=0.05,
                  retry_max_s=0.1, should_stop=stop.is_set)
    bat.add(["m f=1i 1"], "x")
    influxdb1.kill()
    threading.Timer(0.5, stop.set).start()
    with pytest.raises(Stopped):
        bat.flush()


def test_batcher_due_by_size_and_by_age():
    now = [0.0]
    bat = Batcher(None, max_points=3, flush_ms=100, clock=lambda: now[0])
    assert not bat.due()
    bat.add(["a"], 1)
    assert not bat.due()
    now[0] = 0.099
    assert not bat.due()
    now[0] = 0.1
    assert bat.due()
    bat2 = Batcher(None, max_points=3, flush_ms=100, clock=lambda: now[0])
    bat2.add(["a", "b", "c"], 1)
    assert bat2.due()


# --- InfluxDB with logins (as the deploy stack runs it: a write-only user for the bridge) ---
@pytest.fixture
def influxdb_auth(tmp_path):
    db = InfluxDB1(tmp_path, auth=True)
    db.start()
    db.create_database("bms")
    db.create_user("bridge-writer", "right-password", grant=("WRITE", "bms"))
    yield db
    db.kill()


def test_v1_writer_with_a_write_only_user_stores_points(influxdb_auth):
    # without a login the server refuses even a query: auth is really on
    status, _ = _http("POST", influxdb_auth.url + "/query?q=SHOW+DATABASES")
    assert status == 401
    w = V1Writer(influxdb_auth.url, "bms", username="bridge-writer", password="right-password")
    w.write(frame_lines(Board(), 10))
    assert influxdb_auth.count("bms", "pack", "stack_mv") == 10
    with pytest.raises(WriteError) as e:            # write-only: it may not read
        w.query("SELECT count(stack_mv) FROM pack", database="bms")
    assert e.value.status == 403
    w.close()


def test_v1_wrong_password_is_transient_and_the_bridge_retries_without_acking(influxdb_auth,
                                                                               tmp_path):
    w = V1Writer(influxdb_auth.url, "bms", username="bridge-writer", password="wrong-password")
    with pytest.raises(WriteError) as e:
        w.write(frame_lines(Board(), 1))
    assert e.value.status == 401 and not e.value.permanent       # an operator fixes it; we wait
    w.close()

    reg_path = str(tmp_path / "registry.sqlite")
    reg = Registry(reg_path)
    reg.add_device("bms-0001", KEY)
    reg.close()
    s = _settings.load(None, env={}, overrides={
        "influx": {"flush_ms": 20, "retry_min_s": 0.05, "retry_max_s": 0.2},
        "bridge": {"registry": reg_path, "rejects": str(tmp_path / "rejects.sqlite"),
                   "instance": "t", "receipts": False}})
    consumer = FakeConsumer()
    writer = V1Writer(influxdb_auth.url, "bms", username="bridge-writer", password="wrong-password")
    br = Bridge(s, log=logging.getLogger("test-writer-auth"), backend=[writer], consumer=consumer)
    br.start_writers()
    board = Board()
    try:
        for mid in range(1, 6):
            consumer.messages.put(Message("bms/bms-0001/up/telemetry", board.telemetry(2), 1, mid, 1,
                                          int(time.time() * 1000), False))
        before_fix = {}

        def operator():          # once the bridge retried a few times: look, then fix the password
            deadline = time.monotonic() + 20
            while br.metrics.write_retries < 3 and time.monotonic() < deadline:
                time.sleep(0.05)
            before_fix.update(retries=br.metrics.write_retries, acked=list(consumer.acked),
                              stored=br.metrics.frames_stored, rejected=dict(br.metrics.rejected),
                              points=influxdb_auth.count("bms", "pack", "stack_mv"))
            influxdb_auth.query("SET PASSWORD FOR \"bridge-writer\" = 'wrong-password'")
        fixer = threading.Thread(target=operator, daemon=True)
        fixer.start()
        deadline = time.monotonic() + 40
        while len(consumer.acked) < 5:          # the bridge runs in this thread (SQLite)
            assert time.monotonic() < deadline, "not caught up"
            br.step(0.01)
        fixer.join()
        assert before_fix["retries"] >= 3, before_fix
        assert before_fix["acked"] == [] and before_fix["stored"] == 0, before_fix
        assert before_fix["rejected"] == {} and before_fix["points"] == 0, before_fix
        assert consumer.acked == [1, 2, 3, 4, 5]
        assert influxdb_auth.count("bms", "pack", "stack_mv") == 10
    finally:
        br.stop()
        br._shutdown()
