"""Who may subscribe to what: each subscription of a run event, allowed by a policy or not.

A subscription annotation (:mod:`tekton_notifications.subscriptions`) notifies only where a
NotificationPolicy of the run's namespace, or a ClusterNotificationPolicy covering it, lists
its template and event under ``spec.subscriptions``; that policy's selector, ``when`` and
``suspend`` still apply, and it is the policy the notification is sent under (its templates'
namespace, its rate limit, its status). One subscription notifies under one policy: the first
allowing and selecting it, namespaced policies before cluster ones, each by name.

Each subscription of the event gets a :class:`Resolution`:

- ``allowed``: a :class:`matching.Match` carries it on like a policy's template ref;
- ``refused``: no policy in scope allows its template or event. Reported, never dropped: an
  Event ``NotificationSubscriptionRefused`` on the run (:func:`refused_event`), a log line,
  a line in ``tkn-notify explain``;
- ``not selected``: a policy allows it but its selector or ``when`` leaves this run out (the
  platform team's choice, as for any policy): shown by explain, logged at info;
- ``other event``: it subscribes to another event than this one.

Pure: policies and the event in, decisions out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from tekton_notifications import matching, subscriptions, vocabulary
from tekton_notifications.caches import ParsedCache
from tekton_notifications.events import RunEvent
from tekton_notifications.matching import CompiledPolicy, Match, Verdict
from tekton_notifications.models import Policy, TemplateRef
from tekton_notifications.subscriptions import Found, Problem, Subscription

REFUSED_REASON: Final = "NotificationSubscriptionRefused"
COMPONENT: Final = "tekton-notifications"

Status = Literal["allowed", "refused", "not selected", "other event"]


@dataclass(frozen=True)
class Resolution:
    subscription: Subscription
    status: Status
    message: str
    #: The policy that allows it (``allowed``), or the first that allows its template and
    #: event but does not select the run (``not selected``).
    policy: Policy | None = None
    verdict: Verdict | None = None

    @property
    def match(self) -> Match | None:
        if self.status != "allowed" or self.policy is None or self.verdict is None:
            return None
        return Match(
            self.policy,
            TemplateRef(name=self.subscription.template),
            direct=self.verdict.direct,
            suspended=self.verdict.suspended,
            subscription=self.subscription,
        )


def applies(subscription: Subscription, event: RunEvent) -> bool:
    """The subscription's event is this one, or a transition this finished run may make."""
    if subscription.event in event.policy_events:
        return True
    transition = subscription.event in vocabulary.TRANSITION_EVENTS
    return transition and event.final_outcome is not None


def resolve(
    found: Found,
    event: RunEvent,
    policies: Iterable[CompiledPolicy],
    activation: dict[str, Any] | None = None,
) -> tuple[Resolution, ...]:
    """A :class:`Resolution` for each of ``found.subscriptions``, against ``policies`` (those
    with ``spec.subscriptions`` in scope; cluster policies are checked for the namespace)."""
    in_scope = [
        compiled
        for compiled in policies
        if compiled.policy.subscriptions is not None
        and matching.namespace_check(compiled.policy, event.namespace).ok
    ]
    in_scope.sort(key=lambda c: (c.policy.cluster, c.policy.namespace, c.policy.name))
    if found.subscriptions and activation is None and any(c.when for c in in_scope):
        activation = matching.event_activation(event)
    return tuple(_resolve(s, event, in_scope, activation) for s in found.subscriptions)


def _resolve(
    subscription: Subscription,
    event: RunEvent,
    in_scope: list[CompiledPolicy],
    activation: dict[str, Any] | None,
) -> Resolution:
    if not applies(subscription, event):
        return Resolution(
            subscription, "other event", f"subscribes to {subscription.event}, not {event.outcome}"
        )
    allowing = [c for c in in_scope if _allows(c.policy, subscription)]
    if not allowing:
        return Resolution(subscription, "refused", _why_refused(subscription, event, in_scope))
    first: Resolution | None = None
    for compiled in allowing:
        verdict = matching.evaluate(
            compiled, event, activation, events=frozenset({subscription.event})
        )
        if verdict.matched or verdict.suspended:
            return Resolution(
                subscription,
                "allowed",
                f"allowed by {_name(compiled.policy)}",
                compiled.policy,
                verdict,
            )
        if first is None:
            why = verdict.error or _failed_check(verdict)
            first = Resolution(
                subscription,
                "not selected",
                f"{_name(compiled.policy)} allows it but does not select this run: {why}",
                compiled.policy,
                verdict,
            )
    assert first is not None
    return first


