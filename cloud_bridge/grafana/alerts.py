"""Grafana unified-alerting rules for the fleet, as code (written to provisioning/alerting/ as YAML).

Each rule is three steps, as Grafana evaluates them: A, an InfluxQL query giving one series per
device (or sensor, or bridge instance); B, a reduce of each series to one number; C, a threshold on B.
The rule data are built with the Grafana Foundation SDK, then laid out in the file-provisioning shape.

    from cloud_bridge.grafana import alerts
    doc = alerts.provisioning()          # {"apiVersion": 1, "groups": [...]}, ready for yaml.safe_dump

Limits: the operator's alert levels sit just inside the firmware's own protection limits
(firmware/config/presets.py, LFP by default), so an alert warns before or while the board acts.
Change LIMITS (or pass your own to provisioning()) for another chemistry and regenerate.
"""

import json

from grafana_foundation_sdk.builders import alerting, expr
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import alerting as alm
from grafana_foundation_sdk.models import dashboard as dbm

from cloud_bridge.grafana.influxql import DATASOURCE_UID, InfluxQLQuery

# Server-side expressions (reduce, threshold) run in Grafana itself, under this pseudo data source.
_EXPR = dbm.DataSourceRef(type_val="__expr__", uid="__expr__")
FOLDER = "BMS"
GROUP = "bms-fleet"
INTERVAL = "1m"

# Alert levels (fixed units as in the schema). LFP defaults: cell_ov_mv 3650 / cell_uv_mv 2500 in
# firmware/config/presets.py; chg_ot_dc 450 and dsg_ot_dc 600; imbalance_mv 300 in defaults.py.
LIMITS = {
    "cell_over_mv": 3600,       # warn 50 mV before the firmware's over-voltage trip
    "cell_under_mv": 2600,      # warn 100 mV before the under-voltage trip
    "temp_high_degc": 50.0,     # between the charge (45) and discharge (60) over-temperature limits
    "temp_low_degc": -10.0,     # below this even discharge is near its -20 degC limit
    "imbalance_mv": 150,        # half the firmware's imbalance fault level
    "bridge_lag_ms": 120000,    # data two minutes behind: backlog or a device clock far off
}


OFFLINE_WINDOW_S = 400 * 86400     # "Device offline" looks this far back for each device's last status


class Rule:
    """One alert rule: what to query, how to reduce each series, and the threshold."""

    def __init__(self, uid, title, query, reducer, evaluator, params, window_s, for_s, summary,
                 severity="warning", no_data="OK"):
        self.uid = uid
        self.title = title
        self.query = query              # InfluxQL with $timeFilter; one series per alerting instance
        self.reducer = reducer          # Grafana reduce: last, max, min, mean ...
        self.evaluator = evaluator      # gt, lt, outside_range ...
        self.params = params
        self.window_s = window_s        # relative time range of query A (seconds back from now)
        self.for_s = for_s              # pending period before firing
        self.summary = summary
        self.severity = severity
        self.no_data = no_data


