"""`cloud-bridge devices ...`: manage the device registry (add, list, move, disable/enable, show,
sites/groups summaries, rotate-key, remove, reset-window).

Works on the same SQLite registry the bridge reads (cloud_bridge/registry.py), safely while it runs.

    cloud-bridge devices --registry reg.sqlite add bms-0001 --site plant-a --group forklifts
    cloud-bridge devices --registry reg.sqlite list --site plant-a

A new device gets a fresh random 32-byte HMAC key unless one is given; it is shown once (or written to
--key-out with mode 0600) so it can be provisioned to the board. Keys are never printed by `list` or
`show`. Also the table renderer the other CLI modules use (`render_table`).
"""

import argparse
import os
import secrets
import sys
import time

from cloud_bridge.registry import Registry

KEY_BYTES = 32   # docs/frame-format.md: 16..64 bytes, 32 recommended


# --- table rendering (shared by cli_commands) ---
def render_table(columns, rows):
    """A plain-text table: header, rule, one line per row. columns: names; rows: sequences of values.

    Numbers are right-aligned, text left-aligned; None shows as '-'.
    """
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [len(c) for c in columns]
    for row in cells:
        for i, c in enumerate(row):
            widths[i] = max(widths[i], len(c))
    numeric = [all(isinstance(r[i], (int, float)) and not isinstance(r[i], bool)
                   for r in rows if r[i] is not None) and any(r[i] is not None for r in rows)
               for i in range(len(columns))]

    def line(values):
        out = []
        for i, v in enumerate(values):
            out.append(v.rjust(widths[i]) if numeric[i] else v.ljust(widths[i]))
        return "  ".join(out).rstrip()

    text = [line(list(columns)), "  ".join("-" * w for w in widths)]
    text.extend(line(r) for r in cells)
    return "\n".join(text) + "\n"


def _cell(v):
    if v is None:
        return "-"
    if isinstance(v, float):
        return "%.1f" % v
    return str(v)


