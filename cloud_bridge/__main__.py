"""`cloud-bridge` / `python -m cloud_bridge`: one command, subcommands from cloud_bridge/cli_*.py.

Each module `cloud_bridge/cli_<name>.py` that exists defines `register(subparsers)`: it adds its
subcommand(s) and sets `func=callable(args) -> exit code` with `set_defaults`. Options common to all
subcommands (--config) are on the top-level parser and reach every `func` as `args.config`.

    python -m cloud_bridge run --config bridge.toml
    python -m cloud_bridge --help
"""
import argparse
import importlib
import pkgutil
import sys

import cloud_bridge


def build_parser():
    p = argparse.ArgumentParser(
        prog="cloud-bridge",
        description="Cloud BMS bridge: MQTT -> verify/decode -> InfluxDB, and its device registry.")
    p.add_argument("--config", metavar="FILE",
                   help="settings file (.toml or .json); CLOUD_BRIDGE_<SECTION>_<NAME> environment "
                        "variables override it (see cloud_bridge/settings.example.toml)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    names = sorted(m.name for m in pkgutil.iter_modules(cloud_bridge.__path__)
                   if m.name.startswith("cli_"))
    # run first, the others after it in name order
    names.sort(key=lambda n: (n != "cli_run", n))
    for name in names:
        try:
            mod = importlib.import_module("cloud_bridge." + name)
        except Exception as e:   # one broken subcommand module must not take `run` down with it
            print("cloud-bridge: cannot load %s: %s: %s" % (name, type(e).__name__, e), file=sys.stderr)
            continue
        reg = getattr(mod, "register", None)
        if reg is not None:
            reg(sub)
    return p


def main(argv=None):
    p = build_parser()
    args = p.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        p.print_help()
        return 2
    try:
        return func(args) or 0
    except ValueError as e:      # bad settings or arguments: one line, no traceback
        print("cloud-bridge: %s" % e, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
