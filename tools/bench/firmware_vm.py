"""Firmware section of the benchmarks: the compiled firmware in the MicroPython VM, on the emulated chip.

Compiles firmware/ with mpy-cross for the ESP32 into a temporary build folder (the total .mpy size is
what `make flash` copies), runs the VM-side benchmarks in tools/bench/vm/ with tools/mpvm/run.mjs
(each prints `BENCH {json}`) and tools/heap_live.mjs (live heap, read between top-level VM
calls, where this VM collects), and sets the measured I2C cost beside the fewest transactions and bytes
the BQ76952's direct-command map allows for the same sample (computed here from the driver's register
constants and the reference's list of documented addresses).

    python -m tools.bench --only firmware
    python -m tools.bench.firmware_vm          # the figures as JSON
"""
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[2]
for _p in (str(ROOT), str(ROOT / "tools" / "hostport")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

VM_TESTS = ROOT / "tools" / "bench" / "vm"
NODE = os.environ.get("NODE", "node")
ESP32_HEAP = 100 * 1024      # reference/micropython-esp32.md: ~100 KB Python heap on a plain ESP32
# What the app and comms need before the cycle figures mean anything (other helpers' modules).
NEEDS = ("firmware/app.py", "firmware/comms/service.py", "firmware/comms/link.py")


# --- the fewest bus transactions and bytes the register map allows ---------------------------
def _documented():
    """Direct-command addresses the reference documents (reference/bq76952.md section 2); a burst
    never runs over an undocumented one (0x08-0x09, 0x3C-0x3D, 0x7C-0x7E), as the driver does."""
    spans = [(0x00, 0x07), (0x0A, 0x3B), (0x3E, 0x7B), (0x7F, 0x7F)]
    return spans


def needed_registers(cells=16, temps=3):
    """Byte addresses a full sample needs (firmware/sample.py fields), from the driver's constants."""
    from firmware.afe import bq76952_regs as R
    need = set()

    def word(a):
        need.update((a, a + 1))
    for a in (R.SAFETY_ALERT_A, R.SAFETY_STATUS_A, R.SAFETY_ALERT_B, R.SAFETY_STATUS_B,
              R.SAFETY_ALERT_C, R.SAFETY_STATUS_C, R.PF_STATUS_A, R.PF_STATUS_B, R.PF_STATUS_C,
              R.PF_STATUS_D, R.FET_STATUS):
        need.add(a)
    for a in (R.BATTERY_STATUS, R.STACK_VOLTAGE, R.PACK_VOLTAGE, R.LD_VOLTAGE, R.CC2_CURRENT,
              R.ALARM_STATUS, R.ALARM_RAW_STATUS, R.INT_TEMPERATURE):
        word(a)
    for n in range(cells):
        word(R.CELL1_VOLTAGE + 2 * n)
    for j in range(temps):
        word(R.TS1_TEMPERATURE + 2 * j)
    return need


def register_minimum(cells=16, temps=3):
    """(fewest transactions, bytes at that count, fewest bytes, transactions at that count)."""
    need = needed_registers(cells, temps)
    tx = 0
    bytes_at_min_tx = 0
    for lo, hi in _documented():
        inside = [a for a in need if lo <= a <= hi]
        if inside:
            tx += 1
            bytes_at_min_tx += max(inside) - min(inside) + 1
    runs = 0
    prev = None
    for a in sorted(need):
        if prev is None or a != prev + 1:
            runs += 1
        prev = a
    return {"min_transactions": tx, "bytes_at_min_transactions": bytes_at_min_tx,
            "min_bytes": len(need), "transactions_at_min_bytes": runs}


# --- the VM run -----------------------------------------------------------------------------
def _compile(out):
    from tools.build_mpy import compile_tree
    ok, errors, total = compile_tree(ROOT / "firmware", pathlib.Path(out), quiet=True)
    if errors:
        raise RuntimeError("mpy-cross failed: %s" % "; ".join(errors)[:500])
    return ok, total


def run_vm(build, timeout_s=600):
    argv = [NODE, str(ROOT / "tools" / "mpvm" / "run.mjs"), "--build", str(build), "--tests",
            str(VM_TESTS), "--verbose"]
    p = subprocess.run(argv, cwd=str(ROOT), capture_output=True, text=True, timeout=timeout_s)
    figures, fails, modules = {}, [], {}
    for line in p.stdout.splitlines():
        if line.startswith("BENCH "):
            d = json.loads(line[6:])
            figures[d["name"]] = d["figures"]
        elif line.startswith("FAIL "):
            fails.append(line)
        m = re.match(r"ok import::(\S+) \(\+(\d+) heap bytes", line)
        if m:
            modules[m.group(1)] = int(m.group(2))
    # "import gate: 33 modules, bytes allocated importing them: 147600 (gc.mem_alloc, ..., 21920 before)"
    # (older runners worded it "heap in use after importing them: N bytes (...)")
    gate = re.search(r"import gate: (\d+) modules, [^\d\n]*(\d+)[^\n]*?(\d+) before\)", p.stdout)
    return figures, fails, modules, gate, p


def run_heap(build, timeout_s=300, src=None):
    """tools/heap_live.mjs --json: live heap per phase (after the VM's top-level collection), for the .mpy
    files on the file system and for a frozen image (compiled from `src`, default firmware/); the same
    measurement and budgets `make test` checks (docs/memory.md), so the two never disagree."""
    argv = [NODE, str(ROOT / "tools" / "heap_live.mjs"), "--build", str(build), "--json",
            "--src", str(src or ROOT / "firmware")]
    p = subprocess.run(argv, cwd=str(ROOT), capture_output=True, text=True, timeout=timeout_s)
    for line in reversed(p.stdout.splitlines()):
        if line.startswith("{"):
            j = json.loads(line)
            if j.get("failed"):
                return None, p
            heap = {"steady": j["steady"], "modules": j["steady"] - j["data_only"], "objects": j["data_only"],
                    "frames_published": j["frames_published"], "growth": j["growth_800_cycles"]}
            fz = j.get("frozen")
            if fz:
                # The same phases with the firmware frozen into the image (code in flash): what a plain
                # ESP32 holds. frozen_modules = module objects (dicts, functions, classes) in the heap.
                heap.update({"frozen_steady": fz["steady"], "frozen_modules": fz["steady"] - fz["data_only"],
                             "frozen_objects": fz["data_only"], "frozen_growth": fz["growth_800_cycles"]})
            return heap, p
    return None, p


def measure(quick=False, log=print):
    missing = [n for n in NEEDS if not (ROOT / n).exists()]
    out = {"register_minimum": register_minimum(), "esp32_heap": ESP32_HEAP, "missing": missing}
    tmp = tempfile.mkdtemp(prefix="bench-mpy-")
    try:
        n_mpy, total = _compile(tmp)
        out["mpy_modules"] = n_mpy
        out["mpy_bytes"] = total
        log("firmware: %d modules, %d bytes of .mpy (xtensawin)" % (n_mpy, total))
        if missing:
            out["pending"] = "not in the tree yet: %s" % ", ".join(missing)
            return out
        log("firmware: running tools/bench/vm in the MicroPython VM ...")
        figures, fails, modules, gate, p = run_vm(tmp)
        out.update(figures)
        out["fails"] = fails
        out["module_heap"] = modules
        if gate:
            out["gate_modules"] = int(gate.group(1))
            out["gate_heap"] = int(gate.group(2)) - int(gate.group(3))
        if p.returncode != 0:
            log("firmware: the VM run failed:\n" + "\n".join(fails or p.stdout.splitlines()[-10:]))
        log("firmware: live heap at steady state (tools/heap_live.mjs) ...")
        heap, hp = run_heap(tmp)
        if heap is not None:
            out["heap"] = heap
        else:
            out.setdefault("fails", []).append("heap_live.mjs: " + (hp.stdout + hp.stderr)[-500:])
        for k in ("i2c", "alloc", "heap", "speed"):
            if k not in out:
                out.setdefault("pending_parts", []).append(k)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def main(argv=None):
    import argparse
    argparse.ArgumentParser(prog="python -m tools.bench.firmware_vm", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter).parse_args(argv)
    print(json.dumps(measure(), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
