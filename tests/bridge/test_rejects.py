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


def test_registry_and_reject_store_are_created_owner_only(tmp_path):
    # The registry holds every device's HMAC key, the reject store raw frames: mode 0600, whatever
    # the umask (0 here, so SQLite alone would leave them world-readable), -wal and -shm alike.
    import os
    import stat

    from cloud_bridge.registry import Registry
    old = os.umask(0)
    try:
        reg = Registry(tmp_path / "registry.sqlite")
        reg.add_device("bms-0001", bytes(32))
        rj = RejectStore(tmp_path / "rejects.sqlite")
        rj.add("tag", "bms/x/up/telemetry", b"\x01\x02", device="x")
        rj.flush()
    finally:
        os.umask(old)
    try:
        files = sorted(p.name for p in tmp_path.iterdir())
        assert {"registry.sqlite", "registry.sqlite-wal", "rejects.sqlite", "rejects.sqlite-wal"} \
            <= set(files), files
        for name in files:
            assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o600, name
    finally:
        reg.close()
        rj.close()
    # an existing file keeps the mode its owner gave it
    os.chmod(tmp_path / "registry.sqlite", 0o640)
    Registry(tmp_path / "registry.sqlite").close()
    assert stat.S_IMODE(os.stat(tmp_path / "registry.sqlite").st_mode) == 0o640
