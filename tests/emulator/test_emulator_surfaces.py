"""Emulator surfaces no other test reads, by RAW register number and subcommand code (reference
sections 2-5): PACK/LD voltages, pin temperatures, DASTATUS1-5, CBSTATUS3, HW_VERSION, and the
OTINT/OTF/UTC/UTINT/OCD2 protections. Expected values come from the pack model (ground truth) or
the reference, never from the emulator's own register code."""
import struct

from simclock import CLOCK

from tools.emulator import make_emulated_board
from emu_host import Host

NO_SLEEP = struct.pack("<H", 0x2882)     # Power Config 0x9234: default 0x2982 without SLEEP (bit 8)
CHG, DSG = 0x01, 0x04                    # FET Status 0x7F bits 0 CHG_FET, 2 DSG_FET


def _board(sim, cells=16, profile=None, **kw):
    b = make_emulated_board(cells=cells, attach=False, step_ms=5, profile=profile, current_noise_ma=0.0, **kw)
    return b, Host(b.chip)


# ------------------------------------------------------------------ PACK 0x36 and LD 0x38 (cV)
def test_pack_and_ld_follow_the_fets_and_the_charger(sim):
    prof = {"ma": 0}
    b, h = _board(sim, profile=lambda t: prof["ma"])
    h.config({0x9234: NO_SLEEP})
    CLOCK.advance_ms(300)
    # FET test mode (FET_EN = 0 at power-up): both FETs off, nothing drives PACK+
    assert h.u8(0x7F) & (CHG | DSG) == 0
    assert h.i16(0x36) == 0 and h.i16(0x38) == 0
    h.fet_enable()
    CLOCK.advance_ms(300)
    stack_cv = b.pack.stack_mv() / 10.0
    assert abs(h.i16(0x36) - stack_cv) <= 2 and abs(h.i16(0x38) - stack_cv) <= 2    # FETs on: PACK = stack
    h.subcmd(0x0094)                                  # CHG_PCHG_OFF: DSG on, CHG off
    CLOCK.advance_ms(300)
    assert h.u8(0x7F) & (CHG | DSG) == DSG
    # discharge path conducts through CHG's body diode: PACK a diode drop (about 0.7 V) below the stack
    assert 50 <= b.pack.stack_mv() / 10.0 - h.i16(0x36) <= 90
    h.subcmd(0x0095)                                  # ALL_FETS_OFF
    prof["ma"] = 5000                                 # a charger on PACK+, blocked by the open CHG FET
    CLOCK.advance_ms(300)
    assert h.u8(0x7F) & (CHG | DSG) == 0
    assert h.i16(0x3A) == 0                           # no current flows
    assert h.i16(0x36) * 10 > b.pack.stack_mv() + 100     # the charger floats above the stack
    assert h.i16(0x38) == h.i16(0x36)


# ------------------------------------------------------------------ pin temperatures 0x6A..0x7A
def test_pin_temperatures_follow_their_pin_configuration(sim):
    b, h = _board(sim, pack_options={"ambient_c": 30.0})
    b.pack.fet_c = 50.0
    b.pack.node_c[2] = 40.0
    # Pin configs (0x92FA.. CFETOFF, DFETOFF, ALERT, TS1, TS2, TS3, HDQ, DCHG, DDSG):
    # DFETOFF 0x0F = FET thermistor, TS3 0x07 = cell thermistor, HDQ 0x07 = cell thermistor (no node wired)
    h.config({0x9234: NO_SLEEP, 0x92FB: b"\x0f", 0x92FF: b"\x07", 0x9300: b"\x07"})
    CLOCK.advance_ms(300)
    k = lambda c: c * 10 + 2731.5                     # degC -> 0.1 K
    assert abs(h.i16(0x6C) - k(b.pack.fet_c)) <= 2    # DFETOFF: the FET temperature
    assert abs(h.i16(0x74) - k(b.pack.node_c[2])) <= 2    # TS3: the third thermal node
    assert abs(h.i16(0x70) - k(b.pack.node_c[0])) <= 2    # TS1 (default 0x07)
    assert h.i16(0x76) == 2732 - 400                  # HDQ as thermistor with nothing wired: open [U] -40 degC
    for reg in (0x6A, 0x6E, 0x72, 0x78, 0x7A):        # not thermistors: 0 [U]
        assert h.i16(reg) == 0, hex(reg)


