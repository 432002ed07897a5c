"""Figures for docs/benchmarks.md, drawn from the same run's results (matplotlib, Agg backend).

One PNG for the bridge section: throughput per round of each phase beside each other, and the
publish-to-queryable latency distribution. Pictures of the figures in the tables, nothing more.
"""
import os


def bridge_png(b, path):
    """Write the bridge figure to path; returns path. b is tools.bench.bridge.measure()'s dict."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rounds = b["rounds"]
    series = [("do-nothing subscriber", [r["null_fps"] for r in rounds]),
              ("raw /write", [r["raw_fps"] for r in rounds]),
              ("bridge", [r["bridge_fps"] for r in rounds]),
              ("raw /write, database on its own core", [r["split_raw_fps"] for r in rounds if "split_raw_fps" in r]),
              ("bridge, database on its own core", [r["split_bridge_fps"] for r in rounds if "split_bridge_fps" in r]),
              ("two bridges", [t["fps"] for t in b.get("two", [])]),
              ("bridge into do-nothing /write", [c["fps"] for c in b.get("ceiling", [])])]
    series = [(name, ys) for name, ys in series if ys]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2))
    width = 0.8 / len(series)
    for i, (name, ys) in enumerate(series):
        xs = [k + (i - (len(series) - 1) / 2.0) * width for k in range(len(ys))]
        ax1.bar(xs, ys, width, label=name)
    ax1.set_yscale("log")
    ax1.set_xticks(range(len(rounds)))
    ax1.set_xticklabels(["round %d" % (k + 1) for k in range(len(rounds))])
    ax1.set_ylabel("frames/s (log scale)")
    ax1.set_title("Throughput per round (%d-sample frames)" % b["frame"]["samples"])
    ax1.legend(fontsize=8, loc="upper right")
    ax1.grid(axis="y", which="both", alpha=0.3)

    for lat in b.get("latency", []):
        cdf = lat.get("cdf_ms")
        if not cdf:
            continue
        qs = [100.0 * k / (len(cdf) - 1) for k in range(len(cdf))]
        ax2.plot(cdf, qs, label="%d devices, %d sample(s)/frame (%d frames/s): p50 %.0f, p99 %.0f ms"
                 % (lat["devices"], lat["samples_per_frame"], lat["frames_per_s"], lat["p50_ms"],
                    lat["p99_ms"]))
    ax2.set_xlabel("publish -> queryable (ms)")
    ax2.set_ylabel("% of frames")
    ax2.set_title("Latency distribution")
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
