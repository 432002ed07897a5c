"""Emulated BQ76952 AFE with a pack model, for host tests and simulations (never deployed).

make_emulated_board() builds the pack and the chip, attaches the chip to the host-port I2C bus
(when tools/hostport/machine.py offers attach_i2c_target) and returns them with fault injection.

    from tools.emulator import make_emulated_board
    board = make_emulated_board(cells=16, chemistry="LFP", seed=1); board.chip.update()
"""
try:
    import simclock  # noqa: F401  (the host port's clock; on the path in tests and in the VM)
except ImportError:
    # Run as `python -m tools.emulator.bench` from the repository root: find it next to this package.
    import os
    import sys
    sys.path.append(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "hostport"))

from tools.emulator.bq76952 import BQ76952
from tools.emulator.faults import Faults
from tools.emulator.pack import Pack


class MachinePinDriver:
    """Drives a host-port machine pin as the chip's open-drain ALERT output: level 0 pulls the wire
    low, level 1 releases it (the host's pull-up makes it high). Needs machine.drive_pin."""

    def __init__(self, pin_id):
        import machine
        self._drive = machine.drive_pin
        self._id = pin_id

    def value(self, v):
        self._drive(self._id, 0 if not v else None)


class EmulatedBoard:
    def __init__(self, chip, pack, faults, bus_id, attached):
        self.chip = chip
        self.pack = pack
        self.faults = faults
        self.bus_id = bus_id
        self.attached = attached    # True when the chip sits on machine's I2C bus


def make_emulated_board(cells=16, chemistry="LFP", capacity_mah=100000, seed=1, bus_id=0, crc=False,
                        soc=0.5, profile=None, alert_pin=None, alert_pin_id=None, attach=True, pack_options=None,
                        dm_overrides=None, dm_addr_overrides=None, **chip_options):
    """Pack + chip (+ faults). chip_options go to BQ76952 (see bq76952.DEFAULT_OPTIONS);
    pack_options to Pack; dm_overrides set data-memory power-up values (as OTP would).
    alert_pin: an object with value(v) or a callable(level); alert_pin_id: a host-port machine pin
    number the chip's open-drain ALERT output drives (machine.drive_pin)."""
    po = dict(pack_options) if pack_options else {}
    if alert_pin is None and alert_pin_id is not None:
        alert_pin = MachinePinDriver(alert_pin_id)
    pack = Pack(cells=cells, chemistry=chemistry, capacity_mah=capacity_mah, seed=seed, soc=soc,
                profile=profile, **po)
    chip = BQ76952(pack, crc=crc, alert_pin=alert_pin, seed=seed, dm_overrides=dm_overrides,
                   dm_addr_overrides=dm_addr_overrides, **chip_options)
    faults = Faults(chip, pack, seed=seed)
    attached = False
    if attach:
        try:
            import machine
        except ImportError:
            machine = None
        if machine is not None and hasattr(machine, "attach_i2c_target"):
            machine.attach_i2c_target(bus_id, 0x08, chip)
            attached = True
    return EmulatedBoard(chip, pack, faults, bus_id, attached)
