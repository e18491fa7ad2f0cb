"""What the scheduler owes a policy at a given time: reminders and digests (issue 17).

Everything it needs is in the policy's status, written by the policy filter as events
happen (:mod:`tekton_notifications.storm`): ``status.outcomes`` says which pipelines are
failing, since when, and how many reminders were sent for that streak; ``status.digest``
holds what the rate limit suppressed, per period. This module compares that with the clock
and says what is due, the identity of each due item (what makes it exactly-once: the key of
its notifications, and so the name of its run, comes from it), and the state once sent.

- A reminder is due ``after`` the pipeline turned red, then every ``every``, at most
  ``max`` times; reminder *k* is due at ``since + after + (k - 1) * every``. When several are
  overdue (the scheduler was down), one is sent, numbered as the last one due: people get
  one message saying how long it has been red, not a burst. Its identity is (kind, pipeline,
  since, number): the same streak's reminder *k* is the same notification however often the
  scheduler is woken.
- A digest is due once its period has ended; its identity is the period's start.

"Sent up to" is kept where the state is: ``reminded`` on the pipeline's outcome record, and
a sent digest period is removed. Pure: the caller passes the clock.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from tekton_notifications import digests
from tekton_notifications.digests import Period
from tekton_notifications.events import format_time, parse_time
from tekton_notifications.models import Policy
from tekton_notifications.storm import PolicyState
from tekton_notifications.transitions import Outcome


@dataclass(frozen=True)
class Reminder:
    """Reminder number ``count`` for a failing pipeline."""

    record: Outcome
    count: int
    max: int
    since: float

    @property
    def id(self) -> str:
        r = self.record
        return f"reminder/{r.kind}/{r.pipeline}/{r.since}/{self.count}"

    def view(self, now: float) -> dict[str, Any]:
        """What templates see as ``event.reminder``."""
        red_for = max(0, int(now - self.since))
        return {
            "count": self.count,
            "max": self.max,
            "since": self.record.since,
            "redFor": describe(red_for),
            "redForSeconds": red_for,
        }


@dataclass(frozen=True)
class DigestDue:
    """A period whose suppressions are due to be sent as one notification."""

    period: Period
    every: float

    @property
    def id(self) -> str:
        return f"digest/{_format(self.period.start)}"

    def view(self) -> dict[str, Any]:
        """What templates see as ``digest``."""
        return digests.view(self.period, self.every)


@dataclass(frozen=True)
class Due:
    reminders: tuple[Reminder, ...] = ()
    digests: tuple[DigestDue, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.reminders or self.digests)


def due(policy: Policy, state: PolicyState, now: float) -> Due:
    """What is due for ``policy`` at ``now``."""
    reminders = []
    if policy.remind is not None:
        for record in state.outcomes:
            reminder = _reminder(policy, record, now)
            if reminder is not None:
                reminders.append(reminder)
    periods: tuple[DigestDue, ...] = ()
    if policy.digest is not None:
        every = policy.digest.every
        periods = tuple(DigestDue(p, every) for p in digests.ended(state.held, every, now))
    return Due(tuple(reminders), periods)


def sent(state: PolicyState, done: Due) -> PolicyState | None:
    """``state`` once ``done`` was sent; None when that changes nothing (sent before).

    Applied to the state read again at write time: a reminder marks the record of the same
    streak only (a pipeline fixed meanwhile has a new record, which keeps no mark).
    """
    marks = {(r.record.kind, r.record.pipeline, r.record.since): r.count for r in done.reminders}
    outcomes = []
    changed = False
    for record in state.outcomes:
        count = marks.get((record.kind, record.pipeline, record.since))
        if record.outcome == "failed" and count is not None and count > record.reminded:
            record, changed = replace(record, reminded=count), True
        outcomes.append(record)
    starts = [d.period.start for d in done.digests]
    held = digests.without(state.held, starts)
    if held != state.held:
        changed = True
    if not changed:
        return None
    return replace(state, outcomes=tuple(outcomes), held=held)


def next_due(policy: Policy, state: PolicyState) -> float | None:
    """When something is next due for ``policy`` (for ``status.nextDue``), or None."""
    times: list[float] = []
    remind = policy.remind
    if remind is not None:
        for record in _failing(state.outcomes):
            since = _seconds(record.since)
            if since is not None and record.reminded < remind.max:
                times.append(since + remind.after + record.reminded * remind.every)
    if policy.digest is not None:
        times.extend(p.start + policy.digest.every for p in state.held.periods)
    return min(times) if times else None


def outlook(policy: Policy, state: PolicyState, now: float) -> tuple[str, ...]:
    """What the scheduler owes ``policy``, in words (``tkn-notify explain``): the reminders
    of each failing pipeline, due or next, and the next digest."""
    lines: list[str] = []
    remind = policy.remind
    if remind is not None:
        for record in _failing(state.outcomes):
            since = _seconds(record.since)
            if since is None:
                continue
            red = f"{record.pipeline} red since {record.since} ({describe(now - since)})"
            reminder = _reminder(policy, record, now)
            if reminder is not None:
                lines.append(f"reminder {reminder.count} of {remind.max} due now: {red}")
            elif record.reminded >= remind.max:
                lines.append(f"reminders done ({remind.max} sent): {red}")
            else:
                at = since + remind.after + record.reminded * remind.every
                lines.append(
                    f"reminder {record.reminded + 1} of {remind.max} at {_format(at)}: {red}"
                )
        if not lines:
            lines.append("no reminder pending: no pipeline of this policy is failing")
    if policy.digest is not None:
        every = policy.digest.every
        periods = state.held.periods
        for period in periods:
            when = (
                "due now" if period.start + every <= now else f"at {_format(period.start + every)}"
            )
            lines.append(f"digest of {period.total} held back since {_format(period.start)} {when}")
        if not periods:
            lines.append("next digest: none, nothing held back")
        if state.held.dropped:
            lines.append(f"{state.held.dropped} held back dropped: digests left unsent too long")
    return tuple(lines)


def describe(seconds: float) -> str:
    """A duration as people say it: ``2d 3h``, ``4h 10m``, ``5m``."""
    minutes = int(seconds // 60)
    days, hours, minutes = minutes // 1440, minutes // 60 % 24, minutes % 60
    parts = [f"{days}d" if days else "", f"{hours}h" if hours else "", f"{minutes}m"]
    if days:
        parts[2] = ""
    return " ".join(p for p in parts if p) or "0m"


def format_seconds(seconds: float) -> str:
    return _format(seconds)


def _reminder(policy: Policy, record: Outcome, now: float) -> Reminder | None:
    remind = policy.remind
    since = _seconds(record.since)
    if remind is None or record.outcome != "failed" or since is None:
        return None
    first = since + remind.after
    if now < first:
        return None
    number = min(remind.max, math.floor((now - first) / remind.every) + 1)
    if number <= record.reminded:
        return None
    return Reminder(record, number, remind.max, since)


def _failing(records: Iterable[Outcome]) -> Iterable[Outcome]:
    return (r for r in records if r.outcome == "failed")


def _seconds(text: str) -> float | None:
    parsed = parse_time(text) if text else None
    return parsed.timestamp() if parsed is not None else None


def _format(seconds: float) -> str:
    return format_time(datetime.fromtimestamp(round(seconds, 3), UTC))
