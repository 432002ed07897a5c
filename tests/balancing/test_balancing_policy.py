"""Balancing policy: when, which cells, chip limits (max cells, no adjacent), derating, stop on fault."""
from tests.pack.pack_fakes import FakeAFE

from firmware.balancing.policy import Balancer
from firmware.config import defaults
from firmware.pack import state as S
from firmware.pack.protection import F_CELL_OV, Protection
from firmware.sample import Sample


class SM:
    def __init__(self, state, rest_ms=0):
        self.state = state
        self.rest_ms = rest_ms


def rig(cells, temp_dc=250, int_dc=300, **over):
    cfg = defaults.build("lfp", over)
    afe = FakeAFE(len(cells))
    s = Sample(len(cells), 3)
    for i, v in enumerate(cells):
        s.cell_mv[i] = v
    for i in range(3):
        s.temp_dc[i] = temp_dc
    s.int_temp_dc = int_dc
    p = Protection(cfg)
    p._derive(s)
    return cfg, afe, s, p, Balancer(cfg, afe)


BASE = [3400] * 16


def cells_with(**hi):
    c = list(BASE)
    for k, v in hi.items():
        c[int(k[1:]) - 1] = v
    return c


def test_balances_highest_cells_while_charging():
    cfg, afe, s, p, b = rig(cells_with(c3=3450, c9=3480))
    b.update(s, p, SM(S.CHARGE), 250)
    assert afe.balance == (1 << 2) | (1 << 8) and s.balance_mask == afe.balance
    assert b.bleeding() == [3, 9]


def test_no_adjacent_cells_and_max_cells_limit():
    c = cells_with(c1=3500, c2=3499, c3=3498, c4=3497, c5=3496, c6=3495, c7=3494, c8=3493, c9=3492, c10=3491)
    cfg, afe, s, p, b = rig(c, bal_max_cells=3)
    b.update(s, p, SM(S.CHARGE), 250)
    m = afe.balance
    assert bin(m).count("1") == 3
    assert m & (m >> 1) == 0                  # no two adjacent bits
    assert m == (1 << 0) | (1 << 2) | (1 << 4)  # highest first: cells 1, 3, 5


def test_adjacent_allowed_when_configured():
    cfg, afe, s, p, b = rig(cells_with(c1=3500, c2=3499), bal_allow_adjacent=1)
    b.update(s, p, SM(S.CHARGE), 250)
    assert afe.balance == 0b11


def test_start_and_stop_thresholds_have_hysteresis():
    cfg = {"bal_start_mv": 20, "bal_stop_mv": 5}
    cfg, afe, s, p, b = rig(cells_with(c4=3400 + 20), **cfg)   # at start_mv: not yet
    b.update(s, p, SM(S.CHARGE), 250)
    assert afe.balance == 0
    s.cell_mv[3] = 3400 + 21                             # above start_mv: starts
    p._derive(s)
    b.update(s, p, SM(S.CHARGE), 250)
    assert afe.balance == 1 << 3
    s.cell_mv[3] = 3400 + 10                             # between stop (5) and start: keeps going
    p._derive(s)
    b.update(s, p, SM(S.CHARGE), 250)
    assert afe.balance == 1 << 3
    s.cell_mv[3] = 3400 + 5                              # at stop: stops
    p._derive(s)
    b.update(s, p, SM(S.CHARGE), 250)
    assert afe.balance == 0


def test_not_while_discharging_and_at_rest_only_after_settle_time():
    cfg, afe, s, p, b = rig(cells_with(c2=3480))
    b.update(s, p, SM(S.DISCHARGE), 250)
    assert afe.balance == 0
    b.update(s, p, SM(S.IDLE, rest_ms=cfg["bal_settle_ms"] - 1), 250)
    assert afe.balance == 0
    b.update(s, p, SM(S.IDLE, rest_ms=cfg["bal_settle_ms"]), 250)
    assert afe.balance == 1 << 1


def test_not_below_minimum_cell_voltage():
    c = [3200] * 16
    c[4] = 3260
    cfg, afe, s, p, b = rig(c)
    b.update(s, p, SM(S.CHARGE), 250)
    assert afe.balance == 0


def test_stops_on_any_fault():
    cfg, afe, s, p, b = rig(cells_with(c2=3480))
    b.update(s, p, SM(S.CHARGE), 250)
    assert afe.balance
    p.faults = F_CELL_OV
    b.update(s, p, SM(S.FAULT), 250)
    assert afe.balance == 0 and s.balance_mask == 0


def test_thermal_derating_and_stop():
    c = [3400 + 40 * (i % 2 == 0) for i in range(16)]   # 8 non-adjacent cells high
    cfg, afe, s, p, b = rig(c, bal_max_cells=5)
    assert b.limit(p, 300) == 5
    cfg, afe, s, p, b = rig(c, temp_dc=500, bal_max_cells=5)   # halfway 450..550
    assert b.limit(p, 300) == 3
    b.update(s, p, SM(S.CHARGE), 250)
    assert bin(afe.balance).count("1") == 3
    cfg, afe, s, p, b = rig(c, temp_dc=550)
    assert b.limit(p, 300) == 0
    cfg, afe, s, p, b = rig(c, int_dc=700)
    assert b.limit(p, 700) == 0


def test_bus_error_is_counted_and_retried():
    cfg, afe, s, p, b = rig(cells_with(c2=3480))
    afe.fail = True
    b.update(s, p, SM(S.CHARGE), 250)
    assert b.errors == 1 and b.mask == 0
    afe.fail = False
    b.update(s, p, SM(S.CHARGE), 250)
    assert afe.balance == 1 << 1
