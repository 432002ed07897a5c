"""The selfcheck that also runs in the MicroPython VM passes in CPython."""
from tools.emulator import selfcheck


def test_selfcheck_passes(sim):
    r = selfcheck.run(sim_s=60)
    assert r["loops"] > 900 and 0.0 < r["soc"] < 0.5
