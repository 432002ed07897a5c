"""Data memory of the emulated BQ76952 (0x9180-0x93FF): layout, defaults, typed access.

Every byte of the range is readable and writable through the subcommand buffer; the named entries
below are the ones the emulator acts on. Tags as in docs/afe-emulator.md and the reference:
[V] verified, [X] sibling part, [U] unverified (address or default is a guess, kept configurable
through `overrides` and `addr_overrides`).

    from tools.emulator.datamem import DataMemory
    dm = DataMemory(); dm.get("CUV_THRESHOLD")   # -> 50
"""
import struct

DM_START = 0x9180
DM_END = 0x93FF          # inclusive
DM_SIZE = DM_END - DM_START + 1

# name: (address, struct format, default). Reference section 4 unless marked.
LAYOUT = {
    "POWER_CONFIG": (0x9234, "<H", 0x2982),           # [V]
    "REG12_CONFIG": (0x9236, "<B", 0x00),
    "COMM_TYPE": (0x9239, "<B", 0x00),
    "I2C_ADDRESS": (0x923A, "<B", 0x00),              # not acted on (emulator stays at 0x08)
    "SLEEP_CURRENT": (0x9248, "<h", 20),              # mA, default [U]
    "VOLTAGE_TIME": (0x924A, "<B", 5),                # s, default [U]
    "WAKE_COMPARATOR_CURRENT": (0x924B, "<h", 500),   # mA, default [U]
    "SLEEP_HYSTERESIS_TIME": (0x924D, "<B", 10),      # s [X]
    "PROTECTION_CONFIG": (0x925F, "<H", 0x0002),
    "ENABLED_PROT_A": (0x9261, "<B", 0x88),
    "ENABLED_PROT_B": (0x9262, "<B", 0x00),
    "ENABLED_PROT_C": (0x9263, "<B", 0x00),
    "CHG_FET_PROT_A": (0x9265, "<B", 0x98),
    "CHG_FET_PROT_B": (0x9266, "<B", 0xD5),
    "CHG_FET_PROT_C": (0x9267, "<B", 0x56),
    "DSG_FET_PROT_A": (0x9269, "<B", 0xE4),
    "DSG_FET_PROT_B": (0x926A, "<B", 0xE6),
    "DSG_FET_PROT_C": (0x926B, "<B", 0xE2),
    "DEFAULT_ALARM_MASK": (0x926D, "<H", 0xF800),
    "CUV_THRESHOLD": (0x9275, "<B", 50),              # x 50.6 mV
    "CUV_DELAY": (0x9276, "<H", 74),                  # 3.3 ms x (2 + n); 0 disables
    "CUV_RECOVERY_HYST": (0x927B, "<B", 2),           # x 50.6 mV, default [U]
    "COV_THRESHOLD": (0x9278, "<B", 86),
    "COV_DELAY": (0x9279, "<H", 74),
    "COV_RECOVERY_HYST": (0x927C, "<B", 2),           # default [U]
    "COVL_LATCH_LIMIT": (0x927D, "<B", 0),            # address and default [U]
    "COVL_COUNTER_DEC_DELAY": (0x927E, "<B", 10),     # s, address and default [U]
    "COVL_RECOVERY_TIME": (0x927F, "<B", 15),         # s, address and default [U]
    "OCC_THRESHOLD": (0x9280, "<B", 2),               # x 2 mV across the shunt [V]
    "OCC_DELAY": (0x9281, "<B", 4),                   # 3.3 ms x (2 + n) [V]
    "OCD1_THRESHOLD": (0x9282, "<B", 4),              # x 2 mV, default [U]
    "OCD1_DELAY": (0x9283, "<B", 1),                  # default [U]
    "OCD2_THRESHOLD": (0x9284, "<B", 3),              # default [U]
    "OCD2_DELAY": (0x9285, "<B", 7),
    "SCD_THRESHOLD": (0x9286, "<B", 0),               # code 0-15 (table), default [U]
    "SCD_DELAY": (0x9287, "<B", 2),                   # (n - 1) x 15 us
    "OCC_RECOVERY_THRESHOLD": (0x9288, "<h", -200),   # mA [X]
    "OCDL_LATCH_LIMIT": (0x928A, "<B", 0),            # address and default [U]
    "OCDL_COUNTER_DEC_DELAY": (0x928B, "<B", 10),     # s [U]
    "OCDL_RECOVERY_TIME": (0x928C, "<B", 15),         # s [U] (not acted on: OCDL_RECOVER releases)
    "OCD_RECOVERY_THRESHOLD": (0x928D, "<h", 200),    # mA, address and default [U]
    "SCD_RECOVERY_TIME": (0x9294, "<B", 5),           # s, default [U]
    "SCDL_LATCH_LIMIT": (0x9295, "<B", 0),            # default [U]
    "SCDL_COUNTER_DEC_DELAY": (0x9296, "<B", 10),     # s, address and default [U]
    "OTC_THRESHOLD": (0x929A, "<b", 55), "OTC_DELAY": (0x929B, "<B", 2), "OTC_RECOVERY": (0x929C, "<b", 50),
    "OTD_THRESHOLD": (0x929D, "<b", 60), "OTD_DELAY": (0x929E, "<B", 2), "OTD_RECOVERY": (0x929F, "<b", 55),
    "OTF_THRESHOLD": (0x92A0, "<B", 80), "OTF_DELAY": (0x92A1, "<B", 2), "OTF_RECOVERY": (0x92A2, "<b", 65),
    "OTINT_THRESHOLD": (0x92A3, "<b", 85), "OTINT_DELAY": (0x92A4, "<B", 2), "OTINT_RECOVERY": (0x92A5, "<b", 80),
    "UTC_THRESHOLD": (0x92A6, "<b", 0), "UTC_DELAY": (0x92A7, "<B", 2), "UTC_RECOVERY": (0x92A8, "<b", 5),
    "UTD_THRESHOLD": (0x92A9, "<b", 0), "UTD_DELAY": (0x92AA, "<B", 2), "UTD_RECOVERY": (0x92AB, "<b", 5),
    "UTINT_THRESHOLD": (0x92AC, "<b", -20), "UTINT_DELAY": (0x92AD, "<B", 2), "UTINT_RECOVERY": (0x92AE, "<b", -15),
    "RECOVERY_TIME": (0x92AF, "<B", 3),               # s [X]
    "OCC_PACK_TOS_DELTA": (0x92B0, "<h", 200),        # x 10 mV [X]
    # Host watchdog: the reference has no address. [U] a guess; enabled when Enabled Protections C
    # bit 1 (HWDF) is set and this delay (s) is non-zero. The chip's make-up option hwd_delay_addr moves it.
    "HWD_DELAY": (0x92B2, "<H", 0),
    "PIN_CFETOFF": (0x92FA, "<B", 0x00),              # default [U]
    "PIN_DFETOFF": (0x92FB, "<B", 0x00),              # default [U]
    "PIN_ALERT": (0x92FC, "<B", 0x00),                # default [U]
    "PIN_TS1": (0x92FD, "<B", 0x07),                  # [X]
    "PIN_TS2": (0x92FE, "<B", 0x00),
    "PIN_TS3": (0x92FF, "<B", 0x00),                  # default [U]
    "PIN_HDQ": (0x9300, "<B", 0x00),
    "PIN_DCHG": (0x9301, "<B", 0x00),                 # default [U]
    "PIN_DDSG": (0x9302, "<B", 0x00),                 # default [U]
    "DA_CONFIG": (0x9303, "<B", 0x05),                # [X]
    "VCELL_MODE": (0x9304, "<H", 0x0000),
    "FET_OPTIONS": (0x9308, "<B", 0x0D),              # [V]
    "CHG_PUMP_CONTROL": (0x9309, "<B", 0x01),
    "DSG_CURRENT_THRESHOLD": (0x9310, "<h", 100),
    "CHG_CURRENT_THRESHOLD": (0x9312, "<h", 50),      # default [U]
    "BALANCING_CONFIG": (0x9335, "<B", 0x00),         # [V]
    "CB_MIN_CELL_TEMP": (0x9336, "<b", -20),
    "CB_MAX_CELL_TEMP": (0x9337, "<b", 60),
    "CB_MAX_INTERNAL_TEMP": (0x9338, "<b", 70),
    "CB_INTERVAL": (0x9339, "<B", 20),
    "CB_MAX_CELLS": (0x933A, "<B", 1),
    "CB_CHG_MIN_CELL_V": (0x933B, "<h", 3900),
    "CB_CHG_MIN_DELTA": (0x933D, "<B", 40),
    "CB_CHG_STOP_DELTA": (0x933E, "<B", 20),
    "CB_RLX_MIN_CELL_V": (0x933F, "<h", 3900),
    "CB_RLX_MIN_DELTA": (0x9341, "<B", 40),           # default [U]
    "CB_RLX_STOP_DELTA": (0x9342, "<B", 20),
    "MFG_STATUS_INIT": (0x9343, "<H", 0x0040),        # default [U] (PF_EN only: FET test mode at power-up)
}


