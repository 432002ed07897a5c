"""Real time-series servers for tests: InfluxDB 1.x (`influxd`) and VictoriaMetrics, on loopback.

Each server gets free loopback ports and a temporary folder with a generated config; `start()` waits until
it answers, `stop()` ends it (SIGTERM), `kill()` with SIGKILL, and `start()` again brings it back on the
same ports with the same data (for outage drills).

    db = InfluxDB1(tmp_path); db.start(); db.query("SHOW DATABASES"); db.stop()
    db = InfluxDB1(tmp_path, auth=True).start()     # logins required; db.query() logs in as the admin
    db.create_database("bms"); db.create_user("writer", "pw", grant=("WRITE", "bms"))
    vm = VictoriaMetrics(tmp_path); vm.start(); vm.export('{__name__="pack_stack_mv"}'); vm.stop()

InfluxDB 1.x is Debian's `influxd` (1.6): its config binds the HTTP API and the RPC service
(`bind-address`, used by backup/restore) to loopback, keeps meta/data/wal in the folder, and turns off
usage reporting, the internal monitor store and every listener we do not need.
VictoriaMetrics (Debian `victoria-metrics`) accepts line protocol on `/write` and `/api/v2/write`. It
names a series `<measurement>_<field>` with the tags as labels (a `db` label too when the request named
a database), and with `-dedup.minScrapeInterval=1ms` it keeps one sample per series and millisecond,
which is InfluxDB's "same series + timestamp overwrite".
"""
import base64
import json
import os
import shutil
import signal
from tools.testservers.ports import free_port
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request


def _http(method, url, body=None, timeout=5.0, headers=None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class _Server:
    name = "server"
    binary = None
    ready_timeout_s = 30.0

    def __init__(self, folder):
        self.folder = os.path.join(str(folder), self.name)
        os.makedirs(self.folder, exist_ok=True)
        self.host = "127.0.0.1"
        self.port = free_port()
        self.proc = None
        self._log = None

    @property
    def url(self):
        return "http://%s:%d" % (self.host, self.port)

    def _argv(self):
        raise NotImplementedError

    def _ready(self):
        raise NotImplementedError

    def start(self):
        if self.proc is not None and self.proc.poll() is None:
            return self
        if shutil.which(self.binary) is None:
            raise OSError("%s not installed (Debian package)" % self.binary)
        self._log = open(os.path.join(self.folder, "server.log"), "ab")
        self.proc = subprocess.Popen(self._argv(), stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=self.folder)
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise OSError("%s exited with %s; log: %s" % (self.name, self.proc.returncode,
                                                             self.log_tail()))
            try:
                if self._ready():
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        self.kill()
        raise OSError("%s did not answer within %.0f s; log: %s" % (self.name, self.ready_timeout_s,
                                                                   self.log_tail()))

    def log_tail(self, n=2000):
        try:
            with open(os.path.join(self.folder, "server.log"), "rb") as f:
                return f.read()[-n:].decode("utf-8", "replace")
        except OSError:
            return ""

    def _end(self, sig, timeout_s=15.0):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=timeout_s)
        self.proc = None
        if self._log:
            self._log.close()
            self._log = None

    def stop(self):
        self._end(signal.SIGTERM)

    def kill(self):
        self._end(signal.SIGKILL)

    def restart(self):
        self.stop()
        return self.start()

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None


