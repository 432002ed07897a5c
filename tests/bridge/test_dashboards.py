"""Dashboards and alert rules against a real InfluxDB 1.x after a simulated fleet run.

The run goes through the real path: Samples -> frame.Encoder (signed frames) -> frame.decode ->
cloud_bridge.mapper -> line protocol -> V1Writer -> influxd. Then every panel query of the committed
dashboard JSON, with Grafana's macros and variables filled in as Grafana would, must return the series
it is meant to show; every alert rule's query, reduced and compared as Grafana would, must fire for
exactly the series the run made violate it.
"""

import json
import pathlib
import time

import pytest
import yaml

from cloud_bridge import mapper
from cloud_bridge.grafana import dashboards, generate, macros
from cloud_bridge.metrics import Metrics
from cloud_bridge.writer import V1Writer
from firmware.comms import frame
from firmware.sample import TEMP_INVALID_DC, Sample
from tools.testservers.influxdb import InfluxDB1

pytestmark = pytest.mark.servers

GRAFANA = pathlib.Path(generate.__file__).resolve().parent
DB = "bms"
RUN_S = 1800             # 30 simulated minutes ...
PERIOD_S = 5             # ... of one sample every 5 s, 10 samples per frame
PER_FRAME = 10
KEY = bytes(range(32))

# device: (site, group, cells, temps)
FLEET = {
    "bms-0001": ("plant-a", "forklifts", 16, 3),
    "bms-0002": ("plant-a", "ups", 4, 2),
    "bms-0003": ("plant-b", "ups", 8, 1),
}


def _sample_at(dev, k, n):
    """Sample k of n for one device. What each pack does during the run:
    bms-0001 charges; cell 7 runs ahead and passes 3600 mV in the last minutes (over-voltage), and
      is balanced (bit 6) from half-way;
    bms-0002 discharges; its lowest cell falls below 2600 mV at the end (under-voltage); thermistor 1
      is open (invalid) and thermistor 2 reads -12 degC (cold);
    bms-0003 rests with a steady 200 mV spread (imbalance), runs hot (52 degC) and raises a firmware
      fault in the last quarter.
    """
    site, group, cells, temps = FLEET[dev]
    s = Sample(cells, temps)
    x = k / (n - 1)
    if dev == "bms-0001":
        for i in range(cells):
            s.cell_mv[i] = 3380 + int(150 * x) + (i % 3)
        s.cell_mv[6] = 3400 + int(230 * x)               # 3630 mV at the end
        s.current_ma = 20000
        s.balance_mask = (1 << 6) if x > 0.5 else 0
        s.state, s.fet_status, s.soc_cpct = 2, 0b101, 5000 + int(3000 * x)
        for j in range(temps):
            s.temp_dc[j] = 250 + 10 * j
    elif dev == "bms-0002":
        for i in range(cells):
            s.cell_mv[i] = 3250 - int(700 * x) - 5 * i    # lowest 2535 mV at the end
        s.current_ma = -30000
        s.state, s.fet_status, s.soc_cpct = 3, 0b101, 6000 - int(5000 * x)
        s.temp_dc[0] = TEMP_INVALID_DC
        s.temp_dc[1] = -120
    else:
        for i in range(cells):
            s.cell_mv[i] = 3300 + (200 if i == 5 else 0)
        s.current_ma = 0
        s.state, s.fet_status, s.soc_cpct = 1, 0b101, 7000
        s.faults = 1 if x > 0.75 else 0
        s.temp_dc[0] = 520
    s.stack_mv = sum(s.cell_mv)
    s.pack_mv = s.ld_mv = s.stack_mv
    s.int_temp_dc = 300
    s.soh_cpct = 9700
    return s


