"""Registry, replay window and verifier: unknown devices, bad tags and replays are rejected."""
import pytest

from cloud_bridge import verify
from cloud_bridge.registry import Registry
from cloud_bridge.verify import WINDOW_REFRESH_S, Verifier, merge_window, window_advance, window_check
from tests.bridge.frames import KEY, Board


@pytest.fixture
def reg(tmp_path):
    r = Registry(tmp_path / "reg.sqlite")
    r.add_device("bms-0001", KEY, name="forklift 1", site="plant-a", group="forklifts", board="sim")
    yield r
    r.close()


def test_registry_feeds_tags_and_keys(reg):
    key, tags = reg.key("bms-0001")
    assert key == KEY
    assert tags == {"device": "bms-0001", "site": "plant-a", "group": "forklifts", "board": "sim"}
    assert reg.sites() == [{"site_id": "plant-a", "name": ""}]
    reg.update_device("bms-0001", site_id=None, enabled=0)
    assert reg.key("bms-0001") is None             # disabled: treated as unknown
    assert reg.tags("bms-0001")["site"] == "-"


@pytest.mark.parametrize("bad", ["", "a/b", "a+b", "x" * 65, "dev ice"])
def test_registry_refuses_ids_that_break_topics_or_tags(reg, bad):
    with pytest.raises(ValueError):
        reg.add_device(bad, KEY)


def test_registry_refuses_short_keys_and_duplicates(reg):
    with pytest.raises(ValueError):
        reg.add_device("bms-0002", b"short")
    with pytest.raises(ValueError, match="already exists"):
        reg.add_device("bms-0001", KEY)


def test_online_offline_from_status_will_and_silence(reg):
    assert reg.set_status("bms-0001", True, "status", 1000, fw_version="0.1.0", config_hash="00ab")
    d = reg.get("bms-0001")
    assert (d["online"], d["online_source"], d["fw_version"], d["config_hash"]) == (1, "status", "0.1.0", "00ab")
    assert reg.set_status("bms-0001", False, "will", 2000)
    assert reg.get("bms-0001")["online"] == 0
    reg.set_status("bms-0001", True, "status", 3000)
    reg.record_seen({"bms-0001": 3000})
    assert reg.mark_silent(offline_after_ms=500, t_ms=3400) == []
    assert reg.mark_silent(offline_after_ms=500, t_ms=3600) == ["bms-0001"]
    d = reg.get("bms-0001")
    assert (d["online"], d["online_source"], d["first_seen_ms"], d["last_seen_ms"]) == (0, "silence", 3000, 3000)


def test_traffic_brings_back_a_silent_device_but_not_a_will(reg):
    reg.add_device("bms-0002", KEY)
    for dev in ("bms-0001", "bms-0002"):
        reg.set_status(dev, True, "status", 1000)
        reg.record_seen({dev: 1000})
    assert reg.mark_silent(offline_after_ms=500, t_ms=2000) == ["bms-0001", "bms-0002"]
    reg.set_status("bms-0002", False, "will", 2100)            # then its last will came too
    # a frame received before it was marked (completed late) does not bring it back
    assert reg.record_seen({"bms-0001": 1900}) == []
    assert reg.get("bms-0001")["online"] == 0
    assert reg.record_seen({"bms-0001": 2500, "bms-0002": 2500}) == [("bms-0001", 2500)]
    d = reg.get("bms-0001")
    assert (d["online"], d["online_source"], d["online_ms"], d["last_seen_ms"]) == (1, "traffic", 2500, 2500)
    d = reg.get("bms-0002")                                     # a will is undone by a status frame
    assert (d["online"], d["online_source"]) == (0, "will")
    # a bridge still working through older messages does not call a device silent for them
    assert reg.mark_silent(offline_after_ms=500, t_ms=5000, heard_until_ms=2600) == []
    assert reg.mark_silent(offline_after_ms=500, t_ms=5000) == ["bms-0001"]


def test_anchor_is_fixed_by_the_first_frame_of_a_boot(reg):
    assert reg.anchor("bms-0001", 3, 1000) == 1000
    assert reg.anchor("bms-0001", 3, 5000) == 1000
    assert reg.anchor("bms-0001", 4, 5000) == 5000


def test_window_accepts_new_and_out_of_order_refuses_repeats_and_old():
    w = None
    for seq in (5, 7, 6):
        assert window_check(w, 1, seq) is None
        w = window_advance(w, 1, seq)
    assert "already" in window_check(w, 1, 6)
    assert "already" in window_check(w, 1, 7)
    assert window_check(w, 1, 4) is None            # not seen yet, inside the window
    w = window_advance(w, 1, 200)
    assert "below" in window_check(w, 1, 100)       # more than 64 back
    assert "older" in window_check(w, 0, 500)       # earlier boot
    assert window_check(w, 2, 0) is None            # reboot starts a new window


def test_merge_window_is_the_union():
    a = window_advance(window_advance(None, 1, 10), 1, 8)
    b = window_advance(None, 1, 12)
    m = merge_window(a, b)
    for seq in (8, 10, 12):
        assert window_check(m, 1, seq) is not None
    assert window_check(m, 1, 9) is None and window_check(m, 1, 11) is None
    assert merge_window(a, (2, 0, 1)) == (2, 0, 1)


