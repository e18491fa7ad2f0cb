"""Fairness between namespaces: who may use a worker, and whether a worker is stuck.

The functions are shared by every namespace, and a stage runs tenants' code (CEL ``when``
expressions, Jinja templates) and waits on the API for them. :class:`Admission` lets at most
``per_namespace`` events of one namespace hold a worker at once (``workers`` in all), so a
namespace whose policies or templates are slow holds at most that many, and the other
namespaces' events still find one free. An event over its namespace's share waits up to
``queue_wait`` seconds for one of its own namespace's events to finish, then is refused with
429 (Knative retries it with backoff); one that finds every worker busy waits as long, then
gets 503. Waiting is bounded because a waiting request holds one of Knative's
``containerConcurrency`` slots in front of the pod.

The same ledger is the watchdog: an event in flight longer than ``stuck_after`` seconds
makes :meth:`Admission.health` false, naming it. Python cannot stop a thread, so a worker
stuck in a tenant's code is freed only by a restart, which a failing liveness probe makes
Knative do (the broker then redelivers what was in flight).

Pure and thread-safe; the adapters (adapters/funcpython.py, adapters/portable.py) do the
waiting in their own way and count in :mod:`tekton_notifications.metrics`.
"""

from __future__ import annotations

import itertools
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from tekton_notifications import metrics

#: Where a Tekton event's ``source`` names the run's namespace: ``/apis///namespaces/<ns>//<name>``;
#: also a NotificationPolicy's API path, the ``source`` of the stage events.
_SOURCE_NAMESPACE: Final = re.compile(r"/namespaces/([^/]+)/")
_DNS_LABEL: Final = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_RUN_KEYS: Final = ("pipelineRun", "taskRun", "customRun")

#: The namespace key of events that name none (or no valid one): they share one share.
UNKNOWN: Final = "(unknown)"


@dataclass(frozen=True)
class Limits:
    """How many events a process works on, per namespace and in all, and for how long."""

    #: Events handled at once by one process: Knative's containerConcurrency (func.yaml).
    workers: int = 10
    #: Of which at most this many from one namespace.
    per_namespace: int = 4
    #: How long an event over its share waits for a worker before it is refused (seconds).
    queue_wait: float = 1.0
    #: In flight longer than this, an event's worker counts as stuck: liveness fails.
    stuck_after: float = 30.0

    def __post_init__(self) -> None:
        if self.workers < 1 or not 1 <= self.per_namespace <= self.workers:
            raise ValueError(
                f"need 1 <= per_namespace ({self.per_namespace}) <= workers ({self.workers})"
            )
        if self.queue_wait < 0 or self.stuck_after <= 0:
            raise ValueError("queue_wait must be >= 0 and stuck_after > 0 seconds")

    @classmethod
    def from_config(cls, cfg: Mapping[str, str]) -> Limits:
        """From ``NOTIFICATIONS_WORKERS``, ``..._NAMESPACE_WORKERS``, ``..._QUEUE_WAIT`` and
        ``..._STUCK_AFTER`` (seconds); unset or empty keeps the default."""
        default = cls()

        def number(name: str, fallback: float) -> float:
            value = (cfg.get(f"NOTIFICATIONS_{name}") or "").strip()
            try:
                return float(value) if value else fallback
            except ValueError:
                raise ValueError(f"NOTIFICATIONS_{name}={value!r} is not a number") from None

        return cls(
            workers=int(number("WORKERS", default.workers)),
            per_namespace=int(number("NAMESPACE_WORKERS", default.per_namespace)),
            queue_wait=number("QUEUE_WAIT", default.queue_wait),
            stuck_after=number("STUCK_AFTER", default.stuck_after),
        )


@dataclass(frozen=True)
class Ticket:
    """One admitted event, from admission to release."""

    serial: int
    namespace: str
    event_id: str
    event_type: str
    started: float


@dataclass(frozen=True)
class Refusal:
    """Why an event got no worker: its namespace's share (429) or every worker (503) is busy."""

    status: int
    #: ``namespace`` (its share is spent) or ``workers`` (all are busy): a metric label.
    reason: str
    namespace: str
    message: str


def namespace_of(attributes: Mapping[str, str], data: object) -> str:
    """The namespace whose policies, templates or runs the event makes a stage work for.

    Read from the already decoded data, the same field the stage will use (a Tekton run's
    ``metadata.namespace``; a stage event's ``policy.namespace``, where its templates are
    read and its runs created), so a ``source`` naming another namespace cannot charge the
    work to it. Falls back to the ``source``; anything not a valid namespace name is
    :data:`UNKNOWN` (it also keeps metric labels to real names).
    """
    found: object = None
    if isinstance(data, Mapping):
        policy = data.get("policy")
        if isinstance(policy, Mapping):
            found = policy.get("namespace")
        for key in _RUN_KEYS if found is None else ():
            run = data.get(key)
            if isinstance(run, Mapping) and isinstance(run.get("metadata"), Mapping):
                found = run["metadata"].get("namespace")
                break
    if found is None:
        match = _SOURCE_NAMESPACE.search(attributes.get("source", ""))
        found = match.group(1) if match else None
    if isinstance(found, str) and _DNS_LABEL.match(found):
        return found
    return UNKNOWN


