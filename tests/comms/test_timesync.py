"""Device time: uptime in s + ms across the ticks wrap, the wall clock from NTP (injected here) or a
command, retries spaced, and frames before the first sync placed by uptime only (no WALL flag)."""
import network

from firmware.comms import frame
from firmware.comms.timesync import TimeSync
from tests.comms.comms_helpers import DEV, KEY, make_comms, make_link, make_sample, step_sample


def test_uptime_counts_across_the_ticks_wrap(sim_clock):
    sim_clock.advance_us(((1 << 30) - 500 - sim_clock.now_ms() % (1 << 30)) % (1 << 30) * 1000)
    ts = TimeSync(ntp=lambda: 0)
    for _ in range(4):
        sim_clock.advance_ms(300)
        ts.update()
    assert (ts.up_s, ts.up_ms) == (1, 200)      # 1200 ms although ticks wrapped after 500
    sim_clock.advance_ms(3 * 86400 * 1000)
    ts.update()
    assert ts.up_s == 3 * 86400 + 1 and ts.up_ms == 200


def test_wall_clock_follows_uptime_after_ntp(sim_clock):
    calls = []

    def ntp():
        calls.append(1)
        return 800000000

    ts = TimeSync(ntp=ntp)
    assert ts.due() and ts.wall_s == -1
    assert ts.sync(20)
    sim_clock.advance_ms(2500)
    ts.update()
    assert (ts.wall_s, ts.wall_ms) == (800000002, 500)
    assert not ts.due()                                # synced: next one after resync_ms
    sim_clock.advance_ms(6 * 3600 * 1000)
    ts.update()
    assert ts.due()


def test_failed_ntp_is_retried_after_retry_ms(sim_clock):
    def ntp():
        raise OSError(110)

    ts = TimeSync(ntp=ntp, retry_ms=60000)
    assert not ts.sync(20) and ts.failures == 1 and not ts.synced
    assert not ts.due()
    sim_clock.advance_ms(60000)
    assert ts.due()


def test_no_ntp_module_on_the_host_is_a_failure_not_a_crash():
    ts = TimeSync()                                    # board default: ntptime, absent on CPython
    assert not ts.sync(20) and ts.failures == 1


def test_frames_carry_wall_clock_only_after_sync(tmp_path, sim_clock):
    network.SIM.set_ap(False)
    ts = TimeSync(ntp=lambda: 800000000)
    c = make_comms(tmp_path, make_link(None, port=1), timesync=ts, batch_ms=2000)
    s = make_sample()
    for i in range(3):
        step_sample(s, i)
        c.offer_sample(s)
        c.poll(20)
        sim_clock.advance_ms(1000)
    c.flush()
    ts.set_wall(800000000)                             # as a time-sync command or NTP would
    for i in range(3, 6):
        step_sample(s, i)
        c.offer_sample(s)
        c.poll(20)
        sim_clock.advance_ms(1000)
    c.flush()
    frames = []
    while c.tlm_box.peek() is not None:
        frames.append(frame.decode(bytes(c.tlm_box.peek()), DEV, KEY))
        c.tlm_box.pop()
    assert [f["unix_ms"] is None for f in frames] == [True, False]
    up = [x["uptime_ms"] for x in frames[0]["samples"]]
    assert up == [up[0], up[0] + 1000, up[0] + 2000]           # placed in time by uptime (+ boot)
    assert all(x["unix_ms"] is None for x in frames[0]["samples"])
    assert frames[1]["unix_ms"] == (800000000 + frame.WALL_EPOCH_UNIX_S) * 1000


def test_first_sync_queues_the_hello_at_seq_0_with_the_wall_clock(tmp_path, sim_clock):
    """Frames count from seq 1; once the clock is set the board queues its hello: a status frame with
    the wall clock at seq 0 (the bridge's exact anchor, docs/comms.md Time). Only one per boot."""
    network.SIM.set_ap(False)
    ts = TimeSync(ntp=lambda: 800000000)
    c = make_comms(tmp_path, make_link(None, port=1), timesync=ts, batch_ms=2000)
    s = make_sample()
    for i in range(4):
        step_sample(s, i)
        c.offer_sample(s)
        c.poll(20)
        sim_clock.advance_ms(1000)
    c.flush()
    assert c.evt_box.peek() is None                   # no hello without a wall clock
    first = frame.decode(bytes(c.tlm_box.peek()), DEV, KEY)
    assert first["seq"] == 1 and first["unix_ms"] is None
    ts.set_wall(800000000)                            # as NTP or a time-sync command would
    for _ in range(3):
        c.poll(20)
        sim_clock.advance_ms(1000)
    hellos = []
    while c.evt_box.peek() is not None:
        hellos.append(frame.decode(bytes(c.evt_box.peek()), DEV, KEY))
        c.evt_box.pop()
    assert [(d["kind"], d["seq"]) for d in hellos] == [(frame.KIND_STATUS, 0)]
    assert hellos[0]["unix_ms"] - hellos[0]["uptime_ms"] == \
        (800000000 + frame.WALL_EPOCH_UNIX_S) * 1000 - 4000    # exact anchor: wall at uptime 0