def ago(t_ms, now_ms):
    """'12s', '5m', '3h', '2d' since t_ms; None when never."""
    if t_ms is None:
        return None
    s = max(0, (now_ms - t_ms) // 1000)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return "%d%s" % (s // size, unit)
    return "%ds" % s


def _online_text(dev):
    if dev["online"] is None:
        return "never"
    return ("online" if dev["online"] else "offline") + (
        " (%s)" % dev["online_source"] if dev["online_source"] and not dev["online"] else "")


# --- commands ---
def _new_key(args):
    """(key, generated): the --key-hex key, or a fresh random one."""
    if args.key_hex:
        from firmware.comms import auth
        return auth.parse_key(args.key_hex), False
    return secrets.token_bytes(KEY_BYTES), True


def _hand_out_key(key, args, out):
    if args.key_out:
        # Created 0600 before the key is written, so it is never readable by others.
        fd = os.open(args.key_out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key.hex() + "\n")
        out.write("key written to %s\n" % args.key_out)
    else:
        out.write("key (provision it to the board; it is not shown again): %s\n" % key.hex())


def cmd_add(reg, args, out):
    key, generated = _new_key(args)
    reg.add_device(args.device, key, name=args.name or "", site=args.site, group=args.group,
                   board=args.board)
    out.write("added %s (site %s, group %s, board %s)\n"
              % (args.device, args.site or "-", args.group or "-", args.board or "-"))
    if generated:
        _hand_out_key(key, args, out)
    return 0


def cmd_rotate_key(reg, args, out):
    """New key for a device: from now on the bridge accepts only frames signed with it."""
    key, generated = _new_key(args)
    reg.rotate_key(args.device, key)
    out.write("new key for %s (version %d)\n" % (args.device, reg.get(args.device)["key_version"]))
    if generated:
        _hand_out_key(key, args, out)
    return 0


def cmd_remove(reg, args, out):
    if not args.yes:
        raise ValueError("remove forgets the device and its key; repeat with --yes")
    for dev in args.devices:
        if not reg.remove_device(dev):
            raise ValueError("no device %s" % dev)
    out.write("removed %s\n" % ", ".join(args.devices))
    return 0


def cmd_reset_window(reg, args, out):
    """For boards that lost their boot counter: every frame is refused as `replay` ("boot N older
    than M") until the registry forgets the device's replay window."""
    for dev in args.devices:
        w = reg.load_window(dev)
        if not reg.reset_window(dev):
            raise ValueError("no device %s" % dev)
        out.write("%s: replay window %s forgotten; its next frame is accepted whatever its boot\n"
                  % (dev, "(none)" if w is None else "boot %d, seq %d" % (w[0], w[1])))
    return 0


def cmd_list(reg, args, out):
    now = int(time.time() * 1000)
    devs = reg.devices(site=args.site, group=args.group)
    if args.disabled:
        devs = [d for d in devs if not d["enabled"]]
    rows = [(d["device_id"], d["site_id"], d["group_id"], d["board"],
             "yes" if d["enabled"] else "no", _online_text(d), ago(d["last_seen_ms"], now),
             d["fw_version"]) for d in devs]
    out.write(render_table(("device", "site", "group", "board", "enabled", "status", "last seen",
                            "firmware"), rows))
    out.write("%d device(s)\n" % len(rows))
    return 0


def cmd_show(reg, args, out):
    d = reg.get(args.device)
    if d is None:
        raise ValueError("no device %s" % args.device)
    now = int(time.time() * 1000)
    rows = [
        ("device", d["device_id"]), ("name", d["name"] or None), ("site", d["site_id"]),
        ("group", d["group_id"]), ("board", d["board"]), ("enabled", "yes" if d["enabled"] else "no"),
        ("status", _online_text(d)), ("status since", ago(d["online_ms"], now)),
        ("first seen", ago(d["first_seen_ms"], now)), ("last seen", ago(d["last_seen_ms"], now)),
        ("firmware", d["fw_version"]), ("config hash", d["config_hash"]),
        ("key version", d["key_version"]),
    ]
    out.write(render_table(("field", "value"), [(k, _cell(v)) for k, v in rows]))
    return 0


def cmd_move(reg, args, out):
    changes = {}
    if args.site is not None:
        changes["site_id"] = None if args.site == "-" else args.site
    if args.group is not None:
        changes["group_id"] = None if args.group == "-" else args.group
    if not changes:
        raise ValueError("move needs --site and/or --group ('-' clears)")
    for dev in args.devices:
        reg.update_device(dev, **changes)
    out.write("moved %s to site %s, group %s\n" % (
        ", ".join(args.devices), args.site if args.site is not None else "(unchanged)",
        args.group if args.group is not None else "(unchanged)"))
    return 0


def cmd_enable(reg, args, out, enabled):
    for dev in args.devices:
        reg.update_device(dev, enabled=1 if enabled else 0)
    out.write("%s %s\n" % ("enabled" if enabled else "disabled", ", ".join(args.devices)))
    return 0


def _summary(devs, now_ms):
    total = len(devs)
    online = sum(1 for d in devs if d["online"] == 1)
    offline = sum(1 for d in devs if d["online"] == 0)
    disabled = sum(1 for d in devs if not d["enabled"])
    last = max((d["last_seen_ms"] for d in devs if d["last_seen_ms"] is not None), default=None)
    return total, online, offline, total - online - offline, disabled, ago(last, now_ms)


def cmd_sites(reg, args, out):
    now = int(time.time() * 1000)
    rows = [(s["site_id"], s["name"] or None) + _summary(reg.devices(site=s["site_id"]), now)
            for s in reg.sites()]
    out.write(render_table(("site", "name", "devices", "online", "offline", "never", "disabled",
                            "last seen"), rows))
    return 0


def cmd_groups(reg, args, out):
    now = int(time.time() * 1000)
    rows = [(g["group_id"], g["name"] or None) + _summary(reg.devices(group=g["group_id"]), now)
            for g in reg.groups()]
    out.write(render_table(("group", "name", "devices", "online", "offline", "never", "disabled",
                            "last seen"), rows))
    return 0


def add_parser(sub, registry_default=None):
    """Adds `devices` with its sub-commands to an argparse sub-parser set."""
    p = sub.add_parser("devices", help="manage the device registry")
    p.add_argument("--registry", default=registry_default,
                   help="registry SQLite file (default: the settings' bridge.registry)")
    s = p.add_subparsers(dest="devices_cmd", required=True)

    a = s.add_parser("add", help="register a device (a fresh HMAC key unless --key-hex)")
    a.add_argument("device")
    a.add_argument("--site")
    a.add_argument("--group")
    a.add_argument("--board")
    a.add_argument("--name")
    a.add_argument("--key-hex", help="use this key (hex) instead of generating one")
    a.add_argument("--key-out", help="write the generated key (hex) to this file, mode 0600")
    a.set_defaults(devices_fn=cmd_add)

    rk = s.add_parser("rotate-key", help="give a device a new HMAC key (provision it to the board)")
    rk.add_argument("device")
    rk.add_argument("--key-hex")
    rk.add_argument("--key-out")
    rk.set_defaults(devices_fn=cmd_rotate_key)

    rm = s.add_parser("remove", help="forget devices (and their keys)")
    rm.add_argument("devices", nargs="+")
    rm.add_argument("--yes", action="store_true", help="really remove")
    rm.set_defaults(devices_fn=cmd_remove)

    rw = s.add_parser("reset-window", help="forget devices' replay windows (a board that lost its "
                                           "boot counter, whose frames are all refused as replays)")
    rw.add_argument("devices", nargs="+")
    rw.set_defaults(devices_fn=cmd_reset_window)

    ls = s.add_parser("list", help="list devices with status")
    ls.add_argument("--site")
    ls.add_argument("--group")
    ls.add_argument("--disabled", action="store_true", help="only disabled devices")
    ls.set_defaults(devices_fn=cmd_list)

    sh = s.add_parser("show", help="one device in detail")
    sh.add_argument("device")
    sh.set_defaults(devices_fn=cmd_show)

    mv = s.add_parser("move", help="change site and/or group ('-' clears)")
    mv.add_argument("devices", nargs="+")
    mv.add_argument("--site")
    mv.add_argument("--group")
    mv.set_defaults(devices_fn=cmd_move)

    for name, flag in (("enable", True), ("disable", False)):
        e = s.add_parser(name, help="%s devices (a disabled device's frames are rejected)" % name)
        e.add_argument("devices", nargs="+")
        e.set_defaults(devices_fn=lambda reg, args, out, _f=flag: cmd_enable(reg, args, out, _f))

    s.add_parser("sites", help="sites with device counts").set_defaults(devices_fn=cmd_sites)
    s.add_parser("groups", help="groups with device counts").set_defaults(devices_fn=cmd_groups)
    p.set_defaults(func=run)
    return p


def run(args, out=None, settings=None):
    """Runs the parsed `devices` command; returns the exit code (2 on a ValueError, printed)."""
    out = out or sys.stdout
    path = args.registry or (settings.bridge.registry if settings is not None else None)
    if not path:
        out.write("error: no registry file (--registry or bridge.registry)\n")
        return 2
    reg = Registry(path)
    try:
        return args.devices_fn(reg, args, out)
    except ValueError as e:
        out.write("error: %s\n" % e)
        return 2
    finally:
        reg.close()


def register(sub):
    """Hook for cloud_bridge/__main__.py: `cloud-bridge devices ...`; settings from --config/environment."""
    add_parser(sub).set_defaults(func=_run_with_settings)


def _run_with_settings(args):
    from cloud_bridge import settings as settings_mod
    return run(args, settings=settings_mod.load(getattr(args, "config", None)))


def main(argv=None, out=None):
    ap = argparse.ArgumentParser(prog="cloud-bridge")
    add_parser(ap.add_subparsers(dest="cmd", required=True))
    args = ap.parse_args(["devices"] + list(sys.argv[1:] if argv is None else argv))
    return run(args, out)


if __name__ == "__main__":
    sys.exit(main())
