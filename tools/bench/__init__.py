"""Benchmarks: `python -m tools.bench` regenerates docs/benchmarks.md with the machine it ran on.

One module per section, each with `measure(quick, log) -> dict` and nothing written to disk:
firmware_vm (the compiled firmware in the MicroPython VM), wire (bytes on the wire), bridge (cloud
bridge end to end with real servers); report.py turns the dicts into the document.

    python -m tools.bench                      # everything, into docs/benchmarks.md
    python -m tools.bench --quick --only wire --out /tmp/b.md
"""