class Admission:
    """Per-namespace and total shares of the workers, and the watchdog of what holds them."""

    def __init__(
        self,
        limits: Limits,
        *,
        stage: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits, self.stage, self._clock = limits, stage, clock
        self._changed = threading.Condition()
        self._tickets: dict[int, Ticket] = {}
        self._by_namespace: dict[str, int] = {}
        self._serials = itertools.count(1)
        metrics.IN_FLIGHT.watch(self)

    def try_admit(self, namespace: str, event_id: str, event_type: str = "") -> Ticket | Refusal:
        """A worker for this event now, or why not (without waiting)."""
        with self._changed:
            held = self._by_namespace.get(namespace, 0)
            if held >= self.limits.per_namespace:
                return Refusal(
                    429,
                    "namespace",
                    namespace,
                    f"namespace {namespace} already has {held} events in flight, its share of "
                    f"{self.limits.per_namespace}; retry later",
                )
            if len(self._tickets) >= self.limits.workers:
                return Refusal(
                    503,
                    "workers",
                    namespace,
                    f"all {self.limits.workers} workers are busy; retry later",
                )
            ticket = Ticket(next(self._serials), namespace, event_id, event_type, self._clock())
            self._tickets[ticket.serial] = ticket
            self._by_namespace[namespace] = held + 1
        return ticket

    def admit(
        self, namespace: str, event_id: str, event_type: str = "", *, wait: float | None = None
    ) -> Ticket | Refusal:
        """A worker, waiting up to ``wait`` (default ``queue_wait``) seconds: for threads."""
        deadline = time.monotonic() + (self.limits.queue_wait if wait is None else wait)
        with self._changed:
            while True:
                outcome = self.try_admit(namespace, event_id, event_type)
                remaining = deadline - time.monotonic()
                if isinstance(outcome, Ticket) or remaining <= 0:
                    return self.settle(outcome)
                self._changed.wait(remaining)

    def settle(self, outcome: Ticket | Refusal) -> Ticket | Refusal:
        """Count a final refusal (waiting is over); a ticket passes through."""
        if isinstance(outcome, Refusal):
            # Namespaced only when its share was spent, which takes events really in flight.
            label = outcome.namespace if outcome.reason == "namespace" else ""
            metrics.REFUSED.labels(self.stage, label, outcome.reason).inc()
        return outcome

    def release(self, ticket: Ticket) -> None:
        """The event's worker is free again; wakes the events waiting for one."""
        with self._changed:
            if self._tickets.pop(ticket.serial, None) is None:
                return
            left = self._by_namespace[ticket.namespace] - 1
            if left:
                self._by_namespace[ticket.namespace] = left
            else:
                del self._by_namespace[ticket.namespace]
            self._changed.notify_all()

    def by_namespace(self) -> dict[str, int]:
        """Events in flight per namespace: what ``tekton_notifications_in_flight`` shows when
        scraped. Only namespaces with events in flight appear, so its series stay bounded
        by the workers, whatever namespaces events claim."""
        with self._changed:
            return dict(self._by_namespace)

    def in_flight(self, namespace: str | None = None) -> int:
        with self._changed:
            if namespace is None:
                return len(self._tickets)
            return self._by_namespace.get(namespace, 0)

    def stuck(self) -> list[tuple[Ticket, float]]:
        """Events in flight longer than ``stuck_after``, oldest first, with their age."""
        now = self._clock()
        with self._changed:
            tickets = sorted(self._tickets.values(), key=lambda t: t.started)
        return [(t, now - t.started) for t in tickets if now - t.started > self.limits.stuck_after]

    def health(self) -> tuple[bool, str]:
        """Liveness: false while a worker is stuck, naming the oldest stuck event."""
        stuck = self.stuck()
        metrics.STUCK.labels(self.stage).set(len(stuck))
        if not stuck:
            return True, "alive"
        ticket, age = stuck[0]
        return False, (
            f"{len(stuck)} worker(s) stuck: event {ticket.event_id} ({ticket.event_type}) of "
            f"namespace {ticket.namespace} in flight for {age:.1f}s, past the "
            f"{self.limits.stuck_after:g}s deadline; only a restart frees its worker"
        )
