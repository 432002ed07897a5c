"""The bridge's telemetry fast path writes exactly the lines of the general mapper.

mapper.telemetry_lines() builds line protocol straight from a decoded frame (the bridge's hot path,
see tools/bench); these tests pin it to [to_line(p) for p in map_telemetry(...)] on real frames and on
decoded dicts with missing fields, unreadable thermistors, no wall clock and tags that need escaping.

    .venv/bin/pytest -q tests/bench/test_mapper_fastpath.py
"""
import pytest

from cloud_bridge import mapper
from firmware.comms import frame
from tests.bridge.frames import KEY, Board

TAGS = {"device": "bms-0001", "site": "lab", "group": "-", "board": "sim"}
ODD_TAGS = {"device": "bms 0001", "site": "a,b", "group": "x=y", "board": ""}


def slow(d, tags, anchor_ms=None):
    return [mapper.to_line(p) for p in mapper.map_telemetry(d, tags, anchor_ms)]


@pytest.mark.parametrize("cells,temps,samples", [(16, 3, 10), (4, 1, 1), (1, 0, 60), (13, 2, 7)])
@pytest.mark.parametrize("tags", [TAGS, ODD_TAGS])
def test_fast_lines_equal_general_lines_on_real_frames(cells, temps, samples, tags):
    b = Board("bms-0001", cells=cells, temps=temps)
    for _ in range(3):
        d = frame.decode(b.telemetry(samples), "bms-0001", KEY)
        fast = mapper.telemetry_lines(d, tags)
        assert fast == slow(d, tags)
        assert len(fast) == samples * (1 + cells + temps)
        assert mapper.last_sample_ms(d) == d["samples"][-1]["unix_ms"]


def test_fast_lines_without_wall_clock_use_the_anchor():
    b = Board("bms-0001", wall=False)
    d = frame.decode(b.telemetry(3), "bms-0001", KEY)
    assert mapper.telemetry_lines(d, TAGS, 1_700_000_000_000) == slow(d, TAGS, 1_700_000_000_000)
    assert mapper.last_sample_ms(d, 1_700_000_000_000) == 1_700_000_000_000 + d["samples"][-1]["uptime_ms"]
    with pytest.raises(ValueError):
        mapper.telemetry_lines(d, TAGS)


def test_fast_lines_with_sparse_samples_and_invalid_temperature():
    d = {"kind": frame.KIND_TELEMETRY, "boot": 7, "seq": 3, "samples": [
        {"unix_ms": 1_750_000_000_123, "cell_mv": [3300, -5, 3311], "temp_dc": [250, -32768, -401],
         "balance_mask": 0b110, "stack_mv": 9911},
        {"unix_ms": 1_750_000_001_123, "current_ma": -1234, "soc_cpct": 5000},
        {"unix_ms": 1_750_000_002_123},
    ]}
    fast = mapper.telemetry_lines(d, ODD_TAGS)
    assert fast == slow(d, ODD_TAGS)
    assert fast[-1].startswith("pack,") and " boot=7i,seq=3i " in fast[-1]
    assert "degc" not in fast[5]          # the unreadable thermistor has its raw code only
