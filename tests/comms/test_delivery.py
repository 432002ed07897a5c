"""Delivery receipts on the board (firmware/comms/service.py, outbox.py) and their codec (frame.py),
without a broker: a frame leaves its outbox only when a verified receipt names it; a lost head is sent
again when a later frame is confirmed first, after a new session, or after the (doubling) timeout.
The same behaviour against real mosquitto and the real bridge: test_service_broker.py, tests/bridge."""
import pytest

from firmware.comms import frame
from firmware.comms import service as S
from firmware.comms.outbox import Outbox
from tests.comms.comms_helpers import DEV, KEY, make_comms, make_sample, step_sample


class LoopLink:
    """The link's interface as Comms uses it, over nothing: every publish is acknowledged (PUBACK)
    and recorded; `lose` holds seqs the 'broker' acknowledges and then loses."""

    def __init__(self):
        self.up = True
        self.sessions = 1
        self.inbox = []
        self.timeout_ms = 10
        self.on_receipt = None
        self.published = []          # seqs, in publish order (resends included)
        self.frames = {}             # seq -> bytes
        self.lose = set()
        p = "bms/" + DEV
        self.topic_cmd = p + "/down/cmd"
        self.topic_receipt = p + "/down/receipt"
        self.topic_by_kind = (None, p + "/up/telemetry", p + "/up/event", p + "/up/status", p + "/up/ack")

    def begin(self, budget_ms):
        pass

    def poll(self):
        pass

    def fits(self, units, timeout_ms=-1):
        return False                 # no time sync here

    def publish(self, topic, mv, retain=False):
        if not self.up:
            return False
        b = bytes(mv)
        seq = frame.peek_header(b)["seq"]
        self.published.append(seq)
        if seq in self.lose:
            self.lose.discard(seq)   # lost once; a resend goes through
        else:
            self.frames[seq] = b
        return True

    def close(self):
        pass

    # the bridge's side
    def confirm(self, seqs, boot=1, key=KEY):
        for r in frame.encode_receipts(DEV, key, boot, seqs):
            self.on_receipt(r)

    def delivered(self):
        """seqs that reached the 'bridge' and are not confirmed yet, oldest first."""
        return sorted(self.frames)


@pytest.fixture
def board(tmp_path, sim_clock):
    link = LoopLink()
    comms = make_comms(tmp_path, link, batch_ms=2000, receipt_timeout_ms=30000)
    return comms, link


def run(comms, sim_clock, seconds, s=None):
    s = s or make_sample()
    for i in range(seconds * 4):
        step_sample(s, i)
        comms.offer_sample(s)
        comms.poll(50)
        sim_clock.advance_ms(250)


def test_a_frame_stays_after_its_puback_until_a_receipt_names_it(board, sim_clock):
    comms, link = board
    run(comms, sim_clock, 10)
    assert comms.frames_sent >= 5 and comms.pending() == comms.frames_sent   # all PUBACKed, all held
    link.confirm(link.delivered())
    assert comms.pending() == 0 and comms.frames_confirmed == comms.frames_sent
    assert comms.resends == 0


def test_receipts_for_frames_behind_an_unconfirmed_head_are_remembered(board, sim_clock):
    comms, link = board
    run(comms, sim_clock, 10)
    seqs = link.delivered()
    link.confirm(seqs[2:])                       # later frames first (say, a second bridge was faster)
    assert comms.pending() == len(seqs)
    link.confirm(seqs[:2])
    assert comms.pending() == 0


def test_a_lost_head_is_sent_again_as_soon_as_a_later_frame_is_confirmed(board, sim_clock):
    comms, link = board
    run(comms, sim_clock, 2)
    first = link.delivered()
    link.confirm(first)
    assert comms.pending() == 0
    nxt = comms.seq                              # the next frame's seq: the broker will lose it
    link.lose.add(nxt)
    run(comms, sim_clock, 8)
    assert nxt not in link.frames and comms.pending() >= 3
    link.confirm(link.delivered())               # everything the bridge got: not the lost one
    assert comms.fast_resends == 1
    assert link.published.count(nxt) == 1        # resent at the next drain, not yet
    comms.poll(50)
    assert link.published.count(nxt) == 2 and nxt in link.frames
    link.confirm([nxt] + link.delivered())
    assert comms.pending() == 0


