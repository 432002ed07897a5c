"""Virtual board: a pseudo-terminal that speaks MicroPython's REPL like an ESP32 on USB serial.

Behind the terminal runs the official MicroPython VM (WebAssembly, in Node: tools/virtualboard/vm.mjs)
with its own flash file system kept in STATE_DIR/fs (so what mpremote copies survives a restart), the
emulated BQ76952 and pack (tools/emulator) on machine.I2C(0) at 0x08, and the host-port machine/network/
simclock modules in a read-only /rom (like modules frozen into firmware; never on the user's FS).

    python -m tools.virtualboard --dir /tmp/vb --board sim16_lfp      # prints "virtual board on /dev/pts/N"
    mpremote connect /tmp/vb/tty fs ls                                # STATE_DIR/tty links to the terminal

Everything the board prints also goes to STATE_DIR/console.log (new at each start, restarted at 1 MB);
STATE_DIR/ready appears once the VM is up (connect after it, as you would wait for a board to boot);
STATE_DIR/stats.json counts the programs received by raw-paste and by the plain raw REPL. The file
system holds --fs-kib: a write that does not fit fails with OSError 28 (ENOSPC), as LittleFS does.
"""
import argparse
import errno
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import termios
import time
import tty

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
VM = os.path.join(HERE, "vm.mjs")
OUT_QUEUE_MAX = 256 * 1024      # board output waiting for a reader; beyond it the oldest bytes go
STALL_FLUSH_S = 1.0             # nobody read the terminal this long: drop what waits in it (UART-like)
LOG_MAX = 1024 * 1024


def board_path(board):
    if os.path.sep in board or board.endswith(".json"):
        return os.path.abspath(board)
    return os.path.join(ROOT, "boards", board + ".json")


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="python -m tools.virtualboard", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default=os.path.join(ROOT, "build", "virtualboard"),
                    help="state folder: fs/ (the board's flash), tty (link to the terminal), console.log "
                         "(default: build/virtualboard)")
    ap.add_argument("--board", default=None,
                    help="board description: a name under boards/ or a .json path; it decides the emulated "
                         "pack's cells, chemistry and capacity (default: the /board.json flashed on this "
                         "virtual board if any, else sim16_lfp; read at start only)")
    ap.add_argument("--fs-kib", type=int, default=2048,
                    help="flash file system size, KiB: os.statvfs reports it and writes beyond it fail "
                         "with ENOSPC (default 2048, as a 4 MB ESP32)")
    ap.add_argument("--report-mpy", type=int, default=None, metavar="N",
                    help="make sys.implementation._mpy report N (tests of the flash tool's .mpy check)")
    ap.add_argument("--frozen-firmware", action="store_true",
                    help="an image with the firmware package frozen in (boards/manifest.py): it is importable "
                         "without /firmware on the file system (tests of make flash FROZEN=1)")
    ap.add_argument("--seed", type=int, default=1, help="emulator random seed (default 1)")
    ap.add_argument("--soc", type=float, default=0.5, help="emulated pack state of charge at power-on (0..1)")
    ap.add_argument("--node", default=os.environ.get("NODE", "node"), help="Node.js executable (default: node)")
    ap.add_argument("--wipe", action="store_true", help="erase the board's file system first")
    return ap.parse_args(argv)


