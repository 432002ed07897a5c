"""make_emulated_board(): construction, option checking, and the chip on the host-port I2C bus."""
import errno
import struct

import pytest

from simclock import CLOCK

from tools.emulator import make_emulated_board


def test_unknown_option_and_bad_values_raise_valueerror(sim):
    with pytest.raises(ValueError):
        make_emulated_board(attach=False, no_such_option=1)
    with pytest.raises(ValueError):
        make_emulated_board(attach=False, fet_control_order="X")
    with pytest.raises(ValueError):
        make_emulated_board(attach=False, dm_overrides={"NOT_A_SETTING": 1})


def test_dm_overrides_act_as_power_up_values(sim):
    b = make_emulated_board(attach=False, dm_overrides={"MFG_STATUS_INIT": 0x0050})   # FET_EN at power-up
    CLOCK.advance_ms(10)
    assert b.chip.now_fets() != (False, False)


def test_physics_is_lazy_until_touched(sim):
    b = make_emulated_board(attach=False, profile=lambda t: -1000)
    b.chip.i2c_write(bytes([0x3E, 0x22, 0x00]), True)
    CLOCK.advance_ms(60000)
    soc = b.pack.true_soc(0)
    assert b.pack.time_s < 0.01                     # nothing integrated yet
    b.chip.update()
    assert b.pack.true_soc(0) < soc
    assert 59.9 < b.pack.time_s < 60.1


def _machine():
    machine = pytest.importorskip("machine")
    if not hasattr(machine, "attach_i2c_target"):
        pytest.skip("tools/hostport/machine.py has no attach_i2c_target yet")
    return machine


def test_reads_through_machine_i2c(sim):
    machine = _machine()
    b = make_emulated_board(cells=16, bus_id=0, cell_noise_mv=0.0)
    assert b.attached
    i2c = machine.I2C(0)
    raw = i2c.readfrom_mem(0x08, 0x14, 32)
    cells = struct.unpack("<16h", raw)
    assert abs(cells[0] - b.pack.cell_mv(0)) <= 1
    i2c.writeto_mem(0x08, 0x3E, b"\x01\x00")
    CLOCK.advance_ms(2)
    assert i2c.readfrom_mem(0x08, 0x40, 2) == b"\x95\x76"


def test_nack_through_machine_i2c_is_enodev(sim):
    machine = _machine()
    b = make_emulated_board(cells=16, bus_id=0)
    i2c = machine.I2C(0)
    b.faults.nack_next(1)
    with pytest.raises(OSError) as e:
        i2c.readfrom_mem(0x08, 0x14, 2)
    assert e.value.args[0] == errno.ENODEV          # what the ESP32 port raises for a NACK
    assert len(i2c.readfrom_mem(0x08, 0x14, 2)) == 2


def test_alert_output_drives_a_machine_pin(sim):
    machine = _machine()
    if not hasattr(machine, "drive_pin"):
        pytest.skip("machine.drive_pin missing")
    make_emulated_board(cells=16, bus_id=0, alert_pin_id=4)
    i2c = machine.I2C(0)
    p = machine.Pin(4, machine.Pin.IN, machine.Pin.PULL_UP)
    i2c.writeto_mem(0x08, 0x3E, b"\x90\x00")                      # SET_CFGUPDATE
    CLOCK.advance_ms(3)
    data = bytes([0x2A])                                           # ALERT pin = alarm output
    s = (~(0xFC + 0x92 + 0x2A)) & 0xFF
    i2c.writeto_mem(0x08, 0x3E, b"\xFC\x92" + data)
    i2c.writeto_mem(0x08, 0x60, bytes([s, 5]))
    CLOCK.advance_ms(2)
    i2c.writeto_mem(0x08, 0x3E, b"\x92\x00")                      # EXIT_CFGUPDATE
    CLOCK.advance_ms(2)
    i2c.writeto_mem(0x08, 0x66, struct.pack("<H", 0x0002))         # enable ADSCAN
    CLOCK.advance_ms(100)
    i2c.readfrom_mem(0x08, 0x62, 2)
    assert p.value() == 0                                          # pulled low: asserted
    i2c.writeto_mem(0x08, 0x66, struct.pack("<H", 0x0000))
    i2c.writeto_mem(0x08, 0x62, struct.pack("<H", 0xFFFF))
    assert p.value() == 1                                          # released: pull-up