def test_unconfirmed_frames_are_sent_again_after_the_timeout_which_doubles(board, sim_clock):
    comms, link = board
    run(comms, sim_clock, 4)                     # nobody confirms: the bridge is down
    first = min(s for s in link.published if frame.peek_header(link.frames[s])["kind"] == 1)

    def sends():
        return link.published.count(first)
    assert sends() == 1
    run(comms, sim_clock, 29)                    # 31 s after the first telemetry frame (at 2 s)
    assert sends() == 2
    run(comms, sim_clock, 30)                    # the timeout is now 60 s: no resend yet
    assert sends() == 2
    run(comms, sim_clock, 31)
    assert sends() == 3
    link.confirm(link.delivered())               # the bridge is back: progress resets the timeout
    assert comms.frames_confirmed == len(link.frames)
    k0 = len(link.published)
    run(comms, sim_clock, 20)
    later = link.published[k0:]
    assert later and len(set(later)) == len(later)          # 20 s on: nothing sent twice yet
    run(comms, sim_clock, 12)
    later = link.published[k0:]
    assert len(set(later)) < len(later)                     # 30 s again, not 120


def test_a_new_session_sends_every_unconfirmed_frame_again(board, sim_clock):
    comms, link = board
    run(comms, sim_clock, 6)
    held = comms.pending()
    before = len(link.published)
    link.sessions += 1                           # the broker restarted: we reconnected
    comms.poll(50)
    assert comms.resends == 2                    # both outboxes (telemetry, and the first status)
    resent = link.published[before:]
    assert len(resent) == held + 1              # every held frame again, plus the new status frame
    assert sorted(resent) == sorted(set(resent))


@pytest.mark.parametrize("how", ["other_key", "truncated", "command", "other_boot", "flipped"])
def test_a_receipt_that_does_not_verify_changes_nothing(board, sim_clock, how):
    comms, link = board
    run(comms, sim_clock, 6)
    held = comms.pending()
    seqs = link.delivered()
    good = frame.encode_receipts(DEV, KEY, 1, seqs)[0]
    bad = {"other_key": frame.encode_receipts(DEV, bytes(32), 1, seqs)[0],
           "truncated": good[:-1],
           "command": frame.encode_command(DEV, KEY, 9, 1, {}),
           "other_boot": frame.encode_receipts(DEV, KEY, 2, seqs)[0],
           "flipped": good[:9] + bytes([good[9] ^ 1]) + good[10:]}[how]
    link.on_receipt(bad)
    assert comms.pending() == held
    assert comms.bad_receipts == (0 if how == "other_boot" else 1)   # another boot's is valid, not ours


def test_without_receipts_a_frame_leaves_at_its_puback(tmp_path, sim_clock):
    link = LoopLink()
    comms = make_comms(tmp_path, link, batch_ms=2000, receipts=False)
    run(comms, sim_clock, 10)
    assert comms.frames_sent >= 5 and comms.pending() == 0


def test_at_most_max_unconfirmed_frames_are_out(tmp_path, sim_clock):
    link = LoopLink()
    comms = make_comms(tmp_path, link, sample_every_ms=1000, batch_ms=1000, receipt_timeout_ms=600000,
                       receipt_timeout_max_ms=600000, tlm_slots=64)     # all in RAM: no segment limit
    run(comms, sim_clock, 60)
    assert comms.pending() > S.MAX_UNCONFIRMED
    assert comms.tlm_box.sent + comms.evt_box.sent == S.MAX_UNCONFIRMED == len(link.published)
    link.confirm(link.delivered())
    comms.poll(50)
    assert len(link.published) > S.MAX_UNCONFIRMED


def test_receipt_timeouts_are_validated(tmp_path, sim_clock):
    with pytest.raises(ValueError):
        make_comms(tmp_path, LoopLink(), receipt_timeout_ms=999)
    with pytest.raises(ValueError):
        make_comms(tmp_path, LoopLink(), receipt_timeout_ms=60000, receipt_timeout_max_ms=30000)


# ---------------------------------------------------------------- the outbox's sent mark
def _frame(i):
    return bytes([1, 1, 0, 1, 0, 0, 0, i, 0, 0, 0]) + bytes(20)


