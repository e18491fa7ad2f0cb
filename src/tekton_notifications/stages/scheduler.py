"""Scheduler: a PingSource's ping in; the reminders and digests that are due out, as ``matched``.

The chain's first stage woken by time rather than by a run (issue 17). A Knative PingSource
posts ``dev.knative.sources.ping`` to the broker every few minutes; a Trigger hands it here.
The policies and their status come from the stage's informer (listed once, then watched: no
polling of the cluster); what is due is :func:`schedule.due` of each policy's status at the
stage's clock. Each due item becomes one ordinary ``matched`` event per template, so the
renderer, the launcher, the tracker and the status recorder treat it like any other
notification; the only API reads are one GET of the run each item is about.

Exactly once, however often the ping is redelivered or the stage restarts:

1. the events are published to the broker (``K_SINK``) first, then
2. what was sent is recorded in the policy's status (``reminded`` on the pipeline's record,
   the digest period removed), with the resourceVersion it was computed from.

A redelivered ping after step 2 finds nothing due. A failure between 1 and 2 (a crash, the
API down: 503, the broker redelivers) publishes the same items again with the same keys
(:func:`notifications.notification_key` with the item's identity), and the launcher's
deterministic run names turn the repeat into ``409 AlreadyExists``. A ping's own time is not
trusted (anyone in the cluster can post one): the clock is the stage's.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

from tekton_notifications import (
    claims,
    events,
    kube,
    metrics,
    notifications,
    schedule,
    sink,
    storm,
    tracing,
)
from tekton_notifications.caches import key_of
from tekton_notifications.events import EventError, RunEvent
from tekton_notifications.models import Policy, TemplateRef
from tekton_notifications.notifications import Notification, OutgoingEvent
from tekton_notifications.policystate import PolicyGone, PolicyStates
from tekton_notifications.schedule import DigestDue, Due, Reminder
from tekton_notifications.stages import base
from tekton_notifications.stages.base import Response, accepted, unavailable
from tekton_notifications.stages.skeleton import Informed

logger = logging.getLogger(__name__)

#: The CloudEvent type a Knative PingSource sends.
PING: Final = "dev.knative.sources.ping"
#: (kind, namespace, name) -> the run, or kube.ApiError (404: deleted).
RunReader = Callable[[str, str, str], Mapping[str, Any]]
#: A development clock: a file holding seconds since the epoch (the demo fast-forwards it).
CLOCK_FILE: Final = "SCHEDULER_CLOCK_FILE"


class Scheduler(Informed):
    """Answers a ping with what is due; see the module docstring."""

    name = "scheduler"

    def __init__(
        self,
        *,
        states: PolicyStates,
        runs: RunReader,
        publish: base.Publisher | None,
        clock: Callable[[], float] = time.time,
        informers: tuple[kube.Informer, ...] = (),
    ) -> None:
        super().__init__(informers)
        self.policies = claims.PolicyDirectory()
        self.states = states
        self._runs, self._publish, self._clock = runs, publish, clock

    @classmethod
    def from_environ(
        cls,
        environ: Mapping[str, str],
        *,
        clock: Callable[[], float] | None = None,
        publish: base.Publisher | None = None,
    ) -> Scheduler:
        """As deployed; tests and the demo may pass the clock and where events go."""
        api = kube.api_client(environ)
        stage = cls(
            states=PolicyStates.on_api(api),
            runs=lambda kind, ns, name: kube.get_run(api, kind, ns, name),
            publish=publish or base.broker_publisher(environ),
            clock=clock or clock_from(environ),
        )
        stage.informers = kube.policy_informers(api, stage)
        return stage

    def loaded(self) -> str:
        return f"{sum(1 for _ in self._scheduled())} policies with reminders or digests"

    # Informer callbacks: the parsed policies, and their status for the state.
    def reset(self, objects: list[dict[str, Any]], *, cluster: bool = False) -> None:
        self.policies.reset(objects, cluster=cluster)
        for obj in objects:
            self.states.observe(obj, cluster=cluster)

    def upsert(self, obj: dict[str, Any], *, cluster: bool = False) -> None:
        self.policies.upsert(obj, cluster=cluster)
        self.states.observe(obj, cluster=cluster)

    def delete(self, obj: dict[str, Any], *, cluster: bool = False) -> None:
        self.policies.delete(obj, cluster=cluster)
        self.states.forget(key_of(obj, cluster=cluster))

    def _scheduled(self) -> list[Policy]:
        found = [*self.policies.namespaced.items(), *self.policies.cluster.items()]
        return [p for _, p in found if p.scheduled and not p.suspend]

    def due(self, now: float | None = None) -> list[tuple[Policy, Due]]:
        """What is due now for each policy, from the status the informer last saw."""
        at = self._clock() if now is None else now
        found = [(p, schedule.due(p, self.states.state(p), at)) for p in self._scheduled()]
        return [(policy, due) for policy, due in found if due]

    def respond(self, attributes: Mapping[str, str], data: object) -> Response:
        if attributes.get("type") != PING:
            return accepted(f"ignored: unsupported event type {attributes.get('type')!r}")
        ready, why = self.ready()
        if not ready:
            return unavailable(why)
        now = self._clock()
        outgoing: list[OutgoingEvent] = []
        try:
            plans = self._confirmed(self.due(now), now)
            if not plans:
                return accepted("nothing due")
            for policy, due in plans:
                outgoing.extend(self._events(policy, due, now))
        except kube.ApiError as error:
            return unavailable(f"reading a policy or a run for a reminder or digest: {error}")
        if outgoing:
            if self._publish is None:
                return unavailable(f"{len(outgoing)} notifications due need K_SINK; it is not set")
            try:
                self._publish(outgoing)
            except sink.PublishError as error:  # the broker redelivers the ping
                return unavailable(f"publishing: {error}")
        try:
            for policy, due in plans:
                self._record(policy, due)
        except kube.ApiError as error:
            # Published but not recorded: the redelivered ping sends the same keys again,
            # which the launcher's deterministic run names make harmless.
            return unavailable(f"recording what was sent: {error}")
        reminders = sum(len(due.reminders) for _, due in plans)
        digests = sum(len(due.digests) for _, due in plans)
        return accepted(
            f"sent {reminders} reminder(s), {digests} digest(s) as {len(outgoing)} notification(s)"
        )

    def _confirmed(self, plans: list[tuple[Policy, Due]], now: float) -> list[tuple[Policy, Due]]:
        """What is still due by the status as the API has it now (one GET per policy with
        something due): the informer's copy may not show yet what another replica, or this
        one before a restart, recorded as sent."""
        confirmed = []
        for policy, _ in plans:
            try:
                due = schedule.due(policy, self.states.fresh(policy), now)
            except PolicyGone:
                continue
            if due:
                confirmed.append((policy, due))
        return confirmed

    def _events(self, policy: Policy, due: Due, now: float) -> list[OutgoingEvent]:
        found: list[OutgoingEvent] = []
        for reminder in due.reminders:
            event = self._run_event(policy, reminder.record.kind, _namespace(policy, reminder))
            if event is None:
                _gone(policy, "reminder", reminder.id)
                continue
            scheduled = {"id": reminder.id, "reminder": reminder.view(now)}
            found.extend(_matched(policy, ref, event, scheduled) for ref in policy.template_refs)
            metrics.SCHEDULED.labels(policy.namespace, policy.name, "reminder", "sent").inc()
            logger.info(
                "%s %s: reminder %d of %d: %s failing for %s",
                policy.kind,
                policy.name,
                reminder.count,
                reminder.max,
                reminder.record.pipeline,
                schedule.describe(now - reminder.since),
            )
        for digest in due.digests:
            assert policy.digest is not None  # due.digests is empty otherwise
            event = self._carrier(policy, digest)
            if event is None:
                _gone(policy, "digest", digest.id)
                continue
            scheduled = {"id": digest.id, "digest": digest.view()}
            found.append(_matched(policy, policy.digest.template_ref, event, scheduled))
            metrics.SCHEDULED.labels(policy.namespace, policy.name, "digest", "sent").inc()
            logger.info(
                "%s %s: digest of %s: %d suppressed",
                policy.kind,
                policy.name,
                digest.id,
                digest.period.total,
            )
        return found

    def _run_event(self, policy: Policy, kind: str, where: tuple[str, str]) -> RunEvent | None:
        """The run as it is now, as the Tekton event the notification is about; None when
        it was deleted or cannot be read as one."""
        namespace, name = where
        if not namespace:  # a cluster policy's record from before namespaces were kept
            logger.warning(
                "%s %s: run %s: its namespace is not recorded", policy.kind, policy.name, name
            )
            return None
        try:
            run = self._runs(kind, namespace, name)
        except kube.ApiError as error:
            if error.status == 404:
                return None
            raise
        try:
            return run_event(kind, run, self._clock())
        except EventError as error:
            logger.warning("%s %s: run %s/%s: %s", policy.kind, policy.name, namespace, name, error)
            return None

    def _carrier(self, policy: Policy, digest: DigestDue) -> RunEvent | None:
        """A digest is about the runs it counts: the latest held back that still exists."""
        latest = sorted(digest.period.items, key=lambda item: item.last.time, reverse=True)
        for item in latest:
            for seen in (item.last, item.first):
                event = self._run_event(policy, item.kind, (seen.namespace, seen.run))
                if event is not None:
                    return event
        return None

    def _record(self, policy: Policy, due: Due) -> None:
        def mark(state: storm.PolicyState) -> storm.Decision:
            return storm.Decision(True, state=schedule.sent(state, due))

        try:
            self.states.decide(policy, mark)
        except PolicyGone as gone:
            logger.info("skipped: %s", gone)


def _namespace(policy: Policy, reminder: Reminder) -> tuple[str, str]:
    record = reminder.record
    return record.namespace or policy.namespace, record.run


def _gone(policy: Policy, kind: str, item: str) -> None:
    """The run an item is about was deleted: recorded as sent, visibly, so it does not
    come back on every ping."""
    metrics.SCHEDULED.labels(policy.namespace, policy.name, kind, "run-gone").inc()
    logger.warning(
        "%s %s: %s %s not sent: the run it is about no longer exists",
        policy.kind,
        policy.name,
        kind,
        item,
    )


def _matched(
    policy: Policy, ref: TemplateRef, event: RunEvent, scheduled: Mapping[str, Any]
) -> OutgoingEvent:
    key = notifications.notification_key(
        event,
        policy_namespace=policy.home_namespace,
        policy=policy.name,
        template=ref.name,
        policy_kind=policy.kind,
        scheduled=str(scheduled["id"]),
    )
    return Notification(
        key=key,
        event=event,
        policy_name=policy.name,
        policy_namespace=policy.home_namespace,
        template_ref=ref,
        policy_kind=policy.kind,
        scheduled=dict(scheduled),
    ).to_event(notifications.MATCHED)


def run_event(kind: str, run: Mapping[str, Any], now: float) -> RunEvent:
    """A Tekton event for ``run`` as it is now (``failed``, ``successful`` or ``unknown``)."""
    metadata = run.get("metadata") or {}
    conditions = (run.get("status") or {}).get("conditions") or []
    succeeded: Mapping[str, Any] = next((c for c in conditions if c.get("type") == "Succeeded"), {})
    tekton_event = {"True": "successful", "False": "failed"}.get(
        str(succeeded.get("status")), "unknown"
    )
    namespace, name = str(metadata.get("namespace") or ""), str(metadata.get("name") or "")
    identity = hashlib.sha256(f"{metadata.get('uid')}\x00{now}".encode()).hexdigest()[:32]
    attributes = {
        "id": f"scheduler-{identity}",
        "type": f"dev.tekton.event.{kind.lower()}.{tekton_event}.v1",
        "source": f"/apis///namespaces/{namespace}//{name}",
        "time": schedule.format_seconds(now),
        "traceparent": tracing.child_of(None),
    }
    key = kind[0].lower() + kind[1:]
    return events.parse_event(attributes, {key: dict(run)})


def clock_from(environ: Mapping[str, str]) -> Callable[[], float]:
    """The wall clock; with ``SCHEDULER_CLOCK_FILE`` (development only: the demo), the time
    written in that file, read at each ping, so a demo can fast-forward hours. Logged."""
    path = environ.get(CLOCK_FILE)
    if not path:
        return time.time
    logger.warning(
        "%s=%s: the scheduler's clock is read from a file (development only)", CLOCK_FILE, path
    )

    def read() -> float:
        try:
            return float(Path(path).read_text().strip())
        except (OSError, ValueError):
            return time.time()

    return read
