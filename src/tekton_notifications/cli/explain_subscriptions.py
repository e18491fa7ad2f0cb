"""How ``tkn-notify explain`` shows subscription annotations: found where, allowed by which
policy (and what it renders) or refused and why; and where it reads the Namespace and the
Pipeline or Task the annotations are compared with."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tekton_notifications import kube
from tekton_notifications.cli import _inputs, diagnosis_report
from tekton_notifications.definitions import Definitions
from tekton_notifications.diagnosis import SubscriptionsExplained
from tekton_notifications.events import RunEvent

OK, NO, SKIP = "✓", "✗", "-"
REFUSED = "refused (Event NotificationSubscriptionRefused)"
_DEFINITION_KINDS = {
    "PipelineRun": ("Pipeline", "tekton.dev/pipeline"),
    "TaskRun": ("Task", "tekton.dev/task"),
}


def sources(
    event: RunEvent, paths: tuple[Path, ...], cluster: _inputs.Cluster | None
) -> tuple[Mapping[str, str] | None, Mapping[str, str] | None]:
    """The annotations of the run's Namespace and of its Pipeline or Task: from manifests in
    ``paths`` when they hold them, else from ``cluster``; None when neither has them."""
    namespace: Mapping[str, str] | None = None
    definition: Mapping[str, str] | None = None
    kind, label = _DEFINITION_KINDS.get(event.kind, ("", ""))
    wanted = event.labels.get(label, "") if label else ""
    if paths:
        for obj in _inputs.objects_of_kind(paths, "Namespace", "Pipeline", "Task"):
            metadata = obj.get("metadata") or {}
            annotations = {str(k): str(v) for k, v in (metadata.get("annotations") or {}).items()}
            if obj.get("kind") == "Namespace" and metadata.get("name") == event.namespace:
                namespace = annotations
            elif (
                obj.get("kind") == kind
                and metadata.get("name") == wanted
                and (metadata.get("namespace") or event.namespace) == event.namespace
            ):
                definition = annotations
    if cluster is not None:
        try:
            if namespace is None:
                namespace = kube.namespace_annotations(cluster.api, event.namespace)
            if definition is None:
                definition = Definitions(cluster.api)(event)
        except kube.ApiError as error:
            raise _inputs.cluster_error(error, "reading the run's namespace") from None
    return namespace, definition


def report(explained: SubscriptionsExplained) -> dict[str, Any]:
    found = explained.found
    return {
        "namespaceKnown": explained.namespace_known,
        "found": [
            {
                "annotation": item.resolution.subscription.annotation,
                "source": item.resolution.subscription.source,
                "where": item.resolution.subscription.where,
                "recipients": list(item.resolution.subscription.recipients),
                "status": item.resolution.status,
                "message": item.resolution.message,
                "policy": _policy(item.resolution.policy),
                "notifies": item.notifies,
                **(
                    {"template": diagnosis_report.outcome_dict(item.template, None)}
                    if item.template is not None
                    else {}
                ),
            }
            for item in explained.items
        ],
        "ignored": [
            {
                "annotation": item.subscription.annotation,
                "where": item.subscription.where,
                "why": item.why,
            }
            for item in found.ignored
        ],
        "malformed": [
            {"annotation": p.annotation, "where": p.where, "message": p.message}
            for p in found.problems
        ],
    }


def _policy(policy: Any) -> str | None:
    return None if policy is None else f"{policy.kind} {'/'.join(filter(None, policy.key))}"


def text(explained: SubscriptionsExplained) -> str:
    found = explained.found
    known = "" if explained.namespace_known else " (the Namespace was not read: no defaults)"
    if not found:
        return f"\nSubscriptions: none on the run, its Pipeline or Task, or its Namespace{known}.\n"
    lines = ["", f"Subscriptions (notifications.tekton.dev/subscribe.*){known}:"]
    for item in explained.items:
        subscription, resolution = item.resolution.subscription, item.resolution
        value = ", ".join(subscription.recipients)
        head = (
            f"{subscription.annotation.removeprefix('notifications.tekton.dev/')}: "
            f'"{value}" from {subscription.source} ({subscription.where})'
        )
        if resolution.status == "allowed":
            mark = OK if item.notifies else NO
            lines.append(f"{mark} {head}")
            lines.append(f"    allowed: {resolution.message}")
        elif resolution.status == "refused":
            lines.append(f"{NO} {head}")
            lines.append(
                f"    refused (Event NotificationSubscriptionRefused): {resolution.message}"
            )
        else:
            lines.append(f"{SKIP} {head}")
            lines.append(f"    {resolution.status}: {resolution.message}")
        if item.storm is not None:
            lines.extend(f"    storm control: {note}" for note in item.storm.notes)
            if item.storm.suppressed:
                lines.append(f"    {NO} suppressed: {item.storm.suppressed}")
        if item.template is not None:
            lines.extend(diagnosis_report.outcome_lines(item.template, None))
    for ignored in found.ignored:
        lines.append(f"{SKIP} {ignored.subscription.annotation} ({ignored.subscription.where})")
        lines.append(f"    ignored: {ignored.why}")
    for problem in found.problems:
        lines.append(f"{NO} {problem.annotation} ({problem.where})")
        lines.append(f"    {REFUSED}: {problem.message}")
    return "\n".join(lines) + "\n"
