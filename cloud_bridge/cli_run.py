"""`cloud-bridge run`: the bridge service, until SIGTERM or SIGINT.

    cloud-bridge run --config bridge.toml          # or: cloud-bridge --config bridge.toml run
    CLOUD_BRIDGE_INFLUX_TOKEN=... cloud-bridge --config bridge.toml run --log-level DEBUG
"""
import argparse
import signal

from cloud_bridge import log as _log
from cloud_bridge import settings as _settings


def register(sub):
    p = sub.add_parser("run", help="run the bridge service (MQTT -> InfluxDB) until SIGTERM",
                       description="Consume bms/+/up/# in a shared subscription, verify and decode the "
                                   "frames, write them to InfluxDB, acknowledge after the write.")
    p.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS,
                   help="settings file (may also be given before `run`)")
    p.add_argument("--log-level", choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                   help="override bridge.log_level")
    p.add_argument("--check", action="store_true",
                   help="load and validate the settings, print them (secrets hidden) and exit")
    p.set_defaults(func=main)


def main(args):
    s = _settings.load(args.config)
    if args.check:
        import json
        print(json.dumps(s.redacted(), indent=2))
        return 0
    log = _log.setup(args.log_level or s.bridge.log_level)
    from cloud_bridge.service import Bridge
    bridge = Bridge(s, log)

    def _stop(signum, frame):
        log.info("signal, stopping", extra={"signal": signum})
        bridge.stop()
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    bridge.run()
    return 0
