"""Scenario plots drawn at teardown, so a failing scenario still leaves its PNG (BMS_PLOTS=<dir>).

    def test_x(plots):
        sb = board(...); plot = plots(sb, "name"); ...; plot.title = "result: ..."
"""
import os

import pytest


class _Plot:
    def __init__(self, sb, name, title):
        self.sb = sb
        self.name = name
        self.title = title or name
        self.path = None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call":
        item._scenario_failed = rep.failed


@pytest.fixture
def plots(request):
    """register(sb, name, title="") -> a handle whose .title may be changed later; drawn at teardown
    into $BMS_PLOTS/<name>.png when BMS_PLOTS is set (title prefixed FAILED when the test failed)."""
    made = []

    def register(sb, name, title=""):
        p = _Plot(sb, name, title)
        made.append(p)
        return p

    yield register
    d = os.environ.get("BMS_PLOTS")
    if not d:
        return
    failed = getattr(request.node, "_scenario_failed", False)
    for p in made:
        title = ("FAILED: " + p.title) if failed else p.title
        p.path = p.sb.plot(os.path.join(d, p.name + ".png"), title)
