"""Subcommands by RAW code: completion, buffer, checksum/length rules, security, data memory."""
import struct

import pytest

from simclock import CLOCK

from tools.emulator import make_emulated_board
from emu_host import Host, Nack


def test_device_number_and_versions(host):
    data, length = host.subcmd_read(0x0001)
    assert struct.unpack("<H", data[:2])[0] == 0x7695 and length == 6
    data, length = host.subcmd_read(0x0002)
    assert length == 11                       # FW_VERSION length quirk (E2E 1010048)
    assert data[:2] == b"\x76\x95"           # device number big-endian first
    data, length = host.subcmd_read(0x0003)
    assert length == 6


def test_busy_subcommand_reads_ffff_until_complete(sim):
    b = make_emulated_board(attach=False, subcmd_busy_us=800)
    h = Host(b.chip)
    h.subcmd(0x0001, wait_ms=0)
    assert h.u16(0x3E) == 0xFFFF
    CLOCK.advance_us(700)
    assert h.u16(0x3E) == 0xFFFF
    CLOCK.advance_us(200)
    assert h.u16(0x3E) == 0x0001
    assert h.read(0x40, 2) == b"\x95\x76"


def test_busy_readback_option_off_shows_code(sim):
    b = make_emulated_board(attach=False, subcmd_busy_us=800, busy_reads_ffff=False)
    h = Host(b.chip)
    h.subcmd(0x0001, wait_ms=0)
    assert h.u16(0x3E) == 0x0001
    assert h.read(0x40, 2) != b"\x95\x76"     # buffer not filled yet: the host must wait


def test_dm_read_fills_32_bytes(host):
    data, length = host.subcmd_read(0x9261)
    assert length == 0x24
    assert data[0] == 0x88 and data[4] == 0x98 and data[8] == 0xE4   # Enabled A, CHG A, DSG A defaults


def test_dm_write_needs_config_update_and_applies_on_exit(host, board):
    host.dm_write(0x9275, bytes([60]))                     # outside CONFIG_UPDATE: ignored
    assert host.dm_read(0x9275, 1)[0] == 50
    host.subcmd(0x0090, wait_ms=0)
    assert host.u16(0x12) & 1 == 0                         # SET_CFGUPDATE takes ~2 ms
    CLOCK.advance_ms(3)
    assert host.u16(0x12) & 1 == 1
    host.dm_write(0x9275, bytes([60]))
    assert host.dm_read(0x9275, 1)[0] == 60               # readable at once...
    board.chip.update()
    assert board.chip.prot.cuv_mv == 50 * 506 // 10        # ...acted on only after exit
    host.subcmd(0x0092)
    assert host.u16(0x12) & 0x0009 == 0                    # CFGUPDATE and POR cleared on exit
    assert board.chip.prot.cuv_mv == 60 * 506 // 10


def test_ti_example_write_0x9180_checksum(host, board):
    host.subcmd(0x0090, wait_ms=3)
    host.write(0x3E, bytes([0x80, 0x91, 0x7A, 0x30]))
    host.write(0x60, bytes([0x44, 0x06]))                  # TI's checksum/length for this write
    CLOCK.advance_ms(2)
    assert host.dm_read(0x9180, 2) == b"\x7A\x30"


def test_bad_checksum_or_length_commits_nothing(host):
    host.subcmd(0x0090, wait_ms=3)
    host.subcmd_write(0x9275, bytes([61]), chk=0x00)
    assert host.dm_read(0x9275, 1)[0] == 50
    host.subcmd_write(0x9275, bytes([61]), length=0x07)
    assert host.dm_read(0x9275, 1)[0] == 50
    host.subcmd_write(0x9275, bytes([61]), length=0x40)
    assert host.dm_read(0x9275, 1)[0] == 50
    host.subcmd_write(0x9275, bytes([61]))
    assert host.dm_read(0x9275, 1)[0] == 61


def test_reset_reloads_defaults_and_nacks_while_booting(host, board):
    host.config({0x9275: bytes([60])})
    host.subcmd(0x0022)
    host.subcmd(0x0012, wait_ms=1)
    with pytest.raises(Nack):
        host.read(0x12, 2)
    CLOCK.advance_ms(58)                                    # issued + 0.5 ms busy + 60 ms boot
    with pytest.raises(Nack):
        host.read(0x12, 2)
    CLOCK.advance_ms(2)
    bs = host.u16(0x12)
    assert bs >> 3 & 1 == 1                                 # POR again
    assert host.dm_read(0x9275, 1)[0] == 50                 # defaults reloaded
    assert host.subcmd_read(0x0057)[0][0] >> 4 & 1 == 0     # back in FET test mode