# ------------------------------------------------------------------ DASTATUS1-5, CBSTATUS3, HW_VERSION
def test_dastatus1_to_4_carry_each_cell_and_the_current(sim):
    b, h = _board(sim, profile=lambda t: -3000)
    h.config({0x9234: NO_SLEEP})
    h.fet_enable()
    CLOCK.advance_ms(400)
    for k in range(4):
        data, length = h.subcmd_read(0x0071 + k)
        assert length == 0x24 and len(data) == 32     # 32 data bytes + 4
        for j in range(4):
            v, i = struct.unpack_from("<ii", data, 8 * j)
            n = 4 * k + j + 1                         # VC input n
            assert abs(v - b.pack.input_mv(n)) <= 3, (n, v)
            assert abs(i - (-3000)) <= 2


def test_dastatus5_reports_the_extreme_cells(sim):
    b, h = _board(sim)
    h.config({0x9234: NO_SLEEP})
    b.pack.set_soc(0.9, cell=3)
    b.pack.set_soc(0.1, cell=11)
    CLOCK.advance_ms(400)
    data, length = h.subcmd_read(0x0075)
    assert length == 0x24
    hi, lo = struct.unpack_from("<hh", data, 4)       # [U] layout: max then min cell (mV) at offset 4
    mvs = [b.pack.input_mv(n) for n in range(1, 17)]
    assert abs(hi - max(mvs)) <= 3 and abs(lo - min(mvs)) <= 3 and hi > lo + 50


def test_cbstatus3_counts_balancing_seconds_of_cells_9_to_16(sim):
    b, h = _board(sim)
    h.config({0x9234: NO_SLEEP})
    h.subcmd_write(0x0083, struct.pack("<H", 1 << 9))      # CB_ACTIVE_CELLS: cell 10
    CLOCK.advance_ms(5000)
    data, length = h.subcmd_read(0x0087)
    secs = struct.unpack("<8I", data)
    assert length == 0x24
    assert 4 <= secs[1] <= 5 and secs[0] == 0 and sum(secs) == secs[1]     # cell 10 only
    data2, _ = h.subcmd_read(0x0086)                 # CBSTATUS2: cells 1-8 never balanced
    assert struct.unpack("<8I", data2) == (0,) * 8


def test_hw_version_answers_two_bytes(host):
    data, length = host.subcmd_read(0x0003)
    assert length == 6 and struct.unpack("<H", data[:2])[0] == 0x0002     # [U] value, an emulator option


# ------------------------------------------------------------------ protections B and OCD2
def _prot_b(sim, bit, ambient_c, extra=None):
    b, h = _board(sim, pack_options={"ambient_c": ambient_c})
    w = {0x9234: NO_SLEEP, 0x9261: b"\x00", 0x9262: bytes([1 << bit])}   # only this protection
    w.update(extra or {})
    h.config(w)
    h.fet_enable()
    return b, h


def _fets_after(h, ms):
    CLOCK.advance_ms(ms)
    return h.u8(0x7F) & (CHG | DSG)


def test_otint_trips_after_its_delay_and_opens_both_fets(sim):
    b, h = _prot_b(sim, 6, 90.0)                     # OTINT default 85 degC, delay 2 s
    CLOCK.advance_ms(300)
    assert h.u8(0x04) >> 6 & 1 == 1 and h.u8(0x05) == 0        # alert, not yet status
    assert _fets_after(h, 2000) == 0                 # CHG (0xD5) and DSG (0xE6) masks both hold OTINT
    assert h.u8(0x05) >> 6 & 1 == 1
    b.pack.ambient_c = b.pack.die_c = 25.0           # recovery 80 degC, held for Recovery Time 3 s
    assert _fets_after(h, 3500) == CHG | DSG and h.u8(0x05) == 0


