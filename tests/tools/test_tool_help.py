"""Every command-line entry point under tools/ answers --help with exit 0 and a usage text, without
doing its work. Entry points are found, not listed: a new tool is covered the day it is added.

tools/emulator/* is left out here (its own helper scripts are covered by tests/emulator)."""
import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
TOOLS = ROOT / "tools"
SKIP_DIRS = {"emulator", "__pycache__", "node_modules"}
MAIN_RE = re.compile(r'^if __name__ == "__main__":', re.M)
HELP_TIMEOUT_S = 60


def _entry_points():
    """(label, argv) for every script, package __main__ and Node tool under tools/."""
    out = []
    for path in sorted(TOOLS.rglob("*")):
        rel = path.relative_to(ROOT)
        if SKIP_DIRS & set(rel.parts[1:-1]) or path.is_dir():
            continue
        if path.suffix == ".mjs":
            out.append((str(rel), [os.environ.get("NODE", "node"), str(path)]))
        elif path.suffix == ".py":
            mod = ".".join(rel.with_suffix("").parts)
            if path.name == "__main__.py":
                out.append(("python -m " + mod[:-len(".__main__")], [sys.executable, "-m", mod[:-len(".__main__")]]))
            elif MAIN_RE.search(path.read_text(encoding="utf-8", errors="replace")):
                if path.parent == TOOLS:
                    out.append((str(rel), [sys.executable, str(path)]))     # run as a script
                else:
                    out.append(("python -m " + mod, [sys.executable, "-m", mod]))
    return out


ENTRY_POINTS = _entry_points()


def test_the_known_tools_are_found():
    labels = {label for label, _ in ENTRY_POINTS}
    for must in ("tools/provision.py", "tools/flash.py", "tools/heap_live.mjs", "tools/mpvm/run.mjs",
                 "python -m tools.bench.wire", "python -m tools.bench.firmware_vm", "python -m tools.bench",
                 "python -m tools.virtualboard", "tools/virtualboard/vm.mjs", "python -m tools.drills",
                 "tools/simboard.py", "tools/demo_fleet.py"):
        assert must in labels, sorted(labels)


@pytest.mark.parametrize("label,argv", ENTRY_POINTS, ids=[label for label, _ in ENTRY_POINTS])
def test_help_exits_0_with_usage(label, argv):
    r = subprocess.run(argv + ["--help"], cwd=ROOT, capture_output=True, text=True, timeout=HELP_TIMEOUT_S)
    assert r.returncode == 0, (label, r.stdout[-1000:], r.stderr[-2000:])
    assert "usage" in r.stdout.lower()[:400], (label, r.stdout[:400])
