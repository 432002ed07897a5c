"""The device registry: which boards exist, their keys, where they are, and what they last said.

One SQLite file (WAL mode, so the bridge and the `cloud-bridge devices ...` CLI can use it at the same
time), created with mode 0600 because it holds the devices' HMAC keys. The registry feeds the tags of every point (`docs/influx-schema.md`), the per-device HMAC keys
the verifier needs, and the replay window that survives a restart.

    reg = Registry("/var/lib/cloud-bridge/registry.sqlite")
    reg.add_device("bms-0001", key=bytes(32), site="plant-a", group="forklifts", board="esp32-devkit")

Schema (version 1; `PRAGMA user_version` holds the version):

    sites(site_id TEXT PRIMARY KEY, name TEXT NOT NULL DEFAULT '', created_ms INTEGER NOT NULL)
    groups(group_id TEXT PRIMARY KEY, name TEXT NOT NULL DEFAULT '', created_ms INTEGER NOT NULL)
    devices(
        device_id    TEXT PRIMARY KEY,    -- [A-Za-z0-9_-]{1,64}; the <device> of bms/<device>/...
        name         TEXT NOT NULL DEFAULT '',
        site_id      TEXT REFERENCES sites(site_id),    -- NULL: tag site='-'
        group_id     TEXT REFERENCES groups(group_id),  -- NULL: tag group='-'
        board        TEXT,                -- boards/<board>.json name; NULL: tag board='-'
        hmac_key     BLOB NOT NULL,       -- per-device HMAC-SHA256 key, 16..64 bytes
        key_version  INTEGER NOT NULL DEFAULT 1,  -- bumped on every key rotation
        enabled      INTEGER NOT NULL DEFAULT 1,  -- 0: frames rejected as unknown_device
        fw_version   TEXT,                -- last reported by a status frame
        config_hash  TEXT,                -- last reported applied-config hash (hex)
        first_seen_ms INTEGER,            -- bridge clock (Unix ms) of the first accepted frame
        last_seen_ms  INTEGER,            -- bridge clock (Unix ms) of the newest accepted frame
        online       INTEGER,             -- 1 online, 0 offline, NULL never heard of
        online_source TEXT,               -- 'status' | 'will' | 'silence' | 'traffic'
        online_ms    INTEGER,             -- bridge clock when `online` last changed
        created_ms   INTEGER NOT NULL)
    replay(                               -- the verifier's sequence window, one row per device
        device_id TEXT PRIMARY KEY REFERENCES devices(device_id) ON DELETE CASCADE,
        boot      INTEGER NOT NULL,       -- boot counter of the newest accepted frame
        high_seq  INTEGER NOT NULL,       -- highest sequence number accepted in that boot
        mask      INTEGER NOT NULL)       -- bit i set: high_seq - i was accepted (window of 64)
    anchors(                              -- time base of a board without wall clock, per boot
        device_id TEXT NOT NULL, boot INTEGER NOT NULL,
        boot_unix_ms INTEGER NOT NULL,    -- Unix ms at uptime 0, fixed by the first frame heard
        PRIMARY KEY(device_id, boot))

A frame without wall clock (flag WALL clear, see docs/frame-format.md) is placed in time by the anchor of
its (device, boot): the first frame of that boot fixes boot_unix_ms = receive time - uptime, and every
later frame (and every redelivery) of that boot reuses it, so its points always get the same timestamps.

Online/offline: a status frame (retained, `bms/<device>/up/status`) sets online=1 with source
'status' (or 0 when the frame says the board goes offline), the broker's last will sets online=0 with
source 'will', and `mark_silent()` sets online=0 with source 'silence' for boards not seen for a while.
A board marked offline by silence that is heard again (any accepted frame received after it was marked)
is set back to online=1 with source 'traffic' by `record_seen()`: a board that keeps its MQTT session
sends no new status frame, so without this it would stay offline while it streams. A last will is not
undone by traffic: a board that reconnects sends a status frame first.
Timestamps here are the bridge's clock (Unix ms): they describe when the bridge heard something, which
is what an operator asks ("when did we last hear from it?").
"""
import os
import re
import sqlite3
import time

