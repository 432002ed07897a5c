"""The outbox keeps frames oldest-first across RAM and flash, survives reboots and torn writes,
and drops only when full, counting what it dropped."""
import os

import pytest

from firmware.comms.outbox import Outbox


def frame(i, size=20):
    # Recognisable payload: the index in the first two bytes, padded.
    return bytes([i & 0xFF, i >> 8]) + bytes([0xA5]) * (size - 2)


def drain(box):
    out = []
    while True:
        v = box.peek()
        if v is None:
            return out
        out.append(bytes(v))
        box.pop()


def test_ram_only_fifo(tmp_path):
    box = Outbox(str(tmp_path / "ob"), slots=4, slot_bytes=64)
    for i in range(3):
        box.push(frame(i))
    assert len(box) == 3 and box.flash_frames() == 0
    assert drain(box) == [frame(i) for i in range(3)]
    assert box.peek() is None


def test_full_ring_spills_to_one_segment_and_order_is_kept(tmp_path):
    box = Outbox(str(tmp_path / "ob"), slots=4, slot_bytes=64, max_segments=10)
    for i in range(10):
        box.push(frame(i))
    # 10 frames through a 4-slot ring: two spills of 4 frames, 2 frames in RAM.
    assert box.segments() == 2 and box.flash_frames() == 8 and box.ram_frames() == 2
    assert sorted(os.listdir(tmp_path / "ob")) == ["0.seg", "1.seg"]
    assert drain(box) == [frame(i) for i in range(10)]
    assert box.dropped == 0 and os.listdir(tmp_path / "ob") == []


def test_push_while_draining_keeps_global_order(tmp_path):
    box = Outbox(str(tmp_path / "ob"), slots=3, slot_bytes=64, max_segments=10)
    for i in range(7):
        box.push(frame(i))
    got = [bytes(box.peek())]
    box.pop()
    for i in range(7, 12):
        box.push(frame(i))
    got += drain(box)
    assert got == [frame(i) for i in range(12)]


def test_spilled_frames_survive_a_reboot(tmp_path):
    d = str(tmp_path / "ob")
    box = Outbox(d, slots=4, slot_bytes=64, max_segments=10)
    for i in range(9):
        box.push(frame(i))
    # Reboot: RAM is gone (frames 8.. were only in RAM), flash segments come back.
    box2 = Outbox(d, slots=4, slot_bytes=64, max_segments=10)
    assert len(box2) == 8
    assert drain(box2) == [frame(i) for i in range(8)]


def test_torn_spill_is_discarded_at_boot(tmp_path):
    d = tmp_path / "ob"
    box = Outbox(str(d), slots=2, slot_bytes=64, max_segments=10)
    for i in range(4):
        box.push(frame(i))          # one complete segment: frames 0, 1
    (d / "7.tmp").write_bytes(b"\x14\x00partial")   # power lost mid-spill
    box2 = Outbox(str(d), slots=2, slot_bytes=64, max_segments=10)
    assert not (d / "7.tmp").exists()
    assert drain(box2) == [frame(0), frame(1)]


def test_corrupt_segment_is_dropped_and_counted(tmp_path):
    d = tmp_path / "ob"
    box = Outbox(str(d), slots=2, slot_bytes=64, max_segments=10)
    for i in range(6):
        box.push(frame(i))          # segments 0 (f0,f1) and 1 (f2,f3)
    raw = (d / "0.seg").read_bytes()
    (d / "0.seg").write_bytes(raw[:25])   # truncated inside the second record
    box2 = Outbox(str(d), slots=2, slot_bytes=64, max_segments=10)
    assert box2.corrupt == 1
    assert drain(box2) == [frame(2), frame(3)]


def test_full_flash_drops_oldest_segment_and_counts(tmp_path):
    box = Outbox(str(tmp_path / "ob"), slots=2, slot_bytes=64, max_segments=2)
    for i in range(10):
        box.push(frame(i))
    # Spills happened at pushes 2, 4, 6, 8: 4 segments of 2, only 2 kept -> 4 frames dropped.
    assert box.dropped == 4
    assert drain(box) == [frame(i) for i in range(4, 10)]


def test_ram_only_box_drops_oldest(tmp_path):
    box = Outbox(str(tmp_path / "ob"), slots=3, slot_bytes=64, max_segments=0)
    for i in range(5):
        box.push(frame(i))
    assert box.dropped == 2
    assert drain(box) == [frame(2), frame(3), frame(4)]


def test_oversized_frame_is_refused_and_nothing_changes(tmp_path):
    box = Outbox(str(tmp_path / "ob"), slots=2, slot_bytes=32)
    box.push(frame(1))
    with pytest.raises(ValueError, match="does not fit"):
        box.push(bytes(33))
    assert drain(box) == [frame(1)]


def test_bad_sizes_are_rejected():
    with pytest.raises(ValueError):
        Outbox("/nonexistent", slots=0)
    with pytest.raises(ValueError):
        Outbox("/nonexistent", slot_bytes=70000)