def simulated_run(t_end_ms):
    """Line protocol of the whole run, ending at t_end_ms (Unix ms), via encoder, decoder and mapper."""
    n = RUN_S // PERIOD_S
    t0_ms = t_end_ms - (n - 1) * PERIOD_S * 1000
    lines = []
    for dev, (site, group, cells, temps) in FLEET.items():
        tags = {"device": dev, "site": site, "group": group, "board": "sim-board"}
        enc = frame.Encoder(dev, KEY, boot=3, capacity=4096)
        seq = 0

        def emit(b):
            d = frame.decode(bytes(b), dev, KEY)
            lines.extend(mapper.to_line(p) for p in mapper.map_frame(d, tags))

        def wall(t_ms):
            return t_ms // 1000 - frame.WALL_EPOCH_UNIX_S, t_ms % 1000

        ws, wm = wall(t0_ms)
        emit(enc.status(seq, 0, 60, 0, "0.1.0", "sim-board", 0x1234abcd, 1, cells, temps, ws, wm))
        seq += 1
        for first in range(0, n, PER_FRAME):
            ref_ms = t0_ms + first * PERIOD_S * 1000
            ws, wm = wall(ref_ms)
            enc.begin_telemetry(seq, ref_ms - t0_ms, 60 + (ref_ms - t0_ms) // 1000, 0, cells, temps,
                                ws, wm)
            for k in range(first, min(n, first + PER_FRAME)):
                s = _sample_at(dev, k, n)
                s.t_ms = k * PERIOD_S * 1000
                assert enc.add_sample(s)
            emit(enc.finish())
            seq += 1
        if dev == "bms-0003":
            t_ms = t0_ms + int(0.8 * RUN_S) * 1000
            ws, wm = wall(t_ms)
            enc.begin_events(seq, 0, 60, 0, ws, wm)
            enc.add_event(0, frame.EVENT_RAISED, 0, 520)
            emit(enc.finish())
            seq += 1
        if dev == "bms-0002":
            # The broker published its last will: the bridge writes an offline status point.
            lines.extend(mapper.to_line(p) for p in mapper.map_offline(tags, "will", t_end_ms - 60000))
    # Two bridge instances reporting every 10 s: b falls two and a half minutes behind at the end.
    for name in ("bridge-a", "bridge-b"):
        m = Metrics(name)
        for k in range(RUN_S // 10):
            t = t0_ms + k * 10000
            m.frames_in += 30
            m.frames_stored += 29
            m.points_stored += 29 * 40
            if k % 7 == 0:
                m.reject("bad_tag")
            m.write_ok(points=40, latency_ms=3.0 + k % 5)
            m.queue_depth = k % 4
            m.lag_ms = 150000 if (name == "bridge-b" and k > RUN_S // 10 - 20) else 800
            lines.extend(mapper.to_line(p) for p in m.points(t))
            m.end_interval()
    return lines


@pytest.fixture(scope="module")
def fleet_db(tmp_path_factory):
    db = InfluxDB1(tmp_path_factory.mktemp("influx"))
    db.start()
    try:
        db.create_database(DB)
        end_ms = int(time.time() * 1000) // 1000 * 1000 - 5000
        w = V1Writer(db.url, DB)
        lines = simulated_run(end_ms)
        for i in range(0, len(lines), 5000):
            w.write(lines[i:i + 5000])
        w.close()
        yield db, end_ms
    finally:
        db.stop()


def committed_dashboards():
    return {p.stem: json.loads(p.read_text()) for p in sorted((GRAFANA / "dashboards").glob("*.json"))}


def run_query(db, q):
    r = db.query(q, db=DB, epoch="ms")["results"][0]
    assert "error" not in r, "%s\n-> %s" % (q, r.get("error"))
    return r.get("series", [])


# What each panel is meant to show: (dashboard uid, panel title, refId) ->
#   columns: the result columns; by: the tag that splits the series and the values it must take
#   (None: one series without tags); value: for single-number panels, the number after the run.
ALL_DEVICES = sorted(FLEET)
CELLS_16 = ["%02d" % i for i in range(1, 17)]
EXPECT = {
    ("bms-fleet", "Online", "A"): dict(columns=["time", "online"], by=None, value=2),
    ("bms-fleet", "Offline", "A"): dict(columns=["time", "offline"], by=None, value=1),
    ("bms-fleet", "Packs with active faults", "A"): dict(columns=["time", "faulted"], by=None, value=1),
    ("bms-fleet", "Packs (latest sample)", "A"): dict(
        columns=["time", "soc_pct", "cell_min_mv", "cell_max_mv", "cell_delta_mv", "current_a",
                 "state", "faults"], by=("device", ALL_DEVICES)),
    ("bms-fleet", "Which cell is lowest, per pack", "A"): dict(
        columns=["time", "mv", "cell"], by=("device", ALL_DEVICES)),
    ("bms-fleet", "SOC per pack", "A"): dict(columns=["time", "mean"], by=("device", ALL_DEVICES)),
    ("bms-fleet", "Lowest cell per pack", "A"): dict(columns=["time", "min"], by=("device", ALL_DEVICES)),
    ("bms-fleet", "Cell imbalance (max - min) per pack", "A"): dict(
        columns=["time", "max"], by=("device", ALL_DEVICES)),
    ("bms-fleet", "Pack current", "A"): dict(columns=["time", "mean"], by=("device", ALL_DEVICES)),
    ("bms-pack", "Cell voltages", "A"): dict(columns=["time", "mean"], by=("cell", CELLS_16)),
    ("bms-pack", "Cell voltages (heatmap)", "A"): dict(columns=["time", "mean"], by=("cell", CELLS_16)),
    ("bms-pack", "Lowest, highest cell and their difference", "A"): dict(
        columns=["time", "min", "max", "delta"], by=None),
    ("bms-pack", "Balancing (share of samples bleeding)", "A"): dict(
        columns=["time", "mean"], by=("cell", CELLS_16)),
    ("bms-pack", "Current", "A"): dict(columns=["time", "mean", "min", "max"], by=None),
    ("bms-pack", "SOC and SOH", "A"): dict(columns=["time", "soc", "soh"], by=None),
    ("bms-pack", "Temperatures", "A"): dict(columns=["time", "mean"], by=("sensor", ["ts1", "ts2", "ts3"])),
    ("bms-pack", "Temperatures", "B"): dict(columns=["time", "afe die"], by=None),
    ("bms-pack", "State, faults and FETs", "A"): dict(
        columns=["time", "state", "faults", "chg_fet", "dsg_fet"], by=None),
    ("bms-pack", "Events", "A"): None,     # bms-0001 raised no event: checked with bms-0003 below
    ("bms-bridge", "Frames per second", "A"): dict(
        columns=["time", "in", "stored", "rejected"], by=("instance", ["bridge-a", "bridge-b"])),
    ("bms-bridge", "Rejected since start, by reason", "A"): dict(
        columns=["time", "last_rejected", "last_rejected_bad_tag"],
        by=("instance", ["bridge-a", "bridge-b"])),
    ("bms-bridge", "Database write latency", "A"): dict(
        columns=["time", "p50", "max"], by=("instance", ["bridge-a", "bridge-b"])),
    ("bms-bridge", "Lag (receive time - device time)", "A"): dict(
        columns=["time", "lag"], by=("instance", ["bridge-a", "bridge-b"])),
    ("bms-bridge", "Queue depth and write retries", "A"): dict(
        columns=["time", "queue", "retries"], by=("instance", ["bridge-a", "bridge-b"])),
    ("bms-bridge", "Points per write", "A"): dict(
        columns=["time", "avg", "max"], by=("instance", ["bridge-a", "bridge-b"])),
}
# The variables a person picks on each dashboard for the check above.
PICKED = {
    "bms-fleet": {"site": macros.ALL, "group": macros.ALL, "device": macros.ALL},
    "bms-pack": {"site": macros.ALL, "group": macros.ALL, "device": "bms-0001"},
    "bms-bridge": {"instance": macros.ALL},
}


def panel_targets(board):
    for p in board["panels"]:
        for t in p.get("targets", []):
            yield p, t


def grafana_query(board, panel, target, from_ms, to_ms, picked):
    multi = {v["name"]: bool(v.get("multi") or v.get("includeAll"))
             for v in board["templating"]["list"]}
    return macros.interpolate(target["query"], from_ms, to_ms, picked, max_data_points=800,
                              min_interval=panel.get("interval") or "1ms", multi=multi)


def test_committed_files_equal_the_generator_output():
    files = generate.render()
    assert generate.stale(files) == [], "run: python -m cloud_bridge.grafana.generate"
    # and the generator's dashboards are exactly the committed ones (no extra, none missing)
    assert sorted(committed_dashboards()) == sorted(dashboards.BUILDERS)


def test_every_panel_has_an_expectation_and_uses_the_provisioned_datasource():
    ds = yaml.safe_load((GRAFANA / "provisioning/datasources/influxdb.yaml").read_text())
    uid = ds["datasources"][0]["uid"]
    assert ds["datasources"][0]["type"] == "influxdb"
    seen = set()
    for board_uid, board in committed_dashboards().items():
        for p in board["panels"]:
            if p["type"] == "row":
                continue
            assert p["datasource"]["uid"] == uid
            assert p.get("targets"), p["title"]
            for t in p["targets"]:
                assert t["datasource"]["uid"] == uid and t["rawQuery"] is True
                seen.add((board_uid, p["title"], t["refId"]))
    assert seen == set(EXPECT)
    rules = yaml.safe_load((GRAFANA / "provisioning/alerting/bms-rules.yaml").read_text())
    for r in rules["groups"][0]["rules"]:
        assert r["data"][0]["datasourceUid"] == uid


def test_every_panel_query_returns_the_series_it_is_meant_to_show(fleet_db):
    db, end_ms = fleet_db
    from_ms, to_ms = end_ms - RUN_S * 1000, end_ms + 1000
    checked = 0
    for uid, board in committed_dashboards().items():
        for panel, target in panel_targets(board):
            exp = EXPECT[(uid, panel["title"], target["refId"])]
            if exp is None:
                continue
            q = grafana_query(board, panel, target, from_ms, to_ms, PICKED[uid])
            assert "$" not in q.replace("$/", ""), q
            series = run_query(db, q)
            where = "%s / %s / %s: %s" % (uid, panel["title"], target["refId"], q)
            assert series, "no data: " + where
            for s in series:
                assert s["columns"] == exp["columns"], where
                assert s["values"], where
                # every row carries at least one non-null value besides time
                assert any(any(v is not None for v in row[1:]) for row in s["values"]), where
            if exp["by"] is None:
                assert len(series) == 1 and not series[0].get("tags"), where
            else:
                key, values = exp["by"]
                assert sorted(s["tags"][key] for s in series) == sorted(values), where
            if "value" in exp:
                assert series[0]["values"][0][1] == exp["value"], where
            checked += 1
    assert checked == sum(1 for v in EXPECT.values() if v is not None)


def _one(db, board_uid, title, ref, picked, end_ms):
    board = committed_dashboards()[board_uid]
    for p, t in panel_targets(board):
        if p["title"] == title and t["refId"] == ref:
            q = grafana_query(board, p, t, end_ms - RUN_S * 1000, end_ms + 1000, picked)
            return run_query(db, q)
    raise KeyError(title)


def test_panel_values_follow_the_run(fleet_db):
    """A few panels checked for content, not only shape."""
    db, end_ms = fleet_db
    fleet = PICKED["bms-fleet"]
    lowest = {s["tags"]["device"]: s["values"][0][1:] for s in
              _one(db, "bms-fleet", "Which cell is lowest, per pack", "A", fleet, end_ms)}
    assert lowest["bms-0002"] == [2535, "04"]       # the last cell of the discharged pack
    packs = {s["tags"]["device"]: dict(zip(s["columns"], s["values"][0])) for s in
             _one(db, "bms-fleet", "Packs (latest sample)", "A", fleet, end_ms)}
    assert packs["bms-0001"]["cell_max_mv"] == 3630 and packs["bms-0003"]["faults"] == 1
    assert packs["bms-0003"]["cell_delta_mv"] == 200 and packs["bms-0002"]["current_a"] == -30.0

    pack = dict(PICKED["bms-pack"])
    bal = {s["tags"]["cell"]: max(r[1] for r in s["values"] if r[1] is not None) for s in
           _one(db, "bms-pack", "Balancing (share of samples bleeding)", "A", pack, end_ms)}
    assert bal["07"] == 100 and bal["01"] == 0
    fets = _one(db, "bms-pack", "State, faults and FETs", "A", pack, end_ms)[0]
    last = dict(zip(fets["columns"], fets["values"][-1]))
    assert (last["state"], last["chg_fet"], last["dsg_fet"]) == (2, 1, 1)

    # the pack dashboard for the device whose thermistor 1 is open: ts1 draws nothing
    pack["device"] = "bms-0002"
    temps = _one(db, "bms-pack", "Temperatures", "A", pack, end_ms)
    assert [s["tags"]["sensor"] for s in temps] == ["ts2"]
    assert temps[0]["values"][-1][1] == -12.0
    # and the hot one's event shows in its event table
    pack["device"] = "bms-0003"
    ev = _one(db, "bms-pack", "Events", "A", pack, end_ms)
    assert ev and ev[0]["columns"] == ["time", "kind", "code", "value", "boot", "seq"]
    assert [r[1:4] for r in ev[0]["values"]] == [["raised", 0, 520]]


def test_multi_value_variables_narrow_the_fleet(fleet_db):
    db, end_ms = fleet_db
    picked = {"site": macros.ALL, "group": macros.ALL, "device": ["bms-0001", "bms-0003"]}
    s = _one(db, "bms-fleet", "SOC per pack", "A", picked, end_ms)
    assert sorted(x["tags"]["device"] for x in s) == ["bms-0001", "bms-0003"]
    picked = {"site": ["plant-a"], "group": ["ups"], "device": macros.ALL}
    s = _one(db, "bms-fleet", "Packs (latest sample)", "A", picked, end_ms)
    assert [x["tags"]["device"] for x in s] == ["bms-0002"]


def test_template_variable_queries_list_sites_groups_devices(fleet_db):
    db, end_ms = fleet_db
    board = committed_dashboards()["bms-fleet"]
    var = {v["name"]: v for v in board["templating"]["list"]}

    def values(name, picked):
        q = macros.interpolate(var[name]["query"], 0, end_ms, picked)
        series = run_query(db, q)
        return [row[1] for row in series[0]["values"]] if series else []

    assert values("site", {}) == ["plant-a", "plant-b"]
    assert values("group", {"site": ["plant-a"]}) == ["forklifts", "ups"]
    assert values("device", {"site": macros.ALL, "group": ["ups"]}) == ["bms-0002", "bms-0003"]
    inst = committed_dashboards()["bms-bridge"]["templating"]["list"][0]
    assert [r[1] for r in run_query(db, inst["query"])[0]["values"]] == ["bridge-a", "bridge-b"]


# --- alert rules: evaluated as Grafana does (query A over the rule's window, reduce B, threshold C)
def _reduce(values, how):
    vals = [v for v in values if v is not None]          # mode dropNN
    if not vals:
        return None
    return {"last": vals[-1], "max": max(vals), "min": min(vals), "mean": sum(vals) / len(vals),
            "sum": sum(vals), "count": len(vals)}[how]


def _threshold(value, ev):
    p = ev["params"]
    return {"gt": lambda: value > p[0], "lt": lambda: value < p[0], "gte": lambda: value >= p[0],
            "lte": lambda: value <= p[0], "within_range": lambda: p[0] < value < p[1],
            "outside_range": lambda: value < p[0] or value > p[1]}[ev["type"]]()


def evaluate_rule(db, rule, now_ms):
    """{labels tuple: firing?} for one provisioned rule at now_ms."""
    a, b, c = (next(d for d in rule["data"] if d["refId"] == r) for r in ("A", "B", "C"))
    assert rule["condition"] == "C" and b["model"]["expression"] == "A"
    assert c["model"]["expression"] == "B"
    window_ms = a["relativeTimeRange"]["from"] * 1000
    q = macros.interpolate(a["model"]["query"], now_ms - window_ms, now_ms)
    out = {}
    for s in run_query(db, q):
        v = _reduce([row[1] for row in s["values"]], b["model"]["reducer"])
        labels = tuple(sorted((s.get("tags") or {}).items()))
        out[labels] = v is not None and _threshold(v, c["model"]["conditions"][0]["evaluator"])
    return out


FIRES = {   # rule uid -> the series the run made violate it (everything else it sees must stay OK)
    "bms-cell-over-voltage": [{"device": "bms-0001"}],
    "bms-cell-under-voltage": [{"device": "bms-0002"}],
    "bms-temperature-high": [{"device": "bms-0003", "sensor": "ts1"}],
    "bms-temperature-low": [{"device": "bms-0002", "sensor": "ts2"}],
    "bms-cell-imbalance": [{"device": "bms-0003"}],
    "bms-device-offline": [{"device": "bms-0002"}],
    "bms-bridge-lag": [{"instance": "bridge-b"}],
}


def test_every_alert_rule_fires_exactly_on_the_crafted_violation(fleet_db):
    db, end_ms = fleet_db
    doc = yaml.safe_load((GRAFANA / "provisioning/alerting/bms-rules.yaml").read_text())
    assert doc["apiVersion"] == 1
    rules = doc["groups"][0]["rules"]
    assert sorted(r["uid"] for r in rules) == sorted(FIRES)
    for rule in rules:
        result = evaluate_rule(db, rule, end_ms + 1000)
        assert len(result) >= 2, "%s sees too few series to prove anything: %s" % (rule["uid"], result)
        want = FIRES[rule["uid"]]
        got = [{k: dict(labels).get(k) for k in want[0]} for labels, f in sorted(result.items()) if f]
        assert got == want, "%s: %s" % (rule["uid"], result)


def test_alert_rules_stay_quiet_on_a_healthy_fleet(influxdb1):
    """The same rules over a run where nothing is violated fire for nobody (thresholds not inverted)."""
    db = influxdb1
    end_ms = int(time.time() * 1000) // 1000 * 1000 - 5000
    lines = []
    for dev, (site, group, cells, temps) in FLEET.items():
        tags = {"device": dev, "site": site, "group": group, "board": "sim-board"}
        for k in range(0, 600, 10):
            t = (end_ms - k * 1000) * 1000000
            lines.append(mapper.to_line(("pack", tags, {"cell_max_mv": 3400, "cell_min_mv": 3380,
                                                        "cell_delta_mv": 20}, t)))
            lines.append(mapper.to_line(("temp", dict(tags, sensor="ts1"), {"dc": 250, "degc": 25.0},
                                         t)))
        lines.append(mapper.to_line(("status", tags, {"online": 1, "source": "status"},
                                     (end_ms - 300000) * 1000000)))
    lines.append(mapper.to_line(("bridge", {"instance": "bridge-a"}, {"lag_ms": 500}, end_ms * 1000000)))
    lines.append(mapper.to_line(("bridge", {"instance": "bridge-b"}, {"lag_ms": 900}, end_ms * 1000000)))
    V1Writer(db.url, DB).write(lines)
    doc = yaml.safe_load((GRAFANA / "provisioning/alerting/bms-rules.yaml").read_text())
    for rule in doc["groups"][0]["rules"]:
        result = evaluate_rule(db, rule, end_ms + 1000)
        assert result and not any(result.values()), "%s: %s" % (rule["uid"], result)


def test_macros_refuse_an_unknown_variable_and_escape_values():
    with pytest.raises(ValueError):
        macros.interpolate('SELECT 1 FROM "x" WHERE "a" =~ /^$nosuch$/', 0, 1000)
    q = macros.interpolate('"device" =~ /^$device$/ AND $timeFilter GROUP BY time($__interval)',
                           1000, 3601000, {"device": ["a.b", "c"]}, max_data_points=1000)
    assert q == '"device" =~ /^(a\\.b|c)$/ AND time >= 1000ms and time <= 3601000ms GROUP BY time(5s)'


def test_panels_fit_the_24_column_grid_without_overlapping():
    for uid, board in committed_dashboards().items():
        taken = set()
        for p in board["panels"]:
            g = p["gridPos"]
            assert g["x"] >= 0 and g["w"] > 0 and g["x"] + g["w"] <= 24, (uid, p["title"], g)
            cells = {(x, y) for x in range(g["x"], g["x"] + g["w"])
                     for y in range(g["y"], g["y"] + g["h"])}
            assert not cells & taken, (uid, p["title"], g)
            taken |= cells


def test_device_offline_keeps_firing_for_a_long_offline_spell_and_resolves_on_traffic(influxdb1):
    """A device offline for 30 days still fires (a 7-day window let it resolve silently); one heard
    again after silence (status point source 'traffic') does not."""
    db = influxdb1
    now_ms = int(time.time() * 1000) // 1000 * 1000
    day_ms = 86400 * 1000
    lines = []
    for dev, events in {"bms-0001": [(60 * day_ms, 1, "status"), (30 * day_ms, 0, "will")],
                        "bms-0002": [(40 * day_ms, 0, "silence"), (39 * day_ms, 1, "traffic")],
                        "bms-0003": [(2 * day_ms, 1, "status")]}.items():
        tags = {"device": dev, "site": "s", "group": "g", "board": "b"}
        for ago_ms, online, source in events:
            lines.append(mapper.to_line(("status", tags, {"online": online, "source": source},
                                         (now_ms - ago_ms) * 1000000)))
    V1Writer(db.url, DB).write(lines)
    doc = yaml.safe_load((GRAFANA / "provisioning/alerting/bms-rules.yaml").read_text())
    rule = next(r for r in doc["groups"][0]["rules"] if r["uid"] == "bms-device-offline")
    result = {dict(labels)["device"]: firing for labels, firing in evaluate_rule(db, rule, now_ms).items()}
    assert result == {"bms-0001": True, "bms-0002": False, "bms-0003": False}
