"""InfluxQL query targets and variables for the generated Grafana dashboards and alert rules.

The Grafana Foundation SDK has builders for panels, variables and alert rules, but no query type for
the InfluxDB data source, so this module supplies one (a raw InfluxQL target) plus the filters every
BMS query shares. Every query in the dashboards and alert rules is written here or next to its panel.

    q = Target("A", "SELECT mean(\"mv\") FROM \"cell\" WHERE $timeFilter AND " + device_filter())
    panel.with_target(q)          # a cogbuilder.Builder, as the SDK expects
"""

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import dashboard as dbm

# The provisioned data source (cloud_bridge/grafana/provisioning/datasources/influxdb.yaml).
DATASOURCE_UID = "bms-influxdb"
DATASOURCE_TYPE = "influxdb"
DATASOURCE = dbm.DataSourceRef(type_val=DATASOURCE_TYPE, uid=DATASOURCE_UID)

# Tag filters. `group` is an InfluxQL keyword (GROUP BY), so every identifier is double-quoted.
# Multi-value variables are interpolated by Grafana's InfluxDB data source as a regex alternation
# `(a|b)`, hence `=~ /^$var$/` rather than `=`.
SITE = '"site" =~ /^$site$/'
GROUP = '"group" =~ /^$group$/'
DEVICE = '"device" =~ /^$device$/'
INSTANCE = '"instance" =~ /^$instance$/'


def fleet_filter():
    """WHERE clause part selecting the site, group and device variables' choice."""
    return SITE + " AND " + GROUP + " AND " + DEVICE


class InfluxQLQuery(cogvariants.Dataquery):
    """One raw InfluxQL query as Grafana's InfluxDB data source stores it in a panel's targets."""

    def __init__(self, ref_id, query, result_format="time_series", alias=None, hide=False):
        self.ref_id = ref_id
        self.query = query
        self.result_format = result_format
        self.alias = alias
        self.hide = hide

    def to_json(self):
        out = {
            "refId": self.ref_id,
            "datasource": DATASOURCE,
            "rawQuery": True,
            "query": self.query,
            "resultFormat": self.result_format,
        }
        if self.alias:
            # Grafana's alias patterns: $tag_<key> is the series' tag value, $col the column name.
            out["alias"] = self.alias
        if self.hide:
            out["hide"] = True
        return out


class Target(cogbuilder.Builder[InfluxQLQuery]):
    """Builder wrapper so a query can be passed to the SDK's `with_target()`."""

    def __init__(self, ref_id, query, result_format="time_series", alias=None):
        self._internal = InfluxQLQuery(ref_id, query, result_format, alias)

    def build(self):
        return self._internal


def tag_variable(name, label, measurement, where=None, multi=True):
    """A query variable listing the values of one tag, optionally narrowed by earlier variables.

    `allValue` is `.*` so "All" stays a short regex however large the fleet grows.
    """
    q = 'SHOW TAG VALUES FROM "%s" WITH KEY = "%s"' % (measurement, name)
    if where:
        q += " WHERE " + where
    v = (db.QueryVariable(name)
         .label(label)
         .datasource(DATASOURCE)
         .query(q)
         .refresh(dbm.VariableRefresh.ON_TIME_RANGE_CHANGED)
         .sort(dbm.VariableSort.ALPHABETICAL_ASC)
         .multi(multi)
         .include_all(multi))
    if multi:
        v = v.all_value(".*").current(dbm.VariableOption(selected=True, text="All", value="$__all"))
    return v


def fleet_variables(device_multi=True):
    """site -> group -> device, each narrowed by the ones before it."""
    return [
        tag_variable("site", "Site", "pack"),
        tag_variable("group", "Group", "pack", where=SITE),
        tag_variable("device", "Device", "pack", where=SITE + " AND " + GROUP, multi=device_multi),
    ]
