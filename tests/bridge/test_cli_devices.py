"""`cloud-bridge devices`: add, list, move, disable/enable, show, sites/groups on a temporary registry."""

import io
import os
import re
import stat
import time

from cloud_bridge import cli_devices
from cloud_bridge.registry import Registry


def run(reg_path, *argv):
    out = io.StringIO()
    rc = cli_devices.main(["--registry", str(reg_path)] + list(argv), out=out)
    return rc, out.getvalue()


def table_rows(text):
    """Rows of a rendered table (after the header and the dashed rule) split on runs of 2+ spaces."""
    lines = text.splitlines()
    start = next(i for i, l in enumerate(lines) if set(l.replace(" ", "")) == {"-"}) + 1
    rows = []
    for line in lines[start:]:
        if not line.startswith(" ") and re.match(r"^\d+ device", line):
            break
        rows.append(re.split(r"\s{2,}", line.strip()))
    return rows


def test_add_generates_a_key_the_registry_keeps_and_list_shows_the_device(tmp_path):
    reg_path = tmp_path / "reg.sqlite"
    key_file = tmp_path / "k.hex"
    rc, out = run(reg_path, "add", "bms-0001", "--site", "plant-a", "--group", "forklifts",
                  "--board", "esp32-devkit", "--key-out", str(key_file))
    assert rc == 0, out
    key_hex = key_file.read_text().strip()
    assert len(key_hex) == 64
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert key_hex not in out                      # written to the file, not shown
    reg = Registry(reg_path)
    key, tags = reg.key("bms-0001")
    reg.close()
    assert key.hex() == key_hex
    assert tags == {"device": "bms-0001", "site": "plant-a", "group": "forklifts",
                    "board": "esp32-devkit"}

    rc, out = run(reg_path, "list")
    assert rc == 0
    assert table_rows(out) == [["bms-0001", "plant-a", "forklifts", "esp32-devkit", "yes", "never",
                                "-", "-"]]
    assert key_hex not in out


def test_add_with_a_given_key_and_duplicate_refused(tmp_path):
    reg_path = tmp_path / "reg.sqlite"
    rc, out = run(reg_path, "add", "bms-0002", "--key-hex", "ab" * 16)
    assert rc == 0 and "key" not in out             # nothing generated, nothing shown
    rc, out = run(reg_path, "add", "bms-0002", "--key-hex", "ab" * 16)
    assert rc == 2 and "already exists" in out
    rc, out = run(reg_path, "add", "bad id!")
    assert rc == 2 and "device id" in out
    rc, out = run(reg_path, "add", "bms-0003", "--key-hex", "abc")
    assert rc == 2 and "odd number" in out


def test_move_disable_enable_and_filters(tmp_path):
    reg_path = tmp_path / "reg.sqlite"
    for dev, site, group in (("bms-0001", "plant-a", "forklifts"), ("bms-0002", "plant-a", "ups"),
                             ("bms-0003", "plant-b", "ups")):
        assert run(reg_path, "add", dev, "--site", site, "--group", group, "--key-hex", "11" * 32)[0] == 0

    rc, out = run(reg_path, "move", "bms-0001", "bms-0002", "--group", "agv")
    assert rc == 0
    rc, out = run(reg_path, "list", "--group", "agv")
    assert [r[0] for r in table_rows(out)] == ["bms-0001", "bms-0002"]
    rc, out = run(reg_path, "move", "bms-0003", "--site", "-")
    rc, out = run(reg_path, "list", "--site", "plant-b")
    assert table_rows(out) == []

    rc, out = run(reg_path, "disable", "bms-0002")
    assert rc == 0
    reg = Registry(reg_path)
    assert reg.key("bms-0002") is None              # the bridge now rejects its frames
    reg.close()
    rc, out = run(reg_path, "list", "--disabled")
    assert [r[0] for r in table_rows(out)] == ["bms-0002"]
    rc, out = run(reg_path, "enable", "bms-0002")
    reg = Registry(reg_path)
    assert reg.key("bms-0002") is not None
    reg.close()

    rc, out = run(reg_path, "move", "nope", "--site", "x")
    assert rc == 2 and "no device nope" in out
    rc, out = run(reg_path, "move", "bms-0001")
    assert rc == 2 and "--site" in out


