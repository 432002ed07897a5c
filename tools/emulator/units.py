"""Small unit helpers and pin tables shared by the emulated BQ76952's modules.

    from tools.emulator.units import k10, dc
    k10(dc(25.0))   # -> 2982 (0.1 K)
"""

# Temperature pins in register order 0x6A..0x7A and their data-memory config names.
PINS = ("CFETOFF", "DFETOFF", "ALERT", "TS1", "TS2", "TS3", "HDQ", "DCHG", "DDSG")
# DA Configuration USER_AMPS code -> mA per count (reference section 4).
USER_AMPS_MA = (0.1, 1.0, 10.0, 100.0)


def k10(dc):
    """0.1 degC -> 0.1 K (the chip's temperature unit)."""
    return dc + 2732 if dc >= -2732 else 0


def dc(c):
    """degC (float) -> 0.1 degC (int, rounded half away from zero)."""
    return int(c * 10.0 + (0.5 if c >= 0 else -0.5))


def clamp16(v):
    """Saturate to a signed 16-bit register value."""
    if v > 32767:
        return 32767
    if v < -32768:
        return -32768
    return v
