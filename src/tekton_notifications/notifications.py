"""The events the functions send each other: matched -> rendered -> launched (or failed).

Each stage's input is the previous stage's output, so the shapes live in one module. Every
payload carries:

- ``key``: what is notified at most once (:func:`notification_key`), computed by the policy
  filter and carried on; the renderer names the run with it, the launcher checks the run by
  it, the recorder names its Events with it. No stage computes it for its own use;
- ``run``: the run's identity (kind, namespace, name, uid, Tekton event name), for readers
  of the payload (a dead-letter display, ``kubectl get``) that do not parse Tekton's run;
- ``policy`` and ``templateRef``: the claim;
- ``runEvent``: the Tekton event as Tekton sent it, parsed once per stage (the renderer's
  template context, the launcher's run body and the recorder's Events are made of it);
- from ``rendered`` on, ``resource``: the run the renderer built.

What a stage trusts, and what it checks (stages/skeleton.py runs the checks): the signature
(:mod:`signing`) only says a stage wrote the payload, and every stage holds the same key, so
a leaked key or a bug in one stage must not let a payload act outside its claim. Everything
that is cheap to check is checked again at every stage: the claim (a dict lookup,
:func:`claims.refusal`), the key (one hash of the claim and the run identity), the run's
namespace against the policy's (:func:`parse_notification`), and ``run`` against
``runEvent``. The launcher also compares the run with what the template builds
(:func:`taskruns.not_from_template`): only the param values are taken on trust, as the
renderer's decision (rendering them again would cost a template's render budget per event).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

from tekton_notifications import events, tracing, vocabulary
from tekton_notifications.events import EventError, RunEvent
from tekton_notifications.models import CLUSTER_POLICY_KIND, POLICY_KIND, TemplateRef

MATCHED: Final = "dev.tekton.notification.matched.v1"
RENDERED: Final = "dev.tekton.notification.rendered.v1"
LAUNCHED: Final = "dev.tekton.notification.launched.v1"
FAILED: Final = "dev.tekton.notification.failed.v1"
#: A match that sent nothing: the policy's rate limit was spent, or it is suspended.
SUPPRESSED: Final = "dev.tekton.notification.suppressed.v1"
#: The delivery tracker's outcomes of a finished notification run (stages/delivery_tracker.py).
DELIVERED: Final = "dev.tekton.notification.delivered.v1"
DELIVERY_FAILED: Final = "dev.tekton.notification.deliveryfailed.v1"
TYPES: Final = (MATCHED, RENDERED, LAUNCHED, FAILED, SUPPRESSED, DELIVERED, DELIVERY_FAILED)


def notification_key(
    event: RunEvent,
    *,
    policy_namespace: str,
    policy: str,
    template: str,
    policy_kind: str = POLICY_KIND,
    scheduled: str = "",
    subscription: Mapping[str, Any] | None = None,
    fallback_of: str | None = None,
) -> str:
    """What is notified at most once: one run, one Tekton event name, one policy, one template,
    and for a subscription its event and recipients (in any order).

    Tekton may send ``running`` and ``unknown`` several times for one run; they share a key,
    so each notifies once per run. The event id is left out on purpose: Tekton's retries of
    the same event carry new ids. A subscription's source is left out too: the same
    recipients subscribed by the run and by its namespace are one notification.

    A notification the scheduler sends is identified by ``scheduled`` instead of the run
    (``schedule.Reminder.id``: the streak and the reminder's number; ``DigestDue.id``: the
    period), so a redelivered ping or a restarted scheduler makes the same key.

    Retries of a notification share its key (their runs differ by attempt); a fallback has
    its own (``fallback_of``: the template whose delivery failed), never the one of the same
    template used as a primary.
    """
    run_identity = event.uid or f"{event.namespace}/{event.kind}/{event.name}"
    if policy_kind != POLICY_KIND:  # a cluster policy never shares a key with a namespaced one
        policy = f"{policy_kind}/{policy}"
    if fallback_of is not None:
        template = f"{template}\x00fallback-of\x00{fallback_of}"
    parts = [run_identity, event.tekton_event, policy_namespace, policy, template]
    if subscription is not None:
        recipients = sorted(str(r) for r in subscription.get("recipients") or ())
        parts += ["subscription", str(subscription.get("event")), "\x1f".join(recipients)]
    material = "\x00".join(parts)
    if scheduled:
        material = "\x00".join(("scheduled", scheduled, policy_namespace, policy, template))
    return hashlib.sha256(material.encode()).hexdigest()


def run_identity(event: RunEvent) -> dict[str, str]:
    """The ``run`` field of a payload: which run, and which of its Tekton events."""
    return {
        "kind": event.kind,
        "namespace": event.namespace,
        "name": event.name,
        "uid": event.uid,
        "event": event.tekton_event,
    }


@dataclass(frozen=True)
class OutgoingEvent:
    """A CloudEvent to send, as plain attributes and JSON data (no SDK types)."""

    attributes: Mapping[str, str]
    data: Mapping[str, Any]
    #: ``data`` as JSON bytes once something serialised it (signing: its canonical form), so
    #: the wire sends those bytes instead of encoding the same data again.
    encoded: bytes | None = field(default=None, compare=False, repr=False)

    @property
    def type(self) -> str:
        return self.attributes["type"]


@dataclass(frozen=True)
class Notification:
    """One (run event, policy, template) on its way through the chain."""

    key: str
    event: RunEvent
    policy_name: str
    #: Where the policy's templates are read and its runs created: a NotificationPolicy's
    #: namespace, or a ClusterNotificationPolicy's templateNamespace.
    policy_namespace: str
    template_ref: TemplateRef
    #: Set from ``rendered`` on: the TaskRun/PipelineRun body to create.
    resource: Mapping[str, Any] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    policy_kind: str = POLICY_KIND
    #: Set when a transition made this notification: ``{"name": "fixed", "previous": {...}}``.
    transition: Mapping[str, Any] | None = None
    #: Set when the scheduler sent it: ``{"id": ..., "reminder": {...}}`` or ``"digest"``.
    scheduled: Mapping[str, Any] | None = None
    #: Set when a subscription annotation made it: ``subscriptions.Subscription.view()``.
    subscription: Mapping[str, Any] | None = None
    #: Which run of this notification: 1, then one more per retry (delivery tracker).
    attempt: int = 1
    #: For a fallback: the template whose delivery finally failed.
    fallback_of: str | None = None

    @property
    def origin(self) -> dict[str, Any] | None:
        """What made it besides its policy and template (a subscription, the scheduler's
        due item), kept on its run (``taskruns.ORIGIN_ANNOTATION``); None for most."""
        found: dict[str, Any] = {}
        if self.subscription is not None:
            found["subscription"] = dict(self.subscription)
        if self.scheduled is not None:
            found["scheduled"] = dict(self.scheduled)
        return found or None

    @property
    def cluster_policy(self) -> bool:
        return self.policy_kind == CLUSTER_POLICY_KIND

    def next_hop(self) -> Notification:
        """This notification as the next stage sends it on: same trace, a new span."""
        traceparent = tracing.child_of(self.event.extensions.get("traceparent"))
        extensions = {**self.event.extensions, "traceparent": traceparent}
        return replace(self, event=replace(self.event, extensions=extensions))

    def expected_key(self) -> str:
        """The key of this notification's run, policy and template (what ``key`` must be)."""
        return notification_key(
            self.event,
            policy_namespace=self.policy_namespace,
            policy=self.policy_name,
            template=self.template_ref.name,
            policy_kind=self.policy_kind,
            scheduled=str(self.scheduled["id"]) if self.scheduled else "",
            subscription=self.subscription,
            fallback_of=self.fallback_of,
        )

    @property
    def policy_view(self) -> dict[str, str]:
        return {
            "name": self.policy_name,
            "namespace": self.policy_namespace,
            "kind": self.policy_kind,
        }

    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "key": self.key,
            "policy": self.policy_view,
            "templateRef": {
                "name": self.template_ref.name,
                "params": dict(self.template_ref.params),
            },
            "run": run_identity(self.event),
            "runEvent": self.event.to_wire(),
        }
        if self.resource is not None:
            data["resource"] = dict(self.resource)
        if self.transition is not None:
            data["transition"] = dict(self.transition)
        if self.scheduled is not None:
            data["scheduled"] = dict(self.scheduled)
        if self.subscription is not None:
            data["subscription"] = dict(self.subscription)
        if self.attempt != 1 or self.fallback_of is not None:
            delivery: dict[str, Any] = {"attempt": self.attempt}
            if self.fallback_of is not None:
                delivery["fallbackOf"] = self.fallback_of
            data["delivery"] = delivery
        return data

    @property
    def policy_source(self) -> str:
        """The policy's API path: the ``source`` of every event about this notification."""
        base = f"/apis/{vocabulary.GROUP}/{vocabulary.VERSION}"
        if self.cluster_policy:
            return f"{base}/clusternotificationpolicies/{self.policy_name}"
        return f"{base}/namespaces/{self.policy_namespace}/notificationpolicies/{self.policy_name}"

    def to_event(self, event_type: str, **extra: Any) -> OutgoingEvent:
        """This notification as an event of ``event_type``; ``extra`` adds top-level fields."""
        suffix = event_type.removeprefix("dev.tekton.notification.").removesuffix(".v1")
        if self.attempt != 1:  # each attempt's events are their own, not redeliveries
            suffix = f"{suffix}-a{self.attempt}"
        attributes = {
            "specversion": "1.0",
            "id": f"{self.key[:32]}-{suffix}",
            "type": event_type,
            "source": self.policy_source,
            "subject": f"{self.event.kind.lower()}s/{self.event.namespace}/{self.event.name}",
            "datacontenttype": "application/json",
            **self.event.extensions,
        }
        return OutgoingEvent(attributes, {**self.payload(), **extra})


