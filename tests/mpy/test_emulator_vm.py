"""The emulated BQ76952 and pack model run inside the MicroPython VM (the virtual board relies on it)."""
from tools.emulator import selfcheck


def test_emulator_selfcheck_runs_a_minute_of_simulated_time():
    selfcheck.run(sim_s=60)
