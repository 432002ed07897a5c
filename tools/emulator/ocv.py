"""Open-circuit voltage against state of charge for LFP, NMC and LTO cells (25 degC, at rest).

Source: rounded breakpoints of typical rest-OCV curves (graphite/LiFePO4, graphite/NMC, LTO/NMC),
not the curve of one particular cell. Checked against published data: the pseudo-OCV tables of
Sunil, Pattipati and Balasingam, IEEE Trans. Instrum. Meas. 2025 (repository
soorajsunil/Piecewise-Battery-OCV). LFP is within 11 mV of their Lithium Werks APR18650M1B curve over
10-90 % SOC; NMC is within 120 mV of their Samsung INR21700-40T and Molicel INR21700P42A curves (up to
~0.1 V high at 10 % SOC), so it is a generic NMC shape. docs/afe-emulator.md has the comparison.
Temperature dependence and hysteresis are not modelled.

    from tools.emulator.ocv import ocv_mv
    ocv_mv("LFP", 0.5)   # -> about 3300.0
"""

# (SOC fraction, OCV mV) breakpoints, SOC ascending.
_TABLES = {
    "LFP": (
        (0.00, 2500.0), (0.02, 2900.0), (0.05, 3100.0), (0.10, 3200.0), (0.20, 3250.0), (0.30, 3275.0),
        (0.40, 3290.0), (0.50, 3300.0), (0.60, 3305.0), (0.70, 3320.0), (0.80, 3330.0), (0.90, 3340.0),
        (0.95, 3350.0), (0.99, 3420.0), (1.00, 3500.0),
    ),
    "NMC": (
        (0.00, 3000.0), (0.05, 3300.0), (0.10, 3450.0), (0.20, 3550.0), (0.30, 3610.0), (0.40, 3660.0),
        (0.50, 3720.0), (0.60, 3800.0), (0.70, 3880.0), (0.80, 3960.0), (0.90, 4060.0), (1.00, 4190.0),
    ),
    "LTO": (
        (0.00, 1800.0), (0.05, 2050.0), (0.10, 2150.0), (0.20, 2250.0), (0.30, 2290.0), (0.40, 2310.0),
        (0.50, 2330.0), (0.60, 2350.0), (0.70, 2380.0), (0.80, 2420.0), (0.90, 2480.0), (1.00, 2700.0),
    ),
}

# Beyond the table ends the voltage keeps moving steeply (over-charge / deep discharge), mV per unit SOC.
_OVERSHOOT_MV_PER_SOC = 8000.0

CHEMISTRIES = tuple(sorted(_TABLES))


def table(chemistry):
    try:
        return _TABLES[chemistry]
    except KeyError:
        raise ValueError("unknown chemistry %r (have %s)" % (chemistry, ", ".join(CHEMISTRIES)))


def ocv_mv(chemistry, soc, tbl=None):
    """OCV in mV (float) at state of charge soc (fraction; may go below 0 or above 1)."""
    t = tbl if tbl is not None else table(chemistry)
    if soc <= t[0][0]:
        return t[0][1] + (soc - t[0][0]) * _OVERSHOOT_MV_PER_SOC
    last = t[-1]
    if soc >= last[0]:
        return last[1] + (soc - last[0]) * _OVERSHOOT_MV_PER_SOC
    lo = 0
    hi = len(t) - 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if t[mid][0] <= soc:
            lo = mid
        else:
            hi = mid
    s0, v0 = t[lo]
    s1, v1 = t[hi]
    return v0 + (v1 - v0) * (soc - s0) / (s1 - s0)