def test_outbox_reads_ahead_of_the_head_through_ram_and_the_oldest_segment(tmp_path):
    box = Outbox(str(tmp_path / "ob"), slots=3, slot_bytes=64, max_segments=4)
    for i in range(3):
        box.push(_frame(i))
    box.mark_sent()
    box.mark_sent()
    assert bytes(box.peek_unsent())[7] == 2
    box.push(_frame(3))                          # ring full: spills 0..2 (2 of them sent) to flash
    assert box.flash_frames() == 3 and box.sent == 2
    assert bytes(box.peek_unsent())[7] == 2
    box.mark_sent()
    assert bytes(box.peek_unsent())[7] == 3      # past the only segment into RAM
    for i in range(4, 7):
        box.push(_frame(i))                      # a second segment: 3..5 spilled, 6 in RAM
    assert box.sent == 3 and box.peek_unsent() is None   # read-ahead stops at the oldest segment
    box.pop()
    assert box.sent == 2 and bytes(box.peek())[7] == 1
    box.rewind()
    assert box.sent == 0 and bytes(box.peek_unsent())[7] == 1
    assert [bytes(box.peek_at(i))[7] for i in range(2)] == [1, 2]


def test_outbox_drop_of_the_oldest_segment_keeps_the_sent_mark_consistent(tmp_path):
    box = Outbox(str(tmp_path / "ob"), slots=2, slot_bytes=64, max_segments=1)
    box.push(_frame(0))
    box.push(_frame(1))
    box.mark_sent()
    box.push(_frame(2))                          # spill 0,1 (segment 1 of 1)
    box.push(_frame(3))
    box.push(_frame(4))                          # spill 2,3: the oldest segment (0,1) is dropped
    assert box.dropped == 2 and box.sent == 0
    assert bytes(box.peek_unsent())[7] == 2


# ---------------------------------------------------------------- the receipt codec
def test_receipts_merge_runs_and_split_when_long():
    seqs = list(range(0, 600)) + [1000, 1002]
    rs = frame.encode_receipts(DEV, KEY, 7, seqs + seqs)      # duplicates named once
    got = []
    for r in rs:
        boot, ss = frame.receipt_seqs(r, DEV, KEY)
        assert boot == 7
        got += ss
    assert got == seqs
    assert len(rs) == 1 and len(rs[0]) == frame.RECEIPT_HDR + 5 * 5 + frame.TAG_LEN   # 255+255+90, 2
    many = frame.encode_receipts(DEV, KEY, 1, range(0, 400, 2))                     # 200 runs of 1
    assert len(many) == 4 and all(len(r) <= frame.RECEIPT_HDR + 5 * frame.MAX_RECEIPT_RUNS + 12
                                  for r in many)
    boot, runs = frame.check_receipt(many[0], DEV, KEY)
    assert frame.receipt_has(many[0], runs, 0) and not frame.receipt_has(many[0], runs, 1)


def test_receipts_are_not_commands_nor_uplink_frames():
    r = frame.encode_receipts(DEV, KEY, 1, [3])[0]
    with pytest.raises(frame.UnknownKind):
        frame.verify_command(r, DEV, KEY)
    with pytest.raises(frame.UnknownKind):
        frame.decode(r, DEV, KEY)
    with pytest.raises(frame.UnknownKind):
        frame.check_receipt(frame.encode_command(DEV, KEY, 1, 1, {}), DEV, KEY)
    with pytest.raises(frame.BadTag):
        frame.check_receipt(r, "bms-0002", KEY)                 # bound to the device id


@pytest.mark.parametrize("mutate,err", [
    (lambda b: b[:20], frame.Truncated),
    (lambda b: bytes([2]) + b[1:], frame.UnknownVersion),
    (lambda b: b + bytes(frame.MAX_FRAME), frame.Oversized),
])
def test_receipt_shape_errors_are_distinct(mutate, err):
    r = frame.encode_receipts(DEV, KEY, 1, [3, 4, 9])[0]
    with pytest.raises(err):
        frame.check_receipt(mutate(r), DEV, KEY)


def test_receipt_with_a_bad_run_count_is_malformed_even_with_a_good_tag():
    from firmware.comms import auth
    body = bytes([1, frame.KIND_RECEIPT, 0, 1, 0, 0, 0, 2, 3, 0, 0, 0, 1])   # says 2 runs, has 1
    msg = body + auth.Authenticator(KEY).tag(DEV.encode(), body)
    with pytest.raises(frame.Malformed):
        frame.check_receipt(msg, DEV, KEY)
    body = bytes([1, frame.KIND_RECEIPT, 0, 1, 0, 0, 0, 1, 3, 0, 0, 0, 0])   # an empty run
    with pytest.raises(frame.Malformed):
        frame.check_receipt(body + auth.Authenticator(KEY).tag(DEV.encode(), body), DEV, KEY)
