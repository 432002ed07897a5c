"""The virtual board's side inside the MicroPython VM: clock, flash file system, emulated AFE, exec, resets.

Loaded from the read-only /rom mount by tools/virtualboard/vm.mjs, never copied to the board's file system.
    import _vboard; _vboard.setup('{"board": {...}, "fs_bytes": 2097152}')
    _vboard.run(src, "exec")     # '' ok, 'E<traceback>', 'S' (SystemExit: soft reset), 'R<cause>' (chip reset)

`vbhost` is the JS side (vm.mjs): now_us() as a decimal string (never wraps), sleep_us(us) -> 1 when a
Ctrl-C arrived (the sleep is the point where the running program sees KeyboardInterrupt), fs_used(),
fs_dirty(). Runs only in the MicroPython VM (it uses os.VfsPosix, sys.print_exception).
"""
import gc
import io
import json
import os
import sys

import micropython
import vbhost

TICKS_PERIOD = 1 << 30
_TICKS_MAX = TICKS_PERIOD - 1
_HALF = TICKS_PERIOD // 2

_real_time = sys.modules.get("time")
if _real_time is None:
    import time as _real_time


class VBTime:
    """`time` for the board: ticks from the host's monotonic clock, sleeps that Ctrl-C can interrupt.

    perf_counter_ns() is here so that simclock (imported after this module is installed) takes its
    real-time base from this clock instead of the VM's ticks_us(), which wraps after 2**30 us (18 min).
    """

    def perf_counter_ns(self):
        return int(vbhost.now_us()) * 1000

    def _now_us(self):
        return int(vbhost.now_us())

    def ticks_us(self):
        return self._now_us() & _TICKS_MAX

    def ticks_ms(self):
        return (self._now_us() // 1000) & _TICKS_MAX

    def ticks_cpu(self):
        return self.ticks_us()

    def ticks_diff(self, new, old):
        return ((new - old + _HALF) & _TICKS_MAX) - _HALF

    def ticks_add(self, ticks, delta):
        return (ticks + delta) & _TICKS_MAX

    def sleep_us(self, us):
        if vbhost.sleep_us(int(us) if us > 0 else 0):
            raise KeyboardInterrupt

    def sleep_ms(self, ms):
        self.sleep_us(ms * 1000)

    def sleep(self, s):
        self.sleep_us(int(s * 1000000))

    def __getattr__(self, name):      # time(), gmtime(), localtime(), mktime(), time_ns()
        return getattr(_real_time, name)


# The VM's VfsPosix raises Emscripten's (WASI) errno numbers; the board (and mpremote, which matches
# "[Errno 2] ENOENT") uses MicroPython's, which are Linux's. The ones a file system raises:
_WASI_TO_MP = {44: 2, 20: 17, 54: 20, 31: 21, 55: 39, 28: 22, 2: 13, 63: 1, 51: 28, 69: 30, 8: 9, 10: 16,
               33: 24, 37: 36}


def _mp_errno(e):
    if e.args and isinstance(e.args[0], int) and e.args[0] in _WASI_TO_MP:
        return OSError(_WASI_TO_MP[e.args[0]])
    return e


class FlashVfs:
    """The board's flash file system: a VfsPosix over the VM folder /flash that reports a flash-sized
    statvfs (the VM's own numbers are made up) and tells the host which operations changed files."""

    def __init__(self, root, size_bytes, block_bytes=4096):
        self._v = os.VfsPosix(root)
        self.size_bytes = size_bytes
        self.block_bytes = block_bytes

    def mount(self, readonly, mkfs):
        return self._v.mount(readonly, mkfs)

    def umount(self):
        return self._v.umount()

    def ilistdir(self, path):
        # (name, type, inode, size) as LittleFS gives it; VfsPosix reports size 0.
        try:
            entries = list(self._v.ilistdir(path))
        except OSError as e:
            raise _mp_errno(e)
        base = path.rstrip("/") + "/" if path not in ("", ".") else ""
        out = []
        for ent in entries:
            size = 0
            if ent[1] == 0x8000:
                try:
                    size = self._v.stat(base + ent[0])[6]
                except OSError:
                    size = 0
            out.append((ent[0], ent[1], ent[2] if len(ent) > 2 else 0, size))
        return iter(out)

    def chdir(self, path):
        try:
            return self._v.chdir(path)
        except OSError as e:
            raise _mp_errno(e)

    def getcwd(self):
        return self._v.getcwd()

    def stat(self, path):
        try:
            return self._v.stat(path)
        except OSError as e:
            raise _mp_errno(e)

    def statvfs(self, path):
        bs = self.block_bytes
        blocks = self.size_bytes // bs
        used = int(vbhost.fs_used(bs))
        free = blocks - (used + bs - 1) // bs
        if free < 0:
            free = 0
        return (bs, bs, blocks, free, free, 0, 0, 0, 0, 255)

    def _changed(self):
        vbhost.fs_dirty()

    def open(self, path, mode):
        writing = "w" in mode or "a" in mode or "+" in mode or "x" in mode
        if not writing:
            try:
                return self._v.open(path, mode)
            except OSError as e:
                raise _mp_errno(e)
        self._changed()
        bs = self.block_bytes
        try:
            old = self._v.stat(path)[6]
            others = int(vbhost.fs_used(bs)) - _blocks_bytes(old, bs)
        except OSError:
            old = None
            others = int(vbhost.fs_used(bs))
        if old is None and others + bs > self.size_bytes:
            raise OSError(28)            # not even the new file's first block fits
        try:
            f = self._v.open(path, mode)
        except OSError as e:
            raise _mp_errno(e)
        return SizedFile(f, self, others, 0 if (old is None or "w" in mode) else old)

    def mkdir(self, path):
        self._changed()
        if int(vbhost.fs_used(self.block_bytes)) + self.block_bytes > self.size_bytes:
            raise OSError(28)
        try:
            return self._v.mkdir(path)
        except OSError as e:
            raise _mp_errno(e)

    def rmdir(self, path):
        self._changed()
        try:
            return self._v.rmdir(path)
        except OSError as e:
            raise _mp_errno(e)

    def remove(self, path):
        self._changed()
        try:
            return self._v.remove(path)
        except OSError as e:
            raise _mp_errno(e)

    def rename(self, old, new):
        self._changed()
        try:
            return self._v.rename(old, new)
        except OSError as e:
            raise _mp_errno(e)


def _blocks_bytes(size, bs):
    """Flash a file of `size` bytes takes: whole blocks, at least one (as vm.mjs's fs_used counts)."""
    return max(1, (size + bs - 1) // bs) * bs


class SizedFile(io.IOBase):
    """A file opened for writing on the board's flash: a write that would take the file system past its
    size raises OSError(28) (ENOSPC), as LittleFS on the ESP32 does. io.IOBase with write() keeps it a
    stream for print(file=...) and json.dump. Other files on the volume are counted as they were at
    open time."""

    def __init__(self, f, vfs, others_bytes, size):
        self._f = f
        self._vfs = vfs
        self._others = others_bytes
        self._size = size

    def write(self, b):
        end = max(self._size, self._f.tell() + len(b))
        if self._others + _blocks_bytes(end, self._vfs.block_bytes) > self._vfs.size_bytes:
            raise OSError(28)
        n = self._f.write(b)
        self._size = end
        return n

    def close(self):
        return self._f.close()

    def flush(self):
        return self._f.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()

    def __getattr__(self, name):        # read, seek, tell, readinto... of the real file
        return getattr(self._f, name)


class FakeSys:
    """sys with another sys.implementation._mpy (--report-mpy): lets tests exercise flash.py's
    version check. Everything else is the real sys."""

    def __init__(self, real, mpy):
        self._real = real
        impl = real.implementation
        self.implementation = _Impl(impl, mpy)

    def __getattr__(self, name):
        return getattr(self._real, name)


class _Impl:
    def __init__(self, impl, mpy):
        self.name = impl.name
        self.version = impl.version
        self._machine = impl._machine
        self._mpy = mpy

    def __repr__(self):
        return "(name='%s', version=%r, _machine='%s', _mpy=%d)" % (self.name, self.version, self._machine,
                                                                    self._mpy)


_G = {"__name__": "__main__"}      # the REPL's globals (kept across commands, cleared by a reset)
_state = {"frozen": (), "emu": None, "board": None, "opts": None}


def _heap_unlock_all():
    # A program interrupted under micropython.heap_lock() must not leave the heap locked: an exception
    # reaching the VM's top level with the heap locked makes the VM spin (tools/mpvm/README.md).
    micropython.heap_lock()
    n = micropython.heap_unlock()
    while n > 0:
        micropython.heap_unlock()
        n -= 1


def setup(opts_json):
    """Power-on: time, file systems, sys.path, emulated AFE from the board description."""
    opts = json.loads(opts_json)
    _state["opts"] = opts
    sys.modules["time"] = VBTime()            # before simclock/machine import it
    os.umount("/")
    os.mount(FlashVfs("/flash", opts["fs_bytes"]), "/")
    os.mount(os.VfsPosix("/rom"), "/rom", readonly=True)
    os.chdir("/")
    sys.path[:] = ["", ".frozen", "/rom", "/lib"]
    import machine          # noqa: F401  (host-port stand-in, frozen-like in /rom)
    import network
    # No Wi-Fi here: every connect ends in STAT_NO_AP_FOUND, so the firmware's link reports offline.
    network.SIM.set_ap(bool(opts.get("wifi", False)))
    if opts.get("mpy") is not None:
        sys.modules["sys"] = FakeSys(sys, opts["mpy"])
    _make_emulator(opts["board"], opts.get("seed", 1), opts.get("soc", 0.5))
    _state["frozen"] = tuple(sys.modules)
    gc.collect()


def _make_emulator(b, seed, soc):
    from tools.emulator import make_emulated_board
    bus = b.get("i2c", {})
    alert = b.get("alert_pin", -1)
    # Thermal nodes on the TS pins the board names (an unnamed pin reads open), cells on its VC inputs.
    po = {"ts_pins": list(b.get("thermistors", ()))}
    if b.get("vc_inputs"):
        po["vc_inputs"] = list(b["vc_inputs"])
    emu = make_emulated_board(cells=b["cell_count"], chemistry=b["chemistry"].upper(),
                              capacity_mah=b["capacity_mah"], seed=seed, soc=soc, bus_id=bus.get("id", 0),
                              crc=bool(bus.get("crc", False)), sense_mohm=b.get("shunt_uohm", 1000) / 1000.0,
                              alert_pin_id=alert if alert >= 0 else None, pack_options=po)
    _state["emu"] = emu
    _state["board"] = b


def emulator():
    """The EmulatedBoard (pack, chip, faults) on I2C bus 0: `import _vboard; _vboard.emulator().pack`."""
    return _state["emu"]


def _outcome(e):
    """'S' for SystemExit, 'R<cause>' for a chip reset request, else 'E<traceback text>'."""
    if isinstance(e, SystemExit):
        return "S"
    machine = sys.modules.get("machine")
    if machine is not None and isinstance(e, machine.ResetRequested):
        _state["pending_reset"] = e
        return "R%d" % e.cause
    s = io.StringIO()
    sys.print_exception(e, s)
    # Drop this module's own frames: the board's traceback starts at the program's code.
    lines = [ln for ln in s.getvalue().split("\n") if '"/rom/_vboard.py"' not in ln]
    return "E" + "\n".join(lines)


def run(src, mode):
    """Compile and run src in the REPL's globals. mode 'exec' (raw REPL, files) or 'single' (friendly).

    The outcome goes to the host through vbhost.result() (the VM's runPython returns nothing).
    """
    r = ""
    try:
        exec(compile(src, "<stdin>", mode), _G)
    except BaseException as e:      # everything the program raised goes back to the REPL, as on a board
        _heap_unlock_all()
        r = _outcome(e)
    vbhost.result(r)


def run_file(path):
    """Run /boot.py or /main.py if present ('' when absent or done); same outcomes as run()."""
    r = ""
    try:
        os.stat(path)
    except OSError:
        vbhost.result(r)
        return
    try:
        with open(path) as f:
            src = f.read()
        _G["__file__"] = path
        exec(compile(src, path, "exec"), _G)
    except BaseException as e:      # as run()
        _heap_unlock_all()
        r = _outcome(e)
    vbhost.result(r)


def reset(chip):
    """Soft reset (chip False) or chip reset: forget the program's modules and globals, reset machine.

    The emulated AFE and pack are other chips on the board: they keep their state (as the BQ76952 does
    when the ESP32 resets), only the bus side is reset by machine.sim_reboot().
    """
    _heap_unlock_all()
    frozen = _state["frozen"]
    for name in list(sys.modules):
        if name not in frozen:
            del sys.modules[name]
    _G.clear()
    _G["__name__"] = "__main__"
    machine = sys.modules["machine"]
    from simclock import CLOCK
    if CLOCK.simulated:         # a program may have switched the host clock to simulated time
        CLOCK.real()
    exc = _state.pop("pending_reset", None)
    if exc is not None:
        machine.sim_reboot(exc)
    elif chip:
        machine.sim_reboot(machine.PWRON_RESET)
    else:
        machine.sim_reboot(machine.ResetRequested(machine.SOFT_RESET, False))
    # A reset forgets every mount the program made (mpremote's /remote), keeping the flash and /rom.
    try:
        mounts = os.mount()
    except TypeError:
        mounts = ()
    for m in mounts:
        if m[1] not in ("/", "/rom"):
            try:
                os.umount(m[1])
            except OSError:
                pass
    try:
        os.chdir("/")
    except OSError:
        pass
    sys.path[:] = ["", ".frozen", "/rom", "/lib"]
    gc.collect()


def mounted_remote():
    """True while mpremote's `mount` is active (its RemoteFS class is in the REPL's globals)."""
    vbhost.result("1" if "RemoteFS" in _G else "0")
