"""The notification run to create: deterministic name, labels, and a Tekton v1 body.

Pure: builds the object, never sends it. The name is a function of what must be notified
once (source run, event, policy, template), so every retry and every repeated Tekton event
maps to the same name, and the API server's 409 is our de-duplication.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any, Final

from tekton_notifications import types
from tekton_notifications.events import RunEvent
from tekton_notifications.models import POLICY_KIND, Template

MAX_NAME: Final = 63
_HASH_CHARS: Final = 10
_LABEL_VALUE_BAD: Final = re.compile(r"[^A-Za-z0-9._-]+")

POLICY_LABEL: Final = f"{types.GROUP}/policy"
TEMPLATE_LABEL: Final = f"{types.GROUP}/template"
SOURCE_KIND_LABEL: Final = f"{types.GROUP}/source-kind"
SOURCE_NAME_LABEL: Final = f"{types.GROUP}/source-name"
SOURCE_UID_LABEL: Final = f"{types.GROUP}/source-uid"
EVENT_LABEL: Final = f"{types.GROUP}/event"
POLICY_KIND_LABEL: Final = f"{types.GROUP}/policy-kind"
SOURCE_NAMESPACE_ANNOTATION: Final = f"{types.GROUP}/source-namespace"
SOURCE_EVENT_ID_ANNOTATION: Final = f"{types.GROUP}/source-event-id"
SOURCE_EVENT_TYPE_ANNOTATION: Final = f"{types.GROUP}/source-event-type"
POLICY_NAMESPACE_ANNOTATION: Final = f"{types.GROUP}/policy-namespace"
TRACEPARENT_ANNOTATION: Final = f"{types.GROUP}/traceparent"


def notification_key(
    event: RunEvent,
    *,
    policy_namespace: str,
    policy: str,
    template: str,
    policy_kind: str = POLICY_KIND,
) -> str:
    """What is notified at most once: one run, one Tekton event name, one policy, one template.

    Tekton may send ``running`` and ``unknown`` several times for one run; they share a key,
    so each notifies once per run. The event id is left out on purpose: Tekton's retries of
    the same event carry new ids.
    """
    run_identity = event.uid or f"{event.namespace}/{event.kind}/{event.name}"
    if policy_kind != POLICY_KIND:  # a cluster policy never shares a key with a namespaced one
        policy = f"{policy_kind}/{policy}"
    material = "\x00".join((run_identity, event.event, policy_namespace, policy, template))
    return hashlib.sha256(material.encode()).hexdigest()


def run_name(event: RunEvent, key: str) -> str:
    """``<source run>-<event>-<hash>``, cut to 63 characters and still a DNS-1123 label."""
    suffix = f"-{event.event}-{key[:_HASH_CHARS]}"
    prefix = re.sub(r"[^a-z0-9-]+", "-", event.name.lower()).strip("-")
    prefix = prefix[: MAX_NAME - len(suffix)].rstrip("-") or "run"
    return f"{prefix}{suffix}"


def label_value(value: str) -> str:
    """A valid label value: at most 63 of [A-Za-z0-9._-], alphanumeric at both ends."""
    cleaned = _LABEL_VALUE_BAD.sub("-", value)[:63]
    return cleaned.strip("-._")


def build_run(
    *,
    event: RunEvent,
    template: Template,
    params: Mapping[str, str],
    policy_namespace: str,
    policy: str,
    policy_kind: str = POLICY_KIND,
) -> dict[str, Any]:
    """The TaskRun or PipelineRun (tekton.dev/v1) that sends one notification.

    ``policy_namespace`` is where it is created: a ClusterNotificationPolicy's
    templateNamespace, never the source run's namespace unless that is the policy's own.
    """
    key = notification_key(
        event,
        policy_namespace=policy_namespace,
        policy=policy,
        template=template.name,
        policy_kind=policy_kind,
    )
    labels = {
        types.MANAGED_BY_LABEL: types.MANAGED_BY_VALUE,
        POLICY_LABEL: label_value(policy),
        TEMPLATE_LABEL: label_value(template.name),
        SOURCE_KIND_LABEL: event.kind,
        SOURCE_NAME_LABEL: label_value(event.name),
        SOURCE_UID_LABEL: label_value(event.uid),
        EVENT_LABEL: event.outcome,
    }
    if policy_kind != POLICY_KIND:
        labels[POLICY_KIND_LABEL] = policy_kind
    annotations = {
        SOURCE_NAMESPACE_ANNOTATION: event.namespace,
        SOURCE_EVENT_ID_ANNOTATION: event.id,
        SOURCE_EVENT_TYPE_ANNOTATION: event.type,
        POLICY_NAMESPACE_ANNOTATION: policy_namespace,
    }
    if "traceparent" in event.extensions:
        annotations[TRACEPARENT_ANNOTATION] = event.extensions["traceparent"]
    metadata: dict[str, Any] = {
        "name": run_name(event, key),
        "namespace": policy_namespace,
        "labels": labels,
        "annotations": annotations,
    }
    if event.uid and event.namespace == policy_namespace:
        # Deleting the source run cleans up its notifications; never blocks that deletion.
        metadata["ownerReferences"] = [
            {
                "apiVersion": "tekton.dev/v1",
                "kind": event.kind,
                "name": event.name,
                "uid": event.uid,
                "controller": False,
                "blockOwnerDeletion": False,
            }
        ]
    spec: dict[str, Any] = {
        "params": [{"name": name, "value": value} for name, value in params.items()],
    }
    if template.run_kind == "TaskRun":
        spec["taskRef"] = dict(template.ref)
        _set(spec, "serviceAccountName", template.service_account_name)
        _set(spec, "podTemplate", template.pod_template)
        _set(spec, "timeout", template.timeout)
    else:
        spec["pipelineRef"] = dict(template.ref)
        run_template: dict[str, Any] = {}
        _set(run_template, "serviceAccountName", template.service_account_name)
        _set(run_template, "podTemplate", template.pod_template)
        _set(spec, "taskRunTemplate", run_template or None)
        _set(spec, "timeouts", {"pipeline": template.timeout} if template.timeout else None)
    if template.workspaces:
        spec["workspaces"] = [dict(workspace) for workspace in template.workspaces]
    return {
        "apiVersion": "tekton.dev/v1",
        "kind": template.run_kind,
        "metadata": metadata,
        "spec": spec,
    }


def _set(target: dict[str, Any], key: str, value: object) -> None:
    if value is not None:
        target[key] = value
