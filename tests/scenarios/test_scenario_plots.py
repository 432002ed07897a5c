"""Scenario plots: BMS_PLOTS makes a scenario write a real PNG, also when the scenario fails."""
import os

import pytest
from scenario_util import board

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

pytest.importorskip("matplotlib")


def _is_png(path):
    with open(path, "rb") as f:
        return f.read(8) == PNG_SIGNATURE and os.path.getsize(path) > 1000


def test_simboard_writes_a_valid_png(tmp_path):
    sb = board("sim4_nmc", soc=0.5)
    sb.pack.set_profile(lambda t: -2000)
    sb.run_s(20)
    path = sb.plot(str(tmp_path / "sub" / "short_run.png"), "20 s at 2 A")
    assert path and _is_png(path)


CHILD = """
import sys
sys.path.insert(0, %r)
from scenario_util import board


def _run(plots, name):
    sb = board("sim4_nmc", soc=0.5)
    plots(sb, name)
    sb.pack.set_profile(lambda t: -2000)
    sb.run_s(5)


def test_fails(plots):
    _run(plots, "failing")
    assert False, "a scenario that fails"


def test_passes(plots):
    _run(plots, "passing")
"""


def test_plots_fixture_draws_at_teardown_even_when_the_scenario_fails(tmp_path):
    """A child pytest with this folder's conftest: the failing scenario still leaves its PNG."""
    import shutil
    import subprocess
    import sys
    here = os.path.dirname(os.path.abspath(__file__))
    child = tmp_path / "child"
    child.mkdir()
    shutil.copy(os.path.join(here, "conftest.py"), str(child / "conftest.py"))
    (child / "test_child_plots.py").write_text(CHILD % here)
    out = tmp_path / "plots"
    env = dict(os.environ, BMS_PLOTS=str(out))
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(child)],
                       cwd=str(child), env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stdout + r.stderr          # one failed, one passed
    assert "1 failed, 1 passed" in r.stdout, r.stdout
    assert _is_png(str(out / "failing.png")) and _is_png(str(out / "passing.png"))


def test_no_plot_without_bms_plots(tmp_path, monkeypatch):
    from scenario_util import maybe_plot
    monkeypatch.delenv("BMS_PLOTS", raising=False)
    sb = board("sim4_nmc", soc=0.5)
    sb.run_s(1)
    assert maybe_plot(sb, "never") is None
