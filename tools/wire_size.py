"""Measure the wire size of telemetry: binary frames (docs/frame-format.md) against JSON and line protocol.

A deterministic simulated pack (seeded random walk, 1 sample per period) is encoded with the real codec
(firmware/comms/frame.py, tag included, wall clock set) in frames of 1, 4, 10, 60 samples, and the same
samples are written as JSON (one object per sample with per-cell keys, as diyBMS-style publishers do)
and as InfluxDB line protocol (one line per sample with every field; and the bridge's schema of
docs/influx-schema.md: a `pack` line, one `cell` line per cell and one `temp` line per thermistor).
MQTT headers and topics are not counted for any of them.

    python tools/wire_size.py                      # 16 cells, 3 thermistors, batches 1,4,10,60
    python tools/wire_size.py --cells 4 --batches 1,10 --json
"""
import argparse
import json
import pathlib
import random
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from firmware.comms import frame  # noqa: E402
from firmware.sample import Sample  # noqa: E402

KEY = bytes(range(32))          # a test key; sizes do not depend on it
DEVICE = "bms-0001"
WALL_S = 817000000              # 2025-11-22 in seconds since 2000 (only its presence matters for size)


def simulate(n, cells, temps, period_ms, seed, profile):
    """n Samples of a discharging pack. profile 'noisy': mV noise and current ripple; 'steady': constant."""
    rnd = random.Random(seed)
    out = []
    cell = [3300 + rnd.randint(-8, 8) for _ in range(cells)]
    current, soc = -15000, 8000
    tmp = [250 + 10 * j for j in range(temps)]
    for k in range(n):
        s = Sample(cells, temps)
        s.t_ms = (1000 + k * period_ms) & ((1 << 30) - 1)
        if profile == "noisy":
            cell = [v + rnd.randint(-2, 1) for v in cell]
            current = -15000 + rnd.randint(-400, 400)
            tmp = [t + rnd.choice((-1, 0, 0, 1)) for t in tmp]
            if k % 30 == 29:
                soc -= 1
        for i in range(cells):
            s.cell_mv[i] = cell[i]
        for j in range(temps):
            s.temp_dc[j] = tmp[j]
        s.stack_mv = sum(cell)
        s.pack_mv = s.stack_mv - 30 + (rnd.randint(-3, 3) if profile == "noisy" else 0)
        s.ld_mv = s.pack_mv - 25
        s.current_ma = current
        s.int_temp_dc = 320
        s.soc_cpct = soc
        s.soh_cpct = 9870
        s.state = 2
        s.battery_status = 0x0180
        s.fet_status = 0x05
        s.balance_mask = 0b0000000000100100 if (k // 60) % 2 else 0
        out.append(s)
    return out


def frame_bytes(samples, seq=0):
    """Encode samples into one signed telemetry frame; return its length."""
    enc = frame.Encoder(DEVICE, KEY, boot=1, capacity=frame.MAX_FRAME)
    s0 = samples[0]
    enc.begin_telemetry(seq, s0.t_ms, 3600, 0, s0.cell_count, s0.temp_count, WALL_S, 0)
    for s in samples:
        if not enc.add_sample(s):
            raise SystemExit("batch does not fit one frame of %d bytes" % frame.MAX_FRAME)
    return len(enc.finish())


def unix_ms(s):
    return (WALL_S + frame.WALL_EPOCH_UNIX_S) * 1000 + s.t_ms


_WORDS = ("safety_alert", "safety_status", "pf_status", "battery_status", "alarm_status", "fet_status",
          "balance_mask", "faults")
_SCALARS = ("stack_mv", "pack_mv", "ld_mv", "current_ma", "int_temp_dc", "soc_cpct", "soh_cpct", "state")


def as_json(s, seq):
    """One JSON object per sample with per-cell keys (compact separators, integer fixed units)."""
    d = {"device": DEVICE, "boot": 1, "seq": seq, "ts": unix_ms(s)}
    for i in range(s.cell_count):
        d["cell%02d_mv" % (i + 1)] = s.cell_mv[i]
    for j in range(s.temp_count):
        d["temp%d_dc" % (j + 1)] = s.temp_dc[j]
    for name in _SCALARS + _WORDS:
        d[name] = getattr(s, name)
    return json.dumps(d, separators=(",", ":"))


def as_line(s, seq):
    """One line-protocol line per sample carrying every field (ns timestamp)."""
    f = ["cell%02d_mv=%di" % (i + 1, s.cell_mv[i]) for i in range(s.cell_count)]
    f += ["temp%d_dc=%di" % (j + 1, s.temp_dc[j]) for j in range(s.temp_count)]
    f += ["%s=%di" % (n, getattr(s, n)) for n in _SCALARS + _WORDS]
    f += ["boot=1i", "seq=%di" % seq]
    return "bms,device=%s %s %d\n" % (DEVICE, ",".join(f), unix_ms(s) * 1000000)


def as_schema_lines(s, seq):
    """The bridge's schema (docs/influx-schema.md), integer source fields only, registry tags as '-'."""
    tags = "device=%s,group=-,site=-,board=-" % DEVICE
    ts = unix_ms(s) * 1000000
    f = ["%s=%di" % (n, getattr(s, n)) for n in _SCALARS + _WORDS] + ["boot=1i", "seq=%di" % seq]
    out = ["pack,%s %s %d\n" % (tags, ",".join(f), ts)]
    for i in range(s.cell_count):
        out.append("cell,cell=%02d,%s mv=%di,balancing=%di %d\n"
                   % (i + 1, tags, s.cell_mv[i], (s.balance_mask >> i) & 1, ts))
    for j in range(s.temp_count):
        out.append("temp,sensor=ts%d,%s dc=%di %d\n" % (j + 1, tags, s.temp_dc[j], ts))
    return "".join(out)


def measure(cells, temps, period_ms, batches, seed, profile, frames_per_batch=20):
    """Average bytes per sample over frames_per_batch consecutive frames for each batch size."""
    rows = []
    for n in batches:
        ss = simulate(n * frames_per_batch, cells, temps, period_ms, seed, profile)
        total_bin = sum(frame_bytes(ss[i:i + n], seq=i // n) for i in range(0, len(ss), n))
        total_json = sum(len(as_json(s, k).encode()) for k, s in enumerate(ss))
        # a JSON batch is an array of the objects: '[' + ',' separators + ']' add n+1 bytes per batch
        total_json += (n + 1) * frames_per_batch if n > 1 else 0
        total_line = sum(len(as_line(s, k).encode()) for k, s in enumerate(ss))
        total_schema = sum(len(as_schema_lines(s, k).encode()) for k, s in enumerate(ss))
        m = len(ss)
        rows.append({"samples_per_frame": n, "frame_bytes": total_bin / frames_per_batch,
                     "binary_per_sample": total_bin / m, "json_per_sample": total_json / m,
                     "line_per_sample": total_line / m, "schema_lines_per_sample": total_schema / m})
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", type=int, default=16, help="cells in series (1..16, default 16)")
    ap.add_argument("--temps", type=int, default=3, help="thermistors (0..3, default 3)")
    ap.add_argument("--period-ms", type=int, default=1000, help="sample period (default 1000 ms)")
    ap.add_argument("--batches", default="1,4,10,60", help="samples per frame, comma-separated")
    ap.add_argument("--profile", choices=("noisy", "steady"), default="noisy",
                    help="noisy: mV noise, current ripple (default); steady: nothing changes")
    ap.add_argument("--seed", type=int, default=1, help="random seed of the simulated pack")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = ap.parse_args(argv)
    batches = [int(x) for x in args.batches.split(",")]
    rows = measure(args.cells, args.temps, args.period_ms, batches, args.seed, args.profile)
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print("%d cells, %d thermistors, %d ms period, profile %s (bytes; MQTT overhead not counted)"
          % (args.cells, args.temps, args.period_ms, args.profile))
    print("%8s %10s %12s %12s %12s %14s %8s" % ("per frame", "frame", "binary/smp", "json/smp", "line/smp",
                                                "schema/smp", "json/bin"))
    for r in rows:
        print("%8d %10.1f %12.1f %12.1f %12.1f %14.1f %8.1f" % (
            r["samples_per_frame"], r["frame_bytes"], r["binary_per_sample"], r["json_per_sample"],
            r["line_per_sample"], r["schema_lines_per_sample"], r["json_per_sample"] / r["binary_per_sample"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
