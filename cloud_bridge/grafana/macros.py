"""Fill in a dashboard query's Grafana macros and variables the way Grafana's InfluxDB data source does.

Used by the tests (and by anyone checking a panel by hand with `influx -execute`) to run a panel's
query against a real database exactly as Grafana would send it.

    q = interpolate(panel_query, from_ms=t0, to_ms=t1, variables={"device": ["bms-0001"]})
    requests.get(url + "/query", params={"db": "bms", "q": q})

What is mimicked (Grafana 10/11, InfluxQL mode):
- `$timeFilter` becomes `time >= <from>ms and time <= <to>ms` (the backend's form for any range);
- `$__interval` / `$interval` become the panel's bucket: range / max data points, rounded to a "nice"
  interval and never below the panel's minimum; `$__interval_ms` the same in ms;
- `$__from` / `$__to` become epoch ms;
- a variable `$name`, `${name}` or `[[name]]` of a multi-value or include-all variable becomes its
  value regex-escaped, several values as `(a|b)`; "All" becomes the variable's `allValue`.
"""

import re

# Grafana's kbn.roundInterval buckets (ms): an interval below the left bound rounds to the right value.
_NICE_MS = (
    (15, 10), (35, 20), (75, 50), (150, 100), (350, 200), (750, 500), (1500, 1000),
    (3500, 2000), (7500, 5000), (12500, 10000), (17500, 15000), (25000, 20000), (45000, 30000),
    (90000, 60000), (210000, 120000), (450000, 300000), (750000, 600000), (1050000, 900000),
    (1500000, 1200000), (2700000, 1800000), (5400000, 3600000), (9000000, 7200000),
    (16200000, 10800000), (32400000, 21600000), (86400000, 43200000), (604800000, 86400000),
)
_REGEX_SPECIAL = re.compile(r"([\\^$*+?.()|{}\[\]/])")
_VAR = re.compile(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)")
ALL = "$__all"


def parse_duration_ms(text):
    """'5s' -> 5000; units ms, s, m, h, d."""
    m = re.fullmatch(r"(\d+)(ms|s|m|h|d)", text.strip())
    if not m:
        raise ValueError("not a Grafana duration: %r" % text)
    return int(m.group(1)) * {"ms": 1, "s": 1000, "m": 60000, "h": 3600000, "d": 86400000}[m.group(2)]


def format_duration(ms):
    for unit, size in (("d", 86400000), ("h", 3600000), ("m", 60000), ("s", 1000)):
        if ms >= size and ms % size == 0:
            return "%d%s" % (ms // size, unit)
    return "%dms" % ms


def interval_ms(from_ms, to_ms, max_data_points=1000, min_interval="1ms"):
    """The `$__interval` Grafana computes for a panel, in ms."""
    raw = max(1, (to_ms - from_ms) // max(1, max_data_points))
    nice = 604800000
    for bound, value in _NICE_MS:
        if raw < bound:
            nice = value
            break
    return max(nice, parse_duration_ms(min_interval))


def regex_escape(value):
    return _REGEX_SPECIAL.sub(r"\\\1", value)


def format_variable(value, multi=True, all_value=".*"):
    """A variable's text inside a query. value: a string, a list of strings, or ALL."""
    if value == ALL or value == [ALL]:
        return all_value
    if isinstance(value, str):
        value = [value]
    if not multi:
        # Grafana leaves a single-select variable without "All" unescaped.
        return value[0]
    escaped = [regex_escape(v) for v in value]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def interpolate(query, from_ms, to_ms, variables=None, max_data_points=1000, min_interval="1ms",
                multi=None):
    """The query as Grafana sends it. variables: {name: value}; multi: {name: bool} (default True).

    Raises ValueError when a `$name` remains that is neither a macro nor a given variable (a panel
    referring to a variable its dashboard does not define).
    """
    variables = variables or {}
    multi = multi or {}
    step = interval_ms(from_ms, to_ms, max_data_points, min_interval)
    macros = {
        "timeFilter": "time >= %dms and time <= %dms" % (from_ms, to_ms),
        "__interval": format_duration(step),
        "interval": format_duration(step),
        "__interval_ms": str(step),
        "__from": str(from_ms),
        "__to": str(to_ms),
    }

    def repl(m):
        name = m.group(1) or m.group(2) or m.group(3)
        if name in macros:
            return macros[name]
        if name in variables:
            return format_variable(variables[name], multi.get(name, True))
        raise ValueError("query uses $%s, which is neither a macro nor a variable" % name)

    # A `$` followed by `/` (end-of-regex anchor) is not a variable and the pattern leaves it alone.
    return _VAR.sub(repl, query)
