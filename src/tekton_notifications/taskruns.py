"""The notification run to create: deterministic name, labels, and a Tekton v1 body.

Pure: builds the object, never sends it. The name is a function of what must be notified
once (source run, event, policy, template), so every retry and every repeated Tekton event
maps to the same name, and the API server's 409 is our de-duplication.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Final

from tekton_notifications import notifications, vocabulary
from tekton_notifications.events import RunEvent
from tekton_notifications.models import POLICY_KIND, Template

MAX_NAME: Final = 63
_HASH_CHARS: Final = 10
_LABEL_VALUE_BAD: Final = re.compile(r"[^A-Za-z0-9._-]+")

POLICY_LABEL: Final = f"{vocabulary.GROUP}/policy"
TEMPLATE_LABEL: Final = f"{vocabulary.GROUP}/template"
SOURCE_KIND_LABEL: Final = f"{vocabulary.GROUP}/source-kind"
SOURCE_NAME_LABEL: Final = f"{vocabulary.GROUP}/source-name"
SOURCE_UID_LABEL: Final = f"{vocabulary.GROUP}/source-uid"
EVENT_LABEL: Final = f"{vocabulary.GROUP}/event"
POLICY_KIND_LABEL: Final = f"{vocabulary.GROUP}/policy-kind"
SOURCE_NAMESPACE_ANNOTATION: Final = f"{vocabulary.GROUP}/source-namespace"
SOURCE_EVENT_ID_ANNOTATION: Final = f"{vocabulary.GROUP}/source-event-id"
SOURCE_EVENT_TYPE_ANNOTATION: Final = f"{vocabulary.GROUP}/source-event-type"
POLICY_NAMESPACE_ANNOTATION: Final = f"{vocabulary.GROUP}/policy-namespace"
TRACEPARENT_ANNOTATION: Final = f"{vocabulary.GROUP}/traceparent"
#: What made a notification besides its policy and template, as canonical JSON: the
#: subscription annotation (``subscription``) or the scheduler's due item (``scheduled``).
#: Both are part of its key, so the delivery tracker reads them back to name, retry and
#: fall back the very notification the run sent.
ORIGIN_ANNOTATION: Final = f"{vocabulary.GROUP}/origin"
#: On retries (attempt 2 on): which run of the notification this is.
ATTEMPT_LABEL: Final = f"{vocabulary.GROUP}/attempt"
#: On fallbacks: the template whose delivery finally failed.
FALLBACK_OF_LABEL: Final = f"{vocabulary.GROUP}/fallback-of"
#: On runs that are run again after a delay if they fail: what the retry sweep lists.
RETRY_PENDING_LABEL: Final = f"{vocabulary.GROUP}/retry-after-delay"

#: Kept here for callers that build runs; it lives with the payload that carries it.
notification_key = notifications.notification_key


def run_name(event: RunEvent, key: str, attempt: int = 1) -> str:
    """``<source run>-<event>-<hash>``, cut to 63 characters and still a DNS-1123 label.

    A retry's name ends in ``-r<attempt>``: each attempt is created once, whoever asks.
    """
    suffix = f"-{event.tekton_event}-{key[:_HASH_CHARS]}"
    if attempt != 1:
        suffix += f"-r{attempt}"
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
    key: str | None = None,
    attempt: int = 1,
    fallback_of: str | None = None,
    origin: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The TaskRun or PipelineRun (tekton.dev/v1) that sends one notification.

    ``policy_namespace`` is where it is created: a ClusterNotificationPolicy's
    templateNamespace, never the source run's namespace unless that is the policy's own.
    ``key`` is the notification's (checked by the stage that passes it); without it, it is
    computed here.
    """
    if key is None:
        key = notification_key(
            event,
            policy_namespace=policy_namespace,
            policy=policy,
            template=template.name,
            policy_kind=policy_kind,
            fallback_of=fallback_of,
            scheduled=str((origin or {}).get("scheduled", {}).get("id") or ""),
            subscription=(origin or {}).get("subscription"),
        )
    labels = {
        vocabulary.MANAGED_BY_LABEL: vocabulary.MANAGED_BY_VALUE,
        POLICY_LABEL: label_value(policy),
        TEMPLATE_LABEL: label_value(template.name),
        SOURCE_KIND_LABEL: event.kind,
        SOURCE_NAME_LABEL: label_value(event.name),
        SOURCE_UID_LABEL: label_value(event.uid),
        EVENT_LABEL: event.outcome,
    }
    if policy_kind != POLICY_KIND:
        labels[POLICY_KIND_LABEL] = policy_kind
    if attempt != 1:
        labels[ATTEMPT_LABEL] = str(attempt)
    if fallback_of is not None:
        labels[FALLBACK_OF_LABEL] = label_value(fallback_of)
    if attempt <= template.retries and template.retry_delay > 0:
        labels[RETRY_PENDING_LABEL] = "true"
    annotations = {
        SOURCE_NAMESPACE_ANNOTATION: event.namespace,
        SOURCE_EVENT_ID_ANNOTATION: event.id,
        SOURCE_EVENT_TYPE_ANNOTATION: event.type,
        POLICY_NAMESPACE_ANNOTATION: policy_namespace,
    }
    if "traceparent" in event.extensions:
        annotations[TRACEPARENT_ANNOTATION] = event.extensions["traceparent"]
    if origin:
        annotations[ORIGIN_ANNOTATION] = _canonical(dict(origin))
    metadata: dict[str, Any] = {
        "name": run_name(event, key, attempt),
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


# What the launcher admits ------------------------------------------------------------------
#: Every field :func:`build_run` can set; a rendered run with any other is a forgery.
_TOP_FIELDS: Final = frozenset({"apiVersion", "kind", "metadata", "spec"})
_METADATA_FIELDS: Final = frozenset(
    {"name", "namespace", "labels", "annotations", "ownerReferences"}
)
_SPEC_FIELDS: Final = {
    "TaskRun": frozenset(
        {"params", "taskRef", "serviceAccountName", "podTemplate", "timeout", "workspaces"}
    ),
    "PipelineRun": frozenset(
        {"params", "pipelineRef", "taskRunTemplate", "timeouts", "workspaces"}
    ),
}
_SHOWN: Final = 80
_FIELD_NAME: Final = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,62}$")