def test_otf_reads_the_fet_thermistor(sim):
    b, h = _prot_b(sim, 7, 25.0, {0x92FB: b"\x0f"})  # DFETOFF pin as FET thermistor
    b.pack.fet_c = 95.0                              # OTF default 80 degC
    b.pack.fet_heat = 1e9                            # hold it there
    assert _fets_after(h, 2500) == 0 and h.u8(0x05) >> 7 & 1 == 1


def test_otf_without_a_fet_thermistor_never_trips(sim):
    b, h = _prot_b(sim, 7, 25.0)
    b.pack.fet_c = 95.0
    b.pack.fet_heat = 1e9
    assert _fets_after(h, 2500) == CHG | DSG and h.u8(0x05) == 0


def test_utc_opens_only_chg(sim):
    b, h = _prot_b(sim, 0, -5.0)                     # UTC default 0 degC, cell thermistor TS1
    assert _fets_after(h, 2500) == DSG and h.u8(0x05) & 1 == 1   # 0xD5 has UTC, 0xE6 does not
    for k in range(len(b.pack.node_c)):
        b.pack.node_c[k] = 25.0
    b.pack.ambient_c = 25.0
    assert _fets_after(h, 3500) == CHG | DSG and h.u8(0x05) == 0


def test_utint_opens_both_fets(sim):
    b, h = _prot_b(sim, 2, -30.0)                    # UTINT default -20 degC
    assert _fets_after(h, 2500) == 0 and h.u8(0x05) >> 2 & 1 == 1


def test_ocd2_trips_below_scd_opens_dsg_and_recovers_on_charge(sim):
    prof = {"ma": -7000}                             # above OCD2 (3 x 2 mV / 1 mOhm = 6 A), below OCD1 8 A
    b, h = _board(sim, profile=lambda t: prof["ma"])
    h.config({0x9234: NO_SLEEP, 0x9261: b"\xc0"})    # Enabled Protections A: SCD (10 A) + OCD2
    h.fet_enable()
    CLOCK.advance_ms(20)
    assert h.u8(0x03) == 0                           # delay 7: 3.3 ms x 9 = 29.7 ms
    assert _fets_after(h, 20) == CHG                 # DSG mask 0xE4 holds OCD2; CHG mask 0x98 does not
    assert h.u8(0x03) == 0x40
    prof["ma"] = 0
    assert _fets_after(h, 5000) == CHG and h.u8(0x03) == 0x40  # no charge: OCD stays
    prof["ma"] = 500                                 # >= OCD Recovery Threshold (200 mA [U])
    assert _fets_after(h, 3200) == CHG | DSG and h.u8(0x03) == 0


# ------------------------------------------------------------------ COVL latch
def test_covl_latches_on_the_second_cov_and_releases_after_covl_recovery_time(sim):
    b, h = _board(sim)
    # COV 72 x 50.6 mV = 3643 mV; Enabled Protections C bit 4 COVL; COVL Latch Limit 2 [U address 0x927D]
    h.config({0x9234: NO_SLEEP, 0x9278: bytes([72]), 0x9263: bytes([0x10]), 0x927D: bytes([2])})
    h.fet_enable()

    def cov_once():
        b.pack.set_soc(1.02, cell=5)                  # OCV above COV
        CLOCK.advance_ms(400)                         # delay 74: 250 ms
        assert h.u8(0x03) >> 3 & 1 == 1
        b.pack.set_soc(0.9, cell=5)
        CLOCK.advance_ms(3200)                        # COV recovers after Recovery Time 3 s

    cov_once()
    assert h.u8(0x03) == 0 and h.u8(0x07) == 0 and h.u8(0x7F) & CHG   # one trip: no latch
    cov_once()
    assert h.u8(0x03) == 0                            # COV itself has recovered ...
    assert h.u8(0x07) >> 4 & 1 == 1                   # ... but COVL latched on the second trip
    assert h.u8(0x7F) & (CHG | DSG) == DSG            # CHG FET Protections C 0x56 holds COVL
    CLOCK.advance_ms(10000)
    assert h.u8(0x07) >> 4 & 1 == 1                   # still latched before COVL Recovery Time (15 s [U])
    CLOCK.advance_ms(6000)
    assert h.u8(0x07) == 0 and h.u8(0x7F) & (CHG | DSG) == CHG | DSG