def _allows(policy: Policy, subscription: Subscription) -> bool:
    rule = policy.subscriptions
    return (
        rule is not None
        and rule.allows_template(subscription.template)
        and rule.allows_event(subscription.event)
    )


def _why_refused(
    subscription: Subscription, event: RunEvent, in_scope: list[CompiledPolicy]
) -> str:
    head = f"{subscription.annotation} ({subscription.where})"
    rules = [(c.policy, c.policy.subscriptions) for c in in_scope if c.policy.subscriptions]
    if not rules:
        return (
            f"{head}: no NotificationPolicy in {event.namespace} nor ClusterNotificationPolicy "
            "covering it enables subscriptions (spec.subscriptions)"
        )
    listed = "; ".join(
        f"{_name(policy)} allows templates {', '.join(rule.templates)} "
        f"for {', '.join(sorted(rule.events))}"
        for policy, rule in rules
    )
    if not any(rule.allows_template(subscription.template) for _, rule in rules):
        what = f"template {subscription.template!r}"
    elif not any(rule.allows_event(subscription.event) for _, rule in rules):
        what = f"event {subscription.event!r}"
    else:
        what = f"template {subscription.template!r} for event {subscription.event!r}"
    return f"{head}: no policy allows {what} ({listed})"


def _failed_check(verdict: Verdict) -> str:
    for check in verdict.checks:
        if not check.ok:
            return f"{check.field} wanted {check.wanted} got {check.got}"
    return verdict.reason


def _name(policy: Policy) -> str:
    return f"{policy.kind} {'/'.join(filter(None, policy.key))}"


def refused_message(item: Resolution | Problem) -> str:
    if isinstance(item, Problem):
        return f"{item.annotation} ({item.where}): {item.message}"
    return item.message


def refused_event(event: RunEvent, item: Resolution | Problem, *, timestamp: str) -> dict[str, Any]:
    """A Warning Event ``NotificationSubscriptionRefused`` on the run, named per (run, Tekton
    event, annotation), so a redelivered event records it once (409 on the second create)."""
    annotation = item.annotation if isinstance(item, Problem) else item.subscription.annotation
    source = "" if isinstance(item, Problem) else item.subscription.source
    material = "\x00".join((event.uid or event.name, event.tekton_event, annotation, source))
    suffix = f".{hashlib.sha256(material.encode()).hexdigest()[:12]}.refused"
    involved: Mapping[str, str] = {
        "apiVersion": "tekton.dev/v1",
        "kind": event.kind,
        "name": event.name,
        "namespace": event.namespace,
        "uid": event.uid,
    }
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": event.name[: 253 - len(suffix)] + suffix,
            "namespace": event.namespace,
            "labels": {vocabulary.MANAGED_BY_LABEL: vocabulary.MANAGED_BY_VALUE},
        },
        "involvedObject": {k: v for k, v in involved.items() if v},
        "reason": REFUSED_REASON,
        "message": refused_message(item)[:1024],
        "type": "Warning",
        "source": {"component": COMPONENT},
        "reportingComponent": f"{COMPONENT}/policy-filter",
        "reportingInstance": "policy-filter",
        "firstTimestamp": timestamp,
        "lastTimestamp": timestamp,
        "count": 1,
    }


class NamespaceDefaults(ParsedCache[Mapping[str, str]]):
    """The subscription annotations of every Namespace (only ours: a few strings each),
    fed by ``kube.namespace_informer``; namespaces without any keep no entry."""

    def __init__(self) -> None:
        super().__init__(_ours, cluster=True)

    def annotations(self, namespace: str) -> Mapping[str, str]:
        return self.get("", namespace) or {}


def _ours(obj: Mapping[str, Any]) -> Mapping[str, str] | None:
    metadata = obj.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, Mapping) else None
    if not isinstance(annotations, Mapping):
        return None
    kept = {
        str(key): str(value)
        for key, value in annotations.items()
        if str(key).startswith(subscriptions.PREFIX)
    }
    return kept or None
