"""Comms in the MicroPython VM with the compiled firmware: offer_sample allocates nothing, a batch
goes through the encoder and the outbox (flash spill included) and decodes back, commands verify, and
the heap the comms objects take is measured.

    node tools/mpvm/run.mjs --only test_comms_service
"""
import os

import vmtest
from firmware.comms import command_codes as cc
from firmware.comms import frame
from firmware.comms.bootcount import IntFile
from firmware.comms.commands import Commands
from firmware.comms.link import Link
from firmware.comms.service import Comms
from firmware.sample import Sample

DEV = "bms-0001"
KEY = bytes(range(32))
_n = [0]


def _dir():
    _n[0] += 1
    d = "/tmp_comms%d" % _n[0]
    try:
        os.mkdir(d)
    except OSError:
        pass
    return d


def _comms(d):
    link = Link(DEV, "ssid", "key", "127.0.0.1", user=DEV, password="pw")
    return Comms(DEV, KEY, link, spill_dir=d + "/outbox", state_dir=d + "/state", cell_count=16,
                 temp_count=3, sample_every_ms=1000, batch_ms=10000)


def _sample():
    s = Sample(16, 3)
    for i in range(16):
        s.cell_mv[i] = 3300 + i
    for j in range(3):
        s.temp_dc[j] = 250 + j
    s.stack_mv = 52800
    s.current_ma = -1200
    s.soc_cpct = 5000
    return s


def test_offer_sample_allocates_nothing():
    with vmtest.use_sim_clock(0) as clock:
        c = _comms(_dir())
        s = _sample()
        for i in range(9):                      # the first call opens the batch, later ones append
            s.t_ms = clock.ticks_ms()
            s.current_ma = -1200 + i * 37
            s.cell_mv[3] = 3300 + i
            vmtest.assert_no_alloc(c.offer_sample, s)
            clock.advance_ms(250)
            vmtest.assert_no_alloc(c.offer_sample, s)   # decimated: within sample_every_ms
            clock.advance_ms(750)
        if c.samples != 9:
            raise AssertionError("took %d samples, want 9" % c.samples)


def test_batch_through_outbox_and_flash_decodes_back():
    with vmtest.use_sim_clock(0) as clock:
        d = _dir()
        c = _comms(d)
        s = _sample()
        sent = []
        for i in range(130):                    # 13 frames of 10 samples: the 10-slot ring spills once
            s.t_ms = clock.ticks_ms()
            s.current_ma = i
            c.offer_sample(s)
            sent.append(i)
            clock.advance_ms(1000)
            if i % 10 == 9:
                c.flush()
        if c.tlm_box.flash_frames() == 0:
            raise AssertionError("expected a flash segment")
        got = []
        while True:
            mv = c.tlm_box.peek()
            if mv is None:
                break
            f = frame.decode(bytes(mv), DEV, KEY)
            if f["boot"] != c.boot or f["cell_count"] != 16:
                raise AssertionError("header %r" % (f,))
            for x in f["samples"]:
                got.append(x["current_ma"])
                if x["cell_mv"][15] != 3315 or x["temp_dc"] != [250, 251, 252]:
                    raise AssertionError("sample %r" % (x,))
            c.tlm_box.pop()
        if got != sent:
            raise AssertionError("got %r" % (got,))


def test_commands_verify_in_the_vm():
    d = _dir()
    cmds = Commands(DEV, KEY, IntFile(d + "/hwm"))
    ok = cmds.handle(frame.encode_command(DEV, KEY, 5, cc.CMD_PING, {}))
    if ok != (5, cc.CMD_PING, cc.RESULT_OK, "pong"):
        raise AssertionError(repr(ok))
    if cmds.handle(frame.encode_command(DEV, KEY, 5, cc.CMD_PING, {}))[2] != cc.RESULT_REPLAY:
        raise AssertionError("replay accepted")
    bad = cmds.handle(frame.encode_command(DEV, bytes(32), 6, cc.CMD_PING, {}))
    if bad[2] != cc.RESULT_BAD_TAG:
        raise AssertionError(repr(bad))
    r = cmds.handle(frame.encode_command(DEV, KEY, 7, cc.CMD_FET, {"chg": 3, "dsg": 0}))
    if r[2] != cc.RESULT_BAD_PARAM:
        raise AssertionError(repr(r))
    if IntFile(d + "/hwm").read() != 7:
        raise AssertionError("high-water mark not persisted")


def test_heap_used_by_comms():
    """Heap taken by one Comms (link, two outboxes, two encoders, commands, time sync) once built,
    and by a full batch cycle (10 samples, close + HMAC + push). Printed for the report; bounded here."""
    d = _dir()
    keep = []
    with vmtest.use_sim_clock(0) as clock:
        built = vmtest.mem_alloc_delta(lambda: keep.append(_comms(d)))
        c = keep[0]
        s = _sample()

        def batch():
            for i in range(10):
                s.t_ms = clock.ticks_ms()
                s.current_ma = i
                c.offer_sample(s)
                clock.advance_ms(1000)
            c.flush()

        per_batch = vmtest.mem_alloc_delta(batch)
    print("comms heap: built %d bytes, one 10-sample batch closed %d bytes" % (built, per_batch))
    if built > 40000:
        raise AssertionError("comms takes %d bytes of heap (budget 40000)" % built)
