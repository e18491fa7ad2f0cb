"""Transitions: whether a finished run changed its pipeline's outcome (``broken``, ``fixed``).

"Notify when a pipeline fails, and once when it is fixed again" needs the previous outcome of
the same pipeline (:attr:`RunEvent.pipeline`). The last outcome per pipeline is kept in the
policy's ``status.outcomes`` (see :mod:`tekton_notifications.storm` for why there); this module
only compares an event with those records and says what to write, so it does no I/O.

Writes happen on changes only: a pipeline failing ten times in a row costs one write. A
redelivered event finds its own run recorded and gets the same answer again; an event older
than the record (by completion time) is stale and changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

from tekton_notifications.events import RunEvent, format_time, parse_time

#: Records kept per policy; beyond it the oldest successes go first (a missing record means
#: "not known to be failing", which is what a success says too).
MAX_OUTCOMES: Final = 200


@dataclass(frozen=True)
class Outcome:
    """The last outcome of one pipeline, as a policy saw it."""

    kind: str
    pipeline: str
    outcome: str  # "succeeded" or "failed"
    run: str
    uid: str
    completion_time: str
    #: The outcome before this one, so a redelivery of this run repeats its transition.
    previous: str = ""
    #: The run's namespace (records written before it was kept have none).
    namespace: str = ""
    #: Consecutive failures of this pipeline (counted for policies with a threshold or
    #: reminders; 1 otherwise), this run's included.
    streak: int = 1
    #: When the pipeline turned red: the first failure's completion time, kept while it
    #: stays failing ("" when it is this record's own completion time).
    first_failure: str = ""
    #: Reminders sent for this failure streak (written by the scheduler).
    reminded: int = 0

    @property
    def since(self) -> str:
        """When this pipeline's current outcome began."""
        return self.first_failure or self.completion_time

    def as_status(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "kind": self.kind,
            "pipeline": self.pipeline,
            "outcome": self.outcome,
            "run": self.run,
            "uid": self.uid,
        }
        if self.completion_time:  # the CRD wants a date-time or nothing
            entry["completionTime"] = self.completion_time
        if self.previous:
            entry["previousOutcome"] = self.previous
        if self.namespace:
            entry["namespace"] = self.namespace
        if self.outcome == "failed":
            entry["streak"] = self.streak
            if self.first_failure:
                entry["since"] = self.first_failure
            if self.reminded:
                entry["reminded"] = self.reminded
        return entry

    def view(self) -> dict[str, str]:
        """What templates see as ``event.previous``."""
        return {"outcome": self.outcome, "run": self.run, "completionTime": self.completion_time}


@dataclass(frozen=True)
class Observation:
    #: "fixed" when this run succeeded after a failure, "broken" when it failed and the
    #: pipeline was not failing (or not known yet), else None.
    transition: str | None
    #: The record this event was compared with (None: the pipeline was not known).
    previous: Outcome | None
    #: The records to write, or None when nothing changes.
    updated: tuple[Outcome, ...] | None
    note: str
    #: The pipeline's record once this event is counted (None when it is stale or unknown).
    current: Outcome | None = None


