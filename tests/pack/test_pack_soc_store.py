"""SOC and learned capacity survive a reboot: checksummed atomic file, rare writes, safe fallbacks."""
import os

import pytest
from pack_fakes import FakeAFE
from simclock import CLOCK

from firmware.app import INFO_OVERRUN, INFO_MAX_CYCLE, INFO_SOC_STATE, App, NullComms
from firmware.config import defaults
from firmware.log import RingLog
from firmware.pack import soc_store
from firmware.pack.soc import Soc
from firmware.pack.state import EVENT_INFO
from firmware.sample import Sample


class Events(NullComms):
    def __init__(self):
        NullComms.__init__(self)
        self.got = []

    def offer_event(self, kind, code, value):
        self.got.append((kind, code, value))


def boot(sim, path, comms=None, **over):
    afe = FakeAFE()
    afe.clock_ms = sim.ticks_ms
    app = App(defaults.build("lfp", over), afe, Sample(16, 3), comms=comms or Events(), log=RingLog(64))
    app.soc_path = path
    app.start()
    return app, afe


# --- the file ---
def test_round_trip_and_every_kind_of_damage_is_refused():
    data = soc_store.encode(4321, 95000, 100000)
    assert soc_store.decode(data) == (4321, 95000, 100000)
    for bad in (data[:-1], data.replace(b"4321", b"4322"), b"", b"soc1 1 2 3",
                soc_store.encode(10001, 95000, 100000), soc_store.encode(50, 10, 100000),
                data[:5] + b"\xff" + data[6:]):
        with pytest.raises(ValueError):
            soc_store.decode(bad)


def test_save_is_atomic_and_leaves_no_temporary_file(tmp_path):
    path = str(tmp_path / "soc.dat")
    soc = Soc(defaults.build("lfp"))
    soc.soc_cpct = 6543
    soc_store.save(path, soc)
    assert soc_store.load(path) == (6543, 100000, 100000)
    assert os.listdir(str(tmp_path)) == ["soc.dat"]


# --- when to write ---
class P:
    def __init__(self, mv=3300):
        self.avg_mv = self.max_mv = self.min_mv = mv


def test_writes_are_rare_one_percent_steps_at_most_every_ten_minutes():
    cfg = defaults.build("lfp", {"capacity_mah": 10000, "initial_soc_cpct": 9000})
    soc = Soc(cfg)
    s = Sample(16, 3)
    soc.start(s, P())
    soc.saved()
    s.current_ma = -10000                       # 1 C: 1 % every 36 s
    writes = 0
    for _ in range(4 * 2700):                   # 45 min of 250 ms cycles: 90 % -> 15 %
        soc.update(s, P(), 250)
        if soc.save_due():
            soc.saved()
            writes += 1
    assert writes == 4                          # every 10 min, not at each of the 75 1 % steps
    s.current_ma = -30                          # a tiny drift: under 1 % in 10 min -> no write
    soc.saved()
    for _ in range(4 * 1200):
        soc.update(s, P(), 250)
        assert not soc.save_due()


def test_full_mark_and_learned_capacity_are_written_at_once_but_only_once():
    cfg = defaults.build("lfp", {"capacity_mah": 10000, "initial_soc_cpct": 9990})
    soc = Soc(cfg)
    s = Sample(16, 3)
    soc.start(s, P())
    soc.saved()
    s.current_ma = 100
    full = P(cfg["full_cell_mv"] + 10)
    n = 0
    for _ in range(200):                        # 50 s at the full mark (a mark every 5 s)
        soc.update(s, full, 250)
        if soc.save_due():
            soc.saved()
            n += 1
    assert soc.fulls >= 5 and n == 1 and soc._saved_soc == 10000
    soc.learn(9000)
    assert soc.save_due()


