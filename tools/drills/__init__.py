"""Reliability drills: scripted faults against the real firmware, bridge and servers, counted.

    python -m tools.drills                       # every drill, writes docs/reliability.md
    python -m tools.drills --quick --only fuzz --out /tmp/rel.md

One module per drill (run(folder, quick, log) -> common.Result); report.py writes the document.
"""
