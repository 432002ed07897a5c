"""The bridge's own metrics: counters since start plus per-interval write statistics.

`points()` turns them into a `bridge` point (schema in docs/influx-schema.md) that the bridge writes with
the data; `summary()` is the same as a dict for the periodic log line.

    m = Metrics(instance="host:1234"); m.frames_in += 1; m.write_ok(points=120, latency_ms=4.2)
    m.points(t_ms) -> [("bridge", {"instance": ...}, {...}, t_ns)];  m.end_interval()

write_ok() and write_failed() may be called from several writer threads at once (a lock keeps their
lists and counters whole); everything else is the bridge's main thread.
"""
import threading


class Metrics:
    def __init__(self, instance):
        self.instance = instance
        self.frames_in = 0
        self.frames_stored = 0
        self.receipts_sent = 0      # delivery receipts published to boards
        self.points_stored = 0
        self.rejected = {}          # reason -> count since start
        self.write_retries = 0
        self.queue_depth = 0
        self.lag_ms = 0             # of the last interval (the service sets it: Bridge._interval_lag_ms)
        self.frames_missing = 0     # seq gaps not filled (Verifier.missing()), set by the service
        self._lat = []              # write latency (ms) in this interval
        self._batch = []            # points per successful write in this interval
        self._lock = threading.Lock()

    def reject(self, reason):
        self.rejected[reason] = self.rejected.get(reason, 0) + 1

    def write_ok(self, points, latency_ms):
        with self._lock:
            self._lat.append(latency_ms)
            self._batch.append(points)
            if len(self._lat) > 10000:      # bound memory if nobody ends the interval
                del self._lat[:5000], self._batch[:5000]

    def write_failed(self, err):
        with self._lock:
            self.write_retries += 1

    def summary(self):
        with self._lock:
            lat = sorted(self._lat)
            batch = list(self._batch)
        out = {"frames_in": self.frames_in, "frames_stored": self.frames_stored,
               "points_stored": self.points_stored, "rejected": sum(self.rejected.values()),
               "receipts_sent": self.receipts_sent,
               "write_retries": self.write_retries, "queue_depth": self.queue_depth,
               "lag_ms": self.lag_ms, "frames_missing": self.frames_missing, "writes": len(lat)}
        for reason, n in sorted(self.rejected.items()):
            out["rejected_" + reason] = n
        if lat:
            out["write_ms_p50"] = round(lat[len(lat) // 2], 3)
            out["write_ms_max"] = round(lat[-1], 3)
            out["batch_points_avg"] = round(sum(batch) / len(batch), 1)
            out["batch_points_max"] = max(batch)
        return out

    def points(self, t_ms):
        fields = self.summary()
        fields.pop("writes")
        for k in ("write_ms_p50", "write_ms_max", "batch_points_avg"):
            if k in fields:
                fields[k] = float(fields[k])
        return [("bridge", {"instance": self.instance}, fields, t_ms * 1000000)]

    def end_interval(self):
        with self._lock:
            self._lat = []
            self._batch = []
