"""`python -m tools.bench`: run the benchmark sections and write docs/benchmarks.md.

    python -m tools.bench                                  # all sections (what `make bench` runs)
    python -m tools.bench --quick --only wire --out /tmp/bench.md
"""
import argparse
import os
import sys
import time
import traceback

from tools.bench import report

SECTIONS = ("firmware", "wire", "bridge")


def _log(t0):
    def log(msg):
        print("[bench %5.1f s] %s" % (time.monotonic() - t0, msg), file=sys.stderr, flush=True)
    return log


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(
        prog="python -m tools.bench",
        description="Measure the firmware (MicroPython VM), the wire format and the cloud bridge (real"
                    " mosquitto + InfluxDB), and write the figures with the machine they ran on into a"
                    " Markdown document. Progress goes to stderr.")
    ap.add_argument("--quick", action="store_true",
                    help="small sizes: a smoke run of a few seconds per section (not for the record)")
    ap.add_argument("--only", action="append", choices=SECTIONS, metavar="SECTION",
                    help="run only this section (repeatable): %s" % ", ".join(SECTIONS))
    ap.add_argument("--out", default=os.path.join(report.ROOT, "docs", "benchmarks.md"),
                    help="where to write the document (default: docs/benchmarks.md)")
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    log = _log(t0)
    sections = args.only or list(SECTIONS)
    results, errors = {}, {}
    for name in SECTIONS:
        if name not in sections:
            continue
        log("section %s ..." % name)
        try:
            if name == "firmware":
                from tools.bench import firmware_vm as mod
            elif name == "wire":
                from tools.bench import wire as mod
            else:
                from tools.bench import bridge as mod
            results[name] = mod.measure(args.quick, log)
        except Exception as e:      # one broken section must not lose the others' figures
            traceback.print_exc()
            errors[name] = "%s: %s" % (type(e).__name__, str(e)[:300])
            log("section %s FAILED: %s" % (name, errors[name]))
    if "bridge" in results:
        try:
            from tools.bench import plots
            png = os.path.join(os.path.dirname(os.path.abspath(args.out)), "img", "benchmarks-bridge.png")
            plots.bridge_png(results["bridge"], png)
            results["bridge"]["plot"] = os.path.relpath(png, os.path.dirname(os.path.abspath(args.out)))
            log("wrote %s" % png)
        except Exception as e:     # a missing plot must not lose the figures
            log("bridge plot failed: %s: %s" % (type(e).__name__, e))
    took = time.monotonic() - t0
    md = report.render(report.machine_info(), results, argv, args.quick, took, errors)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(md)
    log("wrote %s (%.0f s)" % (args.out, took))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
