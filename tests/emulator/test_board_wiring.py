"""The emulated pack is wired the way the board description says: thermistors on the named TS pins,
cells on the listed VC inputs (tools/simboard.py and the virtual board, tools/virtualboard/_vboard.py)."""
import sys

import pytest


def test_simboard_puts_thermal_nodes_on_ts1_and_ts3_and_the_firmware_reads_them():
    from tools.simboard import SimBoard
    sb = SimBoard("sim4_nmc", seed=1, soc=0.5)
    p = sb.pack
    assert p.ts_node == {"TS1": 0, "TS3": 1} and p.thermal_nodes == 2
    assert p.vc_inputs == [1, 2, 3, 16]
    p.node_c[0] = 12.0                      # distinct node temperatures: slot 1 must be TS3's
    p.node_c[1] = 41.0
    sb.run_s(1.0)
    t = list(sb.app.sample.temp_dc)
    assert len(t) == 2
    assert abs(t[0] - 120) <= 5 and abs(t[1] - 410) <= 5, t
    # the chip holds TS1/TS3 as cell thermistors, TS2 unused (raw TS1..TS3 Config 0x92FD..0x92FF)
    assert sb.chip.dm.read(0x92FD, 3) == bytes([0x07, 0x00, 0x07])


def test_virtual_board_wires_the_pack_from_the_board_description(tmp_path):
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1] / "virtualboard"))
    try:
        from vb_helpers import ROOT, VirtualBoard
    finally:
        sys.path.pop(0)
    state = tmp_path / "state"
    (state / "fs").mkdir(parents=True)
    (state / "fs" / "board.json").write_bytes((ROOT / "boards" / "sim4_nmc.json").read_bytes())
    with VirtualBoard(state) as b:
        out = b.mpremote("exec", "import _vboard\np = _vboard.emulator().pack\n"
                                 "print(sorted(p.ts_node.items()), p.thermal_nodes, p.vc_inputs)")
    assert out.stdout.strip() == "[('TS1', 0), ('TS3', 1)] 2 [1, 2, 3, 16]", out.stdout
