"""Rejected messages are counted per reason and kept with their raw bytes, newest N only."""
from cloud_bridge.rejects import RejectStore


def test_kept_with_raw_bytes_and_rotated(tmp_path):
    rj = RejectStore(tmp_path / "r.sqlite", keep=5)
    for i in range(8):
        rj.add("tag" if i % 2 else "truncated", "bms/x/up/telemetry", bytes([i, 0, 255]), device="x")
    rj.flush()
    rows = rj.recent()
    assert len(rows) == 5
    assert rows[0]["payload"] == bytes([7, 0, 255]) and rows[0]["reason"] == "tag"
    assert rj.totals() == {"tag": 4, "truncated": 4}
    rj.close()
    again = RejectStore(tmp_path / "r.sqlite", keep=5)
    assert again.totals() == {"tag": 4, "truncated": 4}      # totals survive a restart
    again.close()
