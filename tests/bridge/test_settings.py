"""Settings: defaults < file < environment; bad values are refused with the setting's name."""
import json

import pytest

from cloud_bridge import settings
from cloud_bridge.__main__ import main


def test_example_file_holds_the_defaults_and_no_secrets():
    s = settings.load("cloud_bridge/settings.example.toml", env={})
    assert s == settings.Settings()
    text = open("cloud_bridge/settings.example.toml").read()
    assert "password =" not in text and "token =" not in text


def test_file_then_environment(tmp_path):
    p = tmp_path / "b.toml"
    p.write_text('[mqtt]\nport = 1999\n[influx]\napi = "v2"\nbucket = "x"\n')
    env = {"CLOUD_BRIDGE_MQTT_PORT": "2000", "CLOUD_BRIDGE_INFLUX_TOKEN": "s3cret",
           "CLOUD_BRIDGE_MQTT_TLS": "yes"}
    s = settings.load(p, env=env)
    assert (s.mqtt.port, s.mqtt.tls, s.influx.api, s.influx.bucket, s.influx.token) == \
        (2000, True, "v2", "x", "s3cret")
    assert s.redacted()["influx"]["token"] == "***"


def test_json_file(tmp_path):
    p = tmp_path / "b.json"
    p.write_text(json.dumps({"bridge": {"replay_window": 32}}))
    assert settings.load(p, env={}).bridge.replay_window == 32


@pytest.mark.parametrize("text, env, name", [
    ('[mqtt]\nport = 0\n', {}, "mqtt.port"),
    ('[mqtt]\nport = "x"\n', {}, "mqtt.port"),
    ('', {"CLOUD_BRIDGE_MQTT_PORT": "many"}, "CLOUD_BRIDGE_MQTT_PORT"),
    ('[influx]\napi = "v3"\n', {}, "influx.api"),
    ('[influx]\nurl = "ftp://x"\n', {}, "influx.url"),
    ('[bridge]\nreplay_window = 65\n', {}, "bridge.replay_window"),
    ('[influx]\nwrites_in_flight = 0\n', {}, "influx.writes_in_flight"),
    ("", {"CLOUD_BRIDGE_INFLUX_WRITES_IN_FLIGHT": "17"}, "influx.writes_in_flight"),
    ('[bridge]\nnope = 1\n', {}, "bridge.nope"),
    ('[mqtt]\nshare_group = "a/b"\n', {}, "mqtt.share_group"),
    ('[mqtt]\nreconnect_min_s = 9.0\nreconnect_max_s = 1.0\n', {}, "mqtt.reconnect_min_s"),
])
def test_bad_values_name_the_setting(tmp_path, text, env, name):
    p = tmp_path / "b.toml"
    p.write_text(text)
    with pytest.raises(ValueError, match=name.replace(".", r"\.")):
        settings.load(p, env=env)


def test_cli_check_prints_settings_and_reports_bad_ones(tmp_path, capsys):
    assert main(["--config", "cloud_bridge/settings.example.toml", "run", "--check"]) == 0
    assert json.loads(capsys.readouterr().out)["mqtt"]["share_group"] == "bridge"    # shared subscription
    p = tmp_path / "b.toml"
    p.write_text('[mqtt]\nport = 0\n')
    assert main(["--config", str(p), "run", "--check"]) == 2
    assert "mqtt.port" in capsys.readouterr().err


def test_unknown_cloud_bridge_variables_are_logged_not_fatal(caplog):
    env = {"CLOUD_BRIDGE_MQTT_PASWORD": "typo", "CLOUD_BRIDGE_MQTT_PORT": "2000", "HOME": "/root",
           "CLOUD_BRIDGE_NOSECTION": "x"}
    with caplog.at_level("WARNING", logger="cloud_bridge.settings"):
        s = settings.load(None, env=env)
    assert s.mqtt.port == 2000 and s.mqtt.password == ""
    (rec,) = [r for r in caplog.records if r.name == "cloud_bridge.settings"]
    assert "CLOUD_BRIDGE_MQTT_PASWORD" in rec.getMessage() and "CLOUD_BRIDGE_NOSECTION" in rec.getMessage()
    assert "typo" not in rec.getMessage()                  # names only: a value may be a secret
    assert "HOME" not in rec.getMessage() and "CLOUD_BRIDGE_MQTT_PORT" not in rec.getMessage()
    caplog.clear()
    with caplog.at_level("WARNING", logger="cloud_bridge.settings"):
        settings.load(None, env={"CLOUD_BRIDGE_MQTT_PORT": "2000"})
    assert not caplog.records
