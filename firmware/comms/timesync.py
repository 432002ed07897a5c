"""Device time for frames: uptime since boot (always) and the wall clock (once NTP or a command set it).

    ts = TimeSync(ntp=None)            # None: MicroPython's ntptime on the board; tests pass a function
    ts.update(); ts.up_s, ts.up_ms     # uptime now; ts.wall_s is -1 until synced

Frames made before the first sync carry no wall clock (flag WALL clear, docs/frame-format.md): the bridge
places them by boot counter + uptime. Uptime is kept as whole seconds + ms, advanced with ticks_diff on
every update(), so it never needs a long int and survives the 2^30 ms ticks wrap as long as update()
runs at least every few days (the cycle calls it every period).
`ntp()` must return whole seconds since 2000-01-01 UTC (the frame's wall epoch) or raise OSError. The
board's default uses `ntptime.time()` with its socket timeout set from the caller's budget, so a sync
blocks at most that long (plus DNS when `ntptime.host` is a name: configure an IP to avoid it).
"""
import time

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

_UNIX_2000_S = const(946684800)


def board_ntp(timeout_ms, host=None):
    """NTP seconds since 2000 via micropython-lib `ntptime`; OSError on any failure (also when absent)."""
    try:
        import ntptime
    except ImportError:
        raise OSError("ntptime not available")
    if host:
        ntptime.host = host
    ntptime.timeout = timeout_ms / 1000   # ntptime.time() puts this on its UDP socket
    t = ntptime.time()                    # seconds since this port's epoch
    if time.gmtime(0)[0] == 1970:         # ports with a 1970 epoch (reference: derive, never assume)
        t -= _UNIX_2000_S
    return t


class TimeSync:
    def __init__(self, ntp=None, resync_ms=6 * 3600 * 1000, retry_ms=60000, ntp_host=None):
        if resync_ms < 1000 or retry_ms < 100:
            raise ValueError("timesync: resync_ms >= 1000, retry_ms >= 100")
        self._ntp = ntp
        self.ntp_host = ntp_host
        self.resync_ms = resync_ms
        self.retry_ms = retry_ms
        self._last = time.ticks_ms()
        self.up_s = 0
        self.up_ms = 0
        self.synced = False
        self.wall_s = -1          # wall clock at the last update(), -1 before the first sync
        self.wall_ms = 0
        self._base_wall_s = 0     # wall clock at uptime (_base_up_s, _base_up_ms)
        self._base_wall_ms = 0
        self._base_up_s = 0
        self._base_up_ms = 0
        self._attempt_t = 0
        self._attempted = False
        self._sync_up_s = 0       # uptime of the last successful sync
        self.syncs = 0
        self.failures = 0

    def update(self):
        """Advance uptime to now (and the wall clock when synced). Allocates nothing."""
        now = time.ticks_ms()
        d = time.ticks_diff(now, self._last)
        if d > 0:
            self._last = now
            ms = self.up_ms + d
            self.up_s += ms // 1000
            self.up_ms = ms % 1000
        if self.synced:
            # seconds and ms apart: one ms count would pass 2^30 (a long int) 12 days after a sync
            s = self._base_wall_s + (self.up_s - self._base_up_s)
            ms = self._base_wall_ms + self.up_ms - self._base_up_ms
            if ms < 0:
                s -= 1
                ms += 1000
            elif ms >= 1000:
                s += 1
                ms -= 1000
            self.wall_s = s
            self.wall_ms = ms
        return now

    def set_wall(self, wall_s, wall_ms=0):
        """The wall clock is wall_s.wall_ms (since 2000-01-01 UTC) now."""
        if wall_s < 0 or not 0 <= wall_ms <= 999:
            raise ValueError("wall clock must be >= 0 s and 0..999 ms")
        self.update()
        self._base_wall_s = wall_s
        self._base_wall_ms = wall_ms
        self._base_up_s = self.up_s
        self._base_up_ms = self.up_ms
        self._sync_up_s = self.up_s
        self.synced = True
        self.syncs += 1
        self.update()

    def due(self):
        """True when a sync should be tried now (never synced or stale, and not retried too recently)."""
        if self._attempted and time.ticks_diff(time.ticks_ms(), self._attempt_t) < self.retry_ms:
            return False
        if not self.synced:
            return True
        return self.up_s - self._sync_up_s >= self.resync_ms // 1000

    def request(self):
        """Make the next due() true (a time-sync command without a wall clock value)."""
        self._attempted = False
        if self.synced:
            self._sync_up_s = self.up_s - self.resync_ms // 1000

    def sync(self, timeout_ms):
        """One NTP attempt bounded by timeout_ms (the caller's budget). True when the clock was set."""
        self._attempted = True
        self._attempt_t = time.ticks_ms()
        try:
            if self._ntp is not None:
                t = self._ntp()
            else:
                t = board_ntp(timeout_ms, self.ntp_host)
        except OSError:
            self.failures += 1
            return False
        if not isinstance(t, int) or t < 0:
            self.failures += 1
            return False
        self.set_wall(t, 0)
        return True
