"""Small integers kept on flash across reboots, written atomically: the boot counter, the command high-water mark.

    boot = bootcount.next_boot("/comms/boot")       # 1 on a fresh board, +1 on every boot
    hwm = bootcount.IntFile("/comms/cmd_hwm"); hwm.read(); hwm.write(1234)

A value is written to `<path>.tmp` and renamed over `<path>` (os.rename replaces atomically on LittleFS,
reference/micropython-esp32.md), so power loss leaves the old or the new value, never a torn one.
The file holds the decimal value and a check copy ("123 123"); a file that does not read back as two
equal integers counts as missing. Written only on a change (boot, accepted command): flash wears.
"""
import os


def _ensure_dir(path):
    cut = path.rfind("/")
    if cut <= 0:
        return
    cur = ""
    for part in path[:cut].split("/"):
        if not part:
            continue
        cur = cur + "/" + part if (cur or path.startswith("/")) else part
        try:
            os.stat(cur)
        except OSError:
            os.mkdir(cur)


class IntFile:
    """One non-negative integer persisted atomically at `path`."""

    def __init__(self, path):
        if not path:
            raise ValueError("IntFile needs a path")
        self.path = path

    def read(self, default=0):
        """The stored value, or `default` when the file is missing or damaged."""
        try:
            with open(self.path) as f:
                parts = f.read().split()
        except OSError:
            return default
        try:
            if len(parts) == 2 and parts[0] == parts[1]:
                v = int(parts[0])
                if v >= 0:
                    return v
        except ValueError:
            pass
        return default

    def write(self, value):
        """Store value (int >= 0) atomically; OSError when the flash fails."""
        if not isinstance(value, int) or value < 0:
            raise ValueError("IntFile value must be an int >= 0")
        _ensure_dir(self.path)
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d %d\n" % (value, value))
        os.rename(tmp, self.path)


def next_boot(path):
    """Increment and persist the boot counter; return this boot's number (1 on a fresh board).

    If the flash cannot be written the number is still returned (frames keep flowing), but the next
    boot may repeat it: the bridge then takes those frames for replays (docs/comms.md).
    """
    f = IntFile(path)
    boot = f.read(0) + 1
    try:
        f.write(boot)
    except OSError:
        pass
    return boot