def parse_notification(data: object) -> Notification:
    """Read a matched/rendered/launched/failed payload; :class:`EventError` says what's wrong."""
    if not isinstance(data, Mapping):
        raise EventError("notification data must be a JSON object")
    key = data.get("key")
    policy = data.get("policy")
    ref = data.get("templateRef")
    wire = data.get("runEvent")
    if not isinstance(key, str) or not key:
        raise EventError("notification data: 'key' is missing")
    if not isinstance(policy, Mapping) or not policy.get("name") or not policy.get("namespace"):
        raise EventError("notification data: 'policy' needs name and namespace")
    if not isinstance(ref, Mapping) or not isinstance(ref.get("name"), str):
        raise EventError("notification data: 'templateRef' needs a name")
    params = ref.get("params") or {}
    if not isinstance(params, Mapping) or not all(isinstance(v, str) for v in params.values()):
        raise EventError("notification data: 'templateRef.params' must map names to strings")
    if not isinstance(wire, Mapping):
        raise EventError("notification data: 'runEvent' is missing")
    resource = data.get("resource")
    if resource is not None and not isinstance(resource, Mapping):
        raise EventError("notification data: 'resource' must be an object")
    transition = data.get("transition")
    if transition is not None and (
        not isinstance(transition, Mapping) or not isinstance(transition.get("name"), str)
    ):
        raise EventError("notification data: 'transition' must be an object with a name")
    scheduled = data.get("scheduled")
    if scheduled is not None and (
        not isinstance(scheduled, Mapping)
        or not isinstance(scheduled.get("id"), str)
        or not scheduled["id"]
    ):
        raise EventError("notification data: 'scheduled' must be an object with an id")
    subscription = _subscription(data.get("subscription"), str(ref["name"]))
    attempt, fallback_of = _delivery(data.get("delivery"))
    event = events.from_wire(wire)
    kind = str(policy.get("kind") or POLICY_KIND)
    if kind not in (POLICY_KIND, CLUSTER_POLICY_KIND):
        raise EventError(f"notification data: unknown policy kind {kind!r}")
    if kind == POLICY_KIND and event.namespace != str(policy["namespace"]):
        # A namespaced policy only ever matches runs of its own namespace; anything else is
        # forged, and would make the next stages read or write across tenants.
        raise EventError(
            f"notification data: the run is in namespace {event.namespace!r}, "
            f"not in its policy's namespace {str(policy['namespace'])!r}"
        )
    run = data.get("run")
    if run is not None and run != run_identity(event):
        # Optional (payloads of 0.x before it); a reader trusts it only because this holds.
        raise EventError("notification data: 'run' is not the run of 'runEvent'")
    return Notification(
        key=key,
        event=event,
        policy_name=str(policy["name"]),
        policy_namespace=str(policy["namespace"]),
        template_ref=TemplateRef(name=str(ref["name"]), params=dict(params)),
        resource=resource,
        policy_kind=kind,
        transition=transition,
        scheduled=scheduled,
        subscription=subscription,
        attempt=attempt,
        fallback_of=fallback_of,
    )


