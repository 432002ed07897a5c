"""Device provisioning: create, rotate and revoke a board's identity on the broker and the bridge.

One identity = device id + MQTT password + 32-byte HMAC key. `create` writes the board's secrets file
(`secrets/<device>.json`, git-ignored; format in boards/secrets.example.json), adds the device to the
mosquitto password file (hashed by `mosquitto_passwd`) and ACL file (it may publish only under
bms/<id>/up/# and read only bms/<id>/down/#; every line of the ACL outside provision's own
'# begin'/'# end' blocks is kept as it was), and registers its key in the bridge registry
(cloud_bridge.registry). `rotate` issues a new password and key (the old ones stop working), `revoke`
removes the device from the broker files and disables it in the registry.

    python tools/provision.py create bms-0001 --site plant-a --group forklifts --board sim16_lfp
    python tools/provision.py create bms-0001 --mqtt-host mqtt.example.org --wifi-ssid NET --wifi-key ...
    python tools/provision.py rotate bms-0001; python tools/provision.py revoke bms-0001
    python tools/provision.py bridge-user; python tools/provision.py operator alice

A running mosquitto rereads its password and ACL files on SIGHUP (`--reload-pid PID`).
"""
import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile

_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(_HERE)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from cloud_bridge.registry import Registry, check_device_id  # noqa: E402

KEY_BYTES = 32              # docs/frame-format.md: 16..64 bytes, 32 recommended
PASSWORD_BYTES = 24         # 32 URL-safe characters, 192 bits
DEFAULT_DIR = os.path.join(_ROOT, "secrets")
DEFAULT_BRIDGE_USER = "bridge"
DEFAULT_OPERATOR_USER = "operator"
DEFAULT_MQTT_HOST = "127.0.0.1"
DEFAULT_MQTT_PORT = 1883
# secrets fields rotate() issues anew; every other field of the old file (broker address, TLS, Wi-Fi,
# fields an operator added) is kept
ROTATED_FIELDS = ("key", "key_version", "mqtt_user", "mqtt_password")
TOPIC_ROOT = "bms"
_ACL_HEADER = "# mosquitto ACL, managed by tools/provision.py (blocks between '# begin' and '# end')\n"


class Paths:
    """Where the identity files live. Everything defaults to one folder (secrets/, git-ignored)."""

    def __init__(self, base=DEFAULT_DIR, passwd=None, acl=None, registry=None, secrets_dir=None):
        self.base = os.path.abspath(base)
        self.passwd = os.path.abspath(passwd or os.path.join(self.base, "mosquitto", "passwd"))
        self.acl = os.path.abspath(acl or os.path.join(self.base, "mosquitto", "acl"))
        self.registry = os.path.abspath(registry or os.path.join(self.base, "registry.sqlite"))
        self.secrets_dir = os.path.abspath(secrets_dir or self.base)

    def secrets_file(self, device_id):
        return os.path.join(self.secrets_dir, "%s.json" % device_id)


# ---------------------------------------------------------------- files
def _write_atomic(path, text, mode=0o600):
    """Write text to path via a temporary file + rename, so a reader never sees half a file."""
    d = os.path.dirname(path)
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _mosquitto_passwd():
    path = shutil.which("mosquitto_passwd") or (
        "/usr/bin/mosquitto_passwd" if os.path.exists("/usr/bin/mosquitto_passwd") else None)
    if path is None:
        raise OSError("mosquitto_passwd not found: sudo apt-get install -y mosquitto")
    return path


