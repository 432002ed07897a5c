"""JSON log lines carry the extra fields; self-metrics summarise an interval and become a point."""
import io
import json

from cloud_bridge import log as _log
from cloud_bridge import mapper
from cloud_bridge.metrics import Metrics


def test_json_lines_with_extra_fields():
    out = io.StringIO()
    lg = _log.setup("INFO", stream=out, name="cloud_bridge.test")
    lg.info("write failed", extra={"points": 120, "error": "HTTP 503"})
    lg.debug("not shown")
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    d = json.loads(lines[0])
    assert (d["msg"], d["level"], d["points"], d["error"]) == ("write failed", "INFO", 120, "HTTP 503")
    assert d["ts"].endswith("Z")


def test_metrics_summary_and_point():
    m = Metrics("host:1")
    m.frames_in = 10
    m.reject("tag")
    m.reject("tag")
    m.reject("replay")
    for ms, n in ((3.0, 100), (9.0, 300), (5.0, 200)):
        m.write_ok(n, ms)
    s = m.summary()
    assert (s["rejected"], s["rejected_tag"], s["rejected_replay"]) == (3, 2, 1)
    assert (s["write_ms_p50"], s["write_ms_max"], s["batch_points_max"]) == (5.0, 9.0, 300)
    assert s["batch_points_avg"] == 200.0
    (p,) = m.points(1000)
    assert p[0] == "bridge" and p[1] == {"instance": "host:1"} and p[3] == 1000 * 1000000
    line = mapper.to_line(p)
    assert "frames_in=10i" in line and "write_ms_p50=5.0" in line
    m.end_interval()
    assert "write_ms_p50" not in m.summary() and m.summary()["rejected"] == 3   # counters stay
