"""Every fault injection: bus faults, late subcommands, sensing faults, pack faults."""
import errno
import struct

import pytest

from simclock import CLOCK

from tools.emulator import make_emulated_board
from emu_host import Host


def test_nack_next_n_transactions(host, board):
    board.faults.nack_next(2)
    assert board.chip.i2c_write(b"\x14", False) == -1
    assert board.chip.i2c_read(2) is None
    assert board.chip.i2c_write(b"\x14", False) == 1
    assert len(board.chip.i2c_read(2)) == 2


def test_nack_probability_is_seeded(sim):
    counts = []
    for _ in range(2):
        b = make_emulated_board(attach=False, seed=5)
        b.faults.nack_probability(0.3)
        counts.append(sum(1 for _ in range(400) if b.chip.i2c_write(b"\x14", False) == -1))
    assert counts[0] == counts[1]
    assert 80 < counts[0] < 160
    with pytest.raises(ValueError):
        b.faults.nack_probability(1.5)


def test_corrupted_read_byte_and_crc_catches_it(sim):
    b = make_emulated_board(attach=False, crc=True, cell_noise_mv=0.0)
    h = Host(b.chip, crc=True)
    good = h.read(0x14, 2)
    b.faults.corrupt_next_read(index=0, xor=0x40)
    with pytest.raises(OSError):
        h.read(0x14, 2)
    assert h.read(0x14, 2) == good
    b2 = make_emulated_board(attach=False, cell_noise_mv=0.0)
    b2.faults.corrupt_next_read(index=1, xor=0x01)
    b2.chip.i2c_write(b"\x14", False)
    bad = b2.chip.i2c_read(2)
    b2.chip.i2c_write(b"\x14", False)
    assert bytes([bad[0], bad[1] ^ 0x01]) == b2.chip.i2c_read(2)


def test_stuck_bus_raises_etimedout_for_its_duration(host, board):
    board.faults.stuck_bus(50)
    with pytest.raises(OSError) as e:
        board.chip.i2c_write(b"\x14", False)
    assert e.value.args[0] == errno.ETIMEDOUT
    CLOCK.advance_ms(49)
    with pytest.raises(OSError):
        board.chip.i2c_read(2)
    CLOCK.advance_ms(2)
    assert board.chip.i2c_write(b"\x14", False) == 1


def test_late_subcommand(host, board):
    board.faults.late_subcommand(5000)
    host.subcmd(0x0001, wait_ms=2)
    assert host.u16(0x3E) == 0xFFFF
    CLOCK.advance_ms(4)
    assert host.u16(0x3E) == 0x0001
    host.subcmd(0x0001, wait_ms=1)
    assert host.u16(0x3E) == 0x0001                          # only the next one was late


def test_open_cell_wire_reads_zero_and_doubles_the_neighbour(sim):
    b = make_emulated_board(attach=False, cell_noise_mv=0.0)
    h = Host(b.chip)
    b.faults.open_cell_wire(5)
    CLOCK.advance_ms(100)
    cells = struct.unpack("<16h", h.read(0x14, 32))
    assert abs(cells[4]) <= 1
    assert abs(cells[5] - (b.pack.cell_mv(4) + b.pack.cell_mv(5))) <= 2
    assert abs(cells[6] - b.pack.cell_mv(6)) <= 1
    b.faults.close_cell_wire(5)
    CLOCK.advance_ms(100)
    assert abs(h.i16(0x14 + 8) - b.pack.cell_mv(4)) <= 1


def test_thermistor_open_and_short_readings(host, board):
    board.faults.thermistor("TS1", "open")
    CLOCK.advance_ms(100)
    assert host.i16(0x70) == 2732 - 400
    board.faults.thermistor("TS1", "short")
    CLOCK.advance_ms(100)
    assert host.i16(0x70) == 2732 + 1500
    with pytest.raises(ValueError):
        board.faults.thermistor("TS9", "open")


def test_cell_internal_short_discharges_one_cell(host, board):
    board.faults.cell_internal_short(3, 100.0)
    CLOCK.advance_ms(3600 * 1000)
    board.chip.update()
    assert abs(board.pack.true_charge_mah(3) + 100.0) < 0.5
    assert abs(board.pack.true_charge_mah(2)) < 0.01
    board.faults.clear_all()
    before = board.pack.true_charge_mah(3)
    CLOCK.advance_ms(60000)
    board.chip.update()
    assert abs(board.pack.true_charge_mah(3) - before) < 0.01


def test_short_circuit_without_scd_drains_hard(sim):
    b = make_emulated_board(attach=False, step_ms=1)
    h = Host(b.chip)
    h.config({0x9261: bytes([0x08]), 0x9234: struct.pack("<H", 0x2882)})   # SCD disabled
    h.fet_enable()
    b.faults.short_circuit(1000000)
    CLOCK.advance_ms(36)
    h.u8(0x7F)
    assert abs(b.pack.true_charge_mah(0) + 10.0) < 0.5       # 1000 A for 36 ms = 10 mAh


def test_corrupt_probability_is_seeded_and_bounded(sim):
    b = make_emulated_board(attach=False, seed=3, cell_noise_mv=0.0)
    b.faults.corrupt_probability(0.25, xor=0x80)
    for _ in range(400):
        b.chip.i2c_write(b"\x14", False)
        b.chip.i2c_read(2)
    assert 60 < b.faults.counts["corrupt"] < 140
    with pytest.raises(ValueError):
        b.faults.corrupt_probability(-0.1)