def hash_password(user, password):
    """The password-file line for user (mosquitto's own PBKDF2-SHA512 hash), via `mosquitto_passwd -U`.

    -U on a private temporary file rather than -b: the plain password never appears in a process's
    argument list (visible to every user in `ps`)."""
    if not user or ":" in user or "\n" in user or "\n" in password:
        raise ValueError("bad user name or password for %r" % (user,))
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "pw")
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("%s:%s\n" % (user, password))
        r = subprocess.run([_mosquitto_passwd(), "-U", p], capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise OSError("mosquitto_passwd -U failed: %s %s" % (r.stdout.strip(), r.stderr.strip()))
        with open(p) as f:
            line = f.read().strip()
    if not line.startswith(user + ":") or line == "%s:%s" % (user, password):
        raise OSError("mosquitto_passwd did not hash the password")
    return line


def read_passwd(path):
    """{user: hashed line} in file order."""
    out = {}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line and not line.startswith("#") and ":" in line:
                    out[line.split(":", 1)[0]] = line
    return out


def write_passwd(path, entries):
    _write_atomic(path, "".join(line + "\n" for line in entries.values()))


def set_password(path, user, password):
    entries = read_passwd(path)
    entries[user] = hash_password(user, password)
    write_passwd(path, entries)


def remove_password(path, user):
    entries = read_passwd(path)
    if entries.pop(user, None) is None:
        return False
    write_passwd(path, entries)
    return True


def device_acl(device_id):
    """The ACL block of one device: publish its uplink, read its downlink, nothing else."""
    return ("user %s\ntopic write %s/%s/up/#\ntopic read %s/%s/down/#\n"
            % (device_id, TOPIC_ROOT, device_id, TOPIC_ROOT, device_id))


def bridge_acl(user):
    """The bridge reads every uplink and writes only its delivery receipts (the same grants as
    cloud_bridge/deploy/mosquitto/acl); commands are the operator's."""
    return "user %s\ntopic read %s/+/up/#\ntopic write %s/+/down/receipt\n" % (user, TOPIC_ROOT, TOPIC_ROOT)


def operator_acl(user):
    """The operator CLI (`cloud-bridge commands send`): sends commands, reads acks and status
    (the deploy ACL's `operator`)."""
    return ("user %s\ntopic write %s/+/down/cmd\ntopic read %s/+/up/ack\ntopic read %s/+/up/status\n"
            % (user, TOPIC_ROOT, TOPIC_ROOT, TOPIC_ROOT))


def _parse_acl(path):
    """The ACL file as a list of pieces in file order: ("text", lines) for anything provision does not
    manage (hand-written rules, `pattern` lines, other accounts, comments) and ("block", name, body)
    for a '# begin <name>' ... '# end <name>' block."""
    pieces, name, body, text = [], None, [], []
    if not os.path.exists(path):
        return pieces
    with open(path) as f:
        for line in f:
            if name is None and line.startswith("# begin "):
                if text:
                    pieces.append(("text", text))
                    text = []
                name, body = line[8:].strip(), []
            elif name is not None and line.startswith("# end "):
                pieces.append(("block", name, "".join(body)))
                name = None
            elif name is not None:
                body.append(line)
            else:
                text.append(line)
    if name is not None:                 # an unterminated block: keep its lines as they were
        text = ["# begin %s\n" % name] + body + text
    if text:
        pieces.append(("text", text))
    return pieces


def read_acl(path):
    """{block name: body} of the managed blocks ('device:<id>', 'bridge:<user>', 'operator:<user>')."""
    return {pc[1]: pc[2] for pc in _parse_acl(path) if pc[0] == "block"}


def update_acl(path, name, body):
    """Set (body) or remove (body None) one managed block. Every other line of the file is written
    back verbatim and in place; a new block goes at the end. mosquitto attaches `topic` lines to the
    `user` line above them, and every block starts with its own `user` line, so appending one never
    changes what the lines before it grant."""
    pieces = _parse_acl(path)
    parts, found = [], False
    if not pieces:
        parts.append(_ACL_HEADER)
    for pc in pieces:
        if pc[0] == "text":
            parts.append("".join(pc[1]))
        elif pc[1] == name:
            found = True
            if body is not None:
                parts.append(_block(name, body))
            elif parts and parts[-1].endswith("\n\n"):
                parts[-1] = parts[-1][:-1]      # the blank line that was added with the block goes too
        else:
            parts.append(_block(pc[1], pc[2]))
    if not found and body is not None:
        if parts and not parts[-1].endswith("\n"):
            parts.append("\n")
        parts.append("\n" + _block(name, body))
    # world-readable is harmless (no secrets) but mosquitto only needs to read it
    _write_atomic(path, "".join(parts), mode=0o644)


def _block(name, body):
    return "# begin %s\n%s# end %s\n" % (name, body, name)


def write_acl(path, blocks):
    """Make the managed blocks exactly `blocks` (name -> body); unmanaged lines are kept."""
    for name in set(read_acl(path)) - set(blocks):
        update_acl(path, name, None)
    for name, body in blocks.items():
        update_acl(path, name, body)


# ---------------------------------------------------------------- identities
class Provisioner:
    """Create/rotate/revoke identities in one set of files (Paths)."""

    def __init__(self, paths=None, mqtt_host=None, mqtt_port=None):
        # None = not given: create() uses the defaults, rotate() keeps what the secrets file says
        self.paths = paths or Paths()
        self.mqtt_host = mqtt_host
        self.mqtt_port = mqtt_port

    def _registry(self):
        os.makedirs(os.path.dirname(self.paths.registry), exist_ok=True)
        return Registry(self.paths.registry)

    def _secrets(self, device_id, password, key, key_version, wifi_ssid="", wifi_key=""):
        # The keys firmware.comms.service.Comms.from_board reads (plus key_version, for operators).
        return {
            "device_id": device_id,
            "key": key.hex(),
            "key_version": key_version,
            "wifi_ssid": wifi_ssid,
            "wifi_key": wifi_key,
            "mqtt_host": self.mqtt_host or DEFAULT_MQTT_HOST,
            "mqtt_port": self.mqtt_port or DEFAULT_MQTT_PORT,
            "mqtt_user": device_id,
            "mqtt_password": password,
            "mqtt_tls": False,
        }

    def _write_secrets(self, doc):
        _write_atomic(self.paths.secrets_file(doc["device_id"]), json.dumps(doc, indent=1) + "\n")

    def read_secrets(self, device_id):
        with open(self.paths.secrets_file(device_id)) as f:
            return json.load(f)

    def ensure_bridge_user(self, user=DEFAULT_BRIDGE_USER, password=None):
        """Give the bridge a broker account (and its ACL block); returns its password."""
        password = password or secrets.token_urlsafe(PASSWORD_BYTES)
        set_password(self.paths.passwd, user, password)
        update_acl(self.paths.acl, "bridge:%s" % user, bridge_acl(user))
        return password

    def ensure_operator_user(self, user=DEFAULT_OPERATOR_USER, password=None):
        """A broker account for a person sending commands (`cloud-bridge commands send --username`);
        returns its password."""
        if user.startswith("$") or "/" in user:
            raise ValueError("bad operator user name %r" % user)
        password = password or secrets.token_urlsafe(PASSWORD_BYTES)
        set_password(self.paths.passwd, user, password)
        update_acl(self.paths.acl, "operator:%s" % user, operator_acl(user))
        return password

    def create(self, device_id, site=None, group=None, board=None, name="", wifi_ssid="", wifi_key=""):
        """New identity; returns the secrets dict written for the board. ValueError if it exists."""
        check_device_id(device_id)
        reg = self._registry()
        try:
            if reg.get(device_id) is not None:
                raise ValueError("device %s already exists (use rotate, or revoke then --force)" % device_id)
            key = secrets.token_bytes(KEY_BYTES)
            password = secrets.token_urlsafe(PASSWORD_BYTES)
            reg.add_device(device_id, key, name=name, site=site, group=group, board=board)
        finally:
            reg.close()
        doc = self._secrets(device_id, password, key, 1, wifi_ssid, wifi_key)
        self._write_secrets(doc)
        set_password(self.paths.passwd, device_id, password)
        update_acl(self.paths.acl, "device:%s" % device_id, device_acl(device_id))
        return doc

    def rotate(self, device_id):
        """New password and key; the old ones stop working once the broker rereads its files."""
        reg = self._registry()
        try:
            row = reg.get(device_id)
            if row is None:
                raise ValueError("no device %s" % device_id)
            if not row["enabled"]:
                raise ValueError("device %s is revoked; create it again with --force" % device_id)
            key = secrets.token_bytes(KEY_BYTES)
            reg.rotate_key(device_id, key)
            version = reg.get(device_id)["key_version"]
        finally:
            reg.close()
        password = secrets.token_urlsafe(PASSWORD_BYTES)
        old = {}
        if os.path.exists(self.paths.secrets_file(device_id)):
            old = self.read_secrets(device_id)
        new = self._secrets(device_id, password, key, version)
        doc = dict(new) if not old else dict(old)
        for field in ROTATED_FIELDS:
            doc[field] = new[field]
        doc["device_id"] = device_id
        # the broker address changes only when asked for: a re-flashed board must still find its broker
        if self.mqtt_host is not None:
            doc["mqtt_host"] = self.mqtt_host
        if self.mqtt_port is not None:
            doc["mqtt_port"] = self.mqtt_port
        self._write_secrets(doc)
        set_password(self.paths.passwd, device_id, password)
        return doc

    def revoke(self, device_id):
        """Off the broker (password and ACL gone), disabled in the registry, secrets file deleted."""
        reg = self._registry()
        try:
            if reg.get(device_id) is None:
                raise ValueError("no device %s" % device_id)
            reg.update_device(device_id, enabled=0)
        finally:
            reg.close()
        remove_password(self.paths.passwd, device_id)
        update_acl(self.paths.acl, "device:%s" % device_id, None)
        f = self.paths.secrets_file(device_id)
        if os.path.exists(f):
            os.unlink(f)

    def recreate(self, device_id, **kw):
        """create() for a device that was revoked: removes its old registry row first."""
        reg = self._registry()
        try:
            row = reg.get(device_id)
            if row is not None and row["enabled"]:
                raise ValueError("device %s is active; revoke it first" % device_id)
            if row is not None:
                reg.remove_device(device_id)
        finally:
            reg.close()
        return self.create(device_id, **kw)


def reload_broker(pid):
    """mosquitto rereads password and ACL files on SIGHUP."""
    os.kill(pid, signal.SIGHUP)


# ---------------------------------------------------------------- CLI
def _paths(a):
    return Paths(a.dir, passwd=a.passwd, acl=a.acl, registry=a.registry, secrets_dir=a.secrets_dir)


def _after(a):
    if a.reload_pid:
        reload_broker(a.reload_pid)


def cmd_create(a):
    p = Provisioner(_paths(a), a.mqtt_host, a.mqtt_port)
    kw = dict(site=a.site, group=a.group, board=a.board, name=a.name, wifi_ssid=a.wifi_ssid,
              wifi_key=a.wifi_key)
    doc = p.recreate(a.device, **kw) if a.force else p.create(a.device, **kw)
    _after(a)
    print("created %s: secrets %s, broker files %s %s, registry %s"
          % (doc["device_id"], p.paths.secrets_file(a.device), p.paths.passwd, p.paths.acl, p.paths.registry))
    if not a.wifi_ssid:
        print("note: no --wifi-ssid given; fill in wifi_ssid and wifi_key before copying the file to the "
              "board as /secrets.json (the comms layer refuses to start without them)")
    return 0


def cmd_rotate(a):
    p = Provisioner(_paths(a), a.mqtt_host, a.mqtt_port)
    doc = p.rotate(a.device)
    _after(a)
    print("rotated %s: key version %d, new secrets in %s (copy them to the board)"
          % (a.device, doc["key_version"], p.paths.secrets_file(a.device)))
    return 0


def cmd_revoke(a):
    p = Provisioner(_paths(a))
    p.revoke(a.device)
    _after(a)
    print("revoked %s: removed from %s and %s, disabled in %s"
          % (a.device, p.paths.passwd, p.paths.acl, p.paths.registry))
    return 0


def _service_account(a, ensure, what):
    """bridge-user / operator: make the account, then hand its password over (a file, or stdout)."""
    pw = ensure(Provisioner(_paths(a)), a.user)
    _after(a)
    if a.password_out:
        _write_atomic(a.password_out, pw + "\n")
        print("%s %s: password written to %s" % (what, a.user, a.password_out))
    else:
        print("%s %s password: %s" % (what, a.user, pw))
    return 0


def cmd_bridge_user(a):
    return _service_account(a, Provisioner.ensure_bridge_user, "bridge user")


def cmd_operator(a):
    return _service_account(a, Provisioner.ensure_operator_user, "operator")


def build_parser():
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("where the identity files are")
    g.add_argument("--dir", default=DEFAULT_DIR, help="base folder (default: %(default)s, git-ignored)")
    g.add_argument("--passwd", help="mosquitto password file (default: DIR/mosquitto/passwd)")
    g.add_argument("--acl", help="mosquitto ACL file (default: DIR/mosquitto/acl)")
    g.add_argument("--registry", help="bridge registry SQLite file (default: DIR/registry.sqlite)")
    g.add_argument("--secrets-dir", help="folder of the boards' <device>.json secrets (default: DIR)")
    g.add_argument("--reload-pid", type=int, metavar="PID",
                   help="send SIGHUP to this mosquitto afterwards so it rereads the files")
    broker = argparse.ArgumentParser(add_help=False)
    broker.add_argument("--mqtt-host", default=DEFAULT_MQTT_HOST,
                        help="broker address the board connects to (default: %(default)s, which only "
                             "works for the simulated boards: give a real board your broker's address)")
    broker.add_argument("--mqtt-port", type=int, default=DEFAULT_MQTT_PORT, help="(default: %(default)s)")
    keep = argparse.ArgumentParser(add_help=False)
    keep.add_argument("--mqtt-host", default=None,
                      help="new broker address (default: keep the one in the secrets file)")
    keep.add_argument("--mqtt-port", type=int, default=None, help="new broker port (default: keep it)")

    ap = argparse.ArgumentParser(prog="provision.py", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", metavar="COMMAND", required=True)
    c = sub.add_parser("create", parents=[common, broker], help="new device identity",
                       description="Create a device: random MQTT password and 32-byte HMAC key, secrets "
                                   "file for the board, broker password+ACL entries, registry row.")
    c.add_argument("device", help="device id, [A-Za-z0-9_-]{1,64}")
    c.add_argument("--site")
    c.add_argument("--group")
    c.add_argument("--board", help="boards/<name>.json of this device")
    c.add_argument("--name", default="", help="human name")
    c.add_argument("--wifi-ssid", default="", help="Wi-Fi network of the board (the board needs it)")
    c.add_argument("--wifi-key", default="", help="its passphrase")
    c.add_argument("--force", action="store_true", help="re-create a revoked device")
    c.set_defaults(func=cmd_create)
    r = sub.add_parser("rotate", parents=[common, keep], help="new password and HMAC key",
                       description="Issue a new MQTT password and HMAC key; the old ones stop working. "
                                   "Every other field of the secrets file (broker address, Wi-Fi, TLS) "
                                   "is kept unless given here.")
    r.add_argument("device")
    r.set_defaults(func=cmd_rotate)
    v = sub.add_parser("revoke", parents=[common], help="remove a device from the broker, disable it",
                       description="Remove the device from the password and ACL files, disable it in "
                                   "the registry (its frames are rejected) and delete its secrets file.")
    v.add_argument("device")
    v.set_defaults(func=cmd_revoke)
    b = sub.add_parser("bridge-user", parents=[common], help="broker account for the bridge",
                       description="Add (or reset) the bridge's broker account: read bms/+/up/#, "
                                   "write bms/+/down/receipt (as cloud_bridge/deploy/mosquitto/acl).")
    b.add_argument("user", nargs="?", default=DEFAULT_BRIDGE_USER)
    b.add_argument("--password-out", metavar="FILE", help="write the password here (mode 0600)")
    b.set_defaults(func=cmd_bridge_user)
    o = sub.add_parser("operator", parents=[common], help="broker account that may send commands",
                       description="Add (or reset) an operator's broker account, for `cloud-bridge "
                                   "commands send --username USER`: write bms/+/down/cmd, read "
                                   "bms/+/up/ack and bms/+/up/status (as the deploy ACL's operator).")
    o.add_argument("user", nargs="?", default=DEFAULT_OPERATOR_USER)
    o.add_argument("--password-out", metavar="FILE", help="write the password here (mode 0600)")
    o.set_defaults(func=cmd_operator)
    return ap


def main(argv=None):
    a = build_parser().parse_args(argv)
    try:
        return a.func(a)
    except ValueError as e:
        print("provision: %s" % e, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