def _subscription(value: object, template: str) -> Mapping[str, Any] | None:
    """The payload's ``subscription``, shaped as ``Subscription.view()`` says, or None."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise EventError("notification data: 'subscription' must be an object")
    recipients = value.get("recipients")
    if not isinstance(recipients, list) or not all(isinstance(r, str) for r in recipients):
        raise EventError("notification data: 'subscription.recipients' must list strings")
    for name in ("event", "source", "annotation"):
        if not isinstance(value.get(name), str):
            raise EventError(f"notification data: 'subscription.{name}' must be a string")
    if value.get("event") not in vocabulary.POLICY_EVENTS:
        raise EventError("notification data: 'subscription.event' is not a policy event")
    if value.get("template") != template:
        raise EventError("notification data: 'subscription.template' is not its templateRef")
    return dict(value)


#: The most runs one notification can have: the first and ``models.MAX_RETRIES`` retries.
MAX_ATTEMPT: Final = 6


def _delivery(value: object) -> tuple[int, str | None]:
    """``delivery: {attempt, fallbackOf}`` of a retry or a fallback (absent: attempt 1)."""
    if value is None:
        return 1, None
    if not isinstance(value, Mapping):
        raise EventError("notification data: 'delivery' must be an object")
    attempt, fallback_of = value.get("attempt", 1), value.get("fallbackOf")
    if isinstance(attempt, bool) or not isinstance(attempt, int) or not 1 <= attempt <= MAX_ATTEMPT:
        raise EventError(f"notification data: 'delivery.attempt' must be 1 to {MAX_ATTEMPT}")
    if fallback_of is not None and (not isinstance(fallback_of, str) or not fallback_of):
        raise EventError("notification data: 'delivery.fallbackOf' must name a template")
    return attempt, fallback_of


def failure(notification: Notification, *, stage: str, reason: str, message: str) -> OutgoingEvent:
    """A ``failed`` event: not retried, kept visible for tracking and troubleshooting."""
    return notification.to_event(
        FAILED, error={"stage": stage, "reason": reason, "message": message}
    )