class InfluxDB1(_Server):
    name = "influxdb1"
    binary = "influxd"

    def __init__(self, folder, auth=False, admin=("admin", "admin-password")):
        """auth: HTTP authentication on (`auth-enabled`); the first start() creates `admin` (name,
        password) with all privileges, as InfluxDB allows while no user exists, and query() then logs in
        as that admin."""
        _Server.__init__(self, folder)
        self.auth = auth
        self.admin = admin
        self._admin_made = False
        self.rpc_port = free_port()
        self.config = os.path.join(self.folder, "influxdb.conf")
        d = self.folder
        with open(self.config, "w") as f:
            f.write(
                'reporting-disabled = true\n'
                'bind-address = "127.0.0.1:%d"\n'
                '[meta]\n  dir = "%s/meta"\n  logging-enabled = false\n'
                '[data]\n  dir = "%s/data"\n  wal-dir = "%s/wal"\n  query-log-enabled = false\n'
                '  trace-logging-enabled = false\n'
                '[coordinator]\n  log-queries-after = "0s"\n'
                '[retention]\n  enabled = false\n'
                '[monitor]\n  store-enabled = false\n'
                '[subscriber]\n  enabled = false\n'
                '[continuous_queries]\n  enabled = false\n'
                '[http]\n  enabled = true\n  bind-address = "127.0.0.1:%d"\n  auth-enabled = %s\n'
                '  log-enabled = false\n  write-tracing = false\n  pprof-enabled = false\n'
                '[logging]\n  level = "warn"\n  suppress-logo = true\n'
                % (self.rpc_port, d, d, d, self.port, "true" if auth else "false"))

    def _argv(self):
        return ["influxd", "run", "-config", self.config]

    def _ready(self):
        status, _ = _http("GET", self.url + "/ping", timeout=1.0)
        return status == 204

    def start(self):
        _Server.start(self)
        if self.auth and not self._admin_made:
            # no user yet: InfluxDB accepts this one statement without a login
            self._query_as(None, "CREATE USER \"%s\" WITH PASSWORD '%s' WITH ALL PRIVILEGES" % self.admin)
            self._admin_made = True
        return self

    def create_user(self, name, password, grant=None):
        """A user without admin rights; grant=(privilege, database), e.g. ("WRITE", "bms")."""
        self.query("CREATE USER \"%s\" WITH PASSWORD '%s'" % (name, password))
        if grant:
            self.query('GRANT %s ON "%s" TO "%s"' % (grant[0], grant[1], name))

    def query(self, q, db=None, epoch="ns"):
        """InfluxQL; returns the decoded JSON (raises OSError on an HTTP error)."""
        return self._query_as(self.admin if self.auth else None, q, db, epoch)

    def _query_as(self, login, q, db=None, epoch="ns"):
        params = {"q": q, "epoch": epoch}
        if db:
            params["db"] = db
        headers = {}
        if login:
            token = base64.b64encode(("%s:%s" % login).encode()).decode()
            headers["Authorization"] = "Basic " + token
        status, body = _http("POST", self.url + "/query?" + urllib.parse.urlencode(params),
                             headers=headers)
        if status != 200:
            raise OSError("query %r: HTTP %d %s" % (q, status, body[:300]))
        return json.loads(body)

    def create_database(self, db):
        self.query('CREATE DATABASE "%s"' % db)

    def count(self, db, measurement, field, where=""):
        """Number of points of one field (0 when the measurement does not exist)."""
        q = 'SELECT count("%s") FROM "%s"' % (field, measurement)
        if where:
            q += " WHERE " + where
        r = self.query(q, db=db)["results"][0]
        if "error" in r:
            raise OSError(r["error"])
        series = r.get("series")
        return series[0]["values"][0][1] if series else 0

    def select(self, db, q):
        """Rows of the first series as dicts (column -> value)."""
        r = self.query(q, db=db)["results"][0]
        if "error" in r:
            raise OSError(r["error"])
        out = []
        for s in r.get("series", []):
            for row in s["values"]:
                d = dict(zip(s["columns"], row))
                d.update(s.get("tags") or {})
                out.append(d)
        return out


class VictoriaMetrics(_Server):
    name = "victoria-metrics"
    binary = "victoria-metrics"

    def _argv(self):
        return ["victoria-metrics", "-storageDataPath=%s/data" % self.folder,
                "-httpListenAddr=127.0.0.1:%d" % self.port, "-retentionPeriod=100y",
                "-dedup.minScrapeInterval=1ms", "-selfScrapeInterval=0", "-loggerLevel=ERROR",
                "-search.latencyOffset=0s"]

    def _ready(self):
        status, _ = _http("GET", self.url + "/health", timeout=1.0)
        return status == 200

    def flush(self):
        """Make everything written so far searchable (VictoriaMetrics buffers recent rows)."""
        _http("GET", self.url + "/internal/force_flush")

    def export(self, match):
        """Raw samples of the series matching `match` (PromQL selector): [{metric, values, timestamps}]."""
        self.flush()
        status, body = _http("POST", self.url + "/api/v1/export",
                             urllib.parse.urlencode({"match[]": match, "start": "0"}).encode(),
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
        if status != 200:
            raise OSError("export %r: HTTP %d %s" % (match, status, body[:300]))
        return [json.loads(ln) for ln in body.splitlines() if ln.strip()]