def test_verifier_rejections_by_reason(reg):
    v = Verifier(reg)
    b = Board()
    good = b.telemetry(2)
    assert v.check("bms/bms-0001/up/telemetry", good, 0).reason is None
    assert v.check("bms/bms-0001/up/telemetry", good, 0).reason == "replay"
    other = Board("bms-0009")
    assert v.check("bms/bms-0009/up/telemetry", other.telemetry(1), 0).reason == "unknown_device"
    forged = bytearray(b.telemetry(1))
    forged[-1] ^= 1
    assert v.check("bms/bms-0001/up/telemetry", bytes(forged), 0).reason == "tag"
    reg.add_device("bms-0002", KEY)
    # a frame signed for bms-0001 sent on bms-0002's topic: the device id is bound by the tag
    assert v.check("bms/bms-0002/up/telemetry", b.telemetry(1), 0).reason == "tag"
    assert v.check("bms/bms-0001/up/event", b.telemetry(1), 0).reason == "kind"
    assert v.check("bms/bms-0001/down/cmd", good, 0).reason == "bad_topic"
    assert v.check("bms/bms-0001/up/telemetry", b"", 0).reason == "truncated"
    off = v.check("bms/bms-0001/up/status", verify.WILL_PAYLOAD, 0)
    assert off.reason is None and off.offline


def test_replay_window_survives_a_restart_only_once_committed(reg, tmp_path):
    b = Board()
    f1, f2 = b.telemetry(1), b.telemetry(1)
    v = Verifier(reg)
    assert v.check("bms/bms-0001/up/telemetry", f1, 0).reason is None
    v.commit()                                        # f1 written and acknowledged
    assert v.check("bms/bms-0001/up/telemetry", f2, 0).reason is None
    # crash before f2's write: a new bridge must accept the redelivered f2 but refuse f1
    v2 = Verifier(Registry(tmp_path / "reg.sqlite"))
    assert v2.check("bms/bms-0001/up/telemetry", f2, 0).reason is None
    assert v2.check("bms/bms-0001/up/telemetry", f1, 0).reason == "replay"


def test_frame_without_wall_clock_gets_the_boot_anchor(reg):
    b = Board(wall=False)
    v = Verifier(reg)
    first = v.check("bms/bms-0001/up/telemetry", b.telemetry(3), 1_700_000_010_000)
    assert first.anchor_ms == 1_700_000_010_000      # received at uptime 0
    later = v.check("bms/bms-0001/up/telemetry", b.telemetry(1), 1_700_000_099_999)
    assert later.anchor_ms == 1_700_000_010_000      # same boot: same anchor, whatever the delay


def test_full_64_bit_window_round_trips(reg):
    w = (3, 1000, (1 << 64) - 1)
    reg.save_windows({"bms-0001": w})
    assert reg.load_window("bms-0001") == w


# --- the replay-window cache with two bridge instances on one registry (verify.py) ---
T_CACHE = "bms/bms-0001/up/telemetry"


def shared_registry(tmp_path, instances):
    """A registry file with bms-0001, its first connection, a settable clock, and `instances`
    Verifiers on their own connections to it (as several bridge instances)."""
    path = tmp_path / "reg.sqlite"
    r0 = Registry(path)
    r0.add_device("bms-0001", KEY)
    now = [100.0]
    return (path, r0, now) + tuple(Verifier(Registry(path), clock=lambda: now[0]) for _ in range(instances))


def test_two_instances_see_each_others_commits_within_the_refresh(tmp_path):
    path, r0, now, a, b = shared_registry(tmp_path, 2)
    brd = Board()
    f1, f2, f3 = brd.telemetry(1), brd.telemetry(1), brd.telemetry(1)
    assert b.check(T_CACHE, f3, 0).reason is None          # b caches its window
    b.commit()
    assert a.check(T_CACHE, f1, 0).reason is None
    assert a.check(T_CACHE, f1, 0).reason == "replay"       # pending, same instance
    a.commit()
    assert a.check(T_CACHE, f1, 0).reason == "replay"       # committed: from the write-through cache
    now[0] += WINDOW_REFRESH_S
    assert b.check(T_CACHE, f1, 0).reason == "replay"       # b saw a's commit (data_version changed)
    # a's cache must include b's f3 too after a refresh
    now[0] += WINDOW_REFRESH_S
    assert a.check(T_CACHE, f3, 0).reason == "replay"
    assert a.check(T_CACHE, f2, 0).reason is None


def test_commit_merges_with_what_the_other_stored(tmp_path):
    path, r0, now, a, b = shared_registry(tmp_path, 2)
    brd = Board()
    fs = [brd.telemetry(1) for _ in range(4)]
    assert a.check(T_CACHE, fs[0], 0).reason is None
    assert b.check(T_CACHE, fs[1], 0).reason is None
    b.commit()
    a.commit()                                      # a's commit merges b's stored window
    for f in fs[:2]:
        assert a.check(T_CACHE, f, 0).reason == "replay"  # without waiting for a refresh: write-through of the merge
    assert Registry(path).load_window("bms-0001") == (1, 1, 0b11)


def test_removed_device_window_dropped_after_refresh(tmp_path):
    path, r0, now, a = shared_registry(tmp_path, 1)
    brd = Board()
    f1 = brd.telemetry(1)
    assert a.check(T_CACHE, f1, 0).reason is None
    a.commit()
    r0.remove_device("bms-0001")                   # another connection: window gone
    r0.add_device("bms-0001", KEY)
    now[0] += max(WINDOW_REFRESH_S, 5.0)
    assert a.check(T_CACHE, f1, 0).reason is None         # as without the cache: a fresh window
