"""Typed settings of the cloud bridge, from a TOML or JSON file and the environment.

Defaults live here; a site file (see `settings.example.toml`) overrides them; environment variables
`CLOUD_BRIDGE_<SECTION>_<NAME>` (e.g. `CLOUD_BRIDGE_INFLUX_TOKEN`) override both, so secrets never have
to be written into a file. Every value is checked; a bad one raises ValueError naming the setting.

    s = load("bridge.toml")                  # or load(None) for defaults + environment
    s.mqtt.host, s.influx.api, s.bridge.registry
"""
import dataclasses
import json
import logging
import os
import tomllib
from dataclasses import dataclass, field

ENV_PREFIX = "CLOUD_BRIDGE_"


def _rng(lo, hi):
    def check(v):
        if not lo <= v <= hi:
            return "must be %s..%s" % (lo, hi)
        return None
    return check


def _choice(*options):
    def check(v):
        if v not in options:
            return "must be one of %s" % ", ".join(options)
        return None
    return check


def _nonempty(v):
    return "must not be empty" if not v else None


def _share_group(v):
    # Empty: a plain subscription. Otherwise the group name of $share/<group>/...: no topic syntax.
    return "must not contain '/', '+' or '#'" if any(c in v for c in "/+#") else None


def _ck(check=None, secret=False):
    return {"check": check, "secret": secret}


@dataclass(frozen=True)
class MqttSettings:
    host: str = field(default="127.0.0.1", metadata=_ck(_nonempty))
    port: int = field(default=1883, metadata=_ck(_rng(1, 65535)))
    username: str = ""
    password: str = field(default="", metadata=_ck(secret=True))
    client_id: str = field(default="cloud-bridge-1", metadata=_ck(_nonempty))
    # "bridge" (default): `$share/bridge/...`, a shared subscription, so several instances (each with
    # its own client_id) split the load. On a broker restart mosquitto 2.0.11 restores our persistent
    # session but not the shared subscription, so what boards publish before we subscribe again is
    # dropped after its PUBACK; the boards send it again, since no receipt names it (docs/reliability.md,
    # broker_restart_shared: 0 lost). "": a plain subscription (one instance only), which mosquitto keeps
    # across a restart, so those frames are not resent.
    share_group: str = field(default="bridge", metadata=_ck(_share_group))
    topic_root: str = field(default="bms", metadata=_ck(_nonempty))
    keepalive_s: int = field(default=30, metadata=_ck(_rng(5, 3600)))
    # The broker keeps our subscription and the un-acknowledged messages this long while we are away.
    session_expiry_s: int = field(default=86400, metadata=_ck(_rng(0, 0xFFFFFFFF)))
    # MQTT v5 Receive Maximum: messages in flight to us before the broker waits for acks. This is the
    # backpressure: while the database is slow we stop acking and the broker stops sending.
    receive_maximum: int = field(default=2000, metadata=_ck(_rng(1, 65535)))
    tls: bool = False
    ca_file: str = ""
    reconnect_min_s: float = field(default=0.5, metadata=_ck(_rng(0.05, 60)))
    reconnect_max_s: float = field(default=30.0, metadata=_ck(_rng(0.1, 3600)))


@dataclass(frozen=True)
class InfluxSettings:
    api: str = field(default="v1", metadata=_ck(_choice("v1", "v2")))
    url: str = field(default="http://127.0.0.1:8086", metadata=_ck(_nonempty))
    database: str = field(default="bms", metadata=_ck(_nonempty))   # v1
    retention_policy: str = ""                                       # v1, "" = default
    username: str = ""                                               # v1
    password: str = field(default="", metadata=_ck(secret=True))     # v1
    org: str = "bms"                                                 # v2
    bucket: str = "bms"                                              # v2
    token: str = field(default="", metadata=_ck(secret=True))        # v2
    timeout_s: float = field(default=10.0, metadata=_ck(_rng(0.1, 600)))
    batch_points: int = field(default=5000, metadata=_ck(_rng(1, 1000000)))
    flush_ms: int = field(default=200, metadata=_ck(_rng(1, 600000)))
    retry_min_s: float = field(default=0.2, metadata=_ck(_rng(0.01, 60)))
    retry_max_s: float = field(default=10.0, metadata=_ck(_rng(0.01, 3600)))
    # Batches written at the same time, each by its own thread on its own connection. With one, the
    # database idles while a write's answer travels back and while we hand it the next; two let it
    # parse one batch while it commits the other (docs/bridge-throughput.md). Order still holds where
    # it matters: batches are acknowledged and their replay windows stored strictly in turn.
    writes_in_flight: int = field(default=2, metadata=_ck(_rng(1, 16)))


@dataclass(frozen=True)
class BridgeSettings:
    registry: str = field(default="registry.sqlite", metadata=_ck(_nonempty))
    rejects: str = field(default="rejects.sqlite", metadata=_ck(_nonempty))
    rejects_keep: int = field(default=10000, metadata=_ck(_rng(0, 10000000)))
    instance: str = ""                     # "" = host:pid
    replay_window: int = field(default=64, metadata=_ck(_rng(1, 64)))
    offline_after_s: int = field(default=300, metadata=_ck(_rng(1, 10000000)))
    # Delivery receipts to the boards (docs/comms.md "Delivery"): on, a board keeps each frame until a
    # receipt names it; at most one receipt per device per receipt_interval_ms (coalesced).
    receipts: bool = True
    receipt_interval_ms: int = field(default=500, metadata=_ck(_rng(0, 60000)))
    metrics_interval_s: float = field(default=10.0, metadata=_ck(_rng(0.1, 86400)))
    log_level: str = field(default="INFO", metadata=_ck(_choice("DEBUG", "INFO", "WARNING", "ERROR")))


