"""The compiled BQ76952 driver inside the MicroPython VM, against the emulated chip on machine.I2C(0).

The same .mpy files a board gets: probe, configure round trip, read() against the pack model, FETs,
balancing interlocks, alarms, CRC mode, a NACK retried, all in simulated time; read() under
micropython.heap_lock() (vmtest.assert_no_alloc) in both framings and through a retry, and its heap
use measured with an allocation-free register-file bus.

    node tools/mpvm/run.mjs --only test_afe_driver
"""
import machine

import vmtest
from firmware.afe import bq76952_regs as R
from firmware.afe.bq76952 import BQ76952
from firmware.afe.crc8 import TABLE
from firmware.sample import TEMP_INVALID_DC, Sample

_BASE = {"cell_count": 4, "vcell_mode": 0x8007, "ts_pins": 0b001}   # emulated pack: top cell on VC16


def _board(crc=False, settings=None):
    from tools.emulator import make_emulated_board
    board = make_emulated_board(cells=4, seed=5, bus_id=0, crc=crc)
    afe = BQ76952(machine.I2C(0), crc=crc)
    afe.probe()
    cfg = dict(_BASE)
    if settings:
        cfg.update(settings)
    applied = afe.configure(cfg)
    return board, afe, applied


def _done():
    machine.detach_i2c_target(0, 0x08)


def test_crc_table_literal_is_the_polynomial():
    # crc8.TABLE is a literal (it stays in flash when frozen): each entry is the bitwise CRC-8 (0x07) of b.
    assert len(TABLE) == 256
    for b in range(256):
        c = b
        for _ in range(8):
            c = ((c << 1) ^ 0x07) & 0xFF if c & 0x80 else (c << 1) & 0xFF
        assert TABLE[b] == c, b


def test_configure_round_trip_and_read_match_the_pack():
    with vmtest.use_sim_clock(start_ms=0) as clock:
        board, afe, applied = _board(settings={"cov_mv": 3650, "cuv_mv": 2800, "scd_ma": 59999})
        try:
            assert applied["cov_mv"] == 3644 and applied["cuv_mv"] == 2833, applied
            assert applied["scd_ma"] == 40000 and applied["vcell_mode"] == 0x8007, applied
            assert afe.configure(applied) == applied
            afe.fet_enable()
            board.pack.set_profile(lambda t_s: -4000)
            clock.advance_ms(1000)
            s = Sample(4, 3)
            vmtest.assert_no_alloc(afe.read, s)
            truth = [board.pack.input_mv(n) for n in (1, 2, 3, 16)]
        finally:
            _done()
    for got, want in zip(s.cell_mv, truth):
        assert abs(got - want) <= 5, (list(s.cell_mv), truth)
    assert abs(s.current_ma + 4000) <= 20, s.current_ma
    assert s.temp_dc[1] == TEMP_INVALID_DC and -395 < s.temp_dc[0] < 1250, list(s.temp_dc)
    assert s.fet_status & R.FS_DSG_FET, s.fet_status


def test_read_allocates_nothing_in_crc_mode_and_through_a_retry():
    with vmtest.use_sim_clock(start_ms=0) as clock:
        board, afe, _ = _board(crc=True)
        try:
            clock.advance_ms(600)
            s = Sample(4, 3)
            vmtest.assert_no_alloc(afe.read, s)
            board.faults.nack_next(2)
            vmtest.assert_no_alloc(afe.read, s)
            board.faults.corrupt_next_read(1, 10, 0x08)
            vmtest.assert_no_alloc(afe.read, s)
            retries = afe.stats_retries
        finally:
            _done()
    assert retries == 3, retries
    assert 2500 < s.cell_mv[0] < 3700, list(s.cell_mv)


def test_fets_balancing_alarms():
    with vmtest.use_sim_clock(start_ms=0) as clock:
        board, afe, _ = _board(settings={"balance_max_cells": 2, "sleep_allowed": 0,
                                         "alarm_enable": 0xF880})
        try:
            afe.fet_enable()
            afe.set_fets(False, True)
            clock.advance_ms(300)
            fets = afe.fet_status() & (R.FS_CHG_FET | R.FS_DSG_FET)
            e = vmtest.raises(ValueError, afe.set_balancing, 0b0011)
            got = afe.set_balancing(0b1001)
            clock.advance_ms(300)
            s = Sample(4, 3)
            afe.read(s)
            alarms = afe.read_alarms()
            afe.clear_alarms(R.AL_FULLSCAN)
            after = afe.read_alarms()
        finally:
            _done()
    assert fets == R.FS_DSG_FET, fets
    assert "adjacent" in str(e), str(e)
    assert got == 0b1001 and s.balance_mask == 0b1001, (got, s.balance_mask)
    assert alarms & R.AL_FULLSCAN and not after & R.AL_FULLSCAN, (alarms, after)


def test_crc_switch_both_ways():
    with vmtest.use_sim_clock(start_ms=0) as clock:
        board, afe, _ = _board()
        try:
            afe.set_crc(True)
            on = afe.crc
            clock.advance_ms(300)
            s = Sample(4, 3)
            afe.read(s)
            afe.set_crc(False)
            afe.read(s)
            off = afe.crc
        finally:
            _done()
    assert on and not off
    assert 2500 < s.cell_mv[0] < 3700, list(s.cell_mv)


class _RegisterFile:
    """A bus that allocates nothing (copies from a preallocated register file), so the heap the
    driver's read() uses can be measured with gc.mem_alloc() without a host stand-in in the call."""

    def __init__(self, crc):
        self.r = bytearray(256)
        self.crc = crc
        for i in range(16):
            self.r[0x14 + 2 * i] = (3300 + i) & 0xFF
            self.r[0x15 + 2 * i] = (3300 + i) >> 8

    def readfrom_mem_into(self, addr, reg, buf):
        if not self.crc:
            for i in range(len(buf)):
                buf[i] = self.r[reg + i]
            return
        d0 = self.r[reg]
        buf[0] = d0
        buf[1] = TABLE[TABLE[TABLE[TABLE[addr << 1] ^ reg] ^ ((addr << 1) | 1)] ^ d0]
        for i in range(1, len(buf) // 2):
            b = self.r[reg + i]
            buf[2 * i] = b
            buf[2 * i + 1] = TABLE[b]


def _ten_reads(afe, s):
    for _ in range(10):
        afe.read(s)


def test_read_heap_use_measured_is_zero():
    for crc in (False, True):
        afe = BQ76952(_RegisterFile(crc), crc=crc)
        s = Sample(16, 3)
        afe.read(s)
        delta = vmtest.mem_alloc_delta(_ten_reads, afe, s)
        print("afe.read heap bytes per call (crc=%s): %d" % (crc, delta // 10))
        assert delta == 0, (crc, delta)
        assert s.cell_mv[15] == 3315, list(s.cell_mv)
