"""tools/plot_run.py from a simulated board's trace (JSONL and CSV), and every tool's --help.

The trace comes from a real run of tools/demo_fleet.py (firmware on an emulated board) whose broker is
absent: the board keeps its protection cycle while the link fails, as the design requires."""
import csv
import json
import os
import subprocess
import sys

import pytest

from tools import plot_run
from tools.provision import Paths, Provisioner
from tools.testservers.mosquitto import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def trace(tmp_path_factory):
    d = tmp_path_factory.mktemp("trace")
    prov = Provisioner(Paths(str(d / "secrets")), mqtt_port=free_port())     # nobody listens there
    prov.create("plot-01", wifi_ssid="s", wifi_key="k")
    path = d / "plot-01.jsonl"
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "demo_fleet.py"), "board",
                        "--secrets", prov.paths.secrets_file("plot-01"), "--board", "sim16_lfp",
                        "--scenario", "imbalanced", "--profile", "charge", "--soc", "0.85", "--speed", "40",
                        "--duration", "3", "--trace", str(path), "--state-dir", str(d / "state")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return path, r.stdout


def test_board_runs_without_a_broker_and_writes_its_trace(trace):
    path, stdout = trace
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    assert len(rows) >= 10
    assert all(len(r["cell_mv"]) == 16 and len(r["temp_dc"]) == 3 for r in rows)
    assert [r["t_s"] for r in rows] == sorted(r["t_s"] for r in rows)
    done = json.loads(stdout.rsplit("plot-01 done: ", 1)[1].splitlines()[0])
    assert done["frames_sent"] == 0 and done["sessions"] == 0 and done["overruns"] == 0
    assert any(r["balance_mask"] for r in rows)          # the imbalanced pack bleeds its high cell


def test_plot_from_jsonl_and_the_same_from_csv(trace, tmp_path):
    path, _ = trace
    run = plot_run.read_trace(str(path))
    assert len(run) >= 10 and len(run.cells) == 16 and len(run.temps) == 3 and run.device == "plot-01"
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    csv_path = tmp_path / "t.csv"
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        for r in rows:
            w.writerow(dict(r, cell_mv=" ".join(map(str, r["cell_mv"])), temp_dc=" ".join(map(str, r["temp_dc"]))))
    run2 = plot_run.read_trace(str(csv_path))
    assert (run2.t_ms, run2.cells, run2.temps, run2.balance_mask) == (run.t_ms, run.cells, run.temps,
                                                                      run.balance_mask)
    png = tmp_path / "p.png"
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "plot_run.py"), "--trace", str(path),
                        "-o", str(png)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_of_nothing_is_an_error(tmp_path):
    empty = tmp_path / "e.jsonl"
    empty.write_text("")
    with pytest.raises(ValueError):
        plot_run.plot(plot_run.read_trace(str(empty)), str(tmp_path / "x.png"))


@pytest.mark.parametrize("argv", [
    ["provision.py"], ["decode_frame.py"], ["follow.py"], ["plot_run.py"], ["demo.py"],
    ["demo_fleet.py"], ["demo_fleet.py", "board"], ["demo_fleet.py", "list"],
])
def test_every_tool_has_help(argv):
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", argv[0])] + argv[1:] + ["--help"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("usage:"), r.stderr


def test_fleet_list_covers_sites_chemistries_and_trouble():
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "demo_fleet.py"), "list", "--json"],
                       capture_output=True, text=True, timeout=60)
    specs = json.loads(r.stdout)
    assert len(specs) == 6 and len({s["device"] for s in specs}) == 6
    assert len({s["site"] for s in specs}) == 3
    assert {s["board"] for s in specs} == {"sim16_lfp", "sim4_nmc"}        # LFP and NMC packs
    assert {"imbalanced", "overheat", "flaky-wifi"} <= {s["scenario"] for s in specs}
