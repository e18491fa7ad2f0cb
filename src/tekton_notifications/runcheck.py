"""Confirming a Tekton event's run with the API before the event spends storm budget.

Tekton's events are unsigned, and where the Broker cannot tell who sent one (no
``authentication-oidc``, or a sender it admits) anyone who reaches it can forge "pipeline X
failed". Spending a rate limit or moving a ``fixed`` transition on such an event suppresses
the real notifications. So, before a match of a policy with storm state is decided, the run
is read (GET) and must exist with the event's ``uid``; a ``successful``/``failed`` event
also needs the run to have finished that way, and the labels that name its pipeline must be
the run's. A terminal event for a run the API still shows running is retried (503), not
refused: Tekton's controller (up to v1.11) sends the event before its status update lands.
A forged event can then only repeat what a real run did, and the rate limit counts each
run's event once (:func:`tekton_notifications.storm.occurrence`).

Answers are cached by (kind, namespace, name, uid) for :data:`TTL` seconds, at most
:data:`SIZE` of them, least recently used first out. A refusal stays true (an API server
never hands a uid out twice); a confirmation can go stale only by the run's deletion, which
the TTL bounds. A cached run that has not finished the way a terminal event says is read
again: it may have finished since.

This module decides; the policy filter calls it once per event, and only when a matched
policy has storm state. It never writes.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from tekton_notifications import kube, metrics
from tekton_notifications.events import RunEvent

#: Seconds a confirmation (or refusal) is reused.
TTL: Final = 30.0
#: Runs remembered at most; about 200 bytes each.
SIZE: Final = 4096
#: The labels that decide which pipeline's budget an event spends (RunEvent.pipeline).
PIPELINE_LABELS: Final = ("tekton.dev/pipeline", "tekton.dev/pipelineTask", "tekton.dev/task")
#: What a terminal event says about the run's ``Succeeded`` condition.
TERMINAL: Final = {"successful": "True", "failed": "False"}

#: (kind, namespace, name) -> the run as the API has it; raises kube.ApiError.
Reader = Callable[[str, str, str], Mapping[str, Any]]
Key = tuple[str, str, str, str]


@dataclass(frozen=True)
class Run:
    """What confirming needs of a run: enough to compare, small enough to cache."""

    uid: str
    #: The ``Succeeded`` condition's status: "True", "False", "Unknown" or "".
    succeeded: str
    labels: tuple[tuple[str, str], ...]

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> Run:
        metadata = obj.get("metadata") or {}
        labels = metadata.get("labels") or {}
        conditions = (obj.get("status") or {}).get("conditions") or []
        succeeded = next(
            (str(c.get("status") or "") for c in conditions if c.get("type") == "Succeeded"), ""
        )
        return cls(
            uid=str(metadata.get("uid") or ""),
            succeeded=succeeded,
            labels=tuple((k, str(labels[k])) for k in PIPELINE_LABELS if k in labels),
        )


#: A cached answer: the run as read, or None when there is no such run.
Entry = tuple[float, Run | None]


@dataclass(frozen=True)
class Verdict:
    confirmed: bool
    #: ``Confirmed``, ``NoUID``, ``NotFound``, ``UIDMismatch``, ``NotFinished``,
    #: ``OutcomeMismatch``, ``LabelMismatch`` or ``Unavailable`` (the API did not answer):
    #: a metric label and the log's reason.
    reason: str
    message: str
    #: Answered from the cache, without a request.
    cached: bool
    #: Not confirmed yet, may be later (``NotFinished``, ``Unavailable``): ask for a retry.
    retry: bool = False


class Unconfirmed(Exception):
    """The event's run could not be confirmed: the event must not spend budget."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(f"{verdict.reason}: {verdict.message}")
        self.verdict = verdict


class RunCheck:
    def __init__(
        self,
        read: Reader,
        *,
        ttl: float = TTL,
        size: int = SIZE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read, self._ttl, self._size, self._clock = read, ttl, size, clock
        self._lock = threading.Lock()
        self._cache: OrderedDict[Key, Entry] = OrderedDict()
        #: Requests made, for tests and the benchmark.
        self.reads = 0

    @classmethod
    def on_api(cls, api: Any) -> RunCheck:
        return cls(lambda kind, ns, name: kube.get_run(api, kind, ns, name))

    def __len__(self) -> int:
        return len(self._cache)

    def confirm(self, event: RunEvent) -> Verdict:
        """Whether ``event``'s run exists as the event says; counted in a metric.

        When the API cannot answer (down, throttled, forbidden) nothing is known, and spending
        budget on an unknown run is what this module prevents: the verdict asks for a retry.
        """
        try:
            verdict = self._confirm(event)
        except kube.ApiError as error:
            what = f"{event.kind} {event.namespace}/{event.name}"
            message = f"confirming {what}: the API answered {error}"
            verdict = Verdict(False, "Unavailable", message, cached=False, retry=True)
        metrics.RUN_CHECKS.labels(verdict.reason, "yes" if verdict.cached else "no").inc()
        return verdict

    def _confirm(self, event: RunEvent) -> Verdict:
        if not event.uid:
            return Verdict(False, "NoUID", "the event names no run uid", cached=False)
        key: Key = (event.kind, event.namespace, event.name, event.uid)
        cached = self._cached(key)
        if cached is not None:
            verdict = _compare(event, cached[1], cached=True)
            # A run read while it was still running may have finished since: read it again.
            if verdict.reason != "NotFinished":
                return verdict
        return _compare(event, self._fetch(key), cached=False)

    def _cached(self, key: Key) -> Entry | None:
        with self._lock:
            entry = self._cache.get(key)
            if entry is None:
                return None
            if entry[0] <= self._clock():
                del self._cache[key]
                return None
            self._cache.move_to_end(key)
            return entry

    def _fetch(self, key: Key) -> Run | None:
        kind, namespace, name, _ = key
        self.reads += 1
        try:
            run: Run | None = Run.of(self._read(kind, namespace, name))
        except kube.ApiError as error:
            if error.status != 404:
                raise
            run = None
        with self._lock:
            self._cache[key] = (self._clock() + self._ttl, run)
            self._cache.move_to_end(key)
            while len(self._cache) > self._size:
                self._cache.popitem(last=False)
        return run


def _compare(event: RunEvent, run: Run | None, *, cached: bool) -> Verdict:
    where = f"{event.kind} {event.namespace}/{event.name}"
    if run is None:
        return Verdict(False, "NotFound", f"{where} does not exist", cached)
    if run.uid != event.uid:
        return Verdict(
            False, "UIDMismatch", f"{where} has uid {run.uid}, the event says {event.uid}", cached
        )
    expected = TERMINAL.get(event.tekton_event)
    if expected is not None and run.succeeded not in TERMINAL.values():
        return Verdict(
            False,
            "NotFinished",
            f"the event says {event.tekton_event}, {where} has not finished (yet)",
            cached,
            retry=True,
        )
    if expected is not None and run.succeeded != expected:
        return Verdict(
            False,
            "OutcomeMismatch",
            f"the event says {event.tekton_event}, {where} has Succeeded={run.succeeded or 'none'}",
            cached,
        )
    labels = tuple((k, event.labels[k]) for k in PIPELINE_LABELS if k in event.labels)
    if labels != run.labels:
        return Verdict(
            False,
            "LabelMismatch",
            f"the event's labels {dict(labels)} are not the run's {dict(run.labels)}",
            cached,
        )
    return Verdict(True, "Confirmed", f"{where} exists", cached)
