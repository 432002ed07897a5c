"""Ring logger: keeps the last N messages in order, counts all, rejects a zero-size ring."""
import pytest

from firmware.log import RingLog


def test_ring_keeps_last_messages_oldest_first():
    log = RingLog(3)
    for i in range(5):
        log.info("m%d" % i)
    assert log.lines() == ["m2", "m3", "m4"] and log.last() == "m4" and log.count == 5
    log.clear()
    assert log.lines() == [] and log.last() is None


def test_partial_ring_and_bad_size():
    log = RingLog(4)
    log.info("a")
    assert log.lines() == ["a"]
    with pytest.raises(ValueError):
        RingLog(0)