def rules(limits=None):
    """The fleet's rules, with LIMITS (or the given dict) as thresholds."""
    lim = dict(LIMITS)
    lim.update(limits or {})
    by_dev = ' GROUP BY "device", "site", "group"'
    return [
        Rule("bms-cell-over-voltage", "Cell over-voltage",
             'SELECT max("cell_max_mv") FROM "pack" WHERE $timeFilter' + by_dev,
             "max", "gt", [lim["cell_over_mv"]], 300, 60,
             "Highest cell of {{ $labels.device }} reached {{ humanize $values.B.Value }} mV", "critical"),
        Rule("bms-cell-under-voltage", "Cell under-voltage",
             'SELECT min("cell_min_mv") FROM "pack" WHERE $timeFilter' + by_dev,
             "min", "lt", [lim["cell_under_mv"]], 300, 60,
             "Lowest cell of {{ $labels.device }} fell to {{ humanize $values.B.Value }} mV", "critical"),
        Rule("bms-temperature-high", "Pack temperature high",
             'SELECT max("degc") FROM "temp" WHERE $timeFilter GROUP BY "device", "site", "group", '
             '"sensor"',
             "max", "gt", [lim["temp_high_degc"]], 300, 60,
             "{{ $labels.sensor }} of {{ $labels.device }} at {{ humanize $values.B.Value }} degC", "critical"),
        Rule("bms-temperature-low", "Pack temperature low",
             'SELECT min("degc") FROM "temp" WHERE $timeFilter GROUP BY "device", "site", "group", '
             '"sensor"',
             "min", "lt", [lim["temp_low_degc"]], 300, 300,
             "{{ $labels.sensor }} of {{ $labels.device }} at {{ humanize $values.B.Value }} degC"),
        Rule("bms-cell-imbalance", "Cell imbalance",
             'SELECT min("cell_delta_mv") FROM "pack" WHERE $timeFilter' + by_dev,
             # min over the window: the spread stayed above the limit all the time, not a load spike
             "min", "gt", [lim["imbalance_mv"]], 900, 900,
             "Cells of {{ $labels.device }} differ by {{ humanize $values.B.Value }} mV"),
        Rule("bms-device-offline", "Device offline",
             # The bridge writes online=0 on the last will or after offline_after_s of silence, and
             # online=1 on a status frame or when a board marked silent is heard again. The window
             # is long: a device whose last status point falls out of it drops out of the result and
             # its alert resolves without it being back (a status point is written only on a
             # change), so it must outlast any offline spell worth alerting on. Status points are few,
             # so last() over 400 days stays cheap; disable or remove devices retired for good.
             'SELECT last("online") FROM "status" WHERE $timeFilter' + by_dev,
             "last", "lt", [1], OFFLINE_WINDOW_S, 0,
             "{{ $labels.device }} is offline"),
        Rule("bms-bridge-lag", "Bridge lag",
             'SELECT max("lag_ms") FROM "bridge" WHERE $timeFilter GROUP BY "instance"',
             "max", "gt", [lim["bridge_lag_ms"]], 300, 120,
             "Bridge {{ $labels.instance }} is {{ humanize $values.B.Value }} ms behind", "warning",
             no_data="Alerting"),
    ]


def _rule_builder(r):
    a = InfluxQLQuery("A", r.query)
    b = (expr.TypeReduce().ref_id("B").datasource(_EXPR).expression("A").reducer(r.reducer)
         .settings(expr.ExprTypeReduceSettings().mode("dropNN")))
    c = (expr.TypeThreshold().ref_id("C").datasource(_EXPR).expression("B").conditions([
        expr.ExprTypeThresholdConditions().evaluator(
            expr.ExprTypeThresholdConditionsEvaluator().type(r.evaluator).params(r.params))]))

    class _Model:  # wraps a ready model object as a builder for alerting.Query.model()
        def __init__(self, obj):
            self.obj = obj

        def build(self):
            return self.obj

    window = alm.RelativeTimeRange(from_val=r.window_s, to=0)
    return (alerting.Rule(r.title).uid(r.uid).condition("C")
            .with_query(alerting.Query("A").datasource_uid(DATASOURCE_UID).model(_Model(a))
                        .relative_time_range(window))
            .with_query(alerting.Query("B").datasource_uid("__expr__").model(b)
                        .relative_time_range(window))
            .with_query(alerting.Query("C").datasource_uid("__expr__").model(c)
                        .relative_time_range(window))
            .no_data_state(r.no_data).exec_err_state("Error")
            .for_val("%ds" % r.for_s)
            .annotations({"summary": r.summary})
            .labels({"severity": r.severity, "team": "bms"})
            .is_paused(False))


# The SDK serialises the API shape (folderUID, orgID, ruleGroup per rule); file provisioning names the
# folder and group once per group instead.
_API_ONLY = ("folderUID", "orgID", "ruleGroup")


def provisioning(limits=None):
    """The alerting provisioning document (apiVersion 1) as plain data."""
    out = []
    for r in rules(limits):
        d = json.loads(json.dumps(_rule_builder(r).build(), cls=JSONEncoder))
        for k in _API_ONLY:
            d.pop(k, None)
        out.append(d)
    return {"apiVersion": 1, "groups": [
        {"orgId": 1, "name": GROUP, "folder": FOLDER, "interval": INTERVAL, "rules": out}]}
