"""Structured logs: one JSON object per line on stderr, with the `extra=` fields of each call.

    log = setup("INFO")          # once, at start
    log.info("write failed", extra={"points": 120, "error": "HTTP 503"})

Lines look like {"ts": "2026-11-24T07:40:00.123Z", "level": "INFO", "logger": "cloud_bridge",
"msg": "write failed", "points": 120, "error": "HTTP 503"}: easy to grep and to ship to a log store.
"""
import json
import logging
import sys
import time

_STD = set(vars(logging.LogRecord("x", 0, "x", 0, "x", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record):
        t = record.created
        out = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%03dZ" % (int(t * 1000) % 1000),
               "level": record.levelname, "logger": record.name, "msg": record.getMessage()}
        for k, v in vars(record).items():
            if k not in _STD and not k.startswith("_"):
                out[k] = v
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, separators=(",", ":"))


def setup(level="INFO", stream=None, name="cloud_bridge"):
    """Configure the `cloud_bridge` logger to write JSON lines; returns it."""
    log = logging.getLogger(name)
    log.handlers[:] = []
    h = logging.StreamHandler(stream or sys.stderr)
    h.setFormatter(JsonFormatter())
    log.addHandler(h)
    log.setLevel(level)
    log.propagate = False
    return log


def get(name="cloud_bridge"):
    return logging.getLogger(name)
