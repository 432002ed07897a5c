"""Drill: power lost while the config is written and while the outbox spills to flash, simulated by
truncating the files at random points (seeded), followed by a boot that must come up safe.

    r = run(folder, quick=False)

Proves the boot path's handling of torn files. Config: the firmware's own boot (firmware.app.build on
the emulated 4-cell board, the store's checksum) comes up with the FETs off and either the last
complete config or the safe defaults plus a reported config fault, never a crash or a half-read
config. Outbox: a new Outbox on the same folder keeps every frame of every complete segment, in
order, and drops torn spills instead of sending garbage.
"""
import os
import random

from tools.drills.common import Result, real_time  # first: installs the host port (micropython, machine)

from firmware.app import INFO_CONFIG, build  # noqa: E402
from firmware.comms.outbox import Outbox  # noqa: E402
from firmware.config import store  # noqa: E402
from firmware.pack.state import EVENT_INFO  # noqa: E402

NAME = "power_loss"
TITLE = "Power loss while writing config and while spilling the outbox"


class Recorder:
    """Comms stand-in for the boot check: keeps the events the app reports."""

    def __init__(self):
        self.events = []

    def offer_sample(self, sample):
        pass

    def offer_event(self, kind, code, value):
        self.events.append((kind, code, value))

    def poll(self, budget_ms):
        pass


def _config_trial(rng, folder, i, stats):
    from tools.simboard import SimBoard
    d = os.path.join(folder, "cfg%d" % i)
    os.makedirs(d)
    path = os.path.join(d, "config.json")
    sb = SimBoard("sim4_nmc", seed=i + 1)          # the emulated board on the host port's I2C bus
    base = dict(sb.cfg)
    old = dict(base, comms_budget_ms=90)
    new = dict(base, comms_budget_ms=80)
    store.save(path, old)
    data = store.encode(new)
    cut = rng.randrange(len(data))
    torn_tmp = rng.random() < 0.5
    # a: power lost while writing <path>.tmp (the rename never ran); b: the file itself torn
    # (a file system without atomic rename, or a write in place)
    with open(path + ".tmp" if torn_tmp else path, "wb") as f:
        f.write(data[:cut])
    rec = Recorder()
    try:
        app = build(sb.board, cfg_path=path, i2c=sb.i2c, comms=rec)
        app.start()
        fets = sb.chip.now_fets()
        app.run(4)
    except Exception as e:        # the drill counts a crash; it must never happen
        stats["crashes"] += 1
        stats["crash_examples"].append("%s: %s" % (type(e).__name__, e))
        return
    reported = (EVENT_INFO, INFO_CONFIG) in [(k, c) for k, c, _ in rec.events]
    if torn_tmp:
        stats["torn_tmp"] += 1
        safe = app.config_status == "ok" and app.cfg["comms_budget_ms"] == 90
        stats["kept_old"] += safe
    else:
        stats["torn_file"] += 1
        defaults_ok = app.config_status != "ok" and app.cfg["comms_budget_ms"] == base["comms_budget_ms"]
        safe = defaults_ok and reported
        stats["defaults_reported"] += safe
    stats["fets_off_at_boot"] += fets == (0, 0)
    safe = safe and fets == (0, 0)
    stats["safe"] += safe


def _records(blob):
    """The frames of a segment file's bytes (2-byte little-endian length + frame, repeated)."""
    out, pos = [], 0
    while pos + 2 <= len(blob):
        n = blob[pos] | (blob[pos + 1] << 8)
        out.append(blob[pos + 2:pos + 2 + n])
        pos += 2 + n
    return out


