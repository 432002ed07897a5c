"""Drill: 100,000 fuzzed frames into the codec and the bridge's verifier, 10,000 fuzzed commands into
the board's command handler (seeded mutation fuzzing; quick: a tenth).

    r = run(folder, quick=False)

Proves that hostile or broken input is always refused with a reason and never crashes: the codec raises
only FrameError subclasses (each with .reason), the bridge's verifier turns every payload into an
accepted frame or a named reject, and the board answers every command with an ack result code and
a message - including frames that pass the signature check because they were re-signed after the
mutation, which reach the body parser and the parameter checks.
"""
import os
import random
import re

from tools.drills.common import Result, real_time  # first: installs the host port

from cloud_bridge.registry import Registry  # noqa: E402
from cloud_bridge.verify import Verifier  # noqa: E402
from firmware.comms import auth, frame  # noqa: E402
from firmware.comms import command_codes as cc  # noqa: E402
from firmware.comms.bootcount import IntFile  # noqa: E402
from firmware.comms.commands import Commands  # noqa: E402
from firmware.comms.timesync import TimeSync  # noqa: E402
from tests.bridge.frames import KEY, Board  # noqa: E402

NAME = "fuzz"
TITLE = "Fuzzed frames and commands"
DEV = "bms-0001"
SEED = 424242
RESULT_NAMES = dict((getattr(cc, n), n[len("RESULT_"):].lower()) for n in dir(cc) if n.startswith("RESULT_"))
PARAM_KEYS = ("key", "value", "on", "mask", "chg", "dsg", "wall_s", "x", "cell_ov_mv", "K" * 32)
STR_VALUES = ("cell_ov_mv", "comms_budget_ms", "period_ms", "chemistry", "ocv_table", "nope", "é", "1")


def mutate(b, rng):
    """One random structural mutation of b (bytes)."""
    b = bytearray(b)
    op = rng.randrange(8)
    if op == 0 and b:
        b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
    elif op == 1 and b:
        del b[rng.randrange(len(b)):]
    elif op == 2:
        b += bytes(rng.randrange(256) for _ in range(rng.randrange(1, 24)))
    elif op == 3 and b:
        i = rng.randrange(len(b))
        del b[i:i + rng.randrange(1, 6)]
    elif op == 4 and len(b) > 3:
        b[rng.randrange(3)] = rng.randrange(256)
    elif op == 5 and b:
        i = rng.randrange(len(b))
        for j in range(i, min(len(b), i + rng.randrange(1, 10))):
            b[j] = rng.randrange(256)
    elif op == 6 and b:
        i = rng.randrange(len(b))
        b[i:i] = bytes([rng.choice((0, 0x7F, 0x80, 0xFF))]) * rng.randrange(1, 8)
    else:
        b = b * rng.randrange(2, 8)
    return bytes(b)


def resign(b, a, dev):
    """Replace the tag of a mutated frame with a valid one, so the body parser sees it."""
    body = b[:-frame.TAG_LEN] if len(b) > frame.TAG_LEN else b
    return body + a.tag(auth.device_id_bytes(dev), body)


def _fuzz_frames(n, rng, folder):
    a = auth.Authenticator(KEY)
    b = Board(DEV, cells=4, temps=1)
    bases = [b.telemetry(1), b.telemetry(10), b.status(), b.events([1, 2]), b.ack(3),
             Board(DEV, cells=16, temps=3, wall=False).telemetry(5)]
    kinds = ["telemetry", "telemetry", "status", "event", "ack", "telemetry"]
    reg = Registry(os.path.join(folder, "registry.sqlite"))
    reg.add_device(DEV, KEY)
    ver = Verifier(reg)
    codec, bridge, crashes, examples = {}, {}, 0, []
    for i in range(n):
        k = rng.randrange(len(bases))
        r = rng.random()
        if r < 0.25:
            p = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 600)))
        elif r < 0.6:
            p = mutate(bases[k], rng)
        else:
            p = resign(mutate(bases[k], rng), a, DEV)
        try:
            frame.decode(p, DEV, KEY)
            out = "accepted (decodes)"
        except frame.FrameError as e:
            out = e.reason
        except Exception as e:     # a crash: counted, reported, never hidden
            crashes += 1
            out = "CRASH " + type(e).__name__
            examples.append("%s: %s (%s)" % (type(e).__name__, e, p[:40].hex()))
        codec[out] = codec.get(out, 0) + 1
        try:
            v = ver.check("bms/%s/up/%s" % (DEV, kinds[k]), p, 1700000000000 + i)
            vout = v.reason or ("offline" if v.offline else "accepted")
        except Exception as e:
            crashes += 1
            vout = "CRASH " + type(e).__name__
            examples.append("verifier %s: %s" % (type(e).__name__, e))
        bridge[vout] = bridge.get(vout, 0) + 1
    return codec, bridge, crashes, examples


def _shape(message):
    """The message with numbers and mutated names replaced, so the table groups by kind of reason."""
    m = re.sub(r"-?[0-9]+", "N", message)
    return re.sub(r"^(unknown parameter|unknown key) .*", r"\1 <name>", m)[:48]


