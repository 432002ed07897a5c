"""CLI of the reliability drills: run them, print progress, write the document.

    python -m tools.drills --help
    python -m tools.drills --quick --only power_loss,fuzz --out /tmp/reliability.md
"""
import argparse
import importlib
import os
import shutil
import sys
import tempfile
import time
import traceback

from tools.drills import report

ORDER = ("bridge_kill", "broker_restart", "broker_restart_shared", "influx_outage", "radio_outage",
         "blackhole", "power_loss", "fuzz")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m tools.drills",
                                 description="Scripted fault drills against the real firmware, bridge, "
                                             "mosquitto and InfluxDB; writes docs/reliability.md.")
    ap.add_argument("--quick", action="store_true", help="shorter outages and fewer trials (smoke test)")
    ap.add_argument("--only", default="", help="comma-separated drill names: " + ", ".join(ORDER))
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "reliability.md"),
                    help="where to write the document (default docs/reliability.md)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary server folders")
    a = ap.parse_args(argv)
    names = [n.strip() for n in a.only.split(",") if n.strip()] or list(ORDER)
    for n in names:
        if n not in ORDER:
            ap.error("unknown drill %r (known: %s)" % (n, ", ".join(ORDER)))
    t0 = time.monotonic()
    results = []
    for n in names:
        log("== %s" % n)
        folder = tempfile.mkdtemp(prefix="drill-%s-" % n)
        t = time.monotonic()
        mod = None
        try:
            mod = importlib.import_module("tools.drills." + n)
            r = mod.run(folder, quick=a.quick, log=log)
        except Exception as e:      # a drill that breaks is reported as a failure, the others still run
            from tools.drills.common import Result
            r = Result(n, getattr(mod, "TITLE", n), (getattr(mod, "__doc__", "") or "").split("\n\n")[-1].strip())
            r.check(False, "drill raised %s: %s" % (type(e).__name__, e))
            log(traceback.format_exc())
        r.duration_s = time.monotonic() - t
        results.append(r)
        log("   %s in %.1f s: %s" % ("pass" if r.ok else "FAIL", r.duration_s,
                                     ", ".join("%s=%s" % (k, v) for k, v in r.figures[:6])))
        for f in r.failures:
            log("   ! " + f)
        if not a.keep:
            shutil.rmtree(folder, ignore_errors=True)
    total = time.monotonic() - t0
    cmd = "python -m tools.drills" + (" --quick" if a.quick else "") + (" --only " + a.only if a.only else "")
    text = report.render(results, cmd, total, a.quick)
    d = os.path.dirname(os.path.abspath(a.out))
    os.makedirs(d, exist_ok=True)
    tmp = a.out + ".tmp"
    with open(tmp, "w") as f:
        f.write(text + "\n")
    os.replace(tmp, a.out)
    log("wrote %s (%.1f s, %d/%d drills pass)" % (a.out, total, sum(r.ok for r in results), len(results)))
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
