"""main() builds everything from a board description on the host port: machine.I2C to the emulated
chip, the stored config (missing here: safe defaults, reported), the watchdog; then runs the cycle."""
import os

from scenario_util import ROOT

from firmware import app as fw_app
from firmware.pack import state as S


def test_main_from_board_description_runs_and_closes_the_fets(sim_clock, tmp_path):
    from tools.emulator import make_emulated_board
    emu = make_emulated_board(cells=16, chemistry="LFP", capacity_mah=100000, soc=0.5)
    assert emu.attached
    emu.pack.set_profile(lambda t: -10000)
    board_path = os.path.join(ROOT, "boards", "sim16_lfp.json")
    a = fw_app.main(board_path, cycles=20, cfg_path=str(tmp_path / "config.json"))
    assert a.config_status == "missing"
    assert a.sm.state == S.DISCHARGE and emu.chip.now_fets() == (True, True)
    assert emu.pack.current_ma < -9000 and a.cycles == 20 and a.overruns == 0


def test_main_uses_the_stored_config_for_chip_and_firmware(sim_clock, tmp_path):
    from tools.emulator import make_emulated_board

    from firmware.config import defaults, store
    make_emulated_board(cells=16, chemistry="LFP", capacity_mah=100000, soc=0.5)
    path = str(tmp_path / "config.json")
    store.save(path, defaults.build("lfp", {"cell_ov_mv": 3600, "capacity_mah": 100000}))
    a = fw_app.main(os.path.join(ROOT, "boards", "sim16_lfp.json"), cycles=4, cfg_path=path)
    assert a.config_status == "ok" and a.prot.ov_mv == 3600
    # The chip's COV sits above the firmware's limit (margin 100 mV), rounded down to a 50.6 mV step.
    assert 3600 < a.applied["cov_mv"] <= 3700
