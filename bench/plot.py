"""``bench.png``: the filter's throughput against the policy count for both CEL engines, and
the latency CDF of the whole chain (``python -m bench``, summary section).

matplotlib is the ``bench`` extra (``pip install '.[bench]'``; ``make bench`` installs it), not
a dependency of the project: without it the run says so in its notes and draws nothing.
"""

from __future__ import annotations

from pathlib import Path

#: engine -> [(policy count, throughput / no-op, req/s)]
Curve = dict[str, list[tuple[int, float, float]]]


def cdf(values: list[float]) -> tuple[list[float], list[float]]:
    ordered = sorted(values)
    return ordered, [(i + 1) / len(ordered) for i in range(len(ordered))]


def draw(path: Path, curve: Curve, chain_ms: list[float], noop_ms: list[float]) -> str:
    """Write the PNG; returns the note that says where (or why not)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot
        from matplotlib.ticker import NullFormatter, ScalarFormatter
    except ImportError:
        return "no plot: matplotlib is not installed (pip install '.[bench]'; make bench does)"
    figure, (left, right) = pyplot.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    for engine, points in curve.items():
        counts = [n for n, _, _ in points]
        left.plot(counts, [r for _, r, _ in points], marker="o", label=f"{engine} CEL")
        for n, r, rps in points:
            left.annotate(
                f"{rps:,.0f}/s", (n, r), textcoords="offset points", xytext=(4, 4), fontsize=7
            )
    left.axhline(0.5, color="grey", linestyle="--", linewidth=1, label="target 0.5x")
    left.set_xscale("log")
    left.set_ylim(bottom=0)
    left.set_xlabel("NotificationPolicies (issue 16's mix)")
    left.set_ylabel("filter throughput / no-op (same run)")
    left.set_title("policy filter, signed, 8 connections")
    left.legend()
    for label, values in (("event -> TaskRun (chain)", chain_ms), ("no-op, one request", noop_ms)):
        if values:
            xs, ys = cdf(values)
            right.plot(xs, ys, label=label)
    for target, style in ((10.0, ":"), (25.0, "--")):
        right.axvline(target, color="grey", linestyle=style, linewidth=1)
    right.set_xscale("log")
    right.xaxis.set_major_formatter(ScalarFormatter())
    right.xaxis.set_minor_formatter(NullFormatter())
    right.set_xlabel("latency (ms); grey: targets p50 10 ms, p99 25 ms")
    right.set_ylabel("fraction of events")
    right.set_title("latency CDF, one event at a time")
    right.legend(loc="lower right")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    pyplot.close(figure)
    return f"plot written to {path}"
