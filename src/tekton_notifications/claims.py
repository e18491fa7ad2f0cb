"""What a notification claims about its policy, checked against the policies that exist.

Stages hand notifications to each other through the broker, and whoever can post to the
broker can post a ``matched`` or ``rendered`` event naming any policy. The namespace rule in
:func:`notifications.parse_notification` stops a *namespaced* claim from reaching across
tenants; this module stops the rest: a claim to a policy that does not exist, to a template
the policy does not use, to another home namespace, or (for a ClusterNotificationPolicy) to a
run outside the namespaces it selects. The renderer checks before it reads anything about the
run; the launcher before it creates anything, and then compares the run it is handed with
the NotificationTemplate it reads itself (:class:`TemplateDirectory`,
:func:`taskruns.not_from_template`); the status recorder before it writes any Event or count.

Pure: the directories are fed by the stage's informers.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from tekton_notifications import matching, models
from tekton_notifications.caches import ParsedCache
from tekton_notifications.models import Policy, Template
from tekton_notifications.notifications import Notification

logger = logging.getLogger(__name__)


class PolicyDirectory:
    """The valid policies of both kinds, by (namespace or "" for cluster policies, name)."""

    def __init__(self) -> None:
        self.namespaced = ParsedCache(lambda obj: _parse(obj, False))
        self.cluster = ParsedCache(lambda obj: _parse(obj, True), cluster=True)

    def __len__(self) -> int:
        return len(self.namespaced) + len(self.cluster)

    def _of(self, cluster: bool) -> ParsedCache[Policy]:
        return self.cluster if cluster else self.namespaced

    def reset(self, objects: list[dict[str, Any]], *, cluster: bool = False) -> None:
        self._of(cluster).reset(objects)

    def upsert(self, obj: dict[str, Any], *, cluster: bool = False) -> None:
        self._of(cluster).upsert(obj)

    def delete(self, obj: dict[str, Any], *, cluster: bool = False) -> None:
        self._of(cluster).delete(obj)

    def claimed(self, notification: Notification) -> Policy | None:
        if notification.cluster_policy:
            return self.cluster.get("", notification.policy_name)
        return self.namespaced.get(notification.policy_namespace, notification.policy_name)


def param_names(policy: Policy | None, template: Template) -> frozenset[str]:
    """The params a rendered run may carry: the template's, and its policy's overrides."""
    names = set(template.params)
    for ref in policy.all_template_refs if policy is not None else ():
        if ref.name == template.name:  # a fallback renders with its template's params only
            names |= set(ref.params)
    return frozenset(names)


class TemplateDirectory(ParsedCache[Template | str]):
    """NotificationTemplates by (namespace, name): parsed, or why they cannot be."""

    def __init__(self) -> None:
        super().__init__(_parse_template)


def _parse_template(obj: Mapping[str, Any]) -> Template | str:
    try:
        return models.parse_template(obj)
    except models.SpecError as error:
        return str(error)  # the renderer logs it and fails the notification


def refusal(notification: Notification, policy: Policy | None) -> str | None:
    """Why ``notification`` cannot be what it claims to be, or None when it can."""
    kind = notification.policy_kind
    if policy is None:
        where = "" if notification.cluster_policy else f" in {notification.policy_namespace}"
        return f"no valid {kind} {notification.policy_name!r}{where}"
    if policy.home_namespace != notification.policy_namespace:
        return (
            f"{kind} {policy.name!r} keeps its templates and runs in "
            f"{policy.home_namespace!r}, not {notification.policy_namespace!r}"
        )
    template = notification.template_ref.name
    if notification.subscription is not None:
        # A subscription names its own template: the policy must allow it and its event.
        rule, event = policy.subscriptions, str(notification.subscription.get("event"))
        if rule is None or not rule.allows_template(template) or not rule.allows_event(event):
            return f"{kind} {policy.name!r} allows no subscription to {template!r} for {event}"
        if notification.template_ref.params:
            return "a subscription's templateRef carries no param overrides"
    elif notification.fallback_of is not None:
        primary = next(
            (ref for ref in policy.template_refs if ref.name == notification.fallback_of), None
        )
        if primary is None or primary.fallback != notification.template_ref.name:
            return (
                f"{kind} {policy.name!r} has no fallback {notification.template_ref.name!r} "
                f"for template {notification.fallback_of!r}"
            )
    elif template not in {ref.name for ref in policy.all_template_refs}:
        return f"{kind} {policy.name!r} does not use template {template!r}"
    namespace_check = matching.namespace_check(policy, notification.event.namespace)
    if not namespace_check.ok:
        return (
            f"{kind} {policy.name!r} does not see runs in {notification.event.namespace!r} "
            f"(it selects {namespace_check.wanted})"
        )
    return None


def _parse(obj: Mapping[str, Any], cluster: bool) -> Policy | None:
    if cluster:
        obj = {**obj, "kind": models.CLUSTER_POLICY_KIND}
    try:
        return models.parse_policy(obj)
    except models.SpecError:
        return None  # the policy filter logs it; an invalid policy never matches anyway