SCHEMA_VERSION = 1
DEVICE_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# Site/group/board ids become tag values: keep them free of line-protocol escapes and spaces.
TAG_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
KEY_MIN_BYTES = 16
KEY_MAX_BYTES = 64
TAG_UNSET = "-"
_U64 = (1 << 64) - 1
_I64_MAX = (1 << 63) - 1
STATUS_SOURCES = ("status", "will", "silence", "traffic")

_DDL = """
CREATE TABLE IF NOT EXISTS sites(site_id TEXT PRIMARY KEY, name TEXT NOT NULL DEFAULT '',
    created_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS groups(group_id TEXT PRIMARY KEY, name TEXT NOT NULL DEFAULT '',
    created_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS devices(
    device_id TEXT PRIMARY KEY, name TEXT NOT NULL DEFAULT '',
    site_id TEXT REFERENCES sites(site_id), group_id TEXT REFERENCES groups(group_id),
    board TEXT, hmac_key BLOB NOT NULL, key_version INTEGER NOT NULL DEFAULT 1,
    enabled INTEGER NOT NULL DEFAULT 1, fw_version TEXT, config_hash TEXT,
    first_seen_ms INTEGER, last_seen_ms INTEGER, online INTEGER, online_source TEXT,
    online_ms INTEGER, created_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS replay(
    device_id TEXT PRIMARY KEY REFERENCES devices(device_id) ON DELETE CASCADE,
    boot INTEGER NOT NULL, high_seq INTEGER NOT NULL, mask INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS anchors(device_id TEXT NOT NULL, boot INTEGER NOT NULL,
    boot_unix_ms INTEGER NOT NULL, PRIMARY KEY(device_id, boot));
"""

_DEVICE_COLS = ("device_id", "name", "site_id", "group_id", "board", "hmac_key", "key_version",
                "enabled", "fw_version", "config_hash", "first_seen_ms", "last_seen_ms", "online",
                "online_source", "online_ms", "created_ms")
_EDITABLE = ("name", "site_id", "group_id", "board", "enabled")


def now_ms():
    return int(time.time() * 1000)


def create_private(path):
    """Create the SQLite file `path` with mode 0600 if it does not exist yet (SQLite would make it
    0644 under the usual umask; its -wal and -shm files take the database file's mode). For files
    holding keys or raw frames. An existing file keeps its mode; ':memory:' and URIs are left alone."""
    path = str(path)
    if path == ":memory:" or path.startswith("file:") or not path:
        return
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass


def check_device_id(device_id):
    if not isinstance(device_id, str) or not DEVICE_ID_RE.match(device_id):
        raise ValueError("device id must match %s, got %r" % (DEVICE_ID_RE.pattern, device_id))
    return device_id


def _check_tag_id(what, value):
    if value is None:
        return None
    if not isinstance(value, str) or not TAG_ID_RE.match(value):
        raise ValueError("%s must match %s, got %r" % (what, TAG_ID_RE.pattern, value))
    return value


def _check_key(key):
    if not isinstance(key, (bytes, bytearray)) or not KEY_MIN_BYTES <= len(key) <= KEY_MAX_BYTES:
        raise ValueError("hmac key must be %d..%d bytes" % (KEY_MIN_BYTES, KEY_MAX_BYTES))
    return bytes(key)