def not_allowed(resource: Mapping[str, Any]) -> str | None:
    """Why ``resource`` has a field no NotificationTemplate can produce, or None.

    The allowlist the launcher applies whatever the template: only :func:`build_run`'s
    fields, labels and annotations under our prefixes, params as names to strings.
    """
    kind = str(resource.get("kind"))
    problem = _unknown(resource, _TOP_FIELDS, "")
    metadata, spec = resource.get("metadata"), resource.get("spec")
    if problem or not isinstance(metadata, Mapping) or not isinstance(spec, Mapping):
        return problem or "metadata and spec must be objects"
    problem = _unknown(metadata, _METADATA_FIELDS, "metadata.") or _unknown(
        spec, _SPEC_FIELDS.get(kind, frozenset()), "spec."
    )
    if problem:
        return problem
    for field_name in ("labels", "annotations"):
        values = metadata.get(field_name) or {}
        if not isinstance(values, Mapping):
            return f"metadata.{field_name} must be an object"
        for name, value in values.items():
            if name != vocabulary.MANAGED_BY_LABEL and not str(name).startswith(
                vocabulary.LABEL_PREFIX
            ):
                return (
                    f"metadata.{field_name}[{shown(name)}] is not admitted: only "
                    f"{vocabulary.LABEL_PREFIX}* and {vocabulary.MANAGED_BY_LABEL} are ours"
                )
            if not isinstance(value, str):
                return f"metadata.{field_name}[{shown(name)}] must be a string"
    return _params_problem(spec.get("params"), None)


