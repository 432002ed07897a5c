"""Plot a run as a PNG: per-cell voltages, current, SOC, temperatures, balancing and faults.

The data comes either from InfluxDB (what the bridge stored, through InfluxQL on /query; schema in
docs/influx-schema.md) or from the JSONL/CSV trace a simulated board wrote (tools/demo_fleet.py --trace).

    python tools/plot_run.py --influx http://127.0.0.1:8086 --device fork-01 -o out/fork-01.png
    python tools/plot_run.py --trace out/demo/traces/fork-01.jsonl -o out/fork-01-trace.png
"""
import argparse
import csv
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for _p in (_ROOT, os.path.join(_ROOT, "tools", "hostport")):   # hostport: `micropython.const` for firmware/
    if _p not in sys.path:
        sys.path.insert(0, _p)

TEMP_INVALID_DC = -32768          # firmware/sample.py


class Run:
    """Columns of one device's run; times in Unix ms. cells/temps: one list per cell/sensor."""

    def __init__(self, device=""):
        self.device = device
        self.t_ms = []
        self.cells = []            # [cell][i] mV, aligned with t_ms (None where missing)
        self.current_ma = []
        self.soc_cpct = []
        self.temps = []            # [sensor][i] 0.1 degC or None
        self.balance_mask = []
        self.faults = []
        self.state = []

    def __len__(self):
        return len(self.t_ms)


# ---------------------------------------------------------------- from a trace file
def _as_list(v):
    if isinstance(v, list):
        return v
    if isinstance(v, str):
        return [int(x) for x in v.replace(";", " ").split()] if v.strip() else []
    return []


def from_rows(rows, device=""):
    r = Run(device)
    for row in rows:
        t = row.get("unix_ms")
        if t in (None, ""):
            t = float(row["t_s"]) * 1000.0
        r.t_ms.append(float(t))
        cells = [int(x) for x in _as_list(row.get("cell_mv"))]
        temps = [int(x) for x in _as_list(row.get("temp_dc"))]
        while len(r.cells) < len(cells):
            r.cells.append([None] * (len(r.t_ms) - 1))
        while len(r.temps) < len(temps):
            r.temps.append([None] * (len(r.t_ms) - 1))
        for i, col in enumerate(r.cells):
            col.append(cells[i] if i < len(cells) else None)
        for i, col in enumerate(r.temps):
            col.append(temps[i] if i < len(temps) and temps[i] != TEMP_INVALID_DC else None)
        r.current_ma.append(int(row.get("current_ma") or 0))
        r.soc_cpct.append(int(row.get("soc_cpct") or 0))
        r.balance_mask.append(int(row.get("balance_mask") or 0))
        r.faults.append(int(row.get("faults") or 0))
        r.state.append(int(row.get("state") or 0))
        if not device and row.get("device"):
            r.device = device = row["device"]
    return r


def read_trace(path):
    """A JSONL trace (one object per line) or a CSV with the same column names (lists space-separated)."""
    with open(path, newline="") as f:
        if path.endswith(".csv"):
            return from_rows(list(csv.DictReader(f)))
        return from_rows([json.loads(line) for line in f if line.strip()])


