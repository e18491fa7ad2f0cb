"""``tkn-notify lint`` of subscription annotations on Pipelines, Tasks, runs and Namespaces.

Checks each ``notifications.tekton.dev/subscribe.<event>.<template>`` and ``unsubscribe``
annotation as the policy filter reads it (:mod:`tekton_notifications.subscriptions`): the
key's form and length (63 characters after ``notifications.tekton.dev/``), the event, the
recipients; and, against the policies and templates in the same files, that the template
exists in the object's namespace and that a policy there allows the template and the event
(``spec.subscriptions``), or the filter would refuse it (``NotificationSubscriptionRefused``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from tekton_notifications import matching, models, subscriptions

#: Objects whose annotations may subscribe (Tekton copies a Pipeline's or Task's onto runs).
KINDS: Final = ("Pipeline", "Task", "PipelineRun", "TaskRun", "CustomRun", "Namespace")
CHECK: Final = "subscription"


@dataclass(frozen=True)
class Subscriber:
    """An object carrying subscription annotations, as read from a file."""

    file: str
    kind: str
    name: str
    namespace: str
    annotations: Mapping[str, str]

    @property
    def label(self) -> str:
        return (
            f"{self.kind} {self.namespace}/{self.name}"
            if self.namespace
            else f"{self.kind} {self.name}"
        )


def subscriber(file: str, obj: Mapping[str, Any]) -> Subscriber | None:
    """The object as a :class:`Subscriber` when it is of :data:`KINDS` and carries ours."""
    kind = str(obj.get("kind") or "")
    metadata = obj.get("metadata")
    if kind not in KINDS or not isinstance(metadata, Mapping):
        return None
    annotations = metadata.get("annotations")
    if not isinstance(annotations, Mapping) or not subscriptions.has_any(
        {str(k): str(v) for k, v in annotations.items()}
    ):
        return None
    name = str(metadata.get("name") or metadata.get("generateName") or "<unnamed>")
    namespace = name if kind == "Namespace" else str(metadata.get("namespace") or "default")
    return Subscriber(file, kind, name, namespace, {str(k): str(v) for k, v in annotations.items()})


def problems(
    subscribers: Sequence[Subscriber],
    policies: Sequence[models.Policy],
    templates: Sequence[tuple[str, str]],
) -> list[tuple[Subscriber, str, str]]:
    """(object, annotation, message) for each problem. ``policies``/``templates``: those
    in the linted files; when there are none of a kind, that cross-check is skipped."""
    found: list[tuple[Subscriber, str, str]] = []
    for item in subscribers:
        for key, message in subscriptions.problems(item.annotations):
            found.append((item, key, message))
        declared = subscriptions.declared(item.annotations, source="run", where=item.label)
        for subscription in declared.subscriptions:
            key = subscription.annotation
            if templates and (item.namespace, subscription.template) not in templates:
                found.append(
                    (
                        item,
                        key,
                        f"no NotificationTemplate {subscription.template!r} in namespace "
                        f"{item.namespace} among the files",
                    )
                )
            if policies and not _allowed(subscription, item.namespace, policies):
                found.append(
                    (
                        item,
                        key,
                        f"no policy among the files allows template {subscription.template!r} "
                        f"for {subscription.event} in namespace {item.namespace} "
                        "(spec.subscriptions): the policy-filter would refuse it",
                    )
                )
    return found


def _allowed(
    subscription: subscriptions.Subscription, namespace: str, policies: Sequence[models.Policy]
) -> bool:
    return any(
        policy.subscriptions is not None
        and policy.subscriptions.allows_template(subscription.template)
        and policy.subscriptions.allows_event(subscription.event)
        and matching.namespace_check(policy, namespace).ok
        for policy in policies
    )