def _outbox_trial(rng, folder, i, stats):
    slots, slot_bytes = 4, 64
    # Half the trials as the firmware's telemetry outbox runs (spills join the newest segment while it
    # stays under segment_bytes: the spill rewrites that segment), half one segment per spill.
    segment_bytes = 0 if i % 2 else 400
    d = os.path.join(folder, "box%d" % i)
    box = Outbox(d, slots=slots, slot_bytes=slot_bytes, max_segments=100, segment_bytes=segment_bytes)
    m = rng.randrange(9, 41)
    frames = [b"F%05d-%05d-" % (i, j) + bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))
              for j in range(m)]
    for f in frames:
        box.push(f)
    # What is on flash, read from the files themselves (segments are numbered from 0 up)
    nums = sorted(int(n[:-4]) for n in os.listdir(d) if n.endswith(".seg"))
    blobs = []
    for n in nums:
        with open(os.path.join(d, "%d.seg" % n), "rb") as fh:
            blobs.append(fh.read())
    segs = [_records(b) for b in blobs]
    nseg = len(segs)
    ring = frames[sum(len(s) for s in segs):]
    stats["segments_joined"] += sum(1 for s in segs if len(s) > slots)
    mode = rng.randrange(3)
    victim = None
    if mode < 2:
        # power lost during the next spill: its file torn at a random byte. A joining spill writes the
        # newest segment's records + the ring to <newest>.tmp and renames it over <newest>.seg.
        ring_blob = b"".join(bytes((len(f) & 0xFF, len(f) >> 8)) + f for f in ring)
        joins = segment_bytes and nseg and len(blobs[-1]) + len(ring_blob) <= segment_bytes
        target, blob = (nums[-1], blobs[-1] + ring_blob) if joins else (nums[-1] + 1 if nums else 0, ring_blob)
        name = "%d%s" % (target, ".tmp" if mode == 0 else ".seg")
        if mode == 1 and joins:
            victim = nseg - 1            # a torn rename target: that segment's own records may go too
        with open(os.path.join(d, name), "wb") as fh:
            fh.write(blob[:rng.randrange(len(blob))])
    else:
        # a complete segment damaged later (flash trouble): truncated at a random byte
        victim = rng.randrange(nseg)
        p = os.path.join(d, "%d.seg" % nums[victim])
        with open(p, "wb") as fh:
            fh.write(blobs[victim][:rng.randrange(len(blobs[victim]))])
    try:
        box2 = Outbox(d, slots=slots, slot_bytes=slot_bytes, max_segments=100, segment_bytes=segment_bytes)
        got = []
        for _ in range(m + 10):
            v = box2.peek()
            if v is None:
                break
            got.append(bytes(v))
            box2.pop()
    except Exception as e:
        stats["crashes"] += 1
        stats["crash_examples"].append("%s: %s" % (type(e).__name__, e))
        return
    must = [f for s, seg in enumerate(segs) if s != victim for f in seg]   # untouched complete segments
    allowed = [f for seg in segs for f in seg] + (ring if mode == 1 else [])
    it = iter(allowed)
    in_order = all(any(g == a for a in it) for g in got)                    # a subsequence of allowed
    kept_all = all(f in got for f in must)
    stats["trials_" + ("torn_tmp", "torn_seg", "damaged_seg")[mode]] += 1
    stats["frames_complete"] += len(must)
    stats["frames_recovered"] += sum(1 for g in got if g in must)
    stats["frames_from_torn"] += sum(1 for g in got if g not in must)
    stats["corrupt_counted"] += box2.corrupt
    stats["safe"] += in_order and kept_all and len(set(got)) == len(got)


def run(folder, quick=False, log=print):
    n = 40 if quick else 500
    rng = random.Random(20261124)
    r = Result(NAME, TITLE, __doc__.split("\n\n")[2].strip())
    cfg = dict(crashes=0, crash_examples=[], torn_tmp=0, torn_file=0, kept_old=0, defaults_reported=0,
               fets_off_at_boot=0, safe=0)
    box = dict(crashes=0, crash_examples=[], trials_torn_tmp=0, trials_torn_seg=0, trials_damaged_seg=0,
               frames_complete=0, frames_recovered=0, frames_from_torn=0, corrupt_counted=0, safe=0,
               segments_joined=0)
    try:
        for i in range(n):
            _config_trial(rng, folder, i, cfg)
        log("  config: %d trials" % n)
        for i in range(n):
            _outbox_trial(rng, folder, i, box)
        log("  outbox: %d trials" % n)
    finally:
        real_time()
    r.add("seed", 20261124)
    r.add("config trials (torn temp file / torn config file)", "%d (%d / %d)" % (n, cfg["torn_tmp"],
                                                                                  cfg["torn_file"]))
    r.add("config: safe boots", cfg["safe"])
    r.add("config: torn temp file, previous config kept", cfg["kept_old"])
    r.add("config: torn config file, safe defaults + config fault event", cfg["defaults_reported"])
    r.add("config: FETs off right after boot", cfg["fets_off_at_boot"])
    r.add("config: boots that crashed", cfg["crashes"])
    r.add("outbox trials (torn spill .tmp / torn .seg / damaged old segment)", "%d (%d / %d / %d)" % (
        n, box["trials_torn_tmp"], box["trials_torn_seg"], box["trials_damaged_seg"]))
    r.add("outbox trials with spills joining the newest segment (the firmware's telemetry outbox) / one"
          " segment per spill", "%d / %d" % ((n + 1) // 2, n // 2))
    r.add("outbox: segments holding more than one spill (joined)", box["segments_joined"])
    r.add("outbox: safe boots (all complete segments kept, in order, no duplicate)", box["safe"])
    r.add("outbox: frames in undamaged complete segments", box["frames_complete"])
    r.add("outbox: of those recovered after boot", box["frames_recovered"])
    r.add("outbox: whole frames also recovered from a torn file (cut on a record boundary)",
          box["frames_from_torn"])
    r.add("outbox: torn segments dropped and counted (corrupt)", box["corrupt_counted"])
    r.add("outbox: boots that crashed", box["crashes"])
    for ex in (cfg["crash_examples"] + box["crash_examples"])[:5]:
        r.note("crash: " + ex)
    r.check(cfg["safe"] == n, "%d config boots not safe" % (n - cfg["safe"]))
    r.check(box["safe"] == n, "%d outbox boots not safe" % (n - box["safe"]))
    r.check(box["frames_recovered"] == box["frames_complete"], "complete frames lost")
    r.check(cfg["crashes"] == 0 and box["crashes"] == 0, "crashes at boot")
    return r
