"""Writing points to InfluxDB: batching, retries with backoff, and isolating points the database refuses.

Two back ends take line protocol (nanosecond timestamps, see mapper.to_line):
- `V1Writer`: the 1.x HTTP API, `POST /write?db=...&precision=ns` (InfluxDB 1.x; 2.x/3.x keep it too);
- `V2Writer`: the v2 write API through `influxdb-client` (InfluxDB 2.x, 3.x, Cloud, 1.8+, and servers that
  implement `/api/v2/write`, such as VictoriaMetrics).
`Batcher` collects entries (the lines of one message + a tag the caller chooses), flushes when it holds
`max_points` or its oldest entry is `flush_ms` old, and retries a failed write with exponential backoff
until it succeeds: it never drops data. While it retries, the caller is blocked and acknowledges nothing,
which is the backpressure (the broker stops sending at the MQTT Receive Maximum).

    b = Batcher(V1Writer("http://127.0.0.1:8086", "bms"), max_points=5000, flush_ms=200)
    b.add(lines, tag); if b.due(): results = b.flush()   # [(tag, n_points, None | refusal)]

An entry's lines may also be pieces of line protocol that hold several lines each, joined by "\n" (the
bridge's telemetry path builds one piece per frame: joining 25 pieces per write costs far less than
joining 5,000 lines); `add(pieces, tag, points=n)` then says how many points they hold. Back ends join
the items of `lines` with "\n", so either form gives the same request body.

Writing the same point twice stores it once (same series + timestamp overwrite), so a retry after a
timeout whose write did in fact land is harmless.
"""
import base64
import http.client
import random
import time
import urllib.parse


class WriteError(Exception):
    """A write failed. permanent=True: the database refused these points and will refuse them again
    (bad line protocol, field type conflict); False: try again later (down, timeout, 5xx, auth)."""

    def __init__(self, msg, permanent=False, status=None):
        Exception.__init__(self, msg)
        self.permanent = permanent
        self.status = status


class Stopped(Exception):
    """flush() gave up because the bridge is shutting down; nothing was acknowledged."""


def _status_error(status, body):
    text = body[:300].decode("utf-8", "replace") if isinstance(body, bytes) else str(body)[:300]
    # 400 bad points / partial write, 413 too large (split and retry), 422 (v2 unprocessable):
    # retrying the same body cannot help. 401/403/404 are configuration trouble an operator fixes
    # while we wait; 429/5xx are overload or outage.
    return WriteError("HTTP %d: %s" % (status, text), permanent=status in (400, 413, 422), status=status)


class V1Writer:
    def __init__(self, url, database, username="", password="", retention_policy="", timeout_s=10.0):
        u = urllib.parse.urlsplit(url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError("influx url must be http(s)://host[:port], got %r" % url)
        self._https = u.scheme == "https"
        self._host = u.hostname
        self._port = u.port or (443 if self._https else 80)
        self._base = u.path.rstrip("/")
        q = {"db": database, "precision": "ns"}
        if retention_policy:
            q["rp"] = retention_policy
        self._path = "%s/write?%s" % (self._base, urllib.parse.urlencode(q))
        self._headers = {"Content-Type": "text/plain; charset=utf-8"}
        if username:
            tok = base64.b64encode(("%s:%s" % (username, password)).encode()).decode()
            self._headers["Authorization"] = "Basic " + tok
        self.timeout_s = timeout_s
        self._conn = None

    def _connection(self):
        if self._conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            self._conn = cls(self._host, self._port, timeout=self.timeout_s)
        return self._conn

    def write(self, lines):
        body = ("\n".join(lines) + "\n").encode("utf-8")
        try:
            conn = self._connection()
            conn.request("POST", self._path, body=body, headers=self._headers)
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException) as e:
            self.close()
            raise WriteError("%s: %s" % (type(e).__name__, e)) from None
        if resp.status == 204:
            return
        if resp.will_close:
            self.close()
        raise _status_error(resp.status, data)

    def query(self, q, database=None):
        """InfluxQL through /query (tests and tools); returns the decoded JSON."""
        import json
        params = {"q": q}
        if database:
            params["db"] = database
        conn = self._connection()
        try:
            conn.request("POST", "%s/query?%s" % (self._base, urllib.parse.urlencode(params)),
                         headers=self._headers)
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException):
            self.close()
            raise
        if resp.status != 200:
            raise WriteError("query HTTP %d: %s" % (resp.status, data[:300]), status=resp.status)
        return json.loads(data)

    def close(self):
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class V2Writer:
    def __init__(self, url, bucket, org="", token="", timeout_s=10.0):
        from influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS
        # retries=False: influxdb-client must not retry behind our back; Batcher does, visibly.
        self._client = InfluxDBClient(url=url, token=token or None, org=org or None,
                                      timeout=int(timeout_s * 1000), retries=False)
        self._api = self._client.write_api(write_options=SYNCHRONOUS)
        self.bucket = bucket
        self.org = org

    def write(self, lines):
        from influxdb_client import WritePrecision
        from influxdb_client.rest import ApiException
        try:
            self._api.write(bucket=self.bucket, org=self.org, record="\n".join(lines),
                            write_precision=WritePrecision.NS)
        except ApiException as e:
            raise _status_error(e.status or 0, e.body or e.reason or "") from None
        except Exception as e:   # urllib3 raises a family of its own for connection trouble
            if isinstance(e, (OSError, ValueError)) or type(e).__module__.startswith("urllib3"):
                raise WriteError("%s: %s" % (type(e).__name__, e)) from None
            raise

    def close(self):
        self._client.close()