# --- boot ---
def test_reboot_restores_soc_and_learned_capacity(sim, tmp_path):
    path = str(tmp_path / "soc.dat")
    app, afe = boot(sim, path)
    assert app.soc_status == "missing" and (EVENT_INFO, INFO_SOC_STATE, 1) in app.comms.got
    app.run(2)
    app.soc.soc_cpct = 2345                     # as if counted down; the plateau OCV would say ~50 %
    app.soc.learn(92000)
    app.run(1)
    assert app.soc_writes == 2 and soc_store.load(path) == (2345, 92000, 100000)   # boot + this change
    app2, _ = boot(sim, path)
    app2.run(2)
    assert app2.soc_status == "ok" and not [e for e in app2.comms.got if e[1] == INFO_SOC_STATE]
    assert app2.sample.soc_cpct == 2345 and app2.soc.capacity_mah == 92000 and app2.sample.soh_cpct == 9200


def test_other_nominal_capacity_keeps_soc_but_restarts_soh(sim, tmp_path):
    path = str(tmp_path / "soc.dat")
    with open(path, "wb") as f:
        f.write(soc_store.encode(3000, 45000, 50000))
    app, _ = boot(sim, path)
    app.run(1)
    assert app.soc_status == "other pack" and (EVENT_INFO, INFO_SOC_STATE, 3) in app.comms.got
    assert app.sample.soc_cpct == 3000 and app.soc.capacity_mah == 100000


@pytest.mark.parametrize("data", [b"", b"garbage", b"soc1 5000 100000 100000\n#00000000", b"\x00" * 64])
def test_corrupt_file_falls_back_to_ocv_and_is_reported(sim, tmp_path, data):
    path = str(tmp_path / "soc.dat")
    with open(path, "wb") as f:
        f.write(data)
    app, _ = boot(sim, path)
    app.run(2)
    assert app.soc_status == "corrupt" and (EVENT_INFO, INFO_SOC_STATE, 2) in app.comms.got
    assert app.sample.soc_cpct > 0               # the boot OCV estimate


def test_write_failure_is_reported_once_and_protection_goes_on(sim, tmp_path):
    path = str(tmp_path / "no_such_dir" / "soc.dat")
    app, _ = boot(sim, path)
    app.run(2)
    app.soc.learn(90000)
    app.run(4 * 60 * 25)                        # 25 minutes: retried every 10 min, not every cycle
    assert app.soc_status == "write failed" and app.soc_writes == 0
    assert sum("write failed" in line for line in app.log.lines()) <= 3
    assert app.comms.got.count((EVENT_INFO, INFO_SOC_STATE, 4)) == 1
    assert app.cycles == 2 + 4 * 60 * 25


def test_no_write_in_the_steady_cycle(sim, tmp_path):
    path = str(tmp_path / "soc.dat")
    app, afe = boot(sim, path)
    app.run(4 * 60 * 30)                        # 30 min at rest
    assert app.soc_writes <= 1                  # at most the first state after boot


def test_overruns_reported_with_count_and_longest_cycle_rate_limited(sim):
    class Slow(Events):
        def poll(self, budget_ms):
            CLOCK.advance_ms(300)
    app, _ = boot(sim, None, comms=Slow())
    app.run(4 * 60 * 3)                         # ~3.3 min of overrunning cycles
    got = app.comms.got
    overrun = [v for k, c, v in got if c == INFO_OVERRUN]
    longest = [v for k, c, v in got if c == INFO_MAX_CYCLE]
    assert overrun[0] == 1 and overrun[-1] > 500 and 3 <= len(overrun) <= 5   # first at once, then once a minute
    assert len(longest) == len(overrun) and longest[-1] >= 300


def test_running_on_defaults_is_reported_again_every_hour(sim):
    from firmware.app import INFO_CONFIG
    afe = FakeAFE()
    afe.clock_ms = sim.ticks_ms
    app = App(defaults.build("lfp"), afe, Sample(16, 3), comms=Events(), log=RingLog(64), config_status="corrupt")
    app.start()
    app.run(4 * 3600 * 2 + 8)                   # two hours
    assert [v for k, c, v in app.comms.got if c == INFO_CONFIG] == [2, 2, 2]   # at boot, then hourly
