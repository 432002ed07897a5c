"""Downlink command codes and ack result codes: the one definition, shared by the board and the cloud CLI.

    from firmware.comms import command_codes as cc
    frame.encode_command(dev, key, counter, cc.CMD_SET_CONFIG, {"key": "cell_ov_mv", "value": 3600})

Names follow the CLI's convention (cloud_bridge/cli_commands.py): `CMD_<NAME>` is the command
`<name>` (underscores as dashes), `RESULT_<NAME>` a result code. Parameters of each command are listed
in PARAMS and in docs/comms.md. Codes never change meaning once released; new ones are appended.
"""
try:
    from micropython import const
except ImportError:  # plain CPython (the cloud CLI) without the host port on sys.path
    def const(x):
        return x

# --- commands (frame byte `code`, docs/frame-format.md kind 5) ---
CMD_PING = const(1)          # no params; ack message "pong"
CMD_GET_CONFIG = const(2)    # key: str; ack message "<key>=<value>"
CMD_BALANCING = const(3)     # on: 0/1 (balancing allowed or not)
CMD_FAULT_RESET = const(4)   # mask: int (optional, default every latched fault)
CMD_FET = const(5)           # chg: 0/1, dsg: 0/1 (a request: protection may refuse)
CMD_REBOOT = const(6)        # no params; the board resets after the ack went out
CMD_SET_CONFIG = const(7)    # key: str, value: int; validated, persisted, applied
CMD_TIME_SYNC = const(8)     # wall_s: int (optional, s since 2000-01-01 UTC); without it: NTP now

# --- ack results (frame byte `result`, kind 4) ---
RESULT_OK = const(0)
RESULT_UNKNOWN_COMMAND = const(1)   # code not in the set above
RESULT_UNKNOWN_KEY = const(2)       # config key or parameter name the board does not know
RESULT_BAD_PARAM = const(3)         # missing, wrong type or out of range; nothing changed
RESULT_REFUSED = const(4)           # valid, but the protection or the state forbids it now
RESULT_REPLAY = const(5)            # counter not above the last accepted one; nothing changed
RESULT_BAD_TAG = const(6)           # signature does not verify (unsigned, forged, other device's key)
RESULT_MALFORMED = const(7)         # cannot be parsed (bad version/kind/length/body)
RESULT_FAILED = const(8)            # accepted but the action failed (flash, bus): see the message
RESULT_UNSUPPORTED = const(9)       # this firmware build has no handler for it

# Parameters per command: name -> (type, required, min, max). type "int" or "str"; min/max for ints.
PARAMS = {
    CMD_PING: {},
    CMD_GET_CONFIG: {"key": ("str", True, 0, 0)},
    CMD_BALANCING: {"on": ("int", True, 0, 1)},
    CMD_FAULT_RESET: {"mask": ("int", False, 1, 0x7FFFFFFF)},
    CMD_FET: {"chg": ("int", True, 0, 1), "dsg": ("int", True, 0, 1)},
    CMD_REBOOT: {},
    CMD_SET_CONFIG: {"key": ("str", True, 0, 0), "value": ("int", True, -0x80000000, 0x7FFFFFFF)},
    CMD_TIME_SYNC: {"wall_s": ("int", False, 0, 0x7FFFFFFF)},
}
