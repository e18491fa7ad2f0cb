"""Digests: what a policy's rate limit held back, kept per period until the scheduler sends it.

Storm control used to drop what it suppressed. With ``spec.digest`` the policy filter records
each suppression as it decides it, in the policy's ``status.digest`` (where the rest of the
storm state lives, written in the same optimistic-concurrency step as the decision,
:mod:`tekton_notifications.storm`), in the bucket of the period it falls in: periods are
aligned on ``spec.digest.every`` since the epoch, so every replica and the scheduler agree on
them. The scheduler sends a period once it has ended (:mod:`tekton_notifications.schedule`)
and removes it: a bucket that ended is never written again, so what was sent is exactly what
was recorded, and a resend (a redelivered ping after a failed write) has the same content and
the same key.

A bucket counts per (kind, pipeline, outcome), with the first and the last run. Bounded, and
what happens past each bound is counted, never silently lost:

- :data:`MAX_ITEMS` groups per bucket: further pipelines are added to ``overflow`` (the digest
  says "and N more");
- :data:`MAX_SEEN` suppressions remembered per bucket to count a redelivered event once;
  past it a redelivery of an early event may be counted twice (an over-count, never a loss);
- :data:`MAX_PERIODS` unsent buckets (the scheduler has not run for that many periods): the
  oldest is dropped and its count added to ``status.digest.dropped``, logged by the filter.

Pure: the caller passes the clock.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Final

from tekton_notifications.events import RunEvent, format_time, parse_time

MAX_ITEMS: Final = 50
MAX_SEEN: Final = 200
MAX_PERIODS: Final = 24


@dataclass(frozen=True)
class Seen:
    """A run of a group: the first or the last one held back."""

    run: str
    namespace: str
    uid: str
    time: str

    def as_status(self) -> dict[str, str]:
        return {"run": self.run, "namespace": self.namespace, "uid": self.uid, "time": self.time}


@dataclass(frozen=True)
class Item:
    """Suppressions of one pipeline and outcome in one period."""

    kind: str
    pipeline: str
    outcome: str
    count: int
    first: Seen
    last: Seen

    def as_status(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "pipeline": self.pipeline,
            "outcome": self.outcome,
            "count": self.count,
            "first": self.first.as_status(),
            "last": self.last.as_status(),
        }


@dataclass(frozen=True)
class Period:
    """One period's bucket: [start, start + every)."""

    start: float  # seconds since the epoch
    items: tuple[Item, ...] = ()
    #: Suppressions of pipelines past :data:`MAX_ITEMS`.
    overflow: int = 0
    #: The occurrences counted (:func:`storm.occurrence`), to count a redelivery once.
    seen: tuple[str, ...] = ()

    @property
    def total(self) -> int:
        return sum(item.count for item in self.items) + self.overflow

    def as_status(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "start": _format(self.start),
            "items": [item.as_status() for item in self.items],
            "seen": list(self.seen),
        }
        if self.overflow:
            entry["overflow"] = self.overflow
        return entry


@dataclass(frozen=True)
class Held:
    """``status.digest``: the unsent periods, and what was dropped past the bound."""

    periods: tuple[Period, ...] = ()
    dropped: int = 0

    def as_status(self) -> dict[str, Any]:
        return {"periods": [p.as_status() for p in self.periods], "dropped": self.dropped}


def period_start(now: float, every: float) -> float:
    """The start of the period ``now`` falls in (periods aligned on the epoch)."""
    return math.floor(now / every) * every