class Registry:
    """SQLite device registry. One instance per thread (sqlite3 connections are not shared)."""

    def __init__(self, path, timeout_s=10.0):
        self.path = str(path)
        self._tx_depth = 0       # nesting of transaction() / _tx() blocks
        create_private(self.path)   # it holds every device's HMAC key
        self._db = sqlite3.connect(self.path, timeout=timeout_s, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA busy_timeout=%d" % int(timeout_s * 1000))
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise ValueError("registry %s has schema %d, this bridge knows %d"
                             % (self.path, version, SCHEMA_VERSION))
        self._db.executescript(_DDL)
        self._db.execute("PRAGMA user_version=%d" % SCHEMA_VERSION)

    def close(self):
        self._db.close()

    # --- sites and groups ---
    def add_site(self, site_id, name=""):
        _check_tag_id("site", site_id)
        self._db.execute("INSERT OR IGNORE INTO sites(site_id, name, created_ms) VALUES(?,?,?)",
                         (site_id, name, now_ms()))

    def add_group(self, group_id, name=""):
        _check_tag_id("group", group_id)
        self._db.execute("INSERT OR IGNORE INTO groups(group_id, name, created_ms) VALUES(?,?,?)",
                         (group_id, name, now_ms()))

    def sites(self):
        return [dict(site_id=r[0], name=r[1]) for r in
                self._db.execute("SELECT site_id, name FROM sites ORDER BY site_id")]

    def groups(self):
        return [dict(group_id=r[0], name=r[1]) for r in
                self._db.execute("SELECT group_id, name FROM groups ORDER BY group_id")]

    # --- devices ---
    def add_device(self, device_id, key, name="", site=None, group=None, board=None):
        """Register a device; a site or group that does not exist yet is created."""
        check_device_id(device_id)
        key = _check_key(key)
        _check_tag_id("site", site)
        _check_tag_id("group", group)
        _check_tag_id("board", board)
        if site is not None:
            self.add_site(site)
        if group is not None:
            self.add_group(group)
        try:
            self._db.execute(
                "INSERT INTO devices(device_id, name, site_id, group_id, board, hmac_key, created_ms)"
                " VALUES(?,?,?,?,?,?,?)", (device_id, name, site, group, board, key, now_ms()))
        except sqlite3.IntegrityError:
            raise ValueError("device %s already exists" % device_id) from None

    def update_device(self, device_id, **changes):
        """Change name/site_id/group_id/board/enabled. Unknown keys raise ValueError."""
        bad = [k for k in changes if k not in _EDITABLE]
        if bad:
            raise ValueError("cannot change %s (editable: %s)" % (", ".join(bad), ", ".join(_EDITABLE)))
        if "site_id" in changes:
            _check_tag_id("site", changes["site_id"])
            if changes["site_id"] is not None:
                self.add_site(changes["site_id"])
        if "group_id" in changes:
            _check_tag_id("group", changes["group_id"])
            if changes["group_id"] is not None:
                self.add_group(changes["group_id"])
        if "board" in changes:
            _check_tag_id("board", changes["board"])
        if not changes:
            return
        cols = ", ".join("%s=?" % k for k in changes)
        cur = self._db.execute("UPDATE devices SET %s WHERE device_id=?" % cols,
                               tuple(changes.values()) + (device_id,))
        if cur.rowcount != 1:
            raise ValueError("no device %s" % device_id)

    def rotate_key(self, device_id, key):
        key = _check_key(key)
        cur = self._db.execute(
            "UPDATE devices SET hmac_key=?, key_version=key_version+1 WHERE device_id=?",
            (key, device_id))
        if cur.rowcount != 1:
            raise ValueError("no device %s" % device_id)

    def remove_device(self, device_id):
        cur = self._db.execute("DELETE FROM devices WHERE device_id=?", (device_id,))
        return cur.rowcount == 1

    def get(self, device_id):
        """The device row as a dict, or None."""
        row = self._db.execute("SELECT %s FROM devices WHERE device_id=?" % ", ".join(_DEVICE_COLS),
                               (device_id,)).fetchone()
        return dict(zip(_DEVICE_COLS, row)) if row else None

    def devices(self, site=None, group=None):
        sql = "SELECT %s FROM devices" % ", ".join(_DEVICE_COLS)
        where, args = [], []
        if site is not None:
            where.append("site_id=?")
            args.append(site)
        if group is not None:
            where.append("group_id=?")
            args.append(group)
        if where:
            sql += " WHERE " + " AND ".join(where)
        return [dict(zip(_DEVICE_COLS, r)) for r in self._db.execute(sql + " ORDER BY device_id", args)]

    def key(self, device_id):
        """(hmac_key, tags) for an enabled device, else None. Tags as in docs/influx-schema.md."""
        row = self._db.execute(
            "SELECT hmac_key, site_id, group_id, board FROM devices WHERE device_id=? AND enabled=1",
            (device_id,)).fetchone()
        if row is None:
            return None
        return bytes(row[0]), self._tags(device_id, row[1], row[2], row[3])

    def tags(self, device_id):
        row = self._db.execute("SELECT site_id, group_id, board FROM devices WHERE device_id=?",
                               (device_id,)).fetchone()
        if row is None:
            return None
        return self._tags(device_id, *row)

    @staticmethod
    def _tags(device_id, site, group, board):
        return {"device": device_id, "site": site or TAG_UNSET, "group": group or TAG_UNSET,
                "board": board or TAG_UNSET}

    # --- what the bridge heard ---
    def record_seen(self, seen):
        """seen: {device_id: bridge_ms}. Updates first/last seen in one transaction.

        A device that silence had marked offline and that is heard again (a frame received after it
        was marked) is online again, source 'traffic': a board streaming on the same MQTT session
        sends no new status frame. Returns [(device_id, bridge_ms)] of those devices."""
        if not seen:
            return []
        items = [(t, t, d) for d, t in seen.items()]
        with self._tx():
            self._db.executemany(
                "UPDATE devices SET last_seen_ms=max(coalesce(last_seen_ms, 0), ?),"
                " first_seen_ms=coalesce(first_seen_ms, ?) WHERE device_id=?", items)
            ids = list(seen)
            marked = {}                  # device -> when silence marked it offline
            for i in range(0, len(ids), 500):
                part = ids[i:i + 500]
                marked.update(self._db.execute(
                    "SELECT device_id, coalesce(online_ms, 0) FROM devices WHERE online=0 AND"
                    " online_source='silence' AND device_id IN (%s)" % ",".join("?" * len(part)), part))
            back = [(d, seen[d]) for d in marked if marked[d] < seen[d]]
            self._db.executemany(
                "UPDATE devices SET online=1, online_source='traffic', online_ms=? WHERE device_id=?",
                [(t, d) for d, t in back])
        return back

    def set_status(self, device_id, online, source, t_ms=None, fw_version=None, config_hash=None):
        """Record online/offline. Returns True when the online state changed."""
        if source not in STATUS_SOURCES:
            raise ValueError("status source must be one of %s, got %r"
                             % (", ".join(STATUS_SOURCES), source))
        t_ms = now_ms() if t_ms is None else t_ms
        with self._tx():
            row = self._db.execute("SELECT online FROM devices WHERE device_id=?",
                                   (device_id,)).fetchone()
            if row is None:
                return False
            changed = row[0] != (1 if online else 0)
            self._db.execute(
                "UPDATE devices SET online=?, online_source=?, online_ms=CASE WHEN ? THEN ? ELSE"
                " online_ms END, fw_version=coalesce(?, fw_version),"
                " config_hash=coalesce(?, config_hash) WHERE device_id=?",
                (1 if online else 0, source, changed, t_ms, fw_version, config_hash, device_id))
        return changed

    def mark_silent(self, offline_after_ms, t_ms=None, heard_until_ms=None):
        """Mark online devices not seen for offline_after_ms as offline; returns their ids.

        heard_until_ms: how far the bridge's record of what it heard is complete (default t_ms); a
        bridge still working through older messages passes the receive time of the oldest, so a
        device is not called silent for frames the bridge has not recorded yet."""
        t_ms = now_ms() if t_ms is None else t_ms
        heard_until_ms = t_ms if heard_until_ms is None else min(t_ms, heard_until_ms)
        with self._tx():
            ids = [r[0] for r in self._db.execute(
                "SELECT device_id FROM devices WHERE online=1 AND coalesce(last_seen_ms, 0) < ?",
                (heard_until_ms - offline_after_ms,))]
            self._db.executemany(
                "UPDATE devices SET online=0, online_source='silence', online_ms=? WHERE device_id=?",
                [(t_ms, d) for d in ids])
        return ids

    # --- replay window (cloud_bridge/verify.py) ---
    def load_window(self, device_id):
        """(boot, high_seq, mask) or None when the device never had a frame accepted."""
        row = self._db.execute("SELECT boot, high_seq, mask FROM replay WHERE device_id=?",
                               (device_id,)).fetchone()
        if row is None:
            return None
        return (row[0], row[1], row[2] & _U64)      # stored as a signed 64-bit INTEGER

    def save_windows(self, windows, merge=None):
        """windows: {device_id: (boot, high_seq, mask)}; one transaction. Returns {device_id: window}
        as stored.

        merge(stored, new) -> window combines with what another bridge instance may have stored
        meanwhile (cloud_bridge.verify.merge_window); without it the new window replaces the old.
        """
        if not windows:
            return {}
        with self._tx():
            if merge is not None:
                stored = self._load_windows(list(windows))
                merged = {}
                for d, w in windows.items():
                    old = stored.get(d)
                    merged[d] = merge(old, w) if old else w
                windows = merged
            self._db.executemany(
                "INSERT INTO replay(device_id, boot, high_seq, mask) VALUES(?,?,?,?)"
                " ON CONFLICT(device_id) DO UPDATE SET boot=excluded.boot,"
                " high_seq=excluded.high_seq, mask=excluded.mask",
                [(d, b, h, m - (1 << 64) if m > _I64_MAX else m) for d, (b, h, m) in windows.items()])
        return windows

    def reset_window(self, device_id):
        """Forget a device's replay window and time anchors, so its next frame is accepted whatever
        its boot counter: for a board that lost its boot counter (its frames are all refused as
        `replay`, "boot N older than M"). Returns False when there is no such device. A running
        bridge drops its cached window within WINDOW_REFRESH_S (cloud_bridge/verify.py), but keeps
        the time anchors it cached in memory: restart it, so that frames without wall clock of a
        boot number it saw before are not placed by the old boot's anchor."""
        with self._tx():
            if self._db.execute("SELECT 1 FROM devices WHERE device_id=?", (device_id,)).fetchone() is None:
                return False
            self._db.execute("DELETE FROM replay WHERE device_id=?", (device_id,))
            self._db.execute("DELETE FROM anchors WHERE device_id=?", (device_id,))
        return True

    def _load_windows(self, device_ids, chunk=500):
        """{device_id: window} of those that have one (as load_window), in few queries."""
        out = {}
        for i in range(0, len(device_ids), chunk):
            part = device_ids[i:i + chunk]
            for d, b, h, m in self._db.execute(
                    "SELECT device_id, boot, high_seq, mask FROM replay WHERE device_id IN (%s)"
                    % ",".join("?" * len(part)), part):
                out[d] = (b, h, m & _U64)
        return out

    def data_version(self):
        """SQLite's PRAGMA data_version: changes when another connection committed to the file
        (another bridge instance, the CLI), not on this connection's own commits."""
        return self._db.execute("PRAGMA data_version").fetchone()[0]

    def anchor(self, device_id, boot, candidate_ms):
        """Unix ms at uptime 0 of (device, boot): the stored one, else candidate_ms (then stored)."""
        self._db.execute("INSERT OR IGNORE INTO anchors(device_id, boot, boot_unix_ms) VALUES(?,?,?)",
                         (device_id, boot, candidate_ms))
        return self._db.execute("SELECT boot_unix_ms FROM anchors WHERE device_id=? AND boot=?",
                                (device_id, boot)).fetchone()[0]

    def set_anchor(self, device_id, boot, unix_ms):
        """Store (device, boot)'s exact anchor, replacing an estimate (a frame with wall clock gives it)."""
        self._db.execute("INSERT OR REPLACE INTO anchors(device_id, boot, boot_unix_ms) VALUES(?,?,?)",
                         (device_id, boot, unix_ms))

    def transaction(self):
        """One transaction around several calls (`with reg.transaction(): ...`): the methods that
        write join it instead of committing on their own, so a batch of them costs one commit (one
        WAL sync). Everything in it is rolled back if the block raises."""
        return _Tx(self)

    def _tx(self):
        return _Tx(self)


class _Tx:
    """BEGIN IMMEDIATE ... COMMIT/ROLLBACK (the connection runs in autocommit mode); nested ones join
    the outermost."""

    def __init__(self, reg):
        self._reg = reg

    def __enter__(self):
        if self._reg._tx_depth == 0:
            self._reg._db.execute("BEGIN IMMEDIATE")
        self._reg._tx_depth += 1
        return self._reg._db

    def __exit__(self, exc_type, exc, tb):
        self._reg._tx_depth -= 1
        if self._reg._tx_depth == 0:
            self._reg._db.execute("ROLLBACK" if exc_type else "COMMIT")
        return False
