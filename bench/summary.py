"""Issue 16's table in one run: what ``make bench`` prints by default (``--only summary``).

Every figure of the issue, each with its ratio to a no-op measured in the same run:

- the policy filter's throughput and p50 latency under load, 1,000 policies in the issue's mix
  (:func:`workload.issue_policy_set`), both CEL engines, signing on (and cel-python unsigned,
  to show what signing costs), against the func-python no-op in alternating slices; the same
  at other policy counts for the plot;
- cold start to the first 2xx of each function and its RSS after 1,000 events, against the
  no-op started the same way (and the filter's start with 1,000 policies to load);
- the whole chain, event in to TaskRun created, p50 and p99, against one no-op request.

It also draws ``bench.png`` (:mod:`bench.plot`): throughput vs policies for both engines, and
the latency CDF of the chain.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from bench import coldstart, e2e, plot, workload
from bench.servers import FUNC_PYTHON, FUNCTIONS, NOOP, emulator
from bench.table import Row, ratio
from bench.throughput import Measured, Runner, Settings, tekton_load
from tekton_notifications import cel
from tekton_notifications.devtools import serving

COUNTS = (20, 100, 1000, 5000)
QUICK_COUNTS = (20, 1000)
#: The issue's load: 8 connections.
CONNECTIONS = 8
THROUGHPUT_TARGET = 0.5
COLD_START_TARGET = 0.5
RSS_TARGET = 60.0
E2E_TARGETS = {50: 10.0, 99: 25.0}
#: Signing on, as deployed: the filter signs every matched event it replies with.
SIGNED = serving.signed("bench-signing-key-" + "0" * 32)
NOOP_LABEL = "no-op (func-python)"


def engines() -> tuple[str, ...]:
    return tuple(e for e in ("python", "rust") if e in cel.available_engines())


def _filter(
    runner: Runner, engine: str, count: int, *, signed: bool = True
) -> tuple[Measured, Measured]:
    with emulator([*workload.templates(), *workload.issue_policy_set(count)]) as kube:
        env = {**kube, **(SIGNED if signed else serving.UNSIGNED), cel.ENGINE_VARIABLE: engine}
        label = f"filter, {count:,} policies, {engine} CEL{'' if signed else ', unsigned'}"
        return runner.paired("policy-filter", FUNC_PYTHON, env, tekton_load, label)


def throughput(
    settings: Settings, counts: Sequence[int]
) -> tuple[list[Row], list[str], plot.Curve]:
    """The filter against the no-op; the curve (engine -> [(count, ratio, req/s)]) for the plot."""
    rows: list[Row] = []
    curve: plot.Curve = {}
    with Runner(dataclasses.replace(settings, connections=CONNECTIONS)) as runner:
        at_1000: list[tuple[Measured, Measured]] = []
        for engine in engines():
            for count in counts:
                measured, baseline = _filter(runner, engine, count)
                value = ratio(measured.result.rps, baseline.result.rps)
                curve.setdefault(engine, []).append((count, value, measured.result.rps))
                if count == 1000:
                    at_1000.append((measured, baseline))
        at_1000.append(_filter(runner, "python", 1000, signed=False))
        for measured, baseline in at_1000:
            r, b = measured.result, baseline.result
            value = ratio(r.rps, b.rps)
            rows += [
                Row(
                    f"{measured.label}: throughput",
                    r.rps,
                    "req/s",
                    value,
                    NOOP_LABEL,
                    f">= {THROUGHPUT_TARGET:g}x no-op",
                    value >= THROUGHPUT_TARGET,
                ),
                Row(
                    f"{measured.label}: p50 latency",
                    r.p50_ms,
                    "ms",
                    ratio(r.p50_ms, b.p50_ms),
                    NOOP_LABEL,
                ),
                Row(
                    f"{measured.label}: p99 latency",
                    r.p99_ms,
                    "ms",
                    ratio(r.p99_ms, b.p99_ms),
                    NOOP_LABEL,
                ),
            ]
        spread = [r.rps for r in runner.baselines[FUNC_PYTHON]]
        noop = runner.baselines[FUNC_PYTHON]
        rows.insert(
            0,
            Row(
                "no-op (func-python): throughput, all its slices",
                sum(r.requests for r in noop) / sum(r.seconds for r in noop),
                "req/s",
                1.0,
                NOOP_LABEL,
            ),
        )
        notes = [
            *runner.notes,
            f"throughput: {CONNECTIONS} connections, {settings.client}; no-op slices "
            f"{min(spread):,.0f} to {max(spread):,.0f} req/s; each ratio uses the no-op slices "
            "taken between that configuration's own.",
            "throughput / no-op by policies: "
            + "; ".join(
                f"{engine} "
                + ", ".join(f"{n:,}: {v:.3f}x ({rps:,.0f} req/s)" for n, v, rps in points)
                for engine, points in curve.items()
            ),
        ]
    return rows, notes, curve


def starts(*, quick: bool, log_dir: Path) -> tuple[list[Row], list[str]]:
    """Cold start to the first 2xx and RSS after 1,000 events of each function vs the no-op."""
    count, events = (1, 200) if quick else (3, 1000)
    rows: list[Row] = []
    configs: list[tuple[str, dict[str, str], str]] = [
        (NOOP, {}, ""),
        ("policy-filter", dict(SIGNED), "python CEL"),
        *(("policy-filter", {**SIGNED, cel.ENGINE_VARIABLE: e}, f"{e} CEL") for e in engines()[1:]),
        # Their input would be signed in a cluster; the benchmark's own is not, and a key
        # changes nothing at start.
        *((name, {}, "") for name in FUNCTIONS[1:]),
    ]
    base_s = base_rss = 0.0
    with emulator([*workload.templates(), workload.matching_policy()]) as kube:
        for name, env, variant in configs:
            seconds, rss = coldstart.cold_start(
                name, FUNC_PYTHON, {**kube, **env}, log_dir, starts=count, events=events
            )
            if name == NOOP:
                base_s, base_rss = seconds, rss
            label = f"{name}{', ' + variant if variant else ''}"
            rows += [
                Row(
                    f"cold start to first 2xx, {label}",
                    seconds,
                    "s",
                    ratio(seconds, base_s),
                    NOOP_LABEL,
                    f"<= {COLD_START_TARGET:g} s",
                    seconds <= COLD_START_TARGET,
                ),
                Row(
                    f"RSS after {events:,} events, {label}",
                    rss,
                    "MB",
                    ratio(rss, base_rss),
                    NOOP_LABEL,
                    f"<= {RSS_TARGET:g} MB",
                    rss <= RSS_TARGET,
                ),
            ]
    with emulator([*workload.templates(), *workload.issue_policy_set(1000)]) as kube:
        for engine in engines():
            env = {**kube, **SIGNED, cel.ENGINE_VARIABLE: engine}
            seconds, _ = coldstart.cold_start(
                "policy-filter", FUNC_PYTHON, env, log_dir, starts=1, events=1
            )
            rows.append(
                Row(
                    f"cold start to first 2xx, policy-filter, 1,000 policies, {engine} CEL",
                    seconds,
                    "s",
                    ratio(seconds, base_s),
                    NOOP_LABEL,
                )
            )
    notes = [
        f"cold start: Popen to the first 2xx answer to a real event, median of {count} "
        "start(s), one policy (the filter with 1,000 policies: one start)."
    ]
    return rows, notes


def chain(*, quick: bool, log_dir: Path) -> tuple[list[Row], list[str], e2e.Chain]:
    measured = e2e.measure(quick=quick, log_dir=log_dir)
    rows = [
        Row(
            "no-op, one request at a time: p50",
            e2e.percentile(measured.baseline, 50),
            "ms",
            1.0,
            "no-op",
        )
    ]
    for percent, target in E2E_TARGETS.items():
        value = e2e.percentile(measured.latencies, percent)
        base = e2e.percentile(measured.baseline, percent)
        rows.append(
            Row(
                f"event -> TaskRun, whole chain, p{percent} of {measured.count:,}",
                value,
                "ms",
                ratio(value, base),
                f"no-op p{percent}",
                f"<= {target:g} ms",
                value <= target,
            )
        )
    rows.append(
        Row(
            "event -> TaskRun, events lost",
            float(measured.missing),
            "events",
            target="0",
            met=measured.missing == 0,
        )
    )
    notes = [
        f"chain: {measured.count:,} events one at a time (signed, as installed), "
        f"{measured.created:,} TaskRuns created, {measured.missing} not seen."
    ]
    return rows, notes, measured


def run(settings: Settings, *, png: Path | None) -> tuple[list[Row], list[str]]:
    counts = QUICK_COUNTS if settings.quick else COUNTS
    rows, notes, curve = throughput(settings, counts)
    start_rows, start_notes = starts(quick=settings.quick, log_dir=settings.log_dir)
    chain_rows, chain_notes, measured = chain(quick=settings.quick, log_dir=settings.log_dir)
    notes += start_notes + chain_notes
    if png is not None:
        notes.append(plot.draw(png, curve, measured.latencies, measured.baseline))
    return rows + start_rows + chain_rows, notes
