"""One measurement of the pack, plus what the pack logic derived from it.

Allocated once at boot; the AFE driver fills the measured part in place every cycle,
the pack logic fills the derived part, comms copies it into the outbox ring.

    s = Sample(cell_count=16, temp_count=3)
    afe.read(s)            # fills cell_mv, current_ma, temp_dc, status words, t_ms

Units are in the names: mv = millivolt, ma = milliampere, dc = 0.1 degree Celsius,
cpct = 0.01 percent, ms = millisecond. Every field is an int (no floats on the hot path).
"""
from array import array

MAX_CELLS = 16
MAX_TEMPS = 3
# A thermistor reading the chip cannot make sense of (open or shorted) is stored as this.
TEMP_INVALID_DC = -32768

# chip_trips: which of the AFE's own hardware protections have tripped, chip-independent. The driver
# translates its chip's status registers into these bits, so pack logic never reads chip registers.
TRIP_CELL_OV = 0x0001    # cell over-voltage (incl. its latch)
TRIP_CELL_UV = 0x0002    # cell under-voltage
TRIP_CHG_OC = 0x0004     # charge over-current
TRIP_DSG_OC = 0x0008     # discharge over-current (any level, incl. its latch)
TRIP_CHG_OT = 0x0010     # over-temperature while charging
TRIP_CHG_UT = 0x0020     # under-temperature while charging
TRIP_DSG_OT = 0x0040     # over-temperature while discharging
TRIP_DSG_UT = 0x0080     # under-temperature while discharging
TRIP_SHORT = 0x0100      # short circuit in discharge (incl. its latch)
TRIP_AFE_OT = 0x0200     # AFE die over-temperature
TRIP_PF = 0x0400         # a permanent failure is latched


class Sample:
    def __init__(self, cell_count=16, temp_count=3):
        if not 1 <= cell_count <= MAX_CELLS:
            raise ValueError("cell_count must be 1..16, got %d" % cell_count)
        if not 0 <= temp_count <= MAX_TEMPS:
            raise ValueError("temp_count must be 0..3, got %d" % temp_count)
        self.cell_count = cell_count
        self.temp_count = temp_count
        # --- measured by the AFE driver ---
        self.t_ms = 0                           # time.ticks_ms() when the read completed
        self.cell_mv = array("h", [0] * cell_count)  # cell voltages, cell 1 first (mV)
        self.stack_mv = 0                       # top of stack (mV)
        self.pack_mv = 0                        # PACK pin (mV)
        self.ld_mv = 0                          # LD pin (mV)
        self.current_ma = 0                     # CC2 current, + charge / - discharge (mA)
        self.temp_dc = array("h", [0] * temp_count)  # the configured TS pins in order, e.g. TS1, TS3 (0.1 degC)
        self.int_temp_dc = 0                    # AFE die temperature (0.1 degC)
        self.safety_alert = 0                   # Safety Alert A | B<<8 | C<<16
        self.safety_status = 0                  # Safety Status A | B<<8 | C<<16
        self.pf_status = 0                      # PF Status A | B<<8 | C<<16 | D<<24
        self.chip_trips = 0                     # TRIP_* bits: the AFE's protections that tripped
        self.battery_status = 0                 # Battery Status word (0x12)
        self.alarm_status = 0                   # latched Alarm Status (0x62)
        self.fet_status = 0                     # FET Status byte (0x7F)
        self.balance_mask = 0                   # cells bleeding now, bit n = cell n+1
        # --- derived by the pack logic ---
        self.soc_cpct = 0                       # state of charge (0.01 %)
        self.soh_cpct = 10000                   # state of health (0.01 %)
        self.state = 0                          # pack state code (firmware.pack.state)
        self.faults = 0                         # firmware fault bitmask (firmware.pack.protection)

    def copy_from(self, other):
        """Copy every field of `other` (same shape) into self without allocating."""
        self.t_ms = other.t_ms
        for i in range(self.cell_count):
            self.cell_mv[i] = other.cell_mv[i]
        for i in range(self.temp_count):
            self.temp_dc[i] = other.temp_dc[i]
        self.stack_mv = other.stack_mv
        self.pack_mv = other.pack_mv
        self.ld_mv = other.ld_mv
        self.current_ma = other.current_ma
        self.int_temp_dc = other.int_temp_dc
        self.safety_alert = other.safety_alert
        self.safety_status = other.safety_status
        self.pf_status = other.pf_status
        self.chip_trips = other.chip_trips
        self.battery_status = other.battery_status
        self.alarm_status = other.alarm_status
        self.fet_status = other.fet_status
        self.balance_mask = other.balance_mask
        self.soc_cpct = other.soc_cpct
        self.soh_cpct = other.soh_cpct
        self.state = other.state
        self.faults = other.faults