def params_of(resource: Mapping[str, Any]) -> dict[str, str]:
    """The run's params as names to values (after :func:`not_allowed` found them well formed)."""
    params = (resource.get("spec") or {}).get("params") or []
    return {str(p["name"]): str(p["value"]) for p in params}


def not_from_template(
    resource: Mapping[str, Any],
    *,
    event: RunEvent,
    template: Template,
    param_names: frozenset[str],
    policy_namespace: str,
    policy: str,
    policy_kind: str = POLICY_KIND,
    key: str | None = None,
    attempt: int = 1,
    fallback_of: str | None = None,
    origin: Mapping[str, Any] | None = None,
) -> str | None:
    """Why ``resource`` is not the run ``template`` builds for this notification, or None.

    Call after :func:`not_allowed`. Only the param values are the renderer's to choose (the
    names must be the template's or its policy's overrides); everything else is compared with
    :func:`build_run` of the template as the launcher reads it: service account, pod
    template, workspaces, the ref (a resolver only if the template names one), timeout,
    name, labels, annotations and owner.
    """
    problem = _params_problem((resource.get("spec") or {}).get("params"), param_names)
    if problem:
        return problem
    expected = build_run(
        event=event,
        template=template,
        params=params_of(resource),
        policy_namespace=policy_namespace,
        policy=policy,
        policy_kind=policy_kind,
        key=key,
        attempt=attempt,
        fallback_of=fallback_of,
        origin=origin,
    )
    if _canonical(resource) == _canonical(expected):  # the usual case, compared in C
        return None
    difference = _difference(resource, expected, "")
    if difference is None:
        return None
    return f"{difference} (NotificationTemplate {template.namespace}/{template.name})"


def _canonical(value: object) -> str:
    """JSON text that is equal only for equal JSON values (``True`` is not ``1`` here)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _unknown(obj: Mapping[str, Any], allowed: frozenset[str], path: str) -> str | None:
    extra = sorted(str(name) for name in obj if name not in allowed)
    if not extra:
        return None
    name = extra[0] if _FIELD_NAME.match(extra[0]) else shown(extra[0])
    return f"{path}{name} is not admitted: no NotificationTemplate produces it"


def _params_problem(params: object, names: frozenset[str] | None) -> str | None:
    if params is None:
        return None
    if not isinstance(params, list):
        return "spec.params must be a list"
    seen: set[str] = set()
    for index, param in enumerate(params):
        if (
            not isinstance(param, Mapping)
            or set(param) != {"name", "value"}
            or not isinstance(param["name"], str)
            or not isinstance(param["value"], str)
        ):
            return f"spec.params[{index}] must be exactly a string name and a string value"
        name = param["name"]
        if name in seen:
            return f"spec.params[{index}]: param {shown(name)} is given twice"
        seen.add(name)
        if names is not None and name not in names:
            return (
                f"spec.params[{index}]: param {shown(name)} is neither the template's nor an "
                "override of its policy"
            )
    return None


def _difference(actual: object, expected: object, path: str) -> str | None:
    """The first place ``actual`` differs from ``expected``, as a message, or None."""
    if isinstance(actual, Mapping) and isinstance(expected, Mapping):
        for name in sorted(set(actual) | set(expected), key=str):
            where = f"{path}.{name}" if path else str(name)
            if name not in expected:
                return f"{where} is not admitted: the template does not set it"
            if name not in actual:
                return f"{where} is missing: the template sets {shown(expected[name])}"
            found = _difference(actual[name], expected[name], where)
            if found:
                return found
        return None
    if isinstance(actual, list) and isinstance(expected, list) and len(actual) == len(expected):
        for index, (one, other) in enumerate(zip(actual, expected, strict=True)):
            found = _difference(one, other, f"{path}[{index}]")
            if found:
                return found
        return None
    if actual == expected and type(actual) is type(expected):
        return None
    return f"{path} is {shown(actual)}, not {shown(expected)} as the template sets"


def shown(value: object) -> str:
    """``repr(value)``, cut to a length fit for a message."""
    text = repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."