def record(
    held: Held, event: RunEvent, *, occurrence: str, every: float, now: float
) -> Held | None:
    """``held`` with one suppression of ``event`` added; None when it was counted already."""
    start = period_start(now, every)
    bucket = next((p for p in held.periods if p.start == start), None) or Period(start)
    if occurrence in bucket.seen:
        return None
    seen = Seen(event.name, event.namespace, event.uid, format_time(_at(now)))
    outcome = event.outcome or event.tekton_event
    group = next(
        (
            i
            for i in bucket.items
            if (i.kind, i.pipeline, i.outcome) == (event.kind, event.pipeline, outcome)
        ),
        None,
    )
    if group is not None:
        items = tuple(
            replace(i, count=i.count + 1, last=seen) if i is group else i for i in bucket.items
        )
        bucket = replace(bucket, items=items)
    elif len(bucket.items) < MAX_ITEMS:
        item = Item(event.kind, event.pipeline, outcome, 1, seen, seen)
        bucket = replace(bucket, items=(*bucket.items, item))
    else:
        bucket = replace(bucket, overflow=bucket.overflow + 1)
    bucket = replace(bucket, seen=(*bucket.seen, occurrence)[-MAX_SEEN:])
    periods = sorted((*(p for p in held.periods if p.start != start), bucket), key=_start)
    dropped = held.dropped
    while len(periods) > MAX_PERIODS:
        dropped += periods.pop(0).total
    return Held(tuple(periods), dropped)


def ended(held: Held, every: float, now: float) -> tuple[Period, ...]:
    """The periods that are over at ``now``: due to be sent."""
    return tuple(p for p in held.periods if p.start + every <= now)


def without(held: Held, starts: Sequence[float]) -> Held:
    """``held`` after the periods starting at ``starts`` were sent."""
    return replace(held, periods=tuple(p for p in held.periods if p.start not in starts))


def view(period: Period, every: float) -> dict[str, Any]:
    """What a digest's template sees as ``digest``."""
    return {
        "period": {"start": _format(period.start), "end": _format(period.start + every)},
        "items": [
            {
                "kind": i.kind,
                "pipeline": i.pipeline,
                "outcome": i.outcome,
                "count": i.count,
                "first": {"run": i.first.run, "namespace": i.first.namespace, "time": i.first.time},
                "last": {"run": i.last.run, "namespace": i.last.namespace, "time": i.last.time},
            }
            for i in period.items
        ],
        "total": period.total,
        "overflow": period.overflow,
    }


def parse(status: Mapping[str, Any]) -> Held:
    """``status.digest``; entries that do not parse are dropped, not fatal."""
    section = status.get("digest")
    if not isinstance(section, Mapping):
        return Held()
    periods = []
    for entry in section.get("periods") or []:
        if not isinstance(entry, Mapping):
            continue
        start = parse_time(str(entry.get("start") or ""))
        if start is None:
            continue
        items = tuple(item for item in map(_item, entry.get("items") or []) if item is not None)
        seen = tuple(str(s) for s in entry.get("seen") or [] if isinstance(s, str))
        overflow = entry.get("overflow")
        periods.append(
            Period(start.timestamp(), items, overflow if isinstance(overflow, int) else 0, seen)
        )
    dropped = section.get("dropped")
    return Held(tuple(sorted(periods, key=_start)), dropped if isinstance(dropped, int) else 0)


def _item(entry: object) -> Item | None:
    if not isinstance(entry, Mapping):
        return None
    first, last = _seen(entry.get("first")), _seen(entry.get("last"))
    count = entry.get("count")
    names = [entry.get(k) for k in ("kind", "pipeline", "outcome")]
    if first is None or last is None or not isinstance(count, int) or count < 1:
        return None
    if not all(isinstance(n, str) and n for n in names):
        return None
    return Item(str(names[0]), str(names[1]), str(names[2]), count, first, last)


def _seen(entry: object) -> Seen | None:
    if not isinstance(entry, Mapping) or not isinstance(entry.get("run"), str):
        return None
    return Seen(
        str(entry["run"]),
        str(entry.get("namespace") or ""),
        str(entry.get("uid") or ""),
        str(entry.get("time") or ""),
    )


def _start(period: Period) -> float:
    return period.start


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(round(seconds, 3), UTC)


def _format(seconds: float) -> str:
    return format_time(_at(seconds))