def test_seal_blocks_reset_and_keys_unseal_within_4s(host, board):
    host.subcmd(0x0030)
    assert host.u16(0x12) >> 8 & 3 == 3                     # SEALED
    host.subcmd(0x0012)
    assert host.u16(0x12) >> 8 & 3 == 3                     # RESET refused when sealed (no reboot)
    host.subcmd_write(0x9275, bytes([61]))
    host.subcmd(0x0414)
    CLOCK.advance_ms(4100)
    host.subcmd(0x3672)                                     # too late
    assert host.u16(0x12) >> 8 & 3 == 3
    host.subcmd(0x0414)
    host.subcmd(0x3672)
    assert host.u16(0x12) >> 8 & 3 == 2                     # UNSEALED
    host.subcmd(0xFFFF)
    host.subcmd(0xFFFF)
    assert host.u16(0x12) >> 8 & 3 == 1                     # FULLACCESS


def test_sealed_still_allows_balancing_commands(host, board):
    host.subcmd(0x0030)
    host.subcmd_write(0x0083, struct.pack("<H", 0x0004))
    assert host.subcmd_read(0x0083)[0][:2] == b"\x04\x00"


def test_unknown_subcommand_completes_and_leaves_buffer_stale(host):
    host.subcmd_read(0x0001)
    host.subcmd(0x0BAD)
    assert host.u16(0x3E) == 0x0BAD
    assert host.read(0x40, 2) == b"\x95\x76"
    assert host.u8(0x61) == 6


def test_fet_control_bit_order_s7(host, board):
    host.fet_enable()
    host.subcmd_write(0x0097, bytes([0x04]))                # S7: bit 2 = CHG_OFF
    assert host.u8(0x7F) & 0x05 == 0x04
    host.subcmd_write(0x0097, bytes([0x01]))                # bit 0 = DSG_OFF
    assert host.u8(0x7F) & 0x05 == 0x01
    host.subcmd(0x0096)
    assert host.u8(0x7F) & 0x05 == 0x05


def test_fet_control_bit_order_s5_option(sim):
    b = make_emulated_board(attach=False, fet_control_order="S5")
    h = Host(b.chip)
    h.fet_enable()
    h.subcmd_write(0x0097, bytes([0x01]))                   # FET Status order: bit 0 = CHG
    assert h.u8(0x7F) & 0x05 == 0x04


def test_host_fet_off_commands(host):
    host.fet_enable()
    host.subcmd(0x0093)                                     # DSG_PDSG_OFF
    assert host.u8(0x7F) & 0x05 == 0x01
    host.subcmd(0x0096)
    host.subcmd(0x0094)                                     # CHG_PCHG_OFF
    assert host.u8(0x7F) & 0x05 == 0x04
    host.subcmd(0x0095)                                     # ALL_FETS_OFF
    assert host.u8(0x7F) & 0x05 == 0x00
    host.subcmd(0x0096)                                     # ALL_FETS_ON re-allows
    assert host.u8(0x7F) & 0x05 == 0x05


def test_dastatus6_accumulates_charge_and_reset_passq(sim):
    b = make_emulated_board(attach=False, profile=lambda t: 3600)   # 3.6 A charge
    h = Host(b.chip)
    h.config({0x9234: struct.pack("<H", 0x2882)})           # Power Config without SLEEP
    h.fet_enable()
    CLOCK.advance_ms(100000)                                 # 100 s -> 100 mAh
    d = h.subcmd_read(0x0076)[0]
    whole, frac, secs = struct.unpack("<iII", d[:12])
    assert whole in (99, 100)
    assert 99.5 <= whole + frac / 2 ** 32 <= 100.5
    assert secs >= 100
    h.subcmd(0x0082)                                         # RESET_PASSQ
    d = h.subcmd_read(0x0076)[0]
    assert struct.unpack("<i", d[:4])[0] == 0


def test_dm_read_works_sealed_by_default_as_the_reference_says(host):
    host.subcmd(0x0030)                                     # SEAL
    assert host.u16(0x12) >> 8 & 3 == 3
    data, length = host.subcmd_read(0x9261)
    assert length == 0x24 and data[0] == 0x88


def test_dm_read_refused_when_sealed_with_the_option(sim):
    b = make_emulated_board(attach=False, dm_read_when_sealed=False)
    h = Host(b.chip)
    h.subcmd_read(0x0001)                                   # fills the buffer with DEVICE_NUMBER
    h.subcmd(0x0030)
    with pytest.raises(OSError, match="checksum"):
        h.subcmd_read(0x9261)                               # stale buffer: checksum fails
