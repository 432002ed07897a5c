"""The demo fleet: which boards, where, with what load and what trouble; and the runner of one board.

A board here is the real firmware (firmware.app.App with the real BQ76952 driver and the real comms:
firmware.comms.service.Comms over umqtt.simple to the broker) on an emulated AFE and pack
(tools/simboard.py), in simulated time paced at SPEED x real time. One process per board: the host
port's clock (simclock.CLOCK), I2C bus and Wi-Fi model are process-wide, exactly as on a real ESP32,
so two boards cannot share a process without sharing a clock and a radio.

    python tools/demo_fleet.py list                     # the default fleet
    python tools/demo_fleet.py board --secrets secrets/fork-01.json --board sim16_lfp \\
        --scenario imbalanced --speed 10 --trace out/fork-01.jsonl

The board process runs until SIGTERM/SIGINT (or --duration wall seconds), then closes its open
frames, gives the link a bounded moment to send them, and exits.
"""
import argparse
import json
import math
import os
import signal
import sys
import threading
import time as _time

_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(_HERE)
for _p in (_ROOT, os.path.join(_HERE, "hostport")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

WALL_EPOCH_UNIX_S = 946684800     # the frame's wall clock counts from 2000-01-01 (docs/frame-format.md)


# ---------------------------------------------------------------- the fleet
class Spec:
    """One board of the fleet."""

    def __init__(self, device, site, group, board, scenario, profile, soc):
        self.device = device
        self.site = site
        self.group = group
        self.board = board            # boards/<board>.json
        self.scenario = scenario      # trouble: normal, imbalanced, overheat, flaky-wifi
        self.profile = profile        # load: forklift, solar, standby
        self.soc = soc                # initial true SOC (0..1)

    def as_dict(self):
        return dict(self.__dict__)


# Ordered so that the first three (the short test run) cover the three kinds of trouble.
_BASE = (
    ("fork", "plant-a", "forklifts", "sim16_lfp", "imbalanced", "charge", 0.85),
    ("home", "solar-b", "storage", "sim4_nmc", "overheat", "charge", 0.40),
    ("tower", "telecom-c", "backup", "sim16_lfp", "flaky-wifi", "forklift", 0.60),
    ("fork", "plant-a", "forklifts", "sim16_lfp", "normal", "forklift", 0.55),
    ("home", "solar-b", "storage", "sim4_nmc", "normal", "solar", 0.50),
    ("tower", "telecom-c", "backup", "sim4_nmc", "normal", "standby", 0.95),
)
SCENARIOS = ("normal", "imbalanced", "overheat", "flaky-wifi")
PROFILES = ("forklift", "solar", "charge", "standby", "idle")
DEFAULT_BOARDS = 6
# Network time per 250 ms cycle. The firmware default (20 ms) gives umqtt a socket timeout of about
# 7 ms (link.py: budget // 3), which a loopback broker on a busy shared 2-core host misses often enough
# that the session never gets past SUBSCRIBE (measured in this demo: all boards stuck, 0 frames sent).
# 150 ms leaves the protection cycle 100 ms, far more than the ~0.3 ms it takes on the host.
COMMS_BUDGET_MS = 150


def fleet(n=DEFAULT_BOARDS):
    """The first n boards of the default fleet (after six it repeats the pattern with new ids)."""
    if n < 1:
        raise ValueError("the fleet needs at least one board")
    out, count = [], {}
    for i in range(n):
        prefix, site, group, board, scen, prof, soc = _BASE[i % len(_BASE)]
        count[prefix] = count.get(prefix, 0) + 1
        out.append(Spec("%s-%02d" % (prefix, count[prefix]), site, group, board, scen, prof, soc))
    return out


# ---------------------------------------------------------------- load profiles (mA, + = charge)
def profile_fn(name, capacity_mah, seed=1):
    """fn(t_s) -> requested current (mA) for a load profile, scaled to the pack's capacity."""
    c = capacity_mah
    phase = (seed * 137) % 600

    if name == "forklift":
        # a 20-minute shift pattern: 8 min work (0.5 C with lift pulses), 2 min rest, 10 min charge at 0.3 C
        def f(t_s):
            t = (t_s + phase) % 1200
            if t < 480:
                pulse = 0.4 if int(t) % 30 < 6 else 0.0
                return -c * (0.5 + pulse)
            if t < 600:
                return 0
            return c * 0.3
    elif name == "solar":
        # a 30-minute "day": charge under the sun, discharge in the "evening"
        def f(t_s):
            return c * 0.3 * math.sin(2 * math.pi * ((t_s + phase) % 1800) / 1800)
    elif name == "charge":
        # on the charger: 0.3 C
        def f(t_s):
            return c * 0.3
    elif name == "standby":
        # telecom backup: a small constant load, a float-charge top-up every 10 minutes
        def f(t_s):
            return c * 0.05 if (t_s + phase) % 600 < 120 else -c * 0.02
    elif name == "idle":
        def f(t_s):
            return 0
    else:
        raise ValueError("unknown profile %r (one of %s)" % (name, ", ".join(PROFILES)))
    return f


# ---------------------------------------------------------------- scenarios (scripted trouble)
class Scenario:
    """Set-up before the board starts (pack options, cell SOCs) and a hook run every cycle."""

    def __init__(self, name, seed=1):
        if name not in SCENARIOS:
            raise ValueError("unknown scenario %r (one of %s)" % (name, ", ".join(SCENARIOS)))
        self.name = name
        self.seed = seed
        self._next_drop_s = 60.0
        self._ap_back_s = -1.0

    def pack_options(self):
        if self.name == "overheat":
            # Cells that follow their surroundings within about a minute (small thermal mass per cell,
            # tau = 30 J/K / 0.5 W/K = 60 s), so the scripted cabinet heat shows in minutes of
            # simulated time rather than hours (a real 5 Ah pack takes far longer).
            return {"cell_heat_j_per_k": 30.0, "cell_cooling_w_per_k": 0.5}
        return {}

    def setup(self, sb):
        if self.name == "imbalanced":
            p = sb.pack
            # one cell ~10 % fuller and one ~5 % emptier than the rest (mismatched cells): near the top of
            # charge the full one rises first, the balancer bleeds it, and cell overvoltage may trip
            base = p.soc[0]
            p.set_soc(min(0.99, base + 0.10), cell=2)
            p.set_soc(max(0.01, base - 0.05), cell=min(6, p.cells - 1))

    def tick(self, sb, t_s):
        """Called after every firmware cycle with the simulated time since start (s)."""
        if self.name == "overheat":
            # the cabinet fan fails 20 s in: ambient climbs 60 degC per simulated minute up to 70 degC.
            # Fast enough that the cells pass the 45 degC charge limit about 80 s in (tau 60 s), so even a
            # short demo (DURATION=20 SPEED=15: 300 s simulated) on a slow host shows the alarm.
            if t_s > 20:
                sb.pack.ambient_c = min(70.0, 25.0 + (t_s - 20) * 60.0 / 60.0)
        elif self.name == "flaky-wifi":
            import network
            sim = network.SIM
            if self._ap_back_s > 0 and t_s >= self._ap_back_s:
                sim.set_ap(True)
                self._ap_back_s = -1.0
            if t_s >= self._next_drop_s:
                n = int(self._next_drop_s / 60.0)
                if n % 3 == 0:
                    sim.set_ap(False)            # the access point is gone for 40 s
                    self._ap_back_s = t_s + 40.0
                else:
                    sim.drop()                   # a short radio drop; the link reconnects
                self._next_drop_s += 60.0


# ---------------------------------------------------------------- one board
class StopFlag:
    """A stop request that a signal handler may raise.

    The handler must not call Event.set() itself: Python runs handlers in the main thread between
    bytecodes, and when that thread is inside Event.wait() holding the event's internal (non-reentrant)
    lock, set() would wait for that lock forever (the demo hung on Ctrl-C this way, once in CI).
    A short-lived thread sets it instead, once the main thread lets go of the lock.
    """

    def __init__(self, ev=None):
        self.ev = ev if ev is not None else threading.Event()

    def __call__(self, *args):
        threading.Thread(target=self.ev.set, name="stop-flag", daemon=True).start()


def _comms_for(board_dict, cfg, secrets_path, state_dir, batch_ms):
    """The real comms service, as the board builds it from its description and secrets file."""
    from firmware.comms.service import Comms
    b = dict(board_dict)
    opts = dict(b.get("comms", {}))
    opts.update({"spill_dir": os.path.join(state_dir, "outbox"), "state_dir": os.path.join(state_dir, "comms"),
                 "batch_ms": batch_ms})
    b["comms"] = opts
    os.makedirs(opts["spill_dir"], exist_ok=True)
    os.makedirs(opts["state_dir"], exist_ok=True)
    return Comms.from_board(b, cfg, secrets_path=secrets_path)


def run_board(secrets_path, board="sim16_lfp", scenario="normal", profile="forklift", soc=0.5, seed=1,
              speed=10.0, duration_s=0.0, trace=None, state_dir=None, batch_ms=10000, wall_offset_s=0.0,
              stop=None, out=sys.stdout, comms_budget_ms=COMMS_BUDGET_MS):
    """Run one board until stop is set (or duration_s wall seconds). Returns a summary dict."""
    from tools.simboard import BOARDS, SimBoard
    from firmware import board as _board
    from firmware.config import defaults, validate
    if speed <= 0:
        raise ValueError("speed must be > 0")
    path = board if board.endswith(".json") else os.path.join(BOARDS, board + ".json")
    bd = _board.load(path)
    # the same config the simulated board builds (tools/simboard.py): defaults + what the board fixes
    # + our override of the comms budget
    config = {"comms_budget_ms": comms_budget_ms}
    over = _board.overrides(bd)
    over.update(config)
    cfg = validate.check(defaults.build(bd["chemistry"], over))
    with open(secrets_path) as f:
        device = json.load(f)["device_id"]
    state_dir = state_dir or os.path.join(_ROOT, "out", "demo", "state", device)
    scen = Scenario(scenario, seed)
    import simclock
    simclock.CLOCK.simulate(start_ms=0)
    comms = _comms_for(bd, cfg, secrets_path, state_dir, batch_ms)
    # The simulated world's clock: what NTP would give the board. It starts wall_offset_s before the
    # real start so that, at SPEED x, the data ends near real "now" (see docs/demo.md).
    world0_s = _time.time() - wall_offset_s
    comms.ts.set_wall(int(world0_s) - WALL_EPOCH_UNIX_S, int((world0_s % 1) * 1000))
    sb = SimBoard(path, config=config, seed=seed, soc=soc, comms=comms, record_every=1 << 30,
                  pack_kwargs={"pack_options": scen.pack_options()})
    sb.pack.set_profile(profile_fn(profile, bd["capacity_mah"], seed))
    scen.setup(sb)
    stop = stop or StopFlag()
    tf = open(trace, "w") if trace else None
    period_ms = cfg["period_ms"]
    trace_every = max(1, 1000 // period_ms)        # one trace line per simulated second
    t0_wall = _time.monotonic()
    t0_us = sb.clock.now_us()
    next_report = t0_wall + 5.0
    n = 0
    try:
        while not stop.ev.is_set():
            sb.step()
            n += 1
            t_s = (sb.clock.now_us() - t0_us) / 1e6
            scen.tick(sb, t_s)
            if tf is not None and n % trace_every == 0:
                s = sb.app.sample
                tf.write(json.dumps({
                    "t_s": round(t_s, 3), "unix_ms": int((world0_s + t_s) * 1000), "device": device,
                    "cell_mv": list(s.cell_mv), "stack_mv": s.stack_mv, "current_ma": s.current_ma,
                    "soc_cpct": s.soc_cpct, "temp_dc": list(s.temp_dc), "balance_mask": s.balance_mask,
                    "state": s.state, "faults": s.faults, "link": comms.link.state_name()}) + "\n")
            now = _time.monotonic()
            if duration_s and now - t0_wall >= duration_s:
                break
            ahead = t_s / speed - (now - t0_wall)
            if ahead > 0:
                stop.ev.wait(ahead)          # real time: hold simulated time to SPEED x real time
            if now >= next_report:
                next_report = now + 5.0
                print("%s t=%.0fs sim, cycles %d, link %s, frames sent %d, queued %d, faults 0x%x"
                      % (device, t_s, n, comms.link.state_name(), comms.frames_sent, comms.pending(),
                         sb.app.sample.faults), file=out, flush=True)
        # Shutting down like a planned reboot: close the open frames, give the link a bounded
        # moment (up to 50 cycles or 3 s real time) to deliver them, then close the session.
        comms.flush()
        deadline = _time.monotonic() + 3.0
        for _ in range(50):
            if not comms.pending() or _time.monotonic() > deadline:
                break
            sb.step()
        comms.link.close()
    finally:
        if tf is not None:
            tf.close()
    summary = {"device": device, "sim_s": round((sb.clock.now_us() - t0_us) / 1e6, 1), "cycles": n,
               "overruns": sb.app.overruns, "frames_sent": comms.frames_sent, "queued": comms.pending(),
               "faults": sb.app.sample.faults, "sessions": comms.link.sessions}
    print("%s done: %s" % (device, json.dumps(summary)), file=out, flush=True)
    return summary


# ---------------------------------------------------------------- CLI
def build_parser():
    ap = argparse.ArgumentParser(prog="demo_fleet.py", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", metavar="COMMAND", required=True)
    ls = sub.add_parser("list", help="print the default fleet",
                        description="Print the default fleet (device, site, group, board, scenario, profile).")
    ls.add_argument("--boards", type=int, default=DEFAULT_BOARDS, help="how many boards")
    ls.add_argument("--json", action="store_true")
    b = sub.add_parser("board", help="run one simulated board with a scenario",
                       description="Run the real firmware with comms on an emulated board, in simulated "
                                   "time at SPEED x real time, until SIGTERM/Ctrl-C or --duration.")
    b.add_argument("--secrets", required=True, help="the board's secrets file (tools/provision.py create)")
    b.add_argument("--board", default="sim16_lfp", help="board name under boards/ or a JSON path")
    b.add_argument("--scenario", choices=SCENARIOS, default="normal", help="scripted trouble")
    b.add_argument("--profile", choices=PROFILES, default="forklift", help="load profile")
    b.add_argument("--soc", type=float, default=0.5, help="initial true SOC (0..1)")
    b.add_argument("--seed", type=int, default=1)
    b.add_argument("--speed", type=float, default=float(os.environ.get("SPEED", 10)),
                   help="simulated seconds per real second (env SPEED; default %(default)s)")
    b.add_argument("--duration", type=float, default=0, help="stop after this many real seconds (0: never)")
    b.add_argument("--batch-ms", type=int, default=10000, help="telemetry batch interval (simulated ms)")
    b.add_argument("--comms-budget-ms", type=int, default=COMMS_BUDGET_MS,
                   help="network time per cycle given to comms (config comms_budget_ms; default %(default)s)")
    b.add_argument("--wall-offset-s", type=float, default=0.0,
                   help="start the simulated world's clock this many seconds before now")
    b.add_argument("--trace", metavar="FILE.jsonl", help="write one JSON line per simulated second")
    b.add_argument("--state-dir", help="folder for the board's flash (outbox, boot counter)")
    return ap


def main(argv=None):
    a = build_parser().parse_args(argv)
    if a.cmd == "list":
        specs = fleet(a.boards)
        if a.json:
            print(json.dumps([s.as_dict() for s in specs], indent=1))
        else:
            for s in specs:
                print("%-9s %-10s %-10s %-10s %-11s %-9s soc %.2f" % (s.device, s.site, s.group, s.board,
                                                                    s.scenario, s.profile, s.soc))
        return 0
    stop = StopFlag()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        run_board(a.secrets, a.board, a.scenario, a.profile, a.soc, a.seed, a.speed, a.duration, a.trace,
                  a.state_dir, a.batch_ms, a.wall_offset_s, stop, comms_budget_ms=a.comms_budget_ms)
    except ValueError as e:
        print("demo_fleet: %s" % e, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
