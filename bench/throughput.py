"""Throughput and latency of each function against a no-op served the same way (items 1, 5).

Each configuration runs in its own server process, driven over loopback by the load generator
in another process (closed loop, keep-alive). A no-op server of the same kind runs for the
whole section, and every configuration is measured in slices alternating with the no-op
(no-op, function, no-op, function, ...): each ratio compares figures taken seconds apart, so
the other tenants of a shared machine weigh on both alike.
"""

from __future__ import annotations

import contextlib
import statistics
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import workload
from bench.loadgen import Load, LoadResult, run_load
from bench.servers import FF_DEFAULT, FUNC_PYTHON, NOOP, Running, Server, emulator, serve
from bench.table import Row, ratio
from tekton_notifications import cel


@dataclass(frozen=True)
class Settings:
    #: Seconds of each function slice and of each no-op slice (wrk takes whole seconds).
    slice_seconds: int
    baseline_seconds: int
    slices: int
    warmup: float
    connections: int
    client: str
    log_dir: Path
    quick: bool


@dataclass
class Measured:
    label: str
    result: LoadResult
    rss_mb: float


LoadFactory = Callable[[str], Load]


def tekton_load(url: str) -> Load:
    return workload.load_for(url, workload.outgoing(workload.tekton_event()))


def matched_load(url: str) -> Load:
    return workload.load_for(url, workload.matched_event())


def rendered_load(url: str) -> Load:
    """Each request launches a new TaskRun: the name's hash is replaced per request."""
    return workload.load_for(url, workload.rendered_event(), vary=workload.run_name()[-10:])


def rendered_same_load(url: str) -> Load:
    """Every request names the same TaskRun: after the first, the API answers 409."""
    return workload.load_for(url, workload.rendered_event())


def combine(results: Sequence[LoadResult]) -> LoadResult:
    """Slices of one configuration as one figure: totals, and the median of percentiles."""
    return LoadResult(
        requests=sum(r.requests for r in results),
        seconds=sum(r.seconds for r in results),
        p50_ms=statistics.median(r.p50_ms for r in results),
        p99_ms=statistics.median(r.p99_ms for r in results),
        errors=sum(r.errors for r in results),
        client=results[0].client,
    )


class Runner(contextlib.ExitStack):
    """Starts each configuration in turn next to a long-running no-op of the same server."""

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.settings = settings
        self.runs = 0
        self.notes: list[str] = []
        self._noops: dict[Server, Running] = {}
        self.baselines: dict[Server, list[LoadResult]] = {}

    def load(
        self,
        running: Running,
        factory: LoadFactory,
        seconds: float,
        *,
        warmup: float = 0.0,
        connections: int | None = None,
    ) -> LoadResult:
        self.runs += 1
        result = run_load(
            factory(running.url + "/"),
            seconds=seconds,
            connections=connections or self.settings.connections,
            warmup=warmup,
            client=self.settings.client,
            salt=self.runs,
        )
        if result.errors or not result.requests:
            self.notes.append(
                f"WARNING {running.name} on {running.server.label}: {result.errors} errors, "
                f"{result.requests} requests, statuses {result.statuses}; log tail:\n"
                + running.log()[-800:]
            )
        return result

    def noop(self, server: Server) -> Running:
        if server not in self._noops:
            running = self.enter_context(
                serve(NOOP, server, {}, self.settings.log_dir, tekton_load("http://x/"))
            )
            self.load(running, tekton_load, self.settings.warmup or 1.0)
            self._noops[server] = running
            self.baselines[server] = []
        return self._noops[server]

    def paired(
        self, name: str, server: Server, env: dict[str, str], factory: LoadFactory, label: str
    ) -> tuple[Measured, Measured]:
        """The function's figures, and the no-op's from the slices in between."""
        noop = self.noop(server)
        targets: list[LoadResult] = []
        baselines: list[LoadResult] = []
        probe = factory("http://placeholder/")
        with serve(name, server, env, self.settings.log_dir, probe) as running:
            for index in range(self.settings.slices):
                baselines.append(self.load(noop, tekton_load, self.settings.baseline_seconds))
                warmup = self.settings.warmup if index == 0 else 0.0
                targets.append(
                    self.load(running, factory, self.settings.slice_seconds, warmup=warmup)
                )
            rss = running.rss_mb()
        self.baselines[server] += baselines
        baseline = Measured(f"no-op, {server.kind}", combine(baselines), noop.rss_mb())
        return Measured(label, combine(targets), rss), baseline

    def single(
        self,
        name: str,
        server: Server,
        env: dict[str, str],
        factory: LoadFactory,
        *,
        connections: int,
        label: str,
    ) -> Measured:
        probe = factory("http://placeholder/")
        with serve(name, server, env, self.settings.log_dir, probe) as running:
            seconds = self.settings.slice_seconds * self.settings.slices
            result = self.load(
                running, factory, seconds, warmup=self.settings.warmup, connections=connections
            )
            return Measured(label, result, running.rss_mb())


def rows_for(measured: Measured, baseline: Measured, base_label: str) -> list[Row]:
    r, b = measured.result, baseline.result
    return [
        Row(f"{measured.label}: throughput", r.rps, "req/s", ratio(r.rps, b.rps), base_label),
        Row(
            f"{measured.label}: p50 latency", r.p50_ms, "ms", ratio(r.p50_ms, b.p50_ms), base_label
        ),
        Row(
            f"{measured.label}: p99 latency", r.p99_ms, "ms", ratio(r.p99_ms, b.p99_ms), base_label
        ),
    ]


@contextlib.contextmanager
def _cluster(policies: Sequence[dict[str, Any]] = ()) -> Iterator[dict[str, str]]:
    with emulator([*workload.templates(), *policies]) as env:
        yield env


