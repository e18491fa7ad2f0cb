"""In-process: what storm control adds to the policy filter's answer to one Tekton event.

``PolicyFilter.respond`` on the same failed-TaskRun event, measured in turns (so a slow
spell of the machine hits all alike), for the matching policy as it is and with storm
control. State is kept by :class:`policystate.MemoryStatus`, so the figures are the
decision's own cost; live, an admitted notification or a changed outcome adds one status
PATCH to the API server, and a suppression adds nothing.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from typing import Any

from bench import workload
from bench.cel_cost import interleaved_us
from bench.table import Row, ratio
from tekton_notifications.policystate import MemoryStatus
from tekton_notifications.stages.policy_filter import PolicyFilter


def _filter(policy: dict[str, Any], clock: Callable[[], float] | None = None) -> PolicyFilter:
    if clock is None:
        return PolicyFilter(workload.policy_index([policy]), states=MemoryStatus().states())
    return PolicyFilter(
        workload.policy_index([policy]), states=MemoryStatus().states(), clock=clock
    )


def _marching_clock(step: float) -> Callable[[], float]:
    """A clock that moves ``step`` seconds per reading: every window has room again."""
    ticks = itertools.count()
    return lambda: 1.8e9 + step * next(ticks)


def _with(**spec: Any) -> dict[str, Any]:
    policy = copy.deepcopy(workload.matching_policy(when=False))
    policy["spec"].update(spec)
    return policy


def _responder(stage: PolicyFilter, *, new_run_each_time: bool) -> Callable[[], Any]:
    """POST-less ``respond``; ``new_run_each_time``: a different run (uid) per call, so a
    rate limit spends its budget (or is spent) instead of re-admitting one occurrence."""
    if not new_run_each_time:
        cloudevent = workload.tekton_event()
        attributes = {k: str(v) for k, v in cloudevent.items() if k != "data"}
        return lambda: stage.respond(attributes, cloudevent["data"])
    events = [workload.tekton_event(f"uid-{n}") for n in range(512)]
    prepared = [({k: str(v) for k, v in e.items() if k != "data"}, e["data"]) for e in events]
    cycle = itertools.cycle(prepared)

    def respond() -> Any:
        attributes, data = next(cycle)
        return stage.respond(attributes, data)

    return respond


def storm_rows(*, quick: bool) -> tuple[list[Row], list[str]]:
    budget = 1.0 if quick else 4.0
    plain = _filter(_with())
    spent = _filter(_with(rateLimit={"limit": 1, "window": "168h"}))
    roomy = _filter(_with(rateLimit={"limit": 5, "window": "1s"}), _marching_clock(2.0))
    fixed = _filter(_with(events=["failed", "fixed"]))
    calls = {
        "no storm control": _responder(plain, new_run_each_time=False),
        "rateLimit, budget spent (suppressed, no write)": _responder(spent, new_run_each_time=True),
        "rateLimit, admitted (a write per event)": _responder(roomy, new_run_each_time=True),
        "rateLimit, a redelivery (re-admitted, no write)": _responder(
            roomy, new_run_each_time=False
        ),
        "events [failed, fixed], still failing (no write)": _responder(
            fixed, new_run_each_time=True
        ),
    }
    figures = interleaved_us(calls, budget=budget)
    base = figures["no storm control"]
    rows = [
        Row(f"policy filter respond(), {label}", value, "us", ratio(value, base), "no storm")
        for label, value in figures.items()
    ]
    notes = [
        "storm rows: in-process, state in memory; live, each write is one status PATCH "
        "(admitted notifications and outcome changes only)"
    ]
    return rows, notes
