"""Delivery tracker: Tekton's finish events of our notification runs in; outcomes out.

Takes ``dev.tekton.event.{taskrun,pipelinerun}.{successful,failed}.v1`` (its Triggers, in
knative/), and answers every run that is not one of ours 202 (``ignored: not a notification
run``) after reading its labels. For one of ours it:

1. confirms the run with the API (same uid; the labels and annotations are read from the
   API's copy, never from the event), so a forged event cannot name a notification;
2. rebuilds the notification it sends (:func:`delivery.tracked`, :func:`delivery.source_event`)
   and checks the run is the one the launcher names for it;
3. reads the outcome from the event (Tekton's ``status.conditions`` and ``status.steps``);
4. replies ``delivered`` or ``deliveryfailed`` (to the status recorder: Events, status,
   metrics), plus, when a failed run has a next step, a ``matched`` event (to the renderer):
   the next attempt (``delivery.attempt``; deterministic ``-r<attempt>`` name) or the
   policy's fallback template (``delivery.fallbackOf``). Two events are published to the
   broker (``K_SINK``) like the policy filter's fan-out, and the answer is 202.

A retry with a delay that is not due yet is left to the sweep: a PingSource event
(``dev.knative.sources.ping``) every minute makes the tracker list the failed runs labelled
``notifications.tekton.dev/retry-after-delay`` and publish the retries that are due and not
created yet. Nothing here ever becomes a Tekton event, so none of it can reach policy
matching (the policy filter also drops every run carrying our labels).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from tekton_notifications import (
    claims,
    delivery,
    events,
    kube,
    notifications,
    signing,
    sink,
    taskruns,
    vocabulary,
)
from tekton_notifications.delivery import Next, Outcome, Tracked
from tekton_notifications.events import EventError, RunEvent
from tekton_notifications.models import CLUSTER_POLICY_KIND, Policy, Template, TemplateRef
from tekton_notifications.notifications import Notification, OutgoingEvent
from tekton_notifications.stages.base import Response, accepted, rejected, reply, unavailable
from tekton_notifications.stages.skeleton import Informed

logger = logging.getLogger(__name__)

#: The PingSource's event type: time to create the delayed retries that are due.
SWEEP = "dev.knative.sources.ping"

RunReader = Callable[[str, str, str], dict[str, Any]]
RunLister = Callable[[str], list[dict[str, Any]]]
Publisher = Callable[[Sequence[OutgoingEvent]], None]


class DeliveryTracker(Informed):
    """Turns a finished notification run into its outcome and its next step."""

    name = "delivery-tracker"
    accepts = delivery.FINISH_TYPES | {SWEEP}

    def __init__(
        self,
        *,
        get_run: RunReader,
        list_runs: RunLister | None = None,
        publish: Publisher | None = None,
        clock: Callable[[], float] = time.time,
        informers: tuple[kube.Informer, ...] = (),
    ) -> None:
        super().__init__(informers)
        self.policies = claims.PolicyDirectory()
        self.templates = claims.TemplateDirectory()
        self._get_run, self._list_runs = get_run, list_runs
        self._publish, self._clock = publish, clock

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> DeliveryTracker:
        api = kube.api_client(environ)
        target, key = environ.get("K_SINK"), signing.key_from(environ)
        token_file = environ.get("OIDC_TOKEN_FILE") or sink.OIDC_TOKEN_FILE
        publish = None
        if target:

            def publish(outgoing: Sequence[OutgoingEvent]) -> None:
                signed = [signing.sign(e, key) for e in outgoing] if key is not None else outgoing
                sink.publish(target, signed, token=sink.oidc_token(token_file))

        def list_runs(plural: str) -> list[dict[str, Any]]:
            return kube.list_objects(
                api,
                plural,
                None,
                group="tekton.dev",
                version="v1",
                label_selector=f"{taskruns.RETRY_PENDING_LABEL}=true",
            )

        stage = cls(
            get_run=lambda kind, ns, name: kube.get_run(api, kind, ns, name),
            list_runs=list_runs,
            publish=publish,
        )
        stage.informers = (
            *kube.policy_informers(api, stage.policies),
            kube.Informer(api, plural=vocabulary.TEMPLATE_PLURAL, watcher=stage.templates),
        )
        return stage

    def loaded(self) -> str:
        return f"{len(self.policies)} policies, {len(self.templates)} templates"

    def respond(self, attributes: Mapping[str, str], data: object) -> Response:
        event_type = attributes.get("type")
        if event_type not in self.accepts:
            return accepted(f"ignored: unsupported event type {event_type!r}")
        if event_type == SWEEP:
            return self._sweep()
        if delivery.ours(data) is False:
            # Every finished run of the cluster comes here: this is the common, cheap answer.
            return accepted("ignored: not a notification run")
        try:
            event = events.parse_event(attributes, data)
        except EventError as error:
            # The policy filter gets every Tekton event too, refuses this one with 400 and
            # the broker dead-letters it there: one dead letter per broken event, not two.
            return accepted(f"ignored: malformed, refused by the policy filter: {error}")
        if not event.is_notification_run:
            return accepted("ignored: not a notification run")
        ready, why = self.ready()
        if not ready:
            return unavailable(why)
        try:
            stored = self._get_run(event.kind, event.namespace, event.name)
        except kube.ApiError as error:
            if error.retryable:
                return unavailable(f"reading {event.kind} {event.namespace}/{event.name}: {error}")
            logger.warning(
                "finished %s %s/%s is gone: %s", event.kind, event.namespace, event.name, error
            )
            return accepted(
                f"ignored: {event.kind} {event.namespace}/{event.name} no longer exists"
            )
        uid = (stored.get("metadata") or {}).get("uid")
        if uid != event.uid:
            return rejected(
                f"{attributes.get('id')}: {event.kind} {event.namespace}/{event.name} has uid "
                f"{uid!r}, not the event's {event.uid!r}"
            )
        return self._track({**stored, "kind": event.kind}, delivery.outcome_of(event), event.id)

    def _track(self, run: Mapping[str, Any], outcome: Outcome, event_id: str) -> Response:
        found = self._notification(run)
        if isinstance(found, Response):
            return found
        tracked, notification, template, policy = found
        step = delivery.next_step(outcome, tracked, template, policy)
        now = datetime.fromtimestamp(self._clock(), UTC)
        outgoing = [self._outcome_event(notification, tracked, outcome, step, template)]
        if step.step == "retry" and (step.due is None or step.due <= now):
            outgoing.append(
                replace(notification, attempt=step.attempt)
                .next_hop()
                .to_event(notifications.MATCHED)
            )
        elif step.step == "fallback":
            outgoing.append(_fallback(notification, step).to_event(notifications.MATCHED))
        logger.info(
            "%s %s/%s: %s (attempt %d of %d)%s",
            tracked.kind,
            tracked.namespace,
            tracked.name,
            outcome.outcome,
            tracked.attempt,
            delivery.attempts_of(template),
            "" if step.step == "none" else f"; next: {step.step}",
            extra={"notification": {"event_id": event_id, "key": notification.key[:12]}},
        )
        return self._send(outgoing, f"{outcome.outcome}: {tracked.namespace}/{tracked.name}")

    def _notification(
        self, run: Mapping[str, Any]
    ) -> tuple[Tracked, Notification, Template | None, Policy | None] | Response:
        tracked = delivery.tracked(run)
        if isinstance(tracked, str):
            logger.warning("a run carrying our labels is not a notification run: %s", tracked)
            return accepted(f"ignored: {tracked}")
        try:
            source = self._get_run(
                tracked.source_kind, tracked.source_namespace, tracked.source_name
            )
            event = delivery.source_event(tracked, source)
        except kube.ApiError as error:
            if error.retryable:
                return unavailable(f"reading the source run: {error}")
            logger.warning(
                "source run of %s/%s is gone: %s", tracked.namespace, tracked.name, error
            )
            return accepted(f"ignored: the source run of {tracked.name} no longer exists")
        except EventError as error:
            logger.warning("source run of %s/%s: %s", tracked.namespace, tracked.name, error)
            return accepted(f"ignored: {error}")
        cluster = tracked.policy_kind == CLUSTER_POLICY_KIND
        policy = (self.policies.cluster if cluster else self.policies.namespaced).get(
            "" if cluster else tracked.policy_namespace, tracked.policy
        )
        ref = (
            next((r for r in policy.template_refs if r.name == tracked.template), None)
            if policy
            else None
        )
        template = self.templates.get(tracked.policy_namespace, tracked.template)
        notification = Notification(
            key="",
            event=event,
            policy_name=tracked.policy,
            policy_namespace=tracked.policy_namespace,
            template_ref=TemplateRef(
                tracked.template,
                # A fallback and a subscription render with their template's params only.
                dict(ref.params)
                if ref
                and not tracked.fallback_of
                and not (tracked.origin or {}).get("subscription")
                else {},
            ),
            policy_kind=tracked.policy_kind,
            attempt=tracked.attempt,
            fallback_of=tracked.fallback_of,
            subscription=(tracked.origin or {}).get("subscription"),
            scheduled=(tracked.origin or {}).get("scheduled"),
        )
        notification = replace(notification, key=notification.expected_key())
        expected = taskruns.run_name(event, notification.key, tracked.attempt)
        if tracked.name != expected or tracked.namespace != tracked.policy_namespace:
            return rejected(
                f"{tracked.namespace}/{tracked.name} carries our labels but is not the run the "
                f"launcher names for them ({tracked.policy_namespace}/{expected})"
            )
        return (
            tracked,
            notification,
            template if isinstance(template, Template) else None,
            policy,
        )

    def _outcome_event(
        self,
        notification: Notification,
        tracked: Tracked,
        outcome: Outcome,
        step: Next,
        template: Template | None,
    ) -> OutgoingEvent:
        event_type = notifications.DELIVERED if outcome.delivered else notifications.DELIVERY_FAILED
        source_time = _source_time(notification.event)
        seconds = (
            (outcome.finished - source_time).total_seconds()
            if outcome.finished is not None and source_time is not None
            else None
        )
        return notification.to_event(
            event_type,
            outcome={
                **outcome.as_dict(),
                "run": {
                    "kind": tracked.kind,
                    "name": tracked.name,
                    "namespace": tracked.namespace,
                    "uid": tracked.uid,
                },
                "attempt": tracked.attempt,
                "attempts": delivery.attempts_of(template),
                "next": {
                    "step": step.step,
                    "attempt": step.attempt,
                    "due": events.format_time(step.due) if step.due else "",
                    "template": step.template,
                },
                "seconds": seconds,
            },
        )

    def _send(self, outgoing: list[OutgoingEvent], message: str) -> Response:
        if len(outgoing) == 1:
            return reply(outgoing[0])
        if self._publish is None:
            return unavailable("two events to send and no broker to publish to (K_SINK)")
        try:
            self._publish(outgoing)
        except sink.PublishError as error:
            return unavailable(f"publishing: {error}")
        return accepted(f"{message}; published {', '.join(e.type for e in outgoing)}")

    def _sweep(self) -> Response:
        """Publish the delayed retries that are due and not created yet."""
        if self._list_runs is None:
            return accepted("ignored: no API to sweep")
        ready, why = self.ready()
        if not ready:
            return unavailable(why)
        now = datetime.fromtimestamp(self._clock(), UTC)
        due: list[OutgoingEvent] = []
        try:
            for kind, plural in (("TaskRun", "taskruns"), ("PipelineRun", "pipelineruns")):
                for run in self._list_runs(plural):
                    retry = self._due_retry({**run, "kind": kind}, now)
                    if retry is not None:
                        due.append(retry)
        except kube.ApiError as error:
            return unavailable(f"sweeping: {error}")
        if due and self._publish is None:
            return unavailable("retries are due and there is no broker to publish to (K_SINK)")
        if due:
            assert self._publish is not None
            try:
                self._publish(due)
            except sink.PublishError as error:
                return unavailable(f"publishing: {error}")
        return accepted(f"swept: {len(due)} retries due")

    def _due_retry(self, run: Mapping[str, Any], now: datetime) -> OutgoingEvent | None:
        try:
            event = events.parse_event(
                {"type": f"dev.tekton.event.{str(run['kind']).lower()}.failed.v1", "id": "sweep"},
                {run["kind"][0].lower() + run["kind"][1:]: run},
            )
        except EventError:
            return None
        condition: Mapping[str, Any] = next(
            (
                c
                for c in (run.get("status") or {}).get("conditions") or []
                if c.get("type") == "Succeeded"
            ),
            {},
        )
        if condition.get("status") != "False":
            return None  # running, or delivered
        found = self._notification(run)
        if isinstance(found, Response):
            return None
        tracked, notification, template, policy = found
        step = delivery.next_step(delivery.outcome_of(event), tracked, template, policy)
        if step.step != "retry" or (step.due is not None and step.due > now):
            return None
        retry = replace(notification, attempt=step.attempt)
        name = taskruns.run_name(retry.event, retry.key, step.attempt)
        try:
            self._get_run(tracked.kind, tracked.namespace, name)
            return None  # created already
        except kube.ApiError as error:
            if error.retryable:
                raise
        return retry.next_hop().to_event(notifications.MATCHED)


def _fallback(notification: Notification, step: Next) -> Notification:
    fallback = replace(
        notification,
        template_ref=TemplateRef(step.template),
        attempt=1,
        fallback_of=notification.template_ref.name,
    )
    return replace(fallback, key=fallback.expected_key()).next_hop()


def _source_time(event: RunEvent) -> datetime | None:
    """When Tekton sent the event the notification is about, as far as the run tells."""
    if event.tekton_event in ("successful", "failed") and event.completion_time:
        return event.completion_time
    return event.start_time
