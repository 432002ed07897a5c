"""Drill: a device's Wi-Fi down for 30 simulated minutes (quick: 5), then back.

    r = run(folder, quick=False)

Proves the board-side store-and-forward: with the access point gone (tools/hostport network.SIM) the
comms keeps batching samples, the telemetry outbox's RAM ring spills to flash segments, the link
retries with capped backoff, and once the radio is back the backlog drains in order and every sample
reaches InfluxDB once.
"""
from tools.drills.common import Result, Rig, SimDevice, board_keys, real_time, simulated_time

import network  # noqa: E402  (the host port's stand-in: common installs it)

NAME = "radio_outage"
TITLE = "Device Wi-Fi down for 30 simulated minutes"


def run(folder, quick=False, log=print):
    minutes = 5 if quick else 30
    r = Result(NAME, TITLE, __doc__.split("\n\n")[2].strip())
    rig = Rig(folder, ["bms-0002"]).start()
    simulated_time()
    try:
        dev = SimDevice(rig, folder, "bms-0002", sample_every_ms=1000, batch_ms=10000,
                        backoff_min_ms=1000, backoff_max_ms=30000)
        dev.cycles(40)                                  # 10 s online
        r.check(dev.link.up, "link not up before the outage")
        network.SIM.set_ap(False)
        log("  access point off for %d simulated minutes" % minutes)
        dev.cycles(4 * 60 * minutes)                    # 250 ms cycles
        held = dev.comms.pending()
        on_flash = dev.comms.tlm_box.flash_frames()
        segs = dev.comms.tlm_box.segments()
        wifi_failures = dev.link.wifi_failures
        network.SIM.set_ap(True)
        dev.cycles(4 * 40)                              # backoff capped at 30 s: back within 40 s
        drained = dev.drain()
        r.check(drained, "board outbox not empty at the end (%d frames)" % dev.comms.pending())
        sent = dev.sent_keys()
        rig.wait_stored({"bms-0002": len(sent)}, 60)
        r.add("outage (simulated minutes)", minutes)
        r.add("Wi-Fi connect attempts that failed during the outage", wifi_failures)
        r.add("frames held on the board at the end of the outage", held)
        r.add("of which spilled to flash (frames / segment files)", "%d / %d" % (on_flash, segs))
        r.add("frames dropped by the board's outbox", dev.comms.tlm_box.dropped)
        r.add("link up again after the outage", "yes" if dev.link.up else "no")
        r.check(on_flash > 0, "the outage never reached flash (drill too short)")
        r.count_samples(sent, board_keys(rig, "bms-0002"), wire_dups=rig.observer.duplicates(),
                        replays=rig.replays())
    finally:
        real_time()
        rig.stop()
    return r