def observe(records: Sequence[Outcome], event: RunEvent, *, count: bool = False) -> Observation:
    """Compare a run event with the recorded outcomes of its policy.

    ``count``: keep counting consecutive failures (a threshold needs the streak): each new
    failing run of a failing pipeline is written, keeping when it turned red. Without it a
    pipeline failing ten times in a row costs one write.
    """
    outcome = event.final_outcome
    if outcome is None:
        why = "cancelled runs" if "cancelled" in event.policy_events else "unfinished runs"
        return Observation(None, None, None, f"{why} do not change the pipeline's outcome")
    pipeline = event.pipeline
    recorded = next(
        (r for r in records if r.kind == event.kind and r.pipeline == pipeline),
        None,
    )
    if recorded is not None and event.uid and recorded.uid == event.uid:
        transition = _transition(recorded.previous, recorded.outcome)
        previous = _previous_of(recorded)
        return Observation(
            transition,
            previous,
            None,
            f"this run was recorded already ({recorded.outcome})",
            recorded,
        )
    completed = event.completion_time
    recorded_time = parse_time(recorded.completion_time) if recorded is not None else None
    if completed is not None and recorded_time is not None and completed < recorded_time:
        assert recorded is not None
        return Observation(
            None, recorded, None, f"stale: {recorded.run} finished later ({recorded.outcome})"
        )
    before = recorded.outcome if recorded is not None else ""
    finished = format_time(completed) if completed else event.time
    if count and before == outcome == "failed" and recorded is not None:
        streak = recorded.streak + 1
        record = replace(
            recorded,
            run=event.name,
            uid=event.uid,
            completion_time=finished,
            previous="failed",
            namespace=event.namespace,
            streak=streak,
            first_failure=recorded.since,
        )
        kept = [r for r in records if r is not recorded]
        note = f"{pipeline}: still failed, failure {streak} in a row"
        return Observation(None, recorded, _bounded([*kept, record]), note, record)
    if before == outcome or (before == "" and outcome == "succeeded"):
        what = f"still {outcome}" if before else "no failure recorded"
        return Observation(None, recorded, None, f"{pipeline}: {what}", recorded)
    record = Outcome(
        kind=event.kind,
        pipeline=pipeline,
        outcome=outcome,
        run=event.name,
        uid=event.uid,
        completion_time=finished,
        previous=before,
        namespace=event.namespace,
    )
    kept = [r for r in records if r is not recorded]
    updated = _bounded([*kept, record])
    transition = _transition(before, outcome)
    note = f"{pipeline}: {before or 'unknown'} -> {outcome}"
    return Observation(transition, recorded, updated, note, record)


def _transition(before: str, after: str) -> str | None:
    if after == "succeeded":
        return "fixed" if before == "failed" else None
    return "broken" if before != "failed" else None


def _previous_of(recorded: Outcome) -> Outcome | None:
    """For a replay, the record as it was before this run: enough for templates."""
    if not recorded.previous:
        return None
    return Outcome(
        kind=recorded.kind,
        pipeline=recorded.pipeline,
        outcome=recorded.previous,
        run="",
        uid="",
        completion_time="",
    )


def _bounded(records: list[Outcome]) -> tuple[Outcome, ...]:
    if len(records) <= MAX_OUTCOMES:
        return tuple(records)
    # Drop the oldest successes first, then the oldest failures.
    ordered = sorted(records, key=lambda r: (r.outcome == "failed", r.completion_time))
    return tuple(ordered[len(records) - MAX_OUTCOMES :])


def parse_records(status: Mapping[str, Any]) -> tuple[Outcome, ...]:
    """Records from ``status.outcomes``; entries that don't parse are dropped, not fatal."""
    entries = status.get("outcomes")
    if not isinstance(entries, list):
        return ()
    records = []
    for entry in entries:
        if not isinstance(entry, Mapping):
            continue
        fields = {key: entry.get(key) for key in ("kind", "pipeline", "outcome", "run")}
        if not all(isinstance(value, str) and value for value in fields.values()):
            continue
        if entry["outcome"] not in ("succeeded", "failed"):
            continue
        records.append(
            Outcome(
                kind=str(entry["kind"]),
                pipeline=str(entry["pipeline"]),
                outcome=str(entry["outcome"]),
                run=str(entry["run"]),
                uid=str(entry.get("uid") or ""),
                completion_time=str(entry.get("completionTime") or ""),
                previous=str(entry.get("previousOutcome") or ""),
                namespace=str(entry.get("namespace") or ""),
                streak=_count(entry.get("streak"), 1),
                first_failure=str(entry.get("since") or ""),
                reminded=_count(entry.get("reminded"), 0),
            )
        )
    return tuple(records)


def _count(value: object, default: int) -> int:
    return (
        value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else default
    )