def test_failing_flash_keeps_running_and_counts(tmp_path):
    d = tmp_path / "ob"
    box = Outbox(str(d), slots=2, slot_bytes=64, max_segments=5)
    # The spill folder vanishes and a file takes its name: every open() for a spill fails (as root too).
    d.rmdir()
    d.write_bytes(b"")
    for i in range(5):
        box.push(frame(i))
    # Spills at pushes 2 and 4 failed: their frames (0,1 then 2,3) are counted as dropped.
    assert box.dropped == 4 and drain(box) == [frame(4)]


def test_spills_join_the_newest_segment_up_to_segment_bytes(tmp_path):
    d = tmp_path / "ob"
    # 2-slot ring, 22-byte records (20 + length prefix): 3 spills of 2 fit in 140 bytes, the 4th does not.
    box = Outbox(str(d), slots=2, slot_bytes=64, max_segments=10, segment_bytes=140)
    for i in range(17):
        box.push(frame(i))
    assert box.segments() == 3 and box.flash_frames() == 16 and box.ram_frames() == 1
    assert [os.path.getsize(d / n) for n in ("0.seg", "1.seg", "2.seg")] == [132, 132, 88]
    # A reboot reads joined segments like any other.
    box2 = Outbox(str(d), slots=2, slot_bytes=64, max_segments=10, segment_bytes=140)
    assert len(box2) == 16 and drain(box2) == [frame(i) for i in range(16)]


def test_a_spill_joins_the_segment_being_read_without_its_popped_records(tmp_path):
    d = tmp_path / "ob"
    box = Outbox(str(d), slots=2, slot_bytes=64, max_segments=10, segment_bytes=1000)
    for i in range(3):
        box.push(frame(i))              # segment 0: f0, f1; ring: f2
    assert bytes(box.peek_at(1)) == frame(1)    # segment 0 loaded (offsets kept), read ahead of the head
    box.pop()                           # f0 delivered
    for i in range(3, 7):
        box.push(frame(i))              # spills join segment 0: f1, f2, f3, f4, f5 (f0 left out)
    assert box.segments() == 1 and box.flash_frames() == 5
    assert bytes(box.peek_at(4)) == frame(5)    # the window reaches the joined frames
    assert Outbox(str(d), slots=2, slot_bytes=64, max_segments=10).flash_frames() == 5   # after a reboot
    assert drain(box) == [frame(i) for i in range(1, 7)]


def test_torn_join_leaves_the_old_segment(tmp_path):
    d = tmp_path / "ob"
    box = Outbox(str(d), slots=2, slot_bytes=64, max_segments=10, segment_bytes=1000)
    for i in range(3):
        box.push(frame(i))              # 0.seg: f0, f1
    old = (d / "0.seg").read_bytes()
    (d / "0.tmp").write_bytes(old + b"\x14\x00torn")    # power lost while joining f2, f3 into it
    box2 = Outbox(str(d), slots=2, slot_bytes=64, max_segments=10, segment_bytes=1000)
    assert not (d / "0.tmp").exists() and box2.corrupt == 0
    assert drain(box2) == [frame(0), frame(1)]


def test_read_buffer_only_while_frames_are_on_flash(tmp_path):
    box = Outbox(str(tmp_path / "ob"), slots=2, slot_bytes=64, max_segments=10)
    for i in range(5):
        box.push(frame(i))
    assert box._rd is None                  # nothing read from flash yet
    assert bytes(box.peek()) == frame(0) and len(box._rd) == 64
    assert drain(box) == [frame(i) for i in range(5)]
    assert box._rd is None                  # backlog gone: the buffer went with it


def test_segment_longer_than_the_ring_is_read_whole(tmp_path):
    d = str(tmp_path / "ob")
    box = Outbox(d, slots=6, slot_bytes=64, max_segments=10)
    for i in range(7):
        box.push(frame(i))                  # one segment of 6 frames (e.g. written with older settings)
    box2 = Outbox(d, slots=2, slot_bytes=64, max_segments=10)
    assert len(box2) == 6 and bytes(box2.peek_at(5)) == frame(5)
    assert drain(box2) == [frame(i) for i in range(6)]


def test_segment_changed_after_it_was_checked_is_dropped_and_counted(tmp_path):
    d = tmp_path / "ob"
    box = Outbox(str(d), slots=2, slot_bytes=64, max_segments=10)
    for i in range(5):
        box.push(frame(i))                  # 0.seg: f0, f1; 1.seg: f2, f3; ring: f4
    assert bytes(box.peek()) == frame(0)    # 0.seg checked and loaded
    (d / "0.seg").write_bytes((d / "0.seg").read_bytes()[:30])   # then cut inside f1
    assert box.peek_at(1) is None and box.corrupt == 1 and box.dropped == 2
    assert drain(box) == [frame(2), frame(3), frame(4)]