class Bridge:
    """Moves bytes between the terminal's master side and the VM process's stdin/stdout."""

    def __init__(self, master, slave, proc, log_path):
        self.master = master
        self.slave = slave
        self.proc = proc
        self.outq = bytearray()
        self.stalled_since = None
        self.dropped = 0
        self.log_path = log_path
        self.log = open(log_path, "wb")     # a fresh log per start

    def _log(self, data):
        self.log.write(data)
        self.log.flush()
        if self.log.tell() > LOG_MAX:
            self.log.close()
            self.log = open(self.log_path, "wb")

    def _queue(self, data):
        self.outq += data
        if len(self.outq) > OUT_QUEUE_MAX:
            cut = len(self.outq) - OUT_QUEUE_MAX
            del self.outq[:cut]
            self.dropped += cut

    def _write_master(self):
        try:
            n = os.write(self.master, self.outq)
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EIO):
                raise
            n = 0
        if n:
            del self.outq[:n]
            self.stalled_since = None
            return
        now = time.monotonic()
        if self.stalled_since is None:
            self.stalled_since = now
        elif now - self.stalled_since > STALL_FLUSH_S:
            # Nobody reads the port: a UART would have dropped this. Discard what sits in the terminal.
            termios.tcflush(self.slave, termios.TCIFLUSH)
            self.stalled_since = now

    def run(self):
        vm_out = self.proc.stdout.fileno()
        vm_in = self.proc.stdin.fileno()
        os.set_blocking(self.master, False)
        os.set_blocking(vm_out, False)
        while True:
            wr = [self.master] if self.outq else []
            r, w, _ = select.select([self.master, vm_out], wr, [], 0.2 if self.outq else 1.0)
            if vm_out in r:
                data = os.read(vm_out, 65536)
                if not data:
                    return self.proc.wait()
                self._log(data)
                self._queue(data)
            if self.master in r:
                try:
                    data = os.read(self.master, 4096)
                except OSError as e:
                    if e.errno not in (errno.EAGAIN, errno.EIO):
                        raise
                    data = b""
                if data:
                    os.write(vm_in, data)
            if self.outq:
                self._write_master()


def main(argv=None):
    args = parse_args(argv)
    state = os.path.abspath(args.dir)
    flashed = os.path.join(state, "fs", "board.json")
    if args.board is not None:
        bpath = board_path(args.board)
    elif os.path.exists(flashed) and not args.wipe:
        bpath = flashed         # the emulated pack matches the board description make flash copied
    else:
        bpath = board_path("sim16_lfp")
    try:
        with open(bpath) as f:
            board = json.load(f)
    except OSError as e:
        print("virtual board: cannot read the board description %s: %s" % (bpath, e.strerror), file=sys.stderr)
        return 2
    for key in ("name", "cell_count", "chemistry", "capacity_mah"):
        if key not in board:
            print("virtual board: %s has no %r" % (bpath, key), file=sys.stderr)
            return 2
    if shutil.which(args.node) is None:
        print("virtual board: Node.js (%s) not found: it runs the MicroPython VM (make setup)" % args.node,
              file=sys.stderr)
        return 2
    if not os.path.exists(os.path.join(ROOT, "node_modules", "@micropython", "micropython-webassembly-pyscript")):
        print("virtual board: the MicroPython VM is not installed: run make setup (npm ci)", file=sys.stderr)
        return 2
    if args.wipe:
        shutil.rmtree(os.path.join(state, "fs"), ignore_errors=True)
    os.makedirs(os.path.join(state, "fs"), exist_ok=True)
    for name in ("ready", "stats.json"):     # vm.mjs writes them: ready when the VM is up, stats per program
        try:
            os.unlink(os.path.join(state, name))
        except FileNotFoundError:
            pass

    master, slave = os.openpty()
    tty.setraw(slave)           # no echo, no line editing, no CR/LF mapping: a serial line
    port = os.ttyname(slave)
    link = os.path.join(state, "tty")
    try:
        os.unlink(link)
    except FileNotFoundError:
        pass
    os.symlink(port, link)

    cmd = [args.node, VM, "--state", state, "--board", bpath, "--fs-bytes", str(args.fs_kib * 1024),
           "--seed", str(args.seed), "--soc", str(args.soc)]
    if args.report_mpy is not None:
        cmd += ["--report-mpy", str(args.report_mpy)]
    if args.frozen_firmware:
        cmd += ["--frozen-firmware"]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT)

    def stop(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    print("virtual board %s on %s (link %s); files in %s; console log %s"
          % (board["name"], port, link, os.path.join(state, "fs"), os.path.join(state, "console.log")),
          flush=True)
    code = 0
    try:
        code = Bridge(master, slave, proc, os.path.join(state, "console.log")).run()
        print("virtual board: the VM exited (status %s)" % code, file=sys.stderr)
    except KeyboardInterrupt:
        pass
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
        try:
            if os.readlink(link) == port:
                os.unlink(link)
        except OSError:
            pass
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
