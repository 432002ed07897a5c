"""Drill: a black-holed broker (mosquitto frozen with SIGSTOP: TCP still connects, nothing answers)
while the real firmware app runs its fixed-period cycle on the emulated board, in real time.

    r = run(folder, quick=False)

Proves that a broker that never answers cannot stretch the protection cycle: every blocking call of the
comms poll is bounded by the app's comms budget (link.py derives the socket timeout from it), so the
cycle keeps its period (overruns counted by the app itself), and once the broker answers again the
samples held on the board are delivered and stored once.
"""
import time

from tools.drills.common import CLOCK, Result, Rig, board_keys, comms_helpers, device_password, real_time

NAME = "blackhole"
TITLE = "Black-holed broker"


def run(folder, quick=False, log=print):
    import pathlib
    from tools.simboard import SimBoard
    hole_s = 8.0 if quick else 30.0
    dev = "bms-0003"
    r = Result(NAME, TITLE, __doc__.split("\n\n")[2].strip())
    rig = Rig(folder, [dev]).start()
    try:
        sb = SimBoard("sim4_nmc", seed=3)
        CLOCK.real()                       # the cycle runs in real time here: overruns are real
        comms_helpers.wifi_instant()
        link = comms_helpers.make_link(rig.broker, dev=dev, password=device_password(dev),
                                       backoff_min_ms=200, backoff_max_ms=2000)
        comms = comms_helpers.make_comms(pathlib.Path(folder), link, dev=dev, sample_every_ms=1000,
                                         batch_ms=5000)
        app = sb.app
        app.comms = comms
        app.sm._events = comms
        period_ms, budget_ms = app.period_ms, app.budget_ms

        def cycles_for(seconds, until=None):
            end = time.monotonic() + seconds
            n = 0
            while time.monotonic() < end:
                app.run(1)
                n += 1
                if until is not None and until():
                    break
            return n
        cycles_for(4.0)
        r.check(link.up, "link not up before the black hole")
        over0 = app.overruns
        comms.max_poll_us = 0
        app.max_cycle_ms = 0
        rig.broker.pause()
        log("  broker frozen (SIGSTOP) for %.0f s" % hole_s)
        n_hole = cycles_for(hole_s)
        over_hole = app.overruns - over0
        max_poll_ms = comms.max_poll_us / 1000.0
        max_cycle_ms = app.max_cycle_ms
        held = comms.pending()
        failures = link.failures
        rig.broker.resume()
        log("  broker answers again")
        cycles_for(20.0, until=lambda: comms.pending() == 0 and link.up)
        comms.flush()                      # close the open batch, then only poll: no new samples
        end = time.monotonic() + 10.0
        while comms.pending() and time.monotonic() < end:
            comms.poll(budget_ms)
            time.sleep(period_ms / 1000.0)
        r.check(comms.pending() == 0, "board outbox not empty at the end (%d frames)" % comms.pending())
        CLOCK.simulate()                   # stop the board's clock; nothing else runs on it
        sent_n = comms.samples
        rig.wait_stored({dev: sent_n}, 60)
        stored = board_keys(rig, dev)
        rows = rig.db.select("bms", "SELECT boot, seq, stack_mv FROM pack WHERE device = '%s'" % dev)
        distinct = len(set((x["time"], x["boot"], x["seq"]) for x in rows))
        r.add("cycle period / comms budget (ms)", "%d / %d" % (period_ms, budget_ms))
        r.add("cycles run while the broker was black-holed", n_hole)
        r.add("cycle overruns while black-holed (app.overruns)", over_hole)
        r.add("longest comms poll while black-holed (ms)", round(max_poll_ms, 1))
        r.add("longest cycle while black-holed (ms)", max_cycle_ms)
        r.add("link failures (timeouts) while black-holed", failures)
        r.add("frames held on the board when the broker came back", held)
        r.add("samples sent", sent_n)
        r.add("samples stored (points in InfluxDB)", len(rows))
        lost = max(0, sent_n - distinct)
        r.add("samples lost", lost)
        r.add("frames the broker delivered twice to a plain QoS 1 subscriber (before dedup)", rig.observer.duplicates())
        r.add("frames redelivered to the bridge and refused as replay (before dedup)", rig.replays())
        r.add("samples duplicated after dedup", len(rows) - distinct)
        r.check(over_hole == 0, "%d cycle overruns while black-holed" % over_hole)
        r.check(lost == 0, "%d samples lost" % lost)
        r.check(len(rows) == distinct, "samples stored twice")
        r.check(distinct <= sent_n, "more samples stored than sent")
        r.note("Samples are counted by number here (the app's samples come from the emulated pack, "
               "not numbered): sent = samples the board put into frames, stored = distinct "
               "(time, boot, seq) points. %d stored samples had the same current twice or more "
               "(not an error: pack data)." % (len(stored) - len(set(stored))))
    finally:
        real_time()
        rig.stop()
    return r