def test_show_and_site_group_summaries_reflect_what_the_bridge_recorded(tmp_path):
    reg_path = tmp_path / "reg.sqlite"
    for dev in ("bms-0001", "bms-0002", "bms-0003"):
        run(reg_path, "add", dev, "--site", "plant-a", "--group", "ups", "--key-hex", "22" * 32)
    reg = Registry(reg_path)
    t = int(time.time() * 1000)
    # ages in hours, so a slow machine cannot change what the table shows
    reg.record_seen({"bms-0001": t - 3 * 3600 * 1000, "bms-0002": t - 2 * 3600 * 1000})
    reg.set_status("bms-0001", True, "status", t_ms=t - 3 * 3600 * 1000, fw_version="0.1.0",
                   config_hash="abcd1234")
    reg.set_status("bms-0002", False, "will", t_ms=t - 3600 * 1000)
    reg.update_device("bms-0003", enabled=0)
    reg.close()

    rc, out = run(reg_path, "show", "bms-0001")
    assert rc == 0
    fields = dict((r[0], r[1]) for r in table_rows(out))
    assert fields["status"] == "online"
    assert fields["firmware"] == "0.1.0"
    assert fields["config hash"] == "abcd1234"
    assert fields["last seen"] == "3h"
    rc, out = run(reg_path, "show", "bms-0002")
    fields = dict((r[0], r[1]) for r in table_rows(out))
    assert fields["status"] == "offline (will)"
    assert fields["last seen"] == "2h"

    rc, out = run(reg_path, "sites")
    # site, name, devices, online, offline, never, disabled, newest last-seen
    assert table_rows(out) == [["plant-a", "-", "3", "1", "1", "1", "1", "2h"]]
    rc, out = run(reg_path, "groups")
    assert table_rows(out) == [["ups", "-", "3", "1", "1", "1", "1", "2h"]]
    rc, out = run(reg_path, "show", "nope")
    assert rc == 2


def test_render_table_aligns_numbers_right_and_text_left():
    text = cli_devices.render_table(("name", "n"), [("a", 5), ("long-name", 123), ("b", None)])
    assert text.splitlines() == [
        "name         n",
        "---------  ---",
        "a            5",
        "long-name  123",
        "b            -",
    ]


def test_rotate_key_replaces_the_key_and_remove_needs_yes(tmp_path):
    reg_path = tmp_path / "reg.sqlite"
    run(reg_path, "add", "bms-0001", "--key-hex", "33" * 32)
    rc, out = run(reg_path, "rotate-key", "bms-0001", "--key-out", str(tmp_path / "new.hex"))
    assert rc == 0 and "version 2" in out
    new = (tmp_path / "new.hex").read_text().strip()
    reg = Registry(reg_path)
    assert reg.key("bms-0001")[0].hex() == new != "33" * 32
    reg.close()
    rc, out = run(reg_path, "rotate-key", "nope")
    assert rc == 2 and "no device" in out

    rc, out = run(reg_path, "remove", "bms-0001")
    assert rc == 2 and "--yes" in out
    rc, out = run(reg_path, "remove", "bms-0001", "--yes")
    assert rc == 0
    rc, out = run(reg_path, "list")
    assert table_rows(out) == [] and "0 device(s)" in out


def test_reset_window_lets_a_board_that_lost_its_boot_counter_back_in(tmp_path):
    from cloud_bridge.verify import Verifier
    from tests.bridge.frames import KEY, Board
    reg_path = tmp_path / "reg.sqlite"
    reg = Registry(str(reg_path))
    reg.add_device("bms-0001", KEY)
    reg.add_device("bms-0002", KEY)
    reg.save_windows({"bms-0001": (7, 40, 1), "bms-0002": (3, 9, 1)})
    reg.anchor("bms-0001", 1, 1234)
    fresh = Board("bms-0001", boot=1, cells=4, temps=1).telemetry(1)   # boot counter back to 1
    assert Verifier(reg).check("bms/bms-0001/up/telemetry", fresh, 5000).reason == "replay"
    rc, out = run(reg_path, "reset-window", "bms-0001")
    assert rc == 0 and "bms-0001: replay window boot 7, seq 40 forgotten" in out, out
    assert reg.load_window("bms-0001") is None
    assert reg.load_window("bms-0002") == (3, 9, 1)                   # the others keep theirs
    assert reg.anchor("bms-0001", 1, 999) == 999                       # the old anchor is gone too
    assert Verifier(reg).check("bms/bms-0001/up/telemetry", fresh, 5000).reason is None
    rc, out = run(reg_path, "reset-window", "bms-0009")
    assert rc == 2 and "no device bms-0009" in out
    reg.close()
