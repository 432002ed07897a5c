"""The deploy stack's files fit together: compose, .env.example, mosquitto.conf, Grafana provisioning,
the bridge's settings and the Dockerfile. (No Docker here: what can be checked without it is.)"""

import pathlib
import re

import yaml

from cloud_bridge import settings
from cloud_bridge.__main__ import build_parser

DEPLOY = pathlib.Path(settings.__file__).resolve().parent / "deploy"
GRAFANA = DEPLOY.parent / "grafana"
REPO = DEPLOY.parents[1]


def compose():
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def env_example():
    out = {}
    for line in (DEPLOY / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            k, _, v = line.partition("=")
            out[k.strip()] = v.strip()
    return out


def test_every_variable_compose_uses_is_in_env_example_and_no_secret_is_committed():
    text = (DEPLOY / "compose.yaml").read_text()
    used = set(re.findall(r"\$\{(\w+)(?::-[^}]*)?\}", text))
    defaults = set(re.findall(r"\$\{(\w+):-[^}]*\}", text))
    env = env_example()
    assert used - defaults <= set(env), sorted(used - defaults - set(env))
    for k, v in env.items():
        if "PASSWORD" in k:
            assert v == "change-me", k
    ignored = (DEPLOY / ".gitignore").read_text().split()
    assert ".env" in ignored and "mosquitto/passwd" in ignored


def test_compose_mounts_files_that_exist_and_grafana_gets_its_provisioning():
    c = compose()
    assert set(c["services"]) == {"mosquitto", "influxdb", "grafana", "bridge", "bridge-2"}
    for name, svc in c["services"].items():
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0]
            if src.startswith("."):
                p = (DEPLOY / src).resolve()
                if p.name == "passwd":          # made by make-passwd.sh, never committed
                    continue
                assert p.exists(), "%s mounts missing %s" % (name, src)
    g = c["services"]["grafana"]
    mounts = dict(v.split(":")[:2] for v in g["volumes"] if v.startswith("."))
    assert (DEPLOY / "../grafana/provisioning").resolve() == GRAFANA / "provisioning"
    assert mounts["../grafana/provisioning"] == "/etc/grafana/provisioning"
    provider = yaml.safe_load((GRAFANA / "provisioning/dashboards/bms.yaml").read_text())
    assert mounts["../grafana/dashboards"] == provider["providers"][0]["options"]["path"]
    # every ${VAR} of the data source file is set in Grafana's environment
    ds_text = (GRAFANA / "provisioning/datasources/influxdb.yaml").read_text()
    for var in re.findall(r"\$\{(\w+)\}", ds_text):
        assert var in g["environment"], var


def test_bridge_environment_names_real_settings():
    env = compose()["services"]["bridge"]["environment"]
    names = [k for k in env if k.startswith(settings.ENV_PREFIX)]
    assert len(names) >= 8
    # placeholders for the ${...} values; settings.load refuses unknown names and bad values
    fake = {k: ("1883" if k.endswith("_PORT") else "http://influxdb:8086" if k.endswith("_URL")
                else "x") for k in names}
    fake["CLOUD_BRIDGE_INFLUX_API"] = env["CLOUD_BRIDGE_INFLUX_API"]
    s = settings.load(None, env=fake)
    assert s.influx.api == "v1" and s.mqtt.host == "x" and s.bridge.registry == "x"
    for k in names:     # each name maps onto a field (load() ignores unknown environment names)
        sec, _, field = k[len(settings.ENV_PREFIX):].lower().partition("_")
        assert hasattr(getattr(s, sec), field), k


def test_mosquitto_conf_queues_more_than_the_default_and_locks_the_broker():
    conf = {}
    for line in (DEPLOY / "mosquitto/mosquitto.conf").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            k, _, v = line.partition(" ")
            conf.setdefault(k, v.strip())
    assert int(conf["max_queued_messages"]) > 1000      # mosquitto's default is 1000
    assert conf["persistence"] == "true" and conf["allow_anonymous"] == "false"
    assert conf["password_file"] and conf["acl_file"]
    acl = (DEPLOY / "mosquitto/acl").read_text()
    assert "pattern write bms/%u/up/#" in acl and "pattern read bms/%u/down/cmd" in acl
    assert "pattern read bms/%u/down/receipt" in acl and "topic write bms/+/down/receipt" in acl


def test_dockerfile_copies_what_exists_and_runs_a_real_subcommand():
    text = (DEPLOY / "Dockerfile").read_text()
    for src in re.findall(r"(?m)^COPY (.+) \S+$", text):
        for part in src.split():
            assert (REPO / part).exists(), part
    cmd = re.search(r'(?m)^CMD \["(\w+)"\]', text).group(1)
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert cmd in sub.choices


def test_every_bridge_service_has_its_own_client_id_and_the_same_share_group():
    # The broker keeps one session per client id and disconnects the older connection of a duplicate
    # (MQTT v5 3.1.4), so each bridge needs its own; a share group splits the load between them.
    services = compose()["services"]
    bridges = {name: svc for name, svc in services.items()
               if svc.get("build", {}).get("dockerfile", "").endswith("cloud_bridge/deploy/Dockerfile")}
    assert len(bridges) >= 2, sorted(bridges)
    loaded = {name: settings.load(None, env={k: v for k, v in svc["environment"].items()
                                             if "${" not in v})
              for name, svc in bridges.items()}
    client_ids = [s.mqtt.client_id for s in loaded.values()]
    assert len(set(client_ids)) == len(client_ids), client_ids
    assert {s.mqtt.share_group for s in loaded.values()} == {"bridge"}
    # one registry for all of them, but each keeps its own reject store file
    assert len({s.bridge.registry for s in loaded.values()}) == 1
    rejects = [s.bridge.rejects for s in loaded.values()]
    assert len(set(rejects)) == len(rejects), rejects
    assert not services["bridge"].get("profiles")        # the first one always runs