@dataclass(frozen=True)
class Settings:
    mqtt: MqttSettings = field(default_factory=MqttSettings)
    influx: InfluxSettings = field(default_factory=InfluxSettings)
    bridge: BridgeSettings = field(default_factory=BridgeSettings)

    def redacted(self):
        """A dict for logs with every secret replaced by '***' when set."""
        out = {}
        for sec in dataclasses.fields(self):
            obj = getattr(self, sec.name)
            d = {}
            for f in dataclasses.fields(obj):
                v = getattr(obj, f.name)
                d[f.name] = "***" if f.metadata.get("secret") and v else v
            out[sec.name] = d
        return out


def _coerce(name, typ, value, from_env):
    if typ is bool:
        if isinstance(value, bool):
            return value
        if from_env and isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0",
                                                                     "false", "no", "off"):
            return value.lower() in ("1", "true", "yes", "on")
        raise ValueError("setting %s must be true or false, got %r" % (name, value))
    if typ is int:
        if isinstance(value, bool):
            raise ValueError("setting %s must be an integer, got %r" % (name, value))
        if isinstance(value, int):
            return value
        if from_env and isinstance(value, str):
            try:
                return int(value, 0)
            except ValueError:
                pass
        raise ValueError("setting %s must be an integer, got %r" % (name, value))
    if typ is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if from_env and isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ValueError("setting %s must be a number, got %r" % (name, value))
    if not isinstance(value, str):
        raise ValueError("setting %s must be a string, got %r" % (name, value))
    return value


_TYPES = {"str": str, "int": int, "float": float, "bool": bool}


def read_file(path):
    """The raw dict of a .toml or .json settings file."""
    path = str(path)
    with open(path, "rb") as f:
        data = f.read()
    try:
        if path.endswith(".json"):
            raw = json.loads(data.decode("utf-8"))
        else:
            raw = tomllib.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError("settings file %s: %s" % (path, e)) from None
    if not isinstance(raw, dict):
        raise ValueError("settings file %s must hold a table" % path)
    return raw


def env_names():
    """Every CLOUD_BRIDGE_<SECTION>_<NAME> variable a setting reads."""
    out = set()
    for sec in dataclasses.fields(Settings):
        cls = sec.type if isinstance(sec.type, type) else globals()[sec.type]
        out.update(ENV_PREFIX + ("%s_%s" % (sec.name, f.name)).upper() for f in dataclasses.fields(cls))
    return out


def unknown_env(env):
    """Names in env that start with CLOUD_BRIDGE_ but name no setting (a typo such as
    CLOUD_BRIDGE_MQTT_PASWORD would otherwise go unnoticed), sorted."""
    known = env_names()
    return sorted(k for k in env if k.startswith(ENV_PREFIX) and k not in known)


def load(path=None, env=None, overrides=None):
    """Settings = defaults < file < environment < overrides ({section: {name: value}}).
    CLOUD_BRIDGE_* variables that name no setting are logged as a warning (logger
    cloud_bridge.settings), not refused: the environment is shared with other software."""
    env = os.environ if env is None else env
    unknown = unknown_env(env)
    if unknown:
        logging.getLogger("cloud_bridge.settings").warning(
            "unknown environment variable(s) ignored: %s (known: %s<SECTION>_<NAME>, see "
            "settings.example.toml)", ", ".join(unknown), ENV_PREFIX)
    raw = read_file(path) if path else {}
    sections = {}
    for sec in dataclasses.fields(Settings):
        cls = sec.type if isinstance(sec.type, type) else globals()[sec.type]
        given = raw.pop(sec.name, {})
        if not isinstance(given, dict):
            raise ValueError("settings section [%s] must be a table" % sec.name)
        given = dict(given)
        given.update((overrides or {}).get(sec.name, {}))
        kwargs = {}
        for f in dataclasses.fields(cls):
            name = "%s.%s" % (sec.name, f.name)
            typ = f.type if isinstance(f.type, type) else _TYPES[f.type]
            env_name = ENV_PREFIX + ("%s_%s" % (sec.name, f.name)).upper()
            if env_name in env and f.name not in (overrides or {}).get(sec.name, {}):
                value = _coerce(name + " (" + env_name + ")", typ, env[env_name], True)
            elif f.name in given:
                value = _coerce(name, typ, given.pop(f.name), False)
            else:
                continue
            check = f.metadata.get("check")
            problem = check(value) if check else None
            if problem:
                raise ValueError("setting %s %s, got %r" % (name, problem, value))
            kwargs[f.name] = value
            given.pop(f.name, None)
        if given:
            raise ValueError("unknown setting(s) %s" % ", ".join(
                "%s.%s" % (sec.name, k) for k in sorted(given)))
        sections[sec.name] = cls(**kwargs)
    if raw:
        raise ValueError("unknown settings section(s) %s" % ", ".join(sorted(raw)))
    s = Settings(**sections)
    if s.mqtt.reconnect_min_s > s.mqtt.reconnect_max_s:
        raise ValueError("setting mqtt.reconnect_min_s must not exceed mqtt.reconnect_max_s")
    if s.influx.retry_min_s > s.influx.retry_max_s:
        raise ValueError("setting influx.retry_min_s must not exceed influx.retry_max_s")
    if not s.influx.url.startswith(("http://", "https://")):
        raise ValueError("setting influx.url must start with http:// or https://, got %r" % s.influx.url)
    if s.influx.api == "v2" and not s.influx.bucket:
        raise ValueError("setting influx.bucket must not be empty with influx.api = v2")
    return s
