"""Smoke test of `python -m tools.drills`: two cheap drills in quick mode write a well-formed document
whose loss figure is a measured number (not n/a), and the CLI answers --help.

No timing assertions: the durations in the document are reported, not checked."""
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
pytestmark = pytest.mark.servers


def _run(args, timeout_s):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-m", "tools.drills"] + args, cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout_s)


def test_help_lists_the_drills():
    p = _run(["--help"], 60)
    assert p.returncode == 0
    for name in ("--quick", "--only", "--out", "bridge_kill", "power_loss", "fuzz"):
        assert name in p.stdout


def test_unknown_drill_is_refused():
    p = _run(["--only", "nosuch", "--out", os.devnull], 60)
    assert p.returncode == 2 and "unknown drill" in p.stderr


def test_quick_drills_write_the_document(tmp_path):
    out = tmp_path / "reliability.md"
    p = _run(["--quick", "--only", "radio_outage,power_loss", "--out", str(out)], 600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "== radio_outage" in p.stderr and "wrote " in p.stderr       # progress output
    text = out.read_text()
    assert text.startswith("# Reliability drills")
    assert "python -m tools.drills --quick --only radio_outage,power_loss" in text
    for section in ("## Machine", "## Summary", "## Device Wi-Fi down", "## Power loss"):
        assert section in text
    assert re.search(r"\| CPU \| .+, \d+ cores \|", text)
    # the Wi-Fi drill measured its counts: sent > 0 and lost is a number (the target is 0)
    sent = int(re.search(r"\| samples sent \| (\d+) \|", text).group(1))
    lost = int(re.search(r"\| samples lost \| (\d+) \|", text).group(1))
    stored = int(re.search(r"\| samples stored \(points in InfluxDB\) \| (\d+) \|", text).group(1))
    assert sent > 0 and lost == 0 and stored == sent
    summary = re.search(r"\| \[Device Wi-Fi down[^|]*\]\(#radio-outage\) \| (\w+) \| (\S+) \| (\S+) \|", text)
    assert summary.group(1) == "pass" and summary.group(2) == "0" and summary.group(3) == "0"
    # power loss: every trial counted, all safe
    trials = int(re.search(r"\| config trials \(torn temp file / torn config file\) \| (\d+) ", text).group(1))
    safe = int(re.search(r"\| config: safe boots \| (\d+) \|", text).group(1))
    assert trials > 0 and safe == trials
    assert text.count("**Result**: pass") == 2
