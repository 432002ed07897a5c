"""Pack physics sanity: SOC, body diodes, OCV shapes, spreads, heat."""
import struct

import pytest

from simclock import CLOCK

from tools.emulator import make_emulated_board
from tools.emulator.ocv import CHEMISTRIES, ocv_mv
from tools.emulator.pack import Pack
from emu_host import Host


def test_ocv_curves_rise_with_soc():
    for chem in CHEMISTRIES:
        last = -1.0
        for k in range(101):
            v = ocv_mv(chem, k / 100.0)
            assert v >= last
            last = v
    assert 3280 < ocv_mv("LFP", 0.5) < 3320
    assert 4150 < ocv_mv("NMC", 1.0) < 4250
    with pytest.raises(ValueError):
        ocv_mv("NiCd", 0.5)


def test_body_diode_paths():
    # CHG off, DSG on: discharge flows (CHG body diode), charge is blocked.
    assert Pack.flow_ma(-1000, False, True) == -1000
    assert Pack.flow_ma(1000, False, True) == 0
    # DSG off, CHG on: charge flows (DSG body diode), discharge is blocked.
    assert Pack.flow_ma(1000, True, False) == 1000
    assert Pack.flow_ma(-1000, True, False) == 0
    assert Pack.flow_ma(-1000, False, False) == 0


def test_charging_through_the_chip_raises_soc_and_chg_off_blocks_it(sim):
    b = make_emulated_board(cells=16, attach=False, profile=lambda t: 10000)
    h = Host(b.chip)
    h.config({0x9234: struct.pack("<H", 0x2882)})
    h.fet_enable()
    soc0 = b.pack.true_soc(0)
    CLOCK.advance_ms(600000)                                  # 10 A for 10 min into 100 Ah
    h.u8(0x12)
    assert abs(b.pack.true_soc(0) - soc0 - 10000 * 600 / 3600.0 / b.pack.capacity_mas[0] * 3600) < 1e-3
    assert b.pack.true_soc(0) > soc0
    h.subcmd(0x0094)                                          # CHG_PCHG_OFF
    b.chip.update()
    soc1 = b.pack.true_soc(0)
    CLOCK.advance_ms(600000)
    h.u8(0x12)
    assert b.pack.true_soc(0) == soc1
    assert h.i16(0x3A) in range(-10, 11)


def test_seeded_spread_is_reproducible():
    a = Pack(cells=8, seed=4)
    b = Pack(cells=8, seed=4)
    c = Pack(cells=8, seed=5)
    assert a.capacity_mas == b.capacity_mas and a.r_ohm == b.r_ohm
    assert a.capacity_mas != c.capacity_mas
    assert max(a.capacity_mas) != min(a.capacity_mas)


def test_bad_pack_settings_raise_valueerror():
    with pytest.raises(ValueError):
        Pack(cells=2)
    with pytest.raises(ValueError):
        Pack(cells=4, chemistry="XYZ")
    with pytest.raises(ValueError):
        Pack(cells=4, vc_inputs=[1, 2, 3, 3])


def test_discharge_heats_the_cells_and_they_cool_back(sim):
    prof = {"ma": -50000}
    b = make_emulated_board(cells=16, attach=False, profile=lambda t: prof["ma"], capacity_mah=10000,
                            step_ms=500)
    h = Host(b.chip)
    h.config({0x9234: struct.pack("<H", 0x2882), 0x9261: bytes([0x08])})   # no SCD at 50 A
    h.fet_enable()
    CLOCK.advance_ms(120000)
    t_hot = (h.i16(0x70) - 2732) / 10.0
    assert t_hot > 26.0                                        # 50 A^2 x 5 mOhm = 12.5 W per cell
    prof["ma"] = 0
    CLOCK.advance_ms(3 * 3600 * 1000)
    assert (h.i16(0x70) - 2732) / 10.0 < 25.5


def test_fewer_cells_map_to_vc_inputs_and_vcell_mode(sim):
    b = make_emulated_board(cells=5, attach=False, cell_noise_mv=0.0)
    h = Host(b.chip)
    cells = struct.unpack("<16h", h.read(0x14, 32))
    assert [n for n in range(16) if cells[n] > 1000] == [0, 1, 2, 3, 15]   # VC1-4 and VC16
    # With Vcell Mode left at all-16 the shorted inputs look like 0 V cells: CUV trips.
    h.config({0x9261: bytes([0x8C]), 0x9234: struct.pack("<H", 0x2882)})
    h.fet_enable()
    CLOCK.advance_ms(500)
    assert h.u8(0x03) >> 2 & 1 == 1
    h.config({0x9304: struct.pack("<H", 0x800F), 0x9261: bytes([0x8C]), 0x9234: struct.pack("<H", 0x2882)})
    CLOCK.advance_ms(3500)
    assert h.u8(0x03) == 0
