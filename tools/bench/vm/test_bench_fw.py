"""Firmware figures in the MicroPython VM: I2C cost of a sample, heap allocated per cycle, speed.

Each test prints one `BENCH {json}` line (benchrig.emit) that tools/bench/firmware_vm.py collects, and
fails when what it measures cannot be trusted (the window was not steady, a frame was not published).

    node tools/mpvm/run.mjs --build build --tests tools/bench/vm --only test_bench_fw
"""
import machine
import simclock

import benchrig
import vmtest

_REAL = simclock._time      # the VM's own time module (simclock imported it before the switch)


def _steady(rig):
    rig.run(40)             # init -> idle -> charge, balancing chosen
    app = rig.app
    if not app.sample.balance_mask or app.prot.faults or app.read_errors:
        raise AssertionError("not steady: mask 0x%x faults 0x%x read errors %d"
                             % (app.sample.balance_mask, app.prot.faults, app.read_errors))


def test_i2c_per_sample_and_per_cycle():
    with vmtest.use_sim_clock(start_ms=0) as clock:
        rig = benchrig.Rig(clock, comms=False)
        try:
            _steady(rig)
            st = machine.i2c_stats(0)
            t0, w0, r0 = st.snapshot()
            rig.afe.read(rig.app.sample)
            t1, w1, r1 = st.snapshot()
            n = 100
            rig.run(n)
            t2, w2, r2 = st.snapshot()
            if rig.app.read_errors:
                raise AssertionError("read errors in the window")
        finally:
            machine.detach_i2c_target(0, 0x08)
    benchrig.emit("i2c", {"sample_transactions": t1 - t0, "sample_bytes_read": r1 - r0,
                          "sample_bytes_written": w1 - w0, "cycles": n,
                          "cycle_transactions": (t2 - t1) / n, "cycle_bytes": (r2 - r1 + w2 - w1) / n})


def test_heap_allocated_per_steady_cycle():
    # 1) the pack cycle without comms, every cycle under heap_lock (the host stand-ins release the
    #    lock for their own work only, so any firmware allocation fails the call).
    n_locked = 400
    with vmtest.use_sim_clock(start_ms=0) as clock:
        rig = benchrig.Rig(clock, comms=False)
        try:
            _steady(rig)
            app, p = rig.app, rig.period_ms
            for _ in range(n_locked):
                vmtest.assert_no_alloc(app.cycle)
                clock.advance_ms(p)
        finally:
            machine.detach_i2c_target(0, 0x08)
    # 2) the comms calls of the same cycle (offer_sample + poll, batch closes, publishes and the
    #    delivery receipts coming back), measured with gc.mem_alloc. The loopback MQTT client plays the
    #    broker and the bridge; what it allocates for that (noting frames, signing receipts) it counts
    #    in own_alloc, which is taken off: the figure is the firmware's. The simulated clock allocates
    #    nothing below 2**30 us.
    with vmtest.use_sim_clock(start_ms=0) as clock:
        rig = benchrig.Rig(clock, comms=True)
        try:
            _steady(rig)
            rig.run(200)      # link up, status sent, several batches out
            comms, s, budget, p = rig.comms, rig.app.sample, rig.app.budget_ms, rig.period_ms
            box = _CommsLoop(comms, s, budget, p, clock)
            client = comms.link._client
            sent0, rc0, own0 = client.published, client.receipts, client.own_alloc
            n_comms = 400     # 100 s: ten 10 s batches
            delta = vmtest.mem_alloc_delta(box.run, n_comms) - (client.own_alloc - own0)
            sent = client.published - sent0
            receipts = client.receipts - rc0
            confirmed0 = comms.frames_confirmed
            # per-cycle spread: how many cycles allocate at all
            allocating = 0
            worst = 0
            for _ in range(80):
                own = client.own_alloc
                d = vmtest.mem_alloc_delta(box.run, 1) - (client.own_alloc - own)
                if d:
                    allocating += 1
                    worst = max(worst, d)
            if comms.frames_confirmed == confirmed0 or not receipts:
                raise AssertionError("no receipts handled in the window: %d receipts" % receipts)
        finally:
            machine.detach_i2c_target(0, 0x08)
    if sent < n_comms * p // 10000 - 1:
        raise AssertionError("only %d frames published in %d cycles" % (sent, n_comms))
    benchrig.emit("alloc", {"pack_cycles_locked": n_locked, "pack_bytes_per_cycle": 0,
                            "comms_cycles": n_comms, "comms_bytes": delta,
                            "comms_bytes_per_cycle": delta / n_comms, "frames_published": sent,
                            "receipts_handled": receipts,
                            "comms_allocating_cycles_of_80": allocating, "comms_worst_cycle_bytes": worst})


class _CommsLoop:
    def __init__(self, comms, s, budget, period, clock):
        self.comms, self.s, self.budget, self.period, self.clock = comms, s, budget, period, clock

    def run(self, n):
        # No tuple unpacking (a 5-tuple is a heap object) and no range() (a range object is one).
        c = self.comms
        s = self.s
        b = self.budget
        p = self.period
        clock = self.clock
        while n > 0:
            n -= 1
            s.t_ms += p
            c.offer_sample(s)
            c.poll(b)
            clock.advance_ms(p)


def test_simulated_hours_per_wall_second():
    n = 2000
    with vmtest.use_sim_clock(start_ms=0) as clock:
        rig = benchrig.Rig(clock, comms=True)
        try:
            _steady(rig)
            t0 = _REAL.ticks_us()
            rig.run(n)
            wall_us = _REAL.ticks_diff(_REAL.ticks_us(), t0)
        finally:
            machine.detach_i2c_target(0, 0x08)
    sim_s = n * rig.period_ms / 1000
    benchrig.emit("speed", {"cycles": n, "sim_s": sim_s, "wall_s": wall_us / 1e6,
                            "sim_h_per_wall_s": sim_s / 3600 / (wall_us / 1e6),
                            "cycle_wall_us": wall_us / n})
