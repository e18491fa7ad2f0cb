"""Rate limits: at most N notifications per sliding window, per policy or per pipeline.

The budget is a log of what was sent in the window, kept in the policy's ``status.rateLimit``
(see :mod:`tekton_notifications.storm`). Each entry names the run event it was spent on, so a
redelivered event finds its entry and is admitted again instead of spending a second one or
being suppressed after it was let through. Suppressions change nothing here: a storm of
suppressed events costs no writes. Pure: the caller passes the clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tekton_notifications.events import format_time, parse_time
from tekton_notifications.models import RateLimit

#: The CRD's bound on ``status.rateLimit.sent``; reached only by ``per: pipeline`` with more
#: than 100 busy pipelines, where dropping the oldest entries errs towards sending.
MAX_SENT = 10_000


@dataclass(frozen=True)
class Sent:
    """One notification counted against a budget."""

    #: The run event it was sent for (run uid and outcome, hashed): see :func:`occurrence`.
    occurrence: str
    time: float  # seconds since the epoch
    #: The pipeline whose budget it counts against; "" for a per-policy budget.
    pipeline: str = ""

    def as_status(self) -> dict[str, str]:
        entry = {"occurrence": self.occurrence, "time": _format(self.time)}
        if self.pipeline:
            entry["pipeline"] = self.pipeline
        return entry


@dataclass(frozen=True)
class Admission:
    admitted: bool
    #: Notifications in the window of the budget this event draws on, this one included when
    #: admitted.
    count: int
    #: The log to write, or None when nothing changes.
    updated: tuple[Sent, ...] | None
    #: When the oldest counted notification leaves the window (for messages), if suppressed.
    frees_at: float | None = None

    def describe(self, limit: RateLimit) -> str:
        if self.admitted:
            return f"{self.count} of {limit.describe()}"
        when = f"; the next one can go at {_format(self.frees_at)}" if self.frees_at else ""
        return f"rate limit reached: {self.count} sent, at most {limit.describe()}{when}"


def admit(
    log: Sequence[Sent],
    limit: RateLimit,
    *,
    occurrence: str,
    pipeline: str,
    now: float,
) -> Admission:
    """Spend one unit of the budget on ``occurrence``, or say it is exhausted."""
    scope = pipeline if limit.per == "pipeline" else ""
    live = [sent for sent in log if sent.time > now - limit.window]
    budget = [sent for sent in live if sent.pipeline == scope]
    if any(sent.occurrence == occurrence for sent in budget):
        return Admission(True, len(budget), None)
    if len(budget) >= limit.limit:
        frees_at = min(sent.time for sent in budget) + limit.window
        return Admission(False, len(budget), None, frees_at)
    log_after = (*live, Sent(occurrence, now, scope))
    return Admission(True, len(budget) + 1, log_after[-MAX_SENT:])


def parse_log(status: Mapping[str, Any]) -> tuple[Sent, ...]:
    """The log from ``status.rateLimit.sent``; entries that don't parse are dropped."""
    section = status.get("rateLimit")
    entries = section.get("sent") if isinstance(section, Mapping) else None
    if not isinstance(entries, list):
        return ()
    log = []
    for entry in entries:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("occurrence"), str):
            continue
        parsed = parse_time(str(entry.get("time") or ""))
        if parsed is None:
            continue
        log.append(Sent(entry["occurrence"], parsed.timestamp(), str(entry.get("pipeline") or "")))
    return tuple(log)


def _format(seconds: float) -> str:
    return format_time(datetime.fromtimestamp(round(seconds, 3), UTC))
