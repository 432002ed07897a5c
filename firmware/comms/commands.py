"""Downlink commands: verify the signed envelope, refuse replays, check parameters, dispatch, answer.

    cmds = Commands("bms-0001", key, IntFile("/comms/cmd_hwm"), handler=app_hook, timesync=ts)
    counter, code, result, message = cmds.handle(payload)      # None: an error ack was rate-limited

The envelope (layout, tag, device binding) is the codec's (`frame.verify_command`, docs/frame-format.md
kind 5); codes, parameters and results are `command_codes` (docs/comms.md). Order of checks: parse and
tag (BAD_TAG / MALFORMED), counter above the persisted high-water mark (REPLAY), then the high-water mark
is stored (atomically, before acting, so a crash in the action cannot let the same frame run twice),
then parameters (UNKNOWN_COMMAND / BAD_PARAM) and the action. Whatever is refused changes nothing
but the high-water mark. Ping, time sync and reboot are handled here; the pack and config actions go
to `handler(code, params) -> (result, message)`, which the app wires (see `set_config`/`get_config`).
Errors for frames that are not authentic (bad tag, unparsable, replays) are answered at most
`error_acks_per_min` times a minute, so a flood of junk cannot fill the uplink with acks.
"""
import time

from firmware.comms import frame
from firmware.comms.command_codes import *  # noqa: F401,F403  (CMD_*/RESULT_* for the CLI's command_set())
from firmware.comms import command_codes as _cc

MAX_MESSAGE = 120                # bytes of ack text (the frame allows 255)


def _text(e):
    s = str(e)
    return s[:MAX_MESSAGE]


def check_params(code, params):
    """(result, message): RESULT_OK when params match command_codes.PARAMS[code]."""
    spec = _cc.PARAMS.get(code)
    if spec is None:
        return _cc.RESULT_UNKNOWN_COMMAND, "unknown command %d" % code
    for k in params:
        if k not in spec:
            return _cc.RESULT_BAD_PARAM, "unknown parameter %s" % k[:32]
    for k in spec:
        typ, required, lo, hi = spec[k]
        if k not in params:
            if required:
                return _cc.RESULT_BAD_PARAM, "missing parameter %s" % k
            continue
        v = params[k]
        if typ == "int":
            if not isinstance(v, int):
                return _cc.RESULT_BAD_PARAM, "%s must be an integer" % k
            if not lo <= v <= hi:
                return _cc.RESULT_BAD_PARAM, "%s out of range %d..%d" % (k, lo, hi)
        elif not isinstance(v, str) or not v:
            return _cc.RESULT_BAD_PARAM, "%s must be text" % k
    return _cc.RESULT_OK, ""


# ---- config helpers the app's handler can use (atomic: validate a copy, persist, then apply)
_NOT_SETTABLE = ("chemistry", "ocv_table")


def get_config(cfg, key):
    if key not in cfg or key in _NOT_SETTABLE:
        return _cc.RESULT_UNKNOWN_KEY, "unknown key %s" % key[:32]
    return _cc.RESULT_OK, "%s=%s" % (key, cfg[key])


def set_config(cfg, key, value, path=None):
    """Validate cfg with key=value (firmware.config.validate), persist it (store.save, atomic), then
    change cfg in place. On any refusal cfg and the file are untouched."""
    from firmware.config import store, validate
    if key not in cfg or key in _NOT_SETTABLE:
        return _cc.RESULT_UNKNOWN_KEY, "unknown key %s" % key[:32]
    cand = dict(cfg)
    cand[key] = value
    try:
        validate.check(cand)
    except ValueError as e:
        return _cc.RESULT_BAD_PARAM, _text(e)
    if path:
        try:
            store.save(path, cand)
        except OSError as e:
            return _cc.RESULT_FAILED, "save failed: %s" % _text(e)
    cfg[key] = value
    return _cc.RESULT_OK, "%s=%d" % (key, value)


class Commands:
    def __init__(self, device_id, key, hwm, handler=None, timesync=None, error_acks_per_min=6):
        self.device_id = device_id
        self._key = key                  # bytes, hex str or auth.Authenticator (build it once)
        self._hwm = hwm                  # bootcount.IntFile: last accepted counter
        self.last_counter = hwm.read(0)
        self.handler = handler
        self.timesync = timesync
        self.error_acks_per_min = error_acks_per_min
        self._win_t = time.ticks_ms()
        self._win_n = 0
        self.reboot_requested = False
        self.accepted = 0
        self.rejected = 0
        self.suppressed = 0              # error acks not sent (rate limit)

    def _limited(self, counter, code, result, message):
        self.rejected += 1
        now = time.ticks_ms()
        if time.ticks_diff(now, self._win_t) >= 60000:
            self._win_t = now
            self._win_n = 0
        if self._win_n >= self.error_acks_per_min:
            self.suppressed += 1
            return None
        self._win_n += 1
        return counter, code, result, message

    def handle(self, payload):
        """Process one downlink payload. (counter, code, result, message) for the ack, or None."""
        b = bytes(payload)
        try:
            hdr = frame.peek_header(b)
        except frame.FrameError as e:
            return self._limited(0, 0, _cc.RESULT_MALFORMED, "malformed: %s" % e.reason)
        counter = hdr.get("counter", 0)
        code = b[7] if hdr["kind"] == frame.KIND_COMMAND else 0
        try:
            cmd = frame.verify_command(b, self.device_id, self._key)
        except frame.BadTag:
            return self._limited(counter, code, _cc.RESULT_BAD_TAG, "bad tag")
        except frame.FrameError as e:
            return self._limited(counter, code, _cc.RESULT_MALFORMED, "malformed: %s" % e.reason)
        if counter <= self.last_counter:
            return self._limited(counter, code, _cc.RESULT_REPLAY,
                                 "replay: counter %d <= %d" % (counter, self.last_counter))
        try:
            self._hwm.write(counter)
        except OSError as e:
            self.rejected += 1
            return counter, code, _cc.RESULT_FAILED, "cannot store counter: %s" % _text(e)
        self.last_counter = counter
        result, message = self._run(code, cmd["params"])
        if result == _cc.RESULT_OK:
            self.accepted += 1
        else:
            self.rejected += 1
        return counter, code, result, message

    def _run(self, code, params):
        result, message = check_params(code, params)
        if result != _cc.RESULT_OK:
            return result, message
        if code == _cc.CMD_PING:
            return _cc.RESULT_OK, "pong"
        if code == _cc.CMD_REBOOT:
            self.reboot_requested = True
            return _cc.RESULT_OK, "rebooting"
        if code == _cc.CMD_TIME_SYNC:
            ts = self.timesync
            if ts is None:
                return _cc.RESULT_UNSUPPORTED, "no time keeping"
            if "wall_s" in params:
                ts.set_wall(params["wall_s"], 0)
                return _cc.RESULT_OK, "wall clock set"
            ts.request()
            return _cc.RESULT_OK, "ntp sync requested"
        if self.handler is None:
            return _cc.RESULT_UNSUPPORTED, "no handler for command %d" % code
        try:
            out = self.handler(code, params)
        except ValueError as e:
            return _cc.RESULT_BAD_PARAM, _text(e)
        except OSError as e:
            return _cc.RESULT_FAILED, _text(e)
        if not isinstance(out, tuple) or len(out) != 2:
            return _cc.RESULT_FAILED, "handler returned %r" % (out,)
        return out[0], _text(out[1])
