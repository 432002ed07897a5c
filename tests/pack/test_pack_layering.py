"""Layering: pack logic, balancing and config never import `machine` (hardware goes through the AFE
driver's interface); firmware/app.py imports it only in its board entry points build() and main()."""
import ast
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PURE_DIRS = ("firmware/pack", "firmware/balancing", "firmware/config")
APP_ENTRY_POINTS = {"build", "main"}


def _machine_imports(path):
    """[(enclosing function name or None, line)] for every import of machine in the file."""
    tree = ast.parse(open(path).read(), path)
    found = []

    def visit(node, func):
        for child in ast.iter_child_nodes(node):
            f = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else func
            names = []
            if isinstance(child, ast.Import):
                names = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom):
                names = [child.module or ""]
            if any(n == "machine" or n.startswith("machine.") for n in names):
                found.append((func, child.lineno))
            visit(child, f)
    visit(tree, None)
    return found


def _files(d):
    for dirpath, _, names in os.walk(os.path.join(ROOT, d)):
        for n in names:
            if n.endswith(".py"):
                yield os.path.join(dirpath, n)


def test_pack_balancing_config_never_import_machine():
    files = [f for d in PURE_DIRS for f in _files(d)]
    assert len(files) >= 8
    bad = [(os.path.relpath(f, ROOT), hits) for f in files for hits in [_machine_imports(f)] if hits]
    assert not bad


def test_app_imports_machine_only_in_its_board_entry_points():
    hits = _machine_imports(os.path.join(ROOT, "firmware", "app.py"))
    assert hits and all(func in APP_ENTRY_POINTS for func, _ in hits), hits


def test_the_guard_sees_an_import():
    # The checker must be able to fail: a module-level and a nested import are both found.
    import tempfile
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write("import os\nfrom machine import Pin\n\ndef f():\n    import machine\n")
    try:
        assert _machine_imports(f.name) == [(None, 2), ("f", 5)]
    finally:
        os.remove(f.name)


def test_importing_the_cycle_does_not_load_machine():
    # A fresh interpreter without the host port's stand-ins: `machine` must not even be needed.
    code = ("import sys, types; sys.modules['micropython'] = types.SimpleNamespace(const=lambda x: x)\n"
            "import firmware.app, firmware.pack.protection, firmware.pack.state, firmware.pack.soc, "
            "firmware.pack.soc_store, firmware.balancing.policy, firmware.config.store\n"
            "assert 'machine' not in sys.modules, 'machine was imported'\n")
    env = dict(os.environ, PYTHONPATH=ROOT)
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
