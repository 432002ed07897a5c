"""The mapper turns real decoded frames into the points docs/influx-schema.md promises."""
import pytest

from cloud_bridge import mapper
from firmware.comms import frame
from tests.bridge.frames import KEY, WALL_BASE_S, Board

TAGS = {"device": "bms-0001", "site": "plant-a", "group": "-", "board": "sim"}
UNIX0_MS = (WALL_BASE_S + frame.WALL_EPOCH_UNIX_S) * 1000


def decode(board, b):
    return frame.decode(b, board.device, KEY)


def test_telemetry_gives_pack_cell_temp_points_on_device_time():
    b = Board()
    d = decode(b, b.telemetry(3))
    pts = mapper.map_frame(d, TAGS)
    # per sample: 1 pack + 16 cells + 3 temps
    assert len(pts) == 3 * 20
    pack = [p for p in pts if p[0] == "pack"]
    assert [p[3] for p in pack] == [(UNIX0_MS + 1000 * i) * 1000000 for i in range(3)]
    f = pack[1][2]
    cells = [3300 + c + 1 for c in range(16)]
    assert f["stack_mv"] == sum(cells) and isinstance(f["stack_mv"], int)
    assert f["current_ma"] == -1499
    assert f["cell_min_mv"] == min(cells) and f["cell_max_mv"] == max(cells)
    assert f["cell_delta_mv"] == 15
    assert f["power_w"] == pytest.approx(sum(cells) * -1499 / 1e6)
    assert f["soc_pct"] == pytest.approx(79.99)
    assert f["boot"] == 1 and f["seq"] == 0
    cell = [p for p in pts if p[0] == "cell" and p[3] == pack[1][3]]
    assert [p[1]["cell"] for p in cell] == ["%02d" % i for i in range(1, 17)]
    assert cell[0][2] == {"mv": 3301, "v": 3.301, "balancing": 1}
    assert cell[1][2]["balancing"] == 0 and cell[2][2]["balancing"] == 1
    temp = [p for p in pts if p[0] == "temp" and p[3] == pack[1][3]]
    assert [(p[1]["sensor"], p[2]["dc"], p[2]["degc"]) for p in temp] == \
        [("ts1", 250, 25.0), ("ts2", 251, 25.1), ("ts3", 252, 25.2)]
    assert all(p[1]["site"] == "plant-a" for p in pts)


def test_invalid_thermistor_has_no_degc():
    d = decode(Board(), Board().telemetry(1))
    d["samples"][0]["temp_dc"][1] = mapper.TEMP_INVALID_DC
    temp = [p for p in mapper.map_frame(d, TAGS) if p[0] == "temp"]
    assert temp[1][2] == {"dc": -32768}
    assert "degc" in temp[0][2]


def test_without_wall_clock_the_anchor_places_the_samples():
    b = Board(wall=False)
    b.telemetry(5)                                   # samples 0..4
    d = decode(b, b.telemetry(2))                    # samples 5, 6: uptime 5 s, 6 s
    assert d["unix_ms"] is None
    pts = mapper.map_frame(d, TAGS, anchor_ms=1_700_000_000_000)
    pack = [p[3] for p in pts if p[0] == "pack"]
    assert pack == [(1_700_000_000_000 + 5000) * 1000000, (1_700_000_000_000 + 6000) * 1000000]
    with pytest.raises(ValueError):
        mapper.map_frame(d, TAGS)                    # no wall clock, no anchor: refuse, never guess


def test_same_frame_maps_to_identical_points():
    b = Board()
    raw = b.telemetry(4)
    assert mapper.map_frame(decode(b, raw), TAGS) == mapper.map_frame(decode(b, raw), TAGS)


def test_events_in_one_millisecond_stay_distinct():
    b = Board()
    d = decode(b, b.events([3, 3, 7]))
    pts = mapper.map_frame(d, TAGS)
    assert [p[0] for p in pts] == ["event"] * 3
    assert len({p[3] for p in pts}) == 3
    assert pts[0][1]["kind"] == "raised"
    assert pts[0][2] == {"code": 3, "n_values": 2, "value": 3650, "value_1": 3, "boot": 1, "seq": 0}


def test_status_and_ack_points():
    b = Board()
    st = mapper.map_frame(decode(b, b.status("1.2.3")), TAGS)
    assert st[0][0] == "status"
    assert st[0][2]["online"] == 1 and st[0][2]["fw"] == "1.2.3"
    assert st[0][2]["config_hash"] == "deadbeef"
    ak = mapper.map_frame(decode(b, b.ack(42)), TAGS)
    assert ak[0][1]["result"] == "ok"
    assert ak[0][2]["cmd_counter"] == 42 and ak[0][2]["message"] == "done"
    off = mapper.map_offline(TAGS, "will", 1234)
    assert off == [("status", TAGS, {"online": 0, "source": "will"}, 1234000000)]


def test_line_protocol_escaping_and_types():
    p = ("my meas", {"device": "a b", "site": "x,y", "group": "g=1", "board": ""},
         {"mv": 3300, "v": 3.3, "fw": 'say "hi"\\', "ok": True}, 17)
    assert mapper.to_line(p) == ('my\\ meas,device=a\\ b,group=g\\=1,site=x\\,y '
                                 'mv=3300i,v=3.3,fw="say \\"hi\\"\\\\",ok=true 17')


def test_telemetry_text_is_the_frame_lines_in_one_string_with_their_count():
    tags = {"device": "bms-0001", "site": "100%", "group": "-", "board": "sim"}   # % in a tag value
    b = Board("bms-0001", cells=13, temps=2)
    d = frame.decode(b.telemetry(7), "bms-0001", KEY)
    text, points = mapper.telemetry_text(d, tags)
    lines = [mapper.to_line(p) for p in mapper.map_telemetry(d, tags)]
    assert text == "\n".join(lines) and points == len(lines) == 7 * (1 + 13 + 2)
    empty = dict(d, samples=[])
    assert mapper.telemetry_text(empty, tags) == ("", 0) and mapper.telemetry_lines(empty, tags) == []
