"""Rejected messages: counted by reason and kept aside with their raw bytes in a SQLite table.

The newest `keep` rejects are kept (older ones are deleted as new ones arrive), so a flood of garbage
cannot fill the disk; the per-reason totals are kept forever. Rejects are buffered and written by
`flush()`, which the bridge calls before it acknowledges the messages, so nothing acked is unrecorded.

    rj = RejectStore("rejects.sqlite", keep=10000)
    rj.add("tag", "bms/bms-0001/up/telemetry", payload, device="bms-0001", detail="bad tag"); rj.flush()

Look at them: `sqlite3 rejects.sqlite "SELECT t_ms, reason, topic, hex(payload) FROM rejects"`.
"""
import sqlite3
import time

from cloud_bridge.registry import create_private

MAX_PAYLOAD = 65536   # bytes kept of one payload (MQTT allows 256 MB; a reject need not)

_DDL = """
CREATE TABLE IF NOT EXISTS rejects(id INTEGER PRIMARY KEY AUTOINCREMENT, t_ms INTEGER NOT NULL,
    reason TEXT NOT NULL, topic TEXT NOT NULL, device TEXT, detail TEXT NOT NULL DEFAULT '',
    size INTEGER NOT NULL, payload BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS reject_totals(reason TEXT PRIMARY KEY, n INTEGER NOT NULL);
"""


class RejectStore:
    def __init__(self, path, keep=10000):
        self.keep = keep
        create_private(path)      # raw frames of other people's traffic: owner only (mode 0600)
        self._db = sqlite3.connect(str(path), timeout=10, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_DDL)
        self._buf = []
        self.counts = {}       # reason -> count since this process started

    def add(self, reason, topic, payload, device=None, detail="", t_ms=None):
        t_ms = int(time.time() * 1000) if t_ms is None else t_ms
        payload = bytes(payload)
        self._buf.append((t_ms, reason, topic[:1024], device, detail[:500], len(payload),
                          payload[:MAX_PAYLOAD]))
        self.counts[reason] = self.counts.get(reason, 0) + 1

    def flush(self):
        if not self._buf:
            return
        buf, self._buf = self._buf, []
        totals = {}
        for row in buf:
            totals[row[1]] = totals.get(row[1], 0) + 1
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            if self.keep:
                db.executemany("INSERT INTO rejects(t_ms, reason, topic, device, detail, size, payload)"
                               " VALUES(?,?,?,?,?,?,?)", buf[-self.keep:])
                db.execute("DELETE FROM rejects WHERE id <= (SELECT max(id) FROM rejects) - ?",
                           (self.keep,))
            db.executemany("INSERT INTO reject_totals(reason, n) VALUES(?, ?) ON CONFLICT(reason)"
                           " DO UPDATE SET n = n + excluded.n", list(totals.items()))
            db.execute("COMMIT")
        except sqlite3.Error:
            db.execute("ROLLBACK")
            raise

    def totals(self):
        """{reason: count} over the life of the file."""
        return dict(self._db.execute("SELECT reason, n FROM reject_totals"))

    def recent(self, limit=100):
        cols = ("t_ms", "reason", "topic", "device", "detail", "size", "payload")
        return [dict(zip(cols, r)) for r in self._db.execute(
            "SELECT %s FROM rejects ORDER BY id DESC LIMIT ?" % ", ".join(cols), (limit,))]

    def close(self):
        self.flush()
        self._db.close()