def _random_params(rng):
    params = {}
    for _ in range(rng.randrange(0, 4)):
        k = rng.choice(PARAM_KEYS)
        if rng.random() < 0.6:
            params[k] = rng.choice((0, 1, -1, 2, 3600, 0x7FFFFFFF, -0x80000000, rng.randrange(-5000, 5000)))
        else:
            params[k] = rng.choice(STR_VALUES)
    return params


def _fuzz_commands(n, rng, folder):
    from tools.simboard import SimBoard
    sb = SimBoard("sim4_nmc", seed=7)       # the real app's handler on the emulated board
    sb.app.cfg_path = os.path.join(folder, "config.json")
    a = auth.Authenticator(KEY)
    cmds = Commands(DEV, a, IntFile(os.path.join(folder, "cmd_hwm")), handler=sb.app.handle_command,
                    timesync=TimeSync(ntp=lambda timeout_ms: 0), error_acks_per_min=n + 1)
    counter = 0
    sent = []
    results, crashes, examples, no_reason, accepted = {}, 0, [], 0, {}
    for i in range(n):
        r = rng.random()
        if r < 0.15:
            p = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 120)))
        elif r < 0.35 and sent:
            p = mutate(rng.choice(sent), rng)
        elif r < 0.55 and sent:
            m = bytearray(mutate(rng.choice(sent), rng))
            if len(m) >= 7 and rng.random() < 0.9:      # a fresh counter, so the body checks are reached
                counter = max(counter, cmds.last_counter) + 1
                m[3:7] = bytes(((counter >> s) & 0xFF) for s in (0, 8, 16, 24))
            p = resign(bytes(m), a, DEV)
        elif r < 0.65 and sent:
            p = rng.choice(sent)                   # replay
        else:
            # an authentic mutation may have raised the high-water mark far ahead: continue above it
            counter = max(counter, cmds.last_counter) + rng.randrange(1, 3)
            code = rng.randrange(0, 12)
            if code == cc.CMD_REBOOT:
                code = cc.CMD_PING                 # a reboot would end the board's run, not the drill
            p = frame.encode_command(DEV, a, counter, code, _random_params(rng))
            sent.append(p)
        try:
            out = cmds.handle(p)
        except Exception as e:
            crashes += 1
            examples.append("%s: %s (%s)" % (type(e).__name__, e, p[:40].hex()))
            continue
        if out is None:
            results["suppressed (rate limit)"] = results.get("suppressed (rate limit)", 0) + 1
            continue
        _, code, result, message = out
        name = RESULT_NAMES.get(result, "result %d" % result)
        if result == cc.RESULT_OK:
            accepted[code] = accepted.get(code, 0) + 1
        elif not message:
            no_reason += 1
        key = name if result == cc.RESULT_OK else "%s: %s" % (name, _shape(message))
        results[key] = results.get(key, 0) + 1
        cmds.reboot_requested = False
    return results, crashes, examples, no_reason, accepted


def run(folder, quick=False, log=print):
    n_frames = 10000 if quick else 100000
    n_cmds = 1000 if quick else 10000
    rng = random.Random(SEED)
    r = Result(NAME, TITLE, __doc__.split("\n\n")[2].strip())
    try:
        codec, bridge, c1, ex1 = _fuzz_frames(n_frames, rng, folder)
        log("  %d frames done" % n_frames)
        results, c2, ex2, no_reason, accepted = _fuzz_commands(n_cmds, rng, folder)
        log("  %d commands done" % n_cmds)
    finally:
        real_time()
    r.add("seed", SEED)
    r.add("fuzzed frames (25 % random, 35 % mutated, 40 % mutated and re-signed)", n_frames)
    r.add("frames: crashes (exceptions other than FrameError) in decode or the verifier", c1)
    r.add("frames: rejected by the codec with a reason", sum(v for k, v in codec.items()
                                                             if not k.startswith(("accepted", "CRASH"))))
    r.add("frames: decoded (re-signed mutations that are valid frames)", codec.get("accepted (decodes)", 0))
    r.add("fuzzed commands (15 % random, 20 % mutated, 20 % re-signed, 10 % replays, 35 % random "
          "well-formed)", n_cmds)
    r.add("commands: crashes", c2)
    r.add("commands: rejected without a message", no_reason)
    r.add("commands: accepted (authentic, fresh, valid parameters)", sum(accepted.values()))
    r.table("Codec (frame.decode) outcome per fuzzed frame", ["outcome", "frames"],
            sorted(codec.items(), key=lambda x: -x[1]))
    r.table("Bridge verifier (cloud_bridge.verify) outcome for the same frames", ["outcome", "frames"],
            sorted(bridge.items(), key=lambda x: -x[1]))
    r.table("Board command handler: ack result and its message (numbers as N)", ["result", "commands"],
            sorted(results.items(), key=lambda x: -x[1]))
    r.table("Accepted commands by code", ["command", "accepted"],
            sorted(((dict((getattr(cc, k), k[4:].lower()) for k in dir(cc) if k.startswith("CMD_")).get(c, c),
                     v) for c, v in accepted.items()), key=lambda x: -x[1]))
    for e in (ex1 + ex2)[:8]:
        r.note("crash: " + e)
    r.check(c1 == 0, "%d crashes on fuzzed frames" % c1)
    r.check(c2 == 0, "%d crashes on fuzzed commands" % c2)
    r.check(no_reason == 0, "%d commands rejected without a message" % no_reason)
    return r
