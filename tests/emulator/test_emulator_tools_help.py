"""The emulator's command-line tools answer --help (usage, exit 0) at once instead of running."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("module, words", [("tools.emulator.bench", "sim_s"),
                                           ("tools.emulator.selfcheck", "--sim-s")])
def test_help_prints_usage_and_exits_0(module, words):
    r = subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("usage: python -m " + module) and words in r.stdout


def test_bad_arguments_are_refused_with_usage():
    r = subprocess.run([sys.executable, "-m", "tools.emulator.bench", "0"], cwd=ROOT, capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 2 and "sim_s must be > 0" in r.stderr


def test_selfcheck_runs_from_the_command_line():
    r = subprocess.run([sys.executable, "-m", "tools.emulator.selfcheck", "--sim-s", "20"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("emulator selfcheck OK"), r.stdout + r.stderr
