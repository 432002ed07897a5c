"""`python -m tools.bench --quick --only wire` (and `--only bridge`, with real servers) run and write a
document with the expected figures.

Checks that the figures are there and are numbers (not their values: those are measurements), that
the machine the run used is described, and that the sections not run say so. No timing assertions.

    .venv/bin/pytest -q tests/bench/test_bench_smoke.py
"""
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NUM = r"[0-9][0-9,]*(?:\.[0-9]+)?"


def _row(md, label):
    for line in md.splitlines():
        if line.startswith("| " + label):
            return line
    raise AssertionError("no row %r in:\n%s" % (label, md))


def test_quick_wire_run_writes_the_wire_figures_and_the_machine(tmp_path):
    out = tmp_path / "bench.md"
    p = subprocess.run([sys.executable, "-m", "tools.bench", "--quick", "--only", "wire", "--out", str(out)],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "[bench" in p.stderr and "section wire" in p.stderr        # progress output
    md = out.read_text()
    for label in ("Date", "CPU", "Memory", "Python", "Node", "MicroPython VM", "Command", "Run time"):
        row = _row(md, label + " |")
        assert row.split("|")[2].strip(), row
    assert re.search(r"\| CPU \| .+, %d cores" % os.cpu_count(), md)
    # one row per batch size, every cell a number
    for n in (1, 4, 10, 60):
        cells = [c.strip() for c in _row(md, "%d | " % n).split("|")[1:-1]]
        assert len(cells) == 7 and all(re.fullmatch(NUM, c) for c in cells), cells
    assert re.search(r"\| payload only \| %s \|" % NUM, md)
    assert re.search(r"\| with MQTT PUBLISH headers and topics \(QoS 1\) \| %s \|" % NUM, md)
    # batching must shrink the binary bytes per sample (the codec's delta coding), JSON must not
    b1 = float(_row(md, "1 | ").split("|")[3].replace(",", ""))
    b60 = float(_row(md, "60 | ").split("|")[3].replace(",", ""))
    assert b60 < b1
    assert "Not run in this invocation (`python -m tools.bench --only firmware`" in md
    assert "Not run in this invocation (`python -m tools.bench --only bridge`" in md


def test_help_lists_the_options():
    p = subprocess.run([sys.executable, "-m", "tools.bench", "--help"], cwd=ROOT, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0
    for opt in ("--quick", "--only", "--out"):
        assert opt in p.stdout


@pytest.mark.servers
def test_quick_bridge_run_writes_every_bridge_figure(tmp_path):
    out = tmp_path / "bench.md"
    p = subprocess.run([sys.executable, "-m", "tools.bench", "--quick", "--only", "bridge", "--out", str(out)],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    md = out.read_text()
    for label, n in (("Broker alone", 1), ("Database alone", 1), ("Bridge end to end", 3),
                     ("Bridge / do-nothing subscriber", 1), ("Bridge / raw /write", 1),
                     ("Bridge / the slower of the two", 1), ("Bridge's own ceiling", 2),
                     ("CPU seconds per 1000 frames: bridge process", 1),
                     ("Publish -> queryable latency, 100 devices", 3),
                     ("Two bridge processes in one shared-subscription group |", 3),
                     ("Two bridge processes (one shared-subscription group", 1)):
        row = _row(md, label)
        measured = row.split("|")[2]
        assert len(re.findall(NUM, measured)) >= n, row
    if (os.cpu_count() or 1) >= 2:      # the database on a core of its own, the rest on the others
        row = _row(md, "**Is the bridge the bottleneck?**")
        assert len(re.findall(NUM, row.split("|")[2])) >= 3, row
    assert "What limits it: on this %d-core machine" % os.cpu_count() in md
    # the picture of the same run sits beside the document, and the document shows it
    png = tmp_path / "img" / "benchmarks-bridge.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "](img/benchmarks-bridge.png)" in md