class DataMemory:
    """The 0x9180-0x93FF byte image with typed named access."""

    def __init__(self, overrides=None, addr_overrides=None):
        self.layout = dict(LAYOUT)
        if addr_overrides:
            for name, addr in addr_overrides.items():
                if name not in self.layout:
                    raise ValueError("unknown data-memory name %r" % name)
                _, fmt, default = self.layout[name]
                self.layout[name] = (addr, fmt, default)
        self._overrides = dict(overrides) if overrides else {}
        for name in self._overrides:
            if name not in self.layout:
                raise ValueError("unknown data-memory name %r" % name)
        self.image = bytearray(DM_SIZE)
        self.load_defaults()

    def load_defaults(self):
        for i in range(DM_SIZE):
            self.image[i] = 0
        for name in self.layout:
            addr, fmt, default = self.layout[name]
            self.set(name, self._overrides.get(name, default))

    def get(self, name):
        addr, fmt, _ = self.layout[name]
        return struct.unpack_from(fmt, self.image, addr - DM_START)[0]

    def set(self, name, value):
        addr, fmt, _ = self.layout[name]
        struct.pack_into(fmt, self.image, addr - DM_START, value)

    def read(self, addr, n):
        """n bytes from addr (bytes past 0x93FF read as 0)."""
        out = bytearray(n)
        for k in range(n):
            a = addr + k
            if DM_START <= a <= DM_END:
                out[k] = self.image[a - DM_START]
        return bytes(out)

    def write(self, addr, data):
        for k in range(len(data)):
            a = addr + k
            if DM_START <= a <= DM_END:
                self.image[a - DM_START] = data[k]

    def snapshot(self):
        """A frozen copy whose values the chip acts on (taken at reset and on exiting CONFIG_UPDATE)."""
        return Frozen(self)


class Frozen:
    """Decoded values of every named entry at one instant (a dict lookup on the hot path)."""

    def __init__(self, dm):
        v = {}
        for name in dm.layout:
            v[name] = dm.get(name)
        self._v = v

    def get(self, name):
        return self._v[name]


def in_range(addr):
    return DM_START <= addr <= DM_END
