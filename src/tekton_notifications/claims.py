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
import threading
from collections.abc import Mapping
from typing import Any

from tekton_notifications import matching, models
from tekton_notifications.models import Policy, Template
from tekton_notifications.notifications import Notification

logger = logging.getLogger(__name__)

Key = tuple[str, str]


class PolicyDirectory:
    """The valid policies of both kinds, by (namespace or "" for cluster policies, name)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._policies: dict[Key, Policy] = {}

    def __len__(self) -> int:
        return len(self._policies)

    def reset(self, objects: list[dict[str, Any]], *, cluster: bool = False) -> None:
        parsed = [p for p in (_parse(obj, cluster) for obj in objects) if p is not None]
        with self._lock:
            for key in [k for k in self._policies if (k[0] == "") == cluster]:
                del self._policies[key]
            self._policies.update((policy.key, policy) for policy in parsed)

    def upsert(self, obj: dict[str, Any], *, cluster: bool = False) -> None:
        policy = _parse(obj, cluster)
        with self._lock:
            if policy is None:
                self._policies.pop(_key(obj, cluster), None)
            else:
                self._policies[policy.key] = policy

    def delete(self, obj: dict[str, Any], *, cluster: bool = False) -> None:
        with self._lock:
            self._policies.pop(_key(obj, cluster), None)

    def reset_cluster(self, objects: list[dict[str, Any]]) -> None:
        self.reset(objects, cluster=True)

    def upsert_cluster(self, obj: dict[str, Any]) -> None:
        self.upsert(obj, cluster=True)

    def delete_cluster(self, obj: dict[str, Any]) -> None:
        self.delete(obj, cluster=True)

    def claimed(self, notification: Notification) -> Policy | None:
        namespace = "" if notification.cluster_policy else notification.policy_namespace
        with self._lock:
            return self._policies.get((namespace, notification.policy_name))


def param_names(policy: Policy | None, template: Template) -> frozenset[str]:
    """The params a rendered run may carry: the template's, and its policy's overrides."""
    names = set(template.params)
    for ref in policy.template_refs if policy is not None else ():
        if ref.name == template.name:
            names |= set(ref.params)
    return frozenset(names)


class TemplateDirectory:
    """NotificationTemplates by (namespace, name): parsed, or why they cannot be."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._templates: dict[Key, Template | str] = {}

    def __len__(self) -> int:
        return len(self._templates)

    def reset(self, objects: list[dict[str, Any]]) -> None:
        parsed = {_key(obj, False): _parse_template(obj) for obj in objects}
        with self._lock:
            self._templates = parsed

    def upsert(self, obj: dict[str, Any]) -> None:
        parsed = _parse_template(obj)
        with self._lock:
            self._templates[_key(obj, False)] = parsed

    def delete(self, obj: dict[str, Any]) -> None:
        with self._lock:
            self._templates.pop(_key(obj, False), None)

    def get(self, namespace: str, name: str) -> Template | str | None:
        with self._lock:
            return self._templates.get((namespace, name))


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
    if notification.template_ref.name not in {ref.name for ref in policy.template_refs}:
        return f"{kind} {policy.name!r} does not use template {notification.template_ref.name!r}"
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


def _key(obj: Mapping[str, Any], cluster: bool) -> Key:
    metadata = obj.get("metadata") or {}
    return ("" if cluster else str(metadata.get("namespace")), str(metadata.get("name")))
