"""The bridge's side of delivery checks that comms rely on: gaps in (boot, seq) are counted as missing
until the frames arrive (metric frames_missing), and a frame with wall clock gives a boot its exact
time anchor, replacing the estimate taken from the first frame heard."""
import pytest

from cloud_bridge.metrics import Metrics
from cloud_bridge.registry import Registry
from cloud_bridge.verify import Verifier
from tests.bridge.frames import KEY, Board

DEV = "bms-0001"
TOPIC = "bms/%s/up/telemetry" % DEV


@pytest.fixture
def ver(tmp_path):
    r = Registry(tmp_path / "reg.sqlite")
    r.add_device(DEV, KEY, site="plant-a", group="forklifts", board="sim")
    yield Verifier(r)
    r.close()


def frames(n, boot=1, wall=True):
    b = Board(boot=boot, wall=wall, cells=4, temps=1)
    out = []
    for _ in range(n):
        out.append(b.telemetry(2))
    return out


def test_missing_seqs_are_counted_until_they_arrive(ver):
    f = frames(6)
    for s in (0, 1, 3, 5):
        assert ver.check(TOPIC, f[s], 0).reason is None
    assert ver.missing(DEV) == 2 and ver.missing() == 2      # 2 and 4
    assert ver.check(TOPIC, f[2], 0).reason is None
    assert ver.missing(DEV) == 1
    assert ver.check(TOPIC, f[3], 0).reason == "replay"                  # a replay changes nothing
    assert ver.missing() == 1
    m = Metrics("t")
    m.frames_missing = ver.missing()
    assert m.summary()["frames_missing"] == 1
    g = frames(3, boot=2)                                     # a new boot: boot 1's hole stays counted
    assert ver.check(TOPIC, g[0], 0).reason is None and ver.check(TOPIC, g[2], 0).reason is None
    assert ver.missing(DEV) == 1 and ver.missing() == 2


def test_a_frame_with_wall_clock_replaces_the_estimated_anchor(ver):
    late = frames(3, wall=False)                              # pre-sync frames, delivered late
    hello = Board(boot=1, wall=True, cells=4, temps=1)        # same boot: its frames carry the wall clock
    v0 = ver.check(TOPIC, late[0], recv_ms=10 ** 13)
    assert v0.reason is None and v0.anchor_ms == 10 ** 13 - 0             # estimate: received - uptime
    hello.seq = 5
    hello.n = 20
    v = ver.check(TOPIC, hello.telemetry(2), recv_ms=10 ** 13)
    exact = v.frame["unix_ms"] - v.frame["uptime_ms"]
    v1 = ver.check(TOPIC, late[1], recv_ms=10 ** 13 + 999999)
    assert v1.reason is None and v1.anchor_ms == exact != v0.anchor_ms
    assert ver.registry.anchor(DEV, 1, 0) == exact            # stored: survives a bridge restart
