"""Start and stop a virtual board (python -m tools.virtualboard) in a temporary folder; run mpremote on it.

    with VirtualBoard(tmp_path / "vb", "--report-mpy", "5") as vb:
        out = vb.mpremote("exec", "print(1+1)").stdout
"""
import os
import pathlib
import signal
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
PY = sys.executable
MPREMOTE = str(pathlib.Path(sys.executable).parent / "mpremote")
START_TIMEOUT_S = 30     # bounded waits only; the VM is normally up in about a second


class VirtualBoard:
    def __init__(self, state_dir, *extra):
        self.dir = pathlib.Path(state_dir)
        self.extra = list(extra)
        self.proc = None
        self.port = None

    def start(self):
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen([PY, "-m", "tools.virtualboard", "--dir", str(self.dir)] + self.extra,
                                     cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        first = self.proc.stdout.readline()
        if " on /dev/pts/" not in first:
            self.stop()
            raise RuntimeError("virtual board did not start: %r" % first)
        self.port = first.split(" on ", 1)[1].split(" ", 1)[0]
        end = time.monotonic() + START_TIMEOUT_S
        while not (self.dir / "ready").exists():
            if time.monotonic() > end or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError("virtual board not ready within %d s" % START_TIMEOUT_S)
            time.sleep(0.05)
        return self

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc is not None and self.proc.stdout:
            self.proc.stdout.close()
        self.proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def tty(self):
        return str(self.dir / "tty")

    def mpremote(self, *args, timeout=60, check=True):
        p = subprocess.run([MPREMOTE, "connect", self.tty] + list(args), capture_output=True, text=True,
                           timeout=timeout, cwd=ROOT)
        if check and p.returncode != 0:
            raise AssertionError("mpremote %s failed (%d): %s %s" % (args, p.returncode, p.stdout, p.stderr))
        return p

    def console(self):
        return (self.dir / "console.log").read_bytes().decode("utf-8", "replace")

    def wait_console(self, needle, timeout_s=30):
        """Wait until the console log holds `needle` (a bounded wait); return the log."""
        end = time.monotonic() + timeout_s
        while True:
            text = self.console()
            if needle in text:
                return text
            if time.monotonic() > end:
                raise AssertionError("%r not on the console within %d s; console:\n%s"
                                     % (needle, timeout_s, text[-3000:]))
            time.sleep(0.1)


def run_flash(*args, timeout=240):
    return subprocess.run([PY, "tools/flash.py"] + list(args), capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout, env=dict(os.environ))