# ---------------------------------------------------------------- from InfluxDB
def influx_query(url, db, q, timeout_s=30.0):
    """InfluxQL over HTTP (/query, works on 1.x and on 2.x/3.x with DBRP); returns the results list."""
    data = urllib.parse.urlencode({"db": db, "q": q, "epoch": "ms"}).encode()
    req = urllib.request.Request(url.rstrip("/") + "/query", data=data, method="POST",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            body = json.loads(resp.read())
    except urllib.error.HTTPError as e:
        raise OSError("InfluxDB %s: HTTP %d %s" % (url, e.code, e.read()[:200])) from None
    out = body.get("results", [])
    for r in out:
        if "error" in r:
            raise OSError("InfluxDB query %r: %s" % (q, r["error"]))
    return out


def _where(device, since, after_ms=None):
    w = "\"device\"='%s'" % device.replace("'", "\\'")
    if since:
        w += " AND time > now() - %s" % since
    if after_ms is not None:
        w += " AND time >= %dms" % after_ms
    return w


def _series(results):
    for s in (results[0].get("series") or []) if results else []:
        yield s.get("tags") or {}, s["columns"], s["values"]


def last_time_ms(url, db, device):
    """Time (Unix ms) of the device's newest pack point, or None."""
    res = influx_query(url, db, 'SELECT last("stack_mv") FROM "pack" WHERE %s' % _where(device, None))
    for _, cols, vals in _series(res):
        return int(vals[0][0])
    return None


def from_influx(url, db, device, since=None, last_s=None):
    """The device's pack, cell and temp points (docs/influx-schema.md), aligned on the pack times.

    since: an InfluxQL duration back from the server's now(); last_s: the last seconds of the device's
    own data (simulated boards may run ahead of or behind the server's clock)."""
    after = None
    if last_s:
        t = last_time_ms(url, db, device)
        after = None if t is None else t - int(last_s * 1000)
    w = _where(device, since, after)
    r = Run(device)
    pack = influx_query(url, db, 'SELECT "current_ma", "soc_cpct", "balance_mask", "faults", "state" '
                                 'FROM "pack" WHERE %s' % w)
    for _, cols, vals in _series(pack):
        ix = {c: i for i, c in enumerate(cols)}
        for v in vals:
            r.t_ms.append(float(v[ix["time"]]))
            r.current_ma.append(v[ix["current_ma"]] or 0)
            r.soc_cpct.append(v[ix["soc_cpct"]] or 0)
            r.balance_mask.append(v[ix["balance_mask"]] or 0)
            r.faults.append(v[ix["faults"]] or 0)
            r.state.append(v[ix["state"]] or 0)
    pos = {t: i for i, t in enumerate(r.t_ms)}
    cells = influx_query(url, db, 'SELECT "mv" FROM "cell" WHERE %s GROUP BY "cell"' % w)
    by_cell = sorted(_series(cells), key=lambda s: s[0].get("cell", ""))
    for _, cols, vals in by_cell:
        col = [None] * len(r.t_ms)
        for t, mv in vals:
            i = pos.get(float(t))
            if i is not None:
                col[i] = mv
        r.cells.append(col)
    temps = influx_query(url, db, 'SELECT "dc" FROM "temp" WHERE %s GROUP BY "sensor"' % w)
    for _, cols, vals in sorted(_series(temps), key=lambda s: s[0].get("sensor", "")):
        col = [None] * len(r.t_ms)
        for t, dc in vals:
            i = pos.get(float(t))
            if i is not None and dc != TEMP_INVALID_DC:
                col[i] = dc
        r.temps.append(col)
    return r


# ---------------------------------------------------------------- the plot
def plot(run, path, title=None):
    """Write the PNG; returns its path. ValueError when the run has no points."""
    if not len(run):
        raise ValueError("no data for %s" % (run.device or "this run"))
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from firmware.pack.protection import NAMES as FAULT_NAMES
    t0 = run.t_ms[0]
    t_min = [(t - t0) / 60000.0 for t in run.t_ms]
    fig, ax = plt.subplots(5, 1, figsize=(11, 12), sharex=True,
                           gridspec_kw={"height_ratios": [3, 1.5, 1.5, 1.5, 1.5]})
    for i, col in enumerate(run.cells):
        ax[0].plot(t_min, [v if v is not None else float("nan") for v in col], lw=0.8,
                   label="cell %d" % (i + 1))
    ax[0].set_ylabel("cell voltage (mV)")
    if len(run.cells) <= 16:
        ax[0].legend(loc="upper left", fontsize=6, ncol=8)
    ax[1].plot(t_min, [c / 1000.0 for c in run.current_ma], color="tab:blue")
    ax[1].axhline(0, color="grey", lw=0.5)
    ax[1].set_ylabel("current (A)\n+ charge")
    ax[2].plot(t_min, [c / 100.0 for c in run.soc_cpct], color="tab:green")
    ax[2].set_ylabel("SOC (%)")
    for i, col in enumerate(run.temps):
        ax[3].plot(t_min, [v / 10.0 if v is not None else float("nan") for v in col], label="TS%d" % (i + 1))
    ax[3].set_ylabel("temperature (degC)")
    if run.temps:
        ax[3].legend(loc="upper left", fontsize=7)
    # balancing: one dot per bleeding cell and sample; faults: one row per fault bit ever raised
    n = max(1, len(run.cells))
    bx, by = [], []
    for t, m in zip(t_min, run.balance_mask):
        for c in range(n):
            if m >> c & 1:
                bx.append(t)
                by.append(c + 1)
    ax[4].scatter(bx, by, s=4, color="tab:orange", label="balancing cell")
    seen = 0
    for f in run.faults:
        seen |= f
    for bit in range(len(FAULT_NAMES)):
        if seen >> bit & 1:
            row = n + 1 + _row(seen, bit)
            ax[4].plot(t_min, [row if f >> bit & 1 else float("nan") for f in run.faults], lw=3,
                       label="fault %s" % FAULT_NAMES[bit])
    ax[4].set_ylabel("cell / fault")
    ax[4].set_ylim(0, n + 2 + bin(seen).count("1"))
    ax[4].legend(loc="upper left", fontsize=7)
    ax[4].set_xlabel("minutes since %s" % _utc(t0))
    fig.suptitle(title or "%s: %d samples" % (run.device or "run", len(run)))
    fig.tight_layout()
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _row(mask, bit):
    """Row offset of a fault bit among the bits set in mask (0, 1, 2, ...)."""
    return bin(mask & ((1 << bit) - 1)).count("1")


def _utc(t_ms):
    import datetime
    return datetime.datetime.fromtimestamp(t_ms / 1000.0, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def build_parser():
    ap = argparse.ArgumentParser(prog="plot_run.py", description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--influx", metavar="URL", help="InfluxDB base URL (its /query endpoint is used)")
    src.add_argument("--trace", metavar="FILE", help="a .jsonl or .csv trace of a simulated board")
    ap.add_argument("--db", default="bms", help="database (InfluxDB 1.x) or DBRP-mapped bucket")
    ap.add_argument("--device", help="device id (required with --influx)")
    ap.add_argument("--since", help="only the last ..., an InfluxQL duration such as 30m or 2h")
    ap.add_argument("--last-s", type=float, help="only the last this many seconds of the device's data")
    ap.add_argument("-o", "--out", required=True, help="PNG to write")
    ap.add_argument("--title")
    return ap


def main(argv=None):
    a = build_parser().parse_args(argv)
    try:
        if a.influx:
            if not a.device:
                raise ValueError("--device is required with --influx")
            run = from_influx(a.influx, a.db, a.device, a.since, a.last_s)
        else:
            run = read_trace(a.trace)
        print(plot(run, a.out, a.title))
    except (ValueError, OSError) as e:
        print("plot_run: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
