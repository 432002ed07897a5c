"""machine.py, network.py and simclock.py import and behave the same in the official MicroPython VM."""
import json
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VM_PKG = os.path.join(ROOT, "node_modules", "@micropython", "micropython-webassembly-pyscript",
                      "micropython.mjs")
HOSTPORT = os.path.join(ROOT, "tools", "hostport")
FILES = ("machine.py", "network.py", "simclock.py")  # `micropython` is the VM's own

RUNNER = """
import { loadMicroPython } from %s;
import fs from "fs";
const out = [];
const mp = await loadMicroPython({stdout: (s) => out.push(s), stderr: (s) => out.push("E:" + s)});
mp.FS.mkdir("/hp");
for (const [name, path] of %s) mp.FS.writeFile("/hp/" + name, fs.readFileSync(path));
try { mp.runPython(fs.readFileSync(%s, "utf8")); } catch (e) { out.push("JS:" + String(e)); }
process.stdout.write(out.join("\\n") + "\\n");
"""


@pytest.mark.skipif(shutil.which("node") is None or not os.path.exists(VM_PKG),
                    reason="MicroPython VM not set up (make setup: node + npm ci)")
def test_host_port_runs_in_the_micropython_vm(tmp_path):
    runner = tmp_path / "run.mjs"
    files = [[f, os.path.join(HOSTPORT, f)] for f in FILES]
    runner.write_text(RUNNER % (json.dumps("file://" + VM_PKG), json.dumps(files),
                                json.dumps(os.path.join(os.path.dirname(__file__), "vm_payload.py"))))
    r = subprocess.run(["node", str(runner)], capture_output=True, text=True, timeout=120)
    lines = dict(l.split(" ", 1) for l in r.stdout.splitlines() if " " in l and not l.startswith("E:"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "JS:" not in r.stdout and "Traceback" not in r.stdout, r.stdout
    assert lines == {
        "into_err": "none",              # readfrom_mem_into under heap_lock: the stand-in unlocks for the chip
        "into_buf": "16 17 18 19",
        "stats": "1 1 4",
        "alloc_readfrom_mem": "MemoryError",  # a new bytes object on the board: caught as there
        "alloc_readfrom": "MemoryError",
        "alloc_scan": "MemoryError",
        "readfrom_mem": "True True",
        "absent": "True",
        "irq": "1",
        "wdt": "True",
        "cause": "3",
        "wlan_early": "1001",
        "wlan": "1010",
        "rtc": "2024 2 29 3",
        "ticks": "25",
    }, r.stdout
