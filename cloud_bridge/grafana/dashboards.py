"""The three operator dashboards (fleet overview, pack detail, bridge health) as code.

Built with the Grafana Foundation SDK; every query is InfluxQL against the schema in
docs/influx-schema.md. `generate.py` writes them as JSON under cloud_bridge/grafana/dashboards/.

    from cloud_bridge.grafana import dashboards
    board = dashboards.build_all()["bms-fleet"]   # a plain dict, as Grafana stores it
"""

import ast
import json
import pathlib

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import heatmap, stat, statetimeline, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as dbm

from cloud_bridge.grafana.influxql import (DATASOURCE_TYPE, DATASOURCE_UID, DEVICE, INSTANCE,
                                           Target, fleet_filter, fleet_variables, tag_variable)

TAGS = ["bms"]
# Telemetry arrives every few seconds; a shorter bucket than this only draws gaps.
MIN_INTERVAL = "5s"



def state_names():
    """Pack state names by code, read from the firmware itself (firmware/pack/state.py `NAMES`).

    Read from the source rather than imported: that module is MicroPython code (it imports
    `micropython`, which only the host port provides), and the generator runs on plain CPython.
    """
    src = pathlib.Path(__file__).resolve().parents[2] / "firmware" / "pack" / "state.py"
    for node in ast.parse(src.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["NAMES"]:
            NAMES = ast.literal_eval(node.value)
            break
    else:
        raise ValueError("no NAMES tuple in %s" % src)
    return {str(code): name for code, name in enumerate(NAMES)}


def _thresholds(*steps):
    """steps: (value or None, colour) pairs, lowest first."""
    return (db.ThresholdsConfig().mode(dbm.ThresholdsMode.ABSOLUTE)
            .steps([dbm.Threshold(value=v, color=c) for v, c in steps]))


def _series(title, unit, *targets, span=12, height=8):
    p = (timeseries.Panel().title(title).unit(unit).span(span).height(height)
         .interval(MIN_INTERVAL))
    for t in targets:
        p = p.with_target(t)
    return p


def _one_table():
    """InfluxDB answers a GROUP BY table query with one table per series: merge them into one and drop
    the time column (the rows are "latest" values, the time of an aggregate is meaningless)."""
    return [dbm.DataTransformerConfig(id_val="merge", options={}),
            dbm.DataTransformerConfig(id_val="organize",
                                      options={"excludeByName": {"Time": True}})]


def _dashboard(uid, title, description):
    return (db.Dashboard(title).uid(uid).description(description).tags(TAGS)
            .time("now-6h", "now").refresh("30s").timezone("browser").editable())


def fleet_overview():
    """Online/offline counts, active alarms, SOC and the worst cell of every pack."""
    f = fleet_filter()
    last_status = ('SELECT last("online") AS "online" FROM "status" WHERE time > now() - 30d AND '
                   + f + ' GROUP BY "device"')
    d = _dashboard("bms-fleet", "BMS fleet overview",
                   "Every pack of the chosen sites and groups: online state, alarms, SOC, cells.")
    for v in fleet_variables(device_multi=True):
        d = d.with_variable(v)
    d = d.with_row(db.Row("Now"))
    d = d.with_panel(
        stat.Panel().title("Online").span(8).height(4).no_value("0")
        .thresholds(_thresholds((None, "green")))
        .with_target(Target("A", 'SELECT sum("online") AS "online" FROM (' + last_status + ")")))
    d = d.with_panel(
        stat.Panel().title("Offline").span(8).height(4).no_value("0")
        .thresholds(_thresholds((None, "green"), (1, "red")))
        .with_target(Target("A", 'SELECT count("online") AS "offline" FROM (' + last_status
                            + ') WHERE "online" = 0')))
    d = d.with_panel(
        stat.Panel().title("Packs with active faults").span(8).height(4).no_value("0")
        .thresholds(_thresholds((None, "green"), (1, "red")))
        .with_target(Target(
            "A", 'SELECT count("faults") AS "faulted" FROM (SELECT last("faults") AS "faults" '
                 'FROM "pack" WHERE $timeFilter AND ' + f + ' GROUP BY "device") WHERE "faults" > 0')))
    d = d.with_panel(
        table.Panel().title("Packs (latest sample)").span(16).height(10)
        .transformations(_one_table())
        .with_target(Target(
            "A", 'SELECT last("soc_pct") AS "soc_pct", last("cell_min_mv") AS "cell_min_mv", '
                 'last("cell_max_mv") AS "cell_max_mv", last("cell_delta_mv") AS "cell_delta_mv", '
                 'last("current_a") AS "current_a", last("state") AS "state", '
                 'last("faults") AS "faults" FROM "pack" WHERE $timeFilter AND ' + f
                 + ' GROUP BY "site", "group", "device"', result_format="table")))
    d = d.with_panel(
        table.Panel().title("Which cell is lowest, per pack").span(8).height(10)
        .transformations(_one_table())
        .with_target(Target(
            "A", 'SELECT bottom("mv", "cell", 1) AS "mv" FROM (SELECT last("mv") AS "mv" FROM "cell" '
                 'WHERE $timeFilter AND ' + f + ' GROUP BY "device", "cell") GROUP BY "device"',
            result_format="table")))
    d = d.with_row(db.Row("Trends"))
    d = d.with_panel(_series(
        "SOC per pack", "percent",
        Target("A", 'SELECT mean("soc_pct") FROM "pack" WHERE $timeFilter AND ' + f
               + ' GROUP BY time($__interval), "device" fill(none)', alias="$tag_device"),
        span=12).min(0).max(100))
    d = d.with_panel(_series(
        "Lowest cell per pack", "mvolt",
        Target("A", 'SELECT min("cell_min_mv") FROM "pack" WHERE $timeFilter AND ' + f
               + ' GROUP BY time($__interval), "device" fill(none)', alias="$tag_device"),
        span=12))
    d = d.with_panel(_series(
        "Cell imbalance (max - min) per pack", "mvolt",
        Target("A", 'SELECT max("cell_delta_mv") FROM "pack" WHERE $timeFilter AND ' + f
               + ' GROUP BY time($__interval), "device" fill(none)', alias="$tag_device"),
        span=12))
    d = d.with_panel(_series(
        "Pack current", "amp",
        Target("A", 'SELECT mean("current_a") FROM "pack" WHERE $timeFilter AND ' + f
               + ' GROUP BY time($__interval), "device" fill(none)', alias="$tag_device"),
        span=12))
    return d


def pack_detail():
    """One pack: every cell over time and as a heatmap, current, SOC/SOH, temperatures, balancing,
    state and FETs."""
    w = "$timeFilter AND " + DEVICE
    d = _dashboard("bms-pack", "BMS pack detail",
                   "One pack in depth. Pick the device at the top.")
    for v in fleet_variables(device_multi=False):
        d = d.with_variable(v)
    cells = ('SELECT mean("mv") FROM "cell" WHERE ' + w
             + ' GROUP BY time($__interval), "cell" fill(none)')
    d = d.with_row(db.Row("Cells"))
    d = d.with_panel(_series("Cell voltages", "mvolt", Target("A", cells, alias="cell $tag_cell"),
                             span=12, height=10))
    d = d.with_panel(
        heatmap.Panel().title("Cell voltages (heatmap)").span(12).height(10).interval(MIN_INTERVAL)
        # The data are already one row per cell: show them as rows, do not re-bucket.
        .calculate(False)
        .color(heatmap.HeatmapColorOptions().mode("scheme").scheme("RdYlBu").reverse(True))
        .cell_values(heatmap.CellValues().unit("mvolt"))
        .with_target(Target("A", cells, alias="$tag_cell")))
    d = d.with_panel(_series(
        "Lowest, highest cell and their difference", "mvolt",
        Target("A", 'SELECT min("cell_min_mv") AS "min", max("cell_max_mv") AS "max", '
                    'max("cell_delta_mv") AS "delta" FROM "pack" WHERE ' + w
               + ' GROUP BY time($__interval) fill(none)', alias="$col")))
    d = d.with_panel(_series(
        "Balancing (share of samples bleeding)", "percent",
        Target("A", 'SELECT mean("balancing") * 100 FROM "cell" WHERE ' + w
               + ' GROUP BY time($__interval), "cell" fill(none)', alias="cell $tag_cell")))
    d = d.with_row(db.Row("Pack"))
    d = d.with_panel(_series(
        "Current", "amp",
        Target("A", 'SELECT mean("current_a") AS "mean", min("current_a") AS "min", '
                    'max("current_a") AS "max" FROM "pack" WHERE ' + w
               + ' GROUP BY time($__interval) fill(none)', alias="$col"), span=8))
    d = d.with_panel(_series(
        "SOC and SOH", "percent",
        Target("A", 'SELECT mean("soc_pct") AS "soc", mean("soh_pct") AS "soh" FROM "pack" WHERE '
               + w + ' GROUP BY time($__interval) fill(none)', alias="$col"), span=8).min(0).max(100))
    d = d.with_panel(_series(
        "Temperatures", "celsius",
        Target("A", 'SELECT mean("degc") FROM "temp" WHERE ' + w
               + ' GROUP BY time($__interval), "sensor" fill(none)', alias="$tag_sensor"),
        Target("B", 'SELECT mean("int_temp_dc") / 10 AS "afe die" FROM "pack" WHERE ' + w
               + ' GROUP BY time($__interval) fill(none)', alias="$col"), span=8))
    d = d.with_panel(
        statetimeline.Panel().title("State, faults and FETs").span(24).height(7)
        .interval(MIN_INTERVAL)
        .override_by_name("state", [dbm.DynamicConfigValue(id_val="mappings", value=[
            dbm.ValueMap(options={k: dbm.ValueMappingResult(text=t) for k, t in
                                  state_names().items()})])])
        .override_by_name("faults", [dbm.DynamicConfigValue(id_val="mappings", value=[
            dbm.ValueMap(options={"0": dbm.ValueMappingResult(text="none", color="green")})])])
        .override_by_regexp("^(chg|dsg)_fet$", [dbm.DynamicConfigValue(id_val="mappings", value=[
            dbm.ValueMap(options={"0": dbm.ValueMappingResult(text="off", color="red"),
                                  "1": dbm.ValueMappingResult(text="on", color="green")})])])
        # FET Status (0x7F): bit 0 CHG_FET, bit 2 DSG_FET (reference/bq76952.md).
        .with_target(Target(
            "A", 'SELECT last("state") AS "state", last("faults") AS "faults", '
                 'last("fet_status") & 1 AS "chg_fet", (last("fet_status") & 4) / 4 AS "dsg_fet" '
                 'FROM "pack" WHERE ' + w + ' GROUP BY time($__interval) fill(previous)',
            alias="$col")))
    d = d.with_panel(
        table.Panel().title("Events").span(24).height(8)
        .with_target(Target("A", 'SELECT "kind", "code", "value", "boot", "seq" FROM "event" '
                                 'WHERE ' + w + ' ORDER BY time DESC LIMIT 200',
                            result_format="table")))
    return d


def bridge_health():
    """The bridge's self-metrics: throughput, rejections, write latency, lag, queue."""
    w = "$timeFilter AND " + INSTANCE
    d = _dashboard("bms-bridge", "BMS bridge health",
                   "Cloud bridge instances: frames in, stored and rejected; database write latency; lag.")
    d = d.with_variable(tag_variable("instance", "Instance", "bridge"))
    rate = 'non_negative_derivative(max("%s"), 1s) AS "%s"'
    d = d.with_panel(_series(
        "Frames per second", "reqps",
        Target("A", "SELECT " + ", ".join(rate % (f, n) for f, n in (
            ("frames_in", "in"), ("frames_stored", "stored"), ("rejected", "rejected")))
            + ' FROM "bridge" WHERE ' + w + ' GROUP BY time($__interval), "instance" fill(none)',
            alias="$tag_instance $col")))
    d = d.with_panel(
        table.Panel().title("Rejected since start, by reason").span(12).height(8)
        .transformations(_one_table())
        .with_target(Target("A", 'SELECT last(/^rejected/) FROM "bridge" WHERE ' + w
                            + ' GROUP BY "instance"', result_format="table")))
    d = d.with_panel(_series(
        "Database write latency", "ms",
        Target("A", 'SELECT mean("write_ms_p50") AS "p50", max("write_ms_max") AS "max" '
                    'FROM "bridge" WHERE ' + w + ' GROUP BY time($__interval), "instance" fill(none)',
               alias="$tag_instance $col")))
    d = d.with_panel(_series(
        "Lag (receive time - device time)", "ms",
        Target("A", 'SELECT max("lag_ms") AS "lag" FROM "bridge" WHERE ' + w
               + ' GROUP BY time($__interval), "instance" fill(none)', alias="$tag_instance")))
    d = d.with_panel(_series(
        "Queue depth and write retries", "short",
        Target("A", 'SELECT max("queue_depth") AS "queue", max("write_retries") AS "retries" '
                    'FROM "bridge" WHERE ' + w + ' GROUP BY time($__interval), "instance" fill(none)',
               alias="$tag_instance $col")))
    d = d.with_panel(_series(
        "Points per write", "short",
        Target("A", 'SELECT mean("batch_points_avg") AS "avg", max("batch_points_max") AS "max" '
                    'FROM "bridge" WHERE ' + w + ' GROUP BY time($__interval), "instance" fill(none)',
               alias="$tag_instance $col")))
    return d


BUILDERS = {"bms-fleet": fleet_overview, "bms-pack": pack_detail, "bms-bridge": bridge_health}


def to_dict(builder):
    """The dashboard as the plain JSON object Grafana stores (the SDK's encoder, round-tripped).

    Panel ids are numbered in order (stable links, `viewPanel=`), and every panel names the
    provisioned data source itself rather than relying on the default one.
    """
    out = json.loads(json.dumps(builder.build(), cls=JSONEncoder))
    for i, panel in enumerate(out.get("panels", []), 1):
        panel["id"] = i
        if panel.get("type") != "row":
            panel["datasource"] = {"type": DATASOURCE_TYPE, "uid": DATASOURCE_UID}
    return out


def build_all():
    """uid -> dashboard dict, for every dashboard."""
    return {uid: to_dict(make()) for uid, make in BUILDERS.items()}