def filter_variants(server: Server, *, quick: bool) -> list[tuple[str, int]]:
    """(CEL engine, policy count) pairs; engine "no" is the one matching policy without CEL."""
    if server is not FUNC_PYTHON:
        return [("python", 1000)]  # .venv-ff has no common-expression-language
    counts = (1, 1000) if quick else (1, 100, 1000, 10_000)
    variants = [("no", 1), *(("python", count) for count in counts)]
    if "rust" in cel.available_engines():
        variants += [("rust", count) for count in ((1000,) if quick else (1000, 10_000))]
    return variants


def _filter_label(engine: str, count: int, short: str) -> str:
    if engine == "no":
        return f"policy-filter, 1 policy without CEL, {short}"
    policies = "policy" if count == 1 else "policies"
    return f"policy-filter, {count:,} {policies}, {engine} CEL, {short}"


def _rows(measured: Measured, baseline: Measured, base_label: str) -> list[Row]:
    rows = rows_for(measured, baseline, base_label)
    if "1,000 policies" in measured.label:
        value = ratio(measured.result.rps, baseline.result.rps)
        first = rows[0]
        rows[0] = Row(
            first.measurement,
            first.value,
            first.unit,
            value,
            base_label,
            ">= 0.8x no-op",
            value >= 0.8,
        )
    if "10,000 policies" in measured.label:
        rows.append(
            Row(
                f"{measured.label}: RSS after the run",
                measured.rss_mb,
                "MB",
                ratio(measured.rss_mb, baseline.rss_mb),
                base_label,
                "<= 80 MB",
                measured.rss_mb <= 80,
            )
        )
    return rows


def run(settings: Settings) -> tuple[list[Row], list[str]]:
    """Item 1: every function on func-python (and the portable server) vs its no-op."""
    rows: list[Row] = []
    with Runner(settings) as runner:
        for server in (FUNC_PYTHON, FF_DEFAULT):
            short = "func-python" if server is FUNC_PYTHON else "functions-framework"
            base_label = f"no-op ({short})"
            pairs: list[tuple[Measured, Measured]] = []
            for engine, count in filter_variants(server, quick=settings.quick):
                chosen = (
                    [workload.matching_policy(when=False)]
                    if engine == "no"
                    else workload.policy_set(count)
                )
                with _cluster(chosen) as env:
                    engine_env = {
                        **env,
                        cel.ENGINE_VARIABLE: "python" if engine == "no" else engine,
                    }
                    label = _filter_label(engine, count, short)
                    pairs.append(
                        runner.paired("policy-filter", server, engine_env, tekton_load, label)
                    )
            stages: list[tuple[str, LoadFactory, str]] = [
                ("template-renderer", matched_load, f"template-renderer, {short}"),
                ("task-launcher", rendered_load, f"task-launcher (each a create), {short}"),
            ]
            if server is FUNC_PYTHON and not settings.quick:
                stages.append(
                    (
                        "task-launcher",
                        rendered_same_load,
                        f"task-launcher (409 AlreadyExists path), {short}",
                    )
                )
            if server is FUNC_PYTHON or not settings.quick:
                with _cluster([workload.matching_policy()]) as env:
                    for name, factory, label in stages:
                        pairs.append(runner.paired(name, server, env, factory, label))
            overall = Measured(
                f"no-op, {short}", combine(runner.baselines[server]), runner.noop(server).rss_mb()
            )
            rows += rows_for(overall, overall, base_label)
            for measured, baseline in pairs:
                rows += _rows(measured, baseline, base_label)
            spread = [r.rps for r in runner.baselines[server]]
            runner.notes.append(
                f"{short} no-op slices: {min(spread):,.0f} to {max(spread):,.0f} req/s; each "
                "ratio uses the no-op slices taken between that function's own slices."
            )
    return rows, runner.notes


def concurrency_levels(quick: bool) -> tuple[int, ...]:
    return (1, 16) if quick else (1, 4, 16, 64)


def run_servers(settings: Settings) -> tuple[list[Row], list[str]]:
    """Item 5: func-python vs functions-framework at several concurrencies, each compared with
    itself at concurrency 1: where throughput stops growing, more concurrency is only queue."""
    rows: list[Row] = []
    filter_1k = "policy-filter 1,000 policies"
    configs: list[tuple[str, Server, LoadFactory, str]] = [
        ("policy-filter", FUNC_PYTHON, tekton_load, filter_1k),
    ]
    if not settings.quick:
        configs += [
            ("policy-filter", FF_DEFAULT, tekton_load, filter_1k),
            ("policy-filter", Server("functions-framework", 2, 8), tekton_load, filter_1k),
            ("task-launcher", FUNC_PYTHON, rendered_load, "task-launcher (creates)"),
            ("task-launcher", FF_DEFAULT, rendered_load, "task-launcher (creates)"),
        ]
    levels = concurrency_levels(settings.quick)
    with Runner(settings) as runner, _cluster(workload.policy_set(1000)) as env:
        for name, server, factory, what in configs:
            single: tuple[int, Measured] | None = None
            for level in levels:
                if server.workers and level < max(levels) // 4:
                    continue  # two workers only matter once there is a queue to share
                label = f"{what}, {server.label}, {level} concurrent"
                item = runner.single(name, server, env, factory, connections=level, label=label)
                single = single or (level, item)
                base, base_label = single[1].result, f"same @{single[0]}"
                r = item.result
                rows.append(
                    Row(f"{label}: throughput", r.rps, "req/s", ratio(r.rps, base.rps), base_label)
                )
                rows.append(
                    Row(
                        f"{label}: p99 latency",
                        r.p99_ms,
                        "ms",
                        ratio(r.p99_ms, base.p99_ms),
                        base_label,
                    )
                )
        notes = runner.notes
    return rows, notes
