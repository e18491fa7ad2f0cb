"""What every stage shares, so a stage writes only its own decision.

:class:`Informed` owns a stage's informers: start, stop, and readiness ("ready once every
informer listed its resource", one message format). Their caches are
:class:`caches.ParsedCache` views fed through one callback shape (:class:`caches.Watcher`).

:class:`NotificationStage` adds the opening every stage between the functions shares, in
this order, each step before anything of the next is read:

1. the event type: another type is answered 202 (``ignored: unsupported event type``);
2. the payload (:func:`notifications.parse_notification`, then the stage's :meth:`read`):
   malformed is 400;
3. readiness: caches not loaded is 503, retried;
4. the claim: the policy it names must exist, use the template and see the run
   (:func:`claims.refusal`), and its key must be the one of its run, policy and template
   (:func:`notifications.notification_key`): 400 otherwise.

Then :meth:`NotificationStage.decide` gets the :class:`Incoming` event with the claimed
policy, and answers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from tekton_notifications import claims, kube, notifications, vocabulary
from tekton_notifications.events import EventError
from tekton_notifications.models import Policy
from tekton_notifications.notifications import Notification
from tekton_notifications.stages.base import Response, accepted, rejected, unavailable

R = TypeVar("R")

#: How readiness names a resource that is not loaded yet.
_WHAT = {
    vocabulary.TEMPLATE_PLURAL: "templates",
    vocabulary.POLICY_PLURAL: "policies",
    vocabulary.CLUSTER_POLICY_PLURAL: "cluster policies",
}

#: The 400 reason of a notification whose key is not the one of its claim.
KEY_MISMATCH = "its key is not the one of its run, policy and template"


class Informed:
    """A stage's informers: started and stopped together; ready once all have listed."""

    #: The function's name, as in functions/<name>/func.yaml; labels metrics and logs.
    name: str

    def __init__(self, informers: tuple[kube.Informer, ...] = ()) -> None:
        self.informers = informers

    def start(self) -> None:
        for informer in self.informers:
            informer.start()

    def stop(self) -> None:
        for informer in self.informers:
            informer.stop()

    def ready(self) -> tuple[bool, str]:
        for informer in self.informers:
            if not informer.ready:
                what = _WHAT.get(informer.plural, informer.plural)
                return False, f"{what} not loaded yet: {informer.last_error or 'listing'}"
        return True, self.loaded()

    def loaded(self) -> str:
        """What readiness says once everything is loaded."""
        return "ok"


@dataclass(frozen=True)
class Incoming(Generic[R]):
    """A notification past the opening: well formed, its claim and key checked."""

    attributes: Mapping[str, str]
    data: Mapping[str, Any]
    notification: Notification
    #: The policy the claim names (None only when the stage checks no claims).
    policy: Policy | None
    #: What the stage's :meth:`NotificationStage.read` made of the payload.
    read: R

    @property
    def id(self) -> str | None:
        return self.attributes.get("id")


class NotificationStage(Informed, Generic[R]):
    """A stage that takes the events the stages send each other (see the module docstring).

    A stage sets :attr:`accepts`, may override :meth:`read` (more of the payload, checked
    before readiness) and writes :meth:`decide`.
    """

    #: The event types this stage takes; others are acknowledged and ignored.
    accepts: ClassVar[frozenset[str]]

    def __init__(
        self,
        *,
        policies: claims.PolicyDirectory | None = None,
        informers: tuple[kube.Informer, ...] = (),
    ) -> None:
        super().__init__(informers)
        #: When set, a notification must name a policy that exists and uses its template.
        self.policies = policies

    def respond(self, attributes: Mapping[str, str], data: object) -> Response:
        event_type = attributes.get("type")
        if event_type not in self.accepts:
            return accepted(f"ignored: unsupported event type {event_type!r}")
        try:
            notification = notifications.parse_notification(data)
            assert isinstance(data, Mapping)  # parse_notification refuses anything else
            read = self.read(event_type, notification, data)
        except EventError as error:
            return rejected(f"{attributes.get('id')}: {error}")
        ready, why = self.ready()
        if not ready:
            return unavailable(why)
        policy = None
        if self.policies is not None:
            policy = self.policies.claimed(notification)
            refused = claims.refusal(notification, policy)
            if refused:  # checked before anything about the run is used
                return rejected(f"{attributes.get('id')}: {refused}")
        if notification.key != notification.expected_key():
            return rejected(f"{attributes.get('id')}: {KEY_MISMATCH}")
        return self.decide(Incoming(attributes, data, notification, policy, read))

    def read(self, event_type: str, notification: Notification, data: Mapping[str, Any]) -> R:
        """More of the payload this stage needs; :class:`EventError` (400) when malformed."""
        raise NotImplementedError

    def decide(self, incoming: Incoming[R]) -> Response:
        """The stage's own answer to a notification that passed the opening."""
        raise NotImplementedError