def make_writer(influx):
    """The back end for settings.InfluxSettings."""
    if influx.api == "v1":
        return V1Writer(influx.url, influx.database, influx.username, influx.password,
                        influx.retention_policy, influx.timeout_s)
    return V2Writer(influx.url, influx.bucket, influx.org, influx.token, influx.timeout_s)


class Batcher:
    def __init__(self, backend, max_points=5000, flush_ms=200, retry_min_s=0.2, retry_max_s=10.0,
                 metrics=None, should_stop=None, log=None, clock=time.monotonic, sleep=time.sleep):
        self.backend = backend
        self.max_points = max_points
        self.flush_ms = flush_ms
        self.retry_min_s = retry_min_s
        self.retry_max_s = retry_max_s
        self.metrics = metrics
        self.should_stop = should_stop or (lambda: False)
        self.log = log
        self._clock = clock
        self._sleep = sleep
        self._entries = []      # (lines, tag)
        self.points = 0
        self._oldest = None

    def add(self, lines, tag, points=None):
        """lines: line protocol (or multi-line pieces, then points = how many points they hold)."""
        if self._oldest is None:
            self._oldest = self._clock()
        if points is None:
            points = len(lines)
        self._entries.append((lines, tag, points))
        self.points += points

    def __len__(self):
        return len(self._entries)

    def due(self):
        if not self._entries:
            return False
        return self.points >= self.max_points or \
            (self._clock() - self._oldest) * 1000 >= self.flush_ms

    def seconds_until_due(self):
        if not self._entries:
            return None
        return max(0.0, self.flush_ms / 1000.0 - (self._clock() - self._oldest))

    def take(self):
        """Hand over the collected entries (the batcher starts empty again)."""
        entries, self._entries = self._entries, []
        self.points = 0
        self._oldest = None
        return entries

    def write(self, entries, backend=None):
        """Write entries from take(); [(tag, n_points, None or refusal text)] in add order.

        Blocks, retrying, until the database took them; raises Stopped when should_stop() turns
        true (then nothing was confirmed: the caller must not acknowledge those messages).
        May run in another thread than add()/take(); several threads may write at once, each with
        a back end of its own (`backend`, default the one given at construction)."""
        if not entries:
            return []
        refused = {}
        self._write_entries(entries, refused, backend or self.backend)
        return [(tag, points, refused.get(i)) for i, (_, tag, points) in enumerate(entries)]

    def flush(self):
        """take() and write() in one go."""
        return self.write(self.take())

    def _write_entries(self, entries, refused, backend, offset=0):
        lines = [ln for e in entries for ln in e[0]]
        if not lines:
            return
        err = self._write_with_retry(lines, sum(e[2] for e in entries), backend)
        if err is None:
            return
        # Permanent refusal: split to find the messages whose points the database refuses; the
        # others are (re)written, which is harmless because writes are idempotent.
        if len(entries) == 1:
            refused[offset] = str(err)
            return
        half = len(entries) // 2
        self._write_entries(entries[:half], refused, backend, offset)
        self._write_entries(entries[half:], refused, backend, offset + half)

    def _write_with_retry(self, lines, points, backend):
        delay = self.retry_min_s
        while True:
            t0 = self._clock()
            try:
                backend.write(lines)
            except WriteError as e:
                if self.metrics:
                    self.metrics.write_failed(e)
                if e.permanent:
                    return e
                if self.log:
                    self.log.warning("write failed, retrying", extra={"error": str(e)[:300],
                                                                      "retry_in_s": round(delay, 3),
                                                                      "points": points})
                self._wait(delay)
                delay = min(self.retry_max_s, delay * 2)
                continue
            if self.metrics:
                self.metrics.write_ok(points, (self._clock() - t0) * 1000.0)
            return None

    def _wait(self, delay_s):
        # jitter so several bridge instances do not hammer a recovering database in step
        end = self._clock() + delay_s * (0.75 + 0.5 * random.random())
        while True:
            if self.should_stop():
                raise Stopped()
            left = end - self._clock()
            if left <= 0:
                return
            self._sleep(min(left, 0.1))
