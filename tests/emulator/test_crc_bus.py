"""CRC-8 against TI's worked examples, and the chip's CRC framing on the bus."""
import struct

from simclock import CLOCK

from tools.emulator import make_emulated_board
from tools.emulator.crc import crc8, subcommand_checksum
from emu_host import Host


def test_crc8_matches_ti_sluaa11b_examples():
    # TI SLUAA11B section 4 "I2C With CRC" (ti.com/document-viewer/lit/html/SLUAA11B, Figures 4-1/4-2):
    # FET_ENABLE write: CRC over [0x10 0x3E 0x22] is 0x63, CRC of the second byte [0x00] is 0x00.
    assert crc8(bytes([0x10, 0x3E, 0x22])) == 0x63
    assert crc8(bytes([0x00])) == 0x00
    # VCell 1 read: CRC over [0x10 0x14 0x11 0x68] is 0x33, CRC of [0x0B] is 0x31.
    assert crc8(bytes([0x10, 0x14, 0x11, 0x68])) == 0x33
    assert crc8(bytes([0x0B])) == 0x31
    # TI SLUAAM4 (BQ7690x, same CRC) section 4: [0x10 0x14 0x11 0xC5] -> 0x79.
    assert crc8(bytes([0x10, 0x14, 0x11, 0xC5])) == 0x79


def test_subcommand_checksum_matches_ti_example():
    # Reference section 3 (S1): writing 0x307A to 0x9180 gives checksum 0x44, length 0x06.
    data = struct.pack("<H", 0x307A)
    assert subcommand_checksum(0x9180, data) == 0x44
    assert len(data) + 4 == 0x06


def _crc_board(sim):
    b = make_emulated_board(cells=16, crc=True, attach=False)
    return b, Host(b.chip, crc=True)


def test_crc_read_frames_each_byte_as_the_chip_does(sim):
    b, h = _crc_board(sim)
    b.chip.i2c_write(bytes([0x14]), False)
    raw = b.chip.i2c_read(4)
    assert raw[1] == crc8((0x10, 0x14, 0x11, raw[0]))
    assert raw[3] == crc8((raw[2],))
    mv = raw[0] | raw[2] << 8
    assert abs(mv - b.pack.cell_mv(0)) < 5


def test_ti_fet_enable_frame_with_crc_is_accepted(sim):
    b, h = _crc_board(sim)
    # The exact bytes of TI's Figure 4-1: 3E 22 63 00 00
    assert b.chip.i2c_write(bytes([0x3E, 0x22, 0x63, 0x00, 0x00]), True) == 5
    CLOCK.advance_ms(2)
    ms = h.subcmd_read(0x0057)[0]
    assert ms[0] >> 4 & 1 == 1          # FET_EN set by FET_ENABLE


def test_bad_write_crc_is_nacked_and_nothing_runs(sim):
    b, h = _crc_board(sim)
    before = h.u16(0x66)
    # Alarm Enable <- 0x0082 with a wrong first CRC: the CRC byte (index 2) is NACKed.
    frame = bytes([0x66, 0x82, crc8((0x10, 0x66, 0x82)) ^ 0xFF, 0x00, 0x00])
    assert b.chip.i2c_write(frame, True) == 2
    assert h.u16(0x66) == before
    # A subcommand with a bad CRC on its second byte does not execute.
    frame = bytes([0x3E, 0x22, 0x63, 0x00, 0x5A])
    assert b.chip.i2c_write(frame, True) == 4
    CLOCK.advance_ms(2)
    assert h.subcmd_read(0x0057)[0][0] >> 4 & 1 == 0


def test_crc_mode_only_after_swap_comm_mode_by_default(sim):
    b = make_emulated_board(cells=16, attach=False)
    h = Host(b.chip)
    h.config({0x9239: bytes([0x12])})       # Comm Type = I2C fast + CRC [X]
    # TRM: the new mode is not applied on exiting CONFIG_UPDATE...
    b.chip.update()
    assert b.chip.dm.get("COMM_TYPE") == 0x12
    assert b.chip.crc_mode is False
    h.read(0x14, 2)
    h.subcmd(0x29BC)                         # ...but on SWAP_COMM_MODE
    b.chip.update()
    assert b.chip.crc_mode is True
    hc = Host(b.chip, crc=True)
    assert abs(hc.i16(0x14) - b.pack.cell_mv(0)) < 5


def test_comm_type_on_exit_option(sim):
    b = make_emulated_board(cells=16, attach=False, comm_type_on_cfg_exit=True)
    Host(b.chip).config({0x9239: bytes([0x11])})
    b.chip.update()
    assert b.chip.crc_mode is True
