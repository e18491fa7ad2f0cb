"""In-process micro-benchmarks: CEL per evaluation on each engine (item 2), and the cost of
``PolicyIndex.match`` as unrelated policies are added (item 1's "does not grow").

Each figure is the best of a few repeats of a timed loop: the minimum is the least disturbed
by the other tenants of the machine.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any

from bench import workload
from bench.table import Row, ratio
from tekton_notifications import cel
from tekton_notifications.events import RunEvent, parse_event

#: Typical ``when`` expressions (docs/policies.md, examples/policies).
EXPRESSIONS = {
    "reason equals": 'event.reason == "Failed"',
    "has/in/index on run labels": (
        'has(run.metadata.labels) && "tekton.dev/pipelineTask" in run.metadata.labels && '
        'run.metadata.labels["tekton.dev/pipelineTask"] == "unit-tests"'
    ),
    "labels and outcome in list": (
        '"team" in event.labels && event.labels["team"] == "web" && '
        'event.outcome in ["failed", "timedOut"]'
    ),
    "string functions": 'event.message.contains("OOMKilled") || event.name.startsWith("web-")',
    "macro over children": 'event.children.exists(c, c.reason == "Failed")',
}
POLICY = {"name": "notify", "namespace": "ci"}


def per_call_us(call: Callable[[], Any], *, budget: float, repeats: int = 3) -> float:
    """Microseconds per call: the best of ``repeats`` loops of about ``budget`` seconds."""
    call()
    started, calls = time.perf_counter(), 0
    while time.perf_counter() - started < budget / 10:
        call()
        calls += 1
    per_loop = max(1, int(calls * 10 / repeats))
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(per_loop):
            call()
        best = min(best, (time.perf_counter() - started) / per_loop)
    return best * 1e6


def interleaved_us(
    calls: dict[Any, Callable[[], Any]], *, budget: float, rounds: int = 7
) -> dict[Any, float]:
    """Microseconds per call of each, measured in turns (``rounds`` times each, best kept),
    so that a slow spell of the machine hits all of them alike."""
    loops = {}
    for key, call in calls.items():
        call()
        started, count = time.perf_counter(), 0
        while time.perf_counter() - started < budget / len(calls) / rounds:
            call()
            count += 1
        loops[key] = max(1, count)
    best = dict.fromkeys(calls, float("inf"))
    for _ in range(rounds):
        for key, call in calls.items():
            started = time.perf_counter()
            for _ in range(loops[key]):
                call()
            best[key] = min(best[key], (time.perf_counter() - started) / loops[key])
    return {key: value * 1e6 for key, value in best.items()}


def tekton_run_event(uid: str | None = None) -> RunEvent:
    cloudevent = workload.tekton_event(uid)
    return parse_event(cloudevent, cloudevent["data"])


def cel_rows(*, quick: bool) -> tuple[list[Row], list[str]]:
    budget = 0.15 if quick else 0.6
    event = tekton_run_event()
    engines = cel.available_engines()
    notes = [] if "rust" in engines else ["common-expression-language not installed: no rust rows"]
    rows: list[Row] = []
    for label, source in EXPRESSIONS.items():
        figures: dict[str, tuple[float, float]] = {}
        for engine in engines:
            expression = cel.compile_expression(source, engine)
            base = cel.activation(run=event.run, event=event.view(), policy={})

            def steady(expression: cel.Expression = expression, base: Any = base) -> None:
                expression.evaluate(cel.with_policy(base, POLICY))

            def first(expression: cel.Expression = expression) -> None:
                values = cel.activation(run=event.run, event=event.view(), policy={})
                expression.evaluate(cel.with_policy(values, POLICY))

            figures[engine] = (
                per_call_us(steady, budget=budget),
                per_call_us(first, budget=budget),
            )
        python = figures["python"]
        for engine, (steady_us, first_us) in figures.items():
            rows.append(
                Row(
                    f"CEL {label}, {engine}: per candidate policy",
                    steady_us,
                    "us",
                    ratio(steady_us, python[0]),
                    "python",
                )
            )
            rows.append(
                Row(
                    f"CEL {label}, {engine}: first in an event (converts variables)",
                    first_us,
                    "us",
                    ratio(first_us, python[1]),
                    "python",
                )
            )
    return rows, notes


def index_rows(*, quick: bool) -> tuple[list[Row], list[str]]:
    """µs per ``PolicyIndex.match`` with the matching policy plus N that cannot match."""
    budget = 1.0 if quick else 4.0
    event = tekton_run_event()
    rows: list[Row] = []
    previous = cel.selected_engine()
    try:
        # --quick: one engine (the faster one: compiling 10,000 policies with cel-python alone
        # takes ~10 s per index).
        engines = cel.available_engines()[-1:] if quick else cel.available_engines()
        for engine in engines:
            cel.set_engine(engine)
            unrelated = {
                count: workload.policy_index(
                    [workload.matching_policy(), *workload.unrelated(count)]
                )
                for count in (10, 100, 1000, 10_000)
            }
            bucketed = {
                total: workload.policy_index(workload.policy_set(total))
                for total in (1, 100, 1000, 10_000)
            }
            for index in (*unrelated.values(), *bucketed.values()):
                assert len(index.match(event)[0]) == 1
            timed = interleaved_us(
                {count: partial(index.match, event) for count, index in unrelated.items()},
                budget=budget,
            )
            for count, us in timed.items():
                grows = count > 10
                rows.append(
                    Row(
                        f"PolicyIndex.match, 1 matching + {count:,} unrelated ({engine} CEL)",
                        us,
                        "us",
                        ratio(us, timed[10]),
                        "10 unrelated",
                        "<= 1.25x at 10" if grows else "",
                        us <= 1.25 * timed[10] if grows else None,
                    )
                )
            timed = interleaved_us(
                {total: partial(index.match, event) for total, index in bucketed.items()},
                budget=budget,
            )
            for total, us in timed.items():
                rows.append(
                    Row(
                        f"PolicyIndex.match, {total:,} {'policy' if total == 1 else 'policies'}"
                        f", 1% in the event's bucket ({engine} CEL)",
                        us,
                        "us",
                        ratio(us, timed[1]),
                        "1 policy",
                    )
                )
    finally:
        cel.set_engine(previous)
    return rows, []
