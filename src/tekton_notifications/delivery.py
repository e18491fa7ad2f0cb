"""Delivery of a notification: what a finished notification run says, and what comes next.

The chain ends in a TaskRun (or PipelineRun) of a catalog task; whether Slack got the
message is known only when that run finishes. This module reads a finished notification
run (Tekton's shape: ``status.conditions``, ``status.steps``) into an :class:`Outcome`
(delivered, failed with the failing step and Tekton's message, timedOut), recognises the
notification it sends from the labels and annotations :func:`taskruns.build_run` set
(:class:`Tracked`), and decides the next step: a retry (``spec.retries``, after
``spec.retryDelay`` doubled per retry), the policy's fallback template (once, never a
fallback of a fallback), or nothing.

Pure: the delivery-tracker stage (stages/delivery_tracker.py) does the reading and replying.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Literal

from tekton_notifications import events, taskruns, vocabulary
from tekton_notifications.events import EventError, RunEvent
from tekton_notifications.models import POLICY_KIND, Policy, Template

DELIVERED: Final = "delivered"
FAILED: Final = "failed"
TIMED_OUT: Final = "timedOut"
OutcomeName = Literal["delivered", "failed", "timedOut"]

#: The most characters of Tekton's message kept in an outcome.
MAX_MESSAGE: Final = 512
#: The Tekton events of a finished run: what the tracker takes.
FINISH_TYPES: Final = frozenset(
    f"dev.tekton.event.{kind}.{event}.v1"
    for kind in ("taskrun", "pipelinerun")
    for event in ("successful", "failed")
)


@dataclass(frozen=True)
class Outcome:
    """How one notification run finished."""

    outcome: OutcomeName
    #: Tekton's condition reason (``Succeeded``, ``Failed``, ``TaskRunTimeout``, ...).
    reason: str
    #: The step that failed (its name in ``status.steps``), "" when none is known.
    step: str
    #: Tekton's message: the condition's, and the failing step's own when it has one.
    message: str
    finished: datetime | None

    @property
    def delivered(self) -> bool:
        return self.outcome == DELIVERED

    def as_dict(self) -> dict[str, str]:
        return {
            "outcome": self.outcome,
            "reason": self.reason,
            "step": self.step,
            "message": self.message,
            "finished": events.format_time(self.finished) if self.finished else "",
        }


def ours(data: object) -> bool | None:
    """Whether a Tekton event's run carries the labels of the runs this project creates,
    read without parsing the run (most finished runs of a cluster are not ours); None when
    the data is not shaped like a Tekton event (the full parse then says why)."""
    if isinstance(data, bytes | bytearray | str):
        try:
            data = json.loads(data)
        except (ValueError, RecursionError):
            return None
    if not isinstance(data, Mapping) or len(data) != 1:
        return None
    (run,) = data.values()
    metadata = run.get("metadata") if isinstance(run, Mapping) else None
    labels = metadata.get("labels", {}) if isinstance(metadata, Mapping) else None
    if not isinstance(labels, Mapping):
        return None
    return labels.get(vocabulary.MANAGED_BY_LABEL) == vocabulary.MANAGED_BY_VALUE or any(
        str(key).startswith(vocabulary.LABEL_PREFIX) for key in labels
    )


def outcome_of(event: RunEvent) -> Outcome:
    """The outcome a ``successful``/``failed`` Tekton event reports for its run."""
    status = event.run.get("status")
    status = status if isinstance(status, Mapping) else {}
    if event.tekton_event == "successful":
        return Outcome(DELIVERED, event.reason or "Succeeded", "", "", event.completion_time)
    step, step_message = _failing_step(status.get("steps"))
    message = event.message
    if step_message and step_message not in message:
        message = f"{message}: {step_message}" if message else step_message
    outcome: OutcomeName = TIMED_OUT if event.reason in events.TIMED_OUT_REASONS else FAILED
    return Outcome(outcome, event.reason, step, text(message), event.completion_time)


def _failing_step(steps: object) -> tuple[str, str]:
    """The first step that terminated with a non-zero exit code, and its own message."""
    for step in steps if isinstance(steps, list) else []:
        if not isinstance(step, Mapping):
            continue
        terminated = step.get("terminated")
        if isinstance(terminated, Mapping) and terminated.get("exitCode") not in (0, None):
            return str(step.get("name") or ""), str(terminated.get("message") or "")
    return "", ""


def text(value: str, limit: int = MAX_MESSAGE) -> str:
    """One printable line of at most ``limit`` characters (what Events and status hold)."""
    printable = "".join(
        " " if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") else c
        for c in value[: limit * 4]
    )
    line = " ".join(printable.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


@dataclass(frozen=True)
class Tracked:
    """The notification a run of ours sends, read back from its labels and annotations."""

    name: str
    namespace: str
    uid: str
    kind: str
    policy: str
    policy_namespace: str
    policy_kind: str
    template: str
    source_kind: str
    source_namespace: str
    source_name: str
    source_uid: str
    source_event_id: str
    source_event_type: str
    attempt: int
    fallback_of: str | None
    traceparent: str
    #: ``taskruns.ORIGIN_ANNOTATION``: the subscription or scheduled item that made it.
    origin: Mapping[str, Any] | None = None


def tracked(run: Mapping[str, Any]) -> Tracked | str:
    """The notification ``run`` sends, or why it is not a run this project created."""
    metadata = run.get("metadata")
    if not isinstance(metadata, Mapping):
        return "no metadata"
    labels = _strings(metadata.get("labels"))
    annotations = _strings(metadata.get("annotations"))
    if labels.get(vocabulary.MANAGED_BY_LABEL) != vocabulary.MANAGED_BY_VALUE:
        return f"not labelled {vocabulary.MANAGED_BY_LABEL}={vocabulary.MANAGED_BY_VALUE}"
    needed = {
        "policy": labels.get(taskruns.POLICY_LABEL),
        "template": labels.get(taskruns.TEMPLATE_LABEL),
        "source kind": labels.get(taskruns.SOURCE_KIND_LABEL),
        "source uid": labels.get(taskruns.SOURCE_UID_LABEL),
        "policy namespace": annotations.get(taskruns.POLICY_NAMESPACE_ANNOTATION),
        "source namespace": annotations.get(taskruns.SOURCE_NAMESPACE_ANNOTATION),
        "source event type": annotations.get(taskruns.SOURCE_EVENT_TYPE_ANNOTATION),
    }
    missing = sorted(name for name, value in needed.items() if not value)
    if missing:
        return f"labels or annotations missing: {', '.join(missing)}"
    try:
        attempt = int(labels.get(taskruns.ATTEMPT_LABEL, "1"))
    except ValueError:
        return f"label {taskruns.ATTEMPT_LABEL} is not a number"
    origin = _origin(annotations.get(taskruns.ORIGIN_ANNOTATION))
    if isinstance(origin, str):
        return origin
    source_kind = labels[taskruns.SOURCE_KIND_LABEL]
    # The owner reference has the source run's exact name (a label value may be cut).
    source_name = labels.get(taskruns.SOURCE_NAME_LABEL, "")
    for owner in metadata.get("ownerReferences") or []:
        if isinstance(owner, Mapping) and owner.get("uid") == labels[taskruns.SOURCE_UID_LABEL]:
            source_name = str(owner.get("name") or source_name)
    return Tracked(
        name=str(metadata.get("name") or ""),
        namespace=str(metadata.get("namespace") or ""),
        uid=str(metadata.get("uid") or ""),
        kind=str(run.get("kind") or "TaskRun"),
        policy=labels[taskruns.POLICY_LABEL],
        policy_namespace=annotations[taskruns.POLICY_NAMESPACE_ANNOTATION],
        policy_kind=labels.get(taskruns.POLICY_KIND_LABEL, POLICY_KIND),
        template=labels[taskruns.TEMPLATE_LABEL],
        source_kind=source_kind,
        source_namespace=annotations[taskruns.SOURCE_NAMESPACE_ANNOTATION],
        source_name=source_name,
        source_uid=labels[taskruns.SOURCE_UID_LABEL],
        source_event_id=annotations.get(taskruns.SOURCE_EVENT_ID_ANNOTATION, ""),
        source_event_type=annotations[taskruns.SOURCE_EVENT_TYPE_ANNOTATION],
        attempt=attempt,
        fallback_of=labels.get(taskruns.FALLBACK_OF_LABEL),
        traceparent=annotations.get(taskruns.TRACEPARENT_ANNOTATION, ""),
        origin=origin,
    )


def _origin(text: str | None) -> Mapping[str, Any] | str | None:
    """The origin annotation's object (None when absent), or why it is not one."""
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return f"annotation {taskruns.ORIGIN_ANNOTATION} is not JSON"
    if not isinstance(value, dict) or not set(value) <= {"subscription", "scheduled"}:
        return f"annotation {taskruns.ORIGIN_ANNOTATION} is not an origin"
    if not all(isinstance(item, dict) for item in value.values()):
        return f"annotation {taskruns.ORIGIN_ANNOTATION} is not an origin"
    return value


def _strings(value: object) -> dict[str, str]:
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, Mapping) else {}


def source_event(notification_run: Tracked, source_run: Mapping[str, Any]) -> RunEvent:
    """The Tekton event the notification was made of, rebuilt from its source run as the
    API has it now (the id and type the run's annotations kept); :class:`EventError` when
    the source run is not the one the notification names."""
    metadata = source_run.get("metadata")
    uid = metadata.get("uid") if isinstance(metadata, Mapping) else None
    if uid != notification_run.source_uid:
        raise EventError(
            f"source run {notification_run.source_namespace}/{notification_run.source_name} has "
            f"uid {uid!r}, not {notification_run.source_uid!r}: it was replaced"
        )
    envelope = notification_run.source_kind[0].lower() + notification_run.source_kind[1:]
    attributes = {
        "id": notification_run.source_event_id,
        "type": notification_run.source_event_type,
        "source": (
            f"/apis///namespaces/{notification_run.source_namespace}//"
            f"{notification_run.source_name}"
        ),
    }
    if notification_run.traceparent:
        attributes["traceparent"] = notification_run.traceparent
    return events.parse_event(attributes, {envelope: source_run})


Step = Literal["retry", "fallback", "none"]


@dataclass(frozen=True)
class Next:
    """What follows a finished run: nothing, a retry (due at ``due``) or the fallback."""

    step: Step
    #: The attempt a retry will be; for a fallback, 1.
    attempt: int = 1
    #: When a retry may be created (None: at once).
    due: datetime | None = None
    #: The fallback template.
    template: str = ""


def retry_delay(template: Template, attempt: int) -> timedelta:
    """How long after ``attempt`` failed the next one starts: the delay, doubled per retry."""
    return timedelta(seconds=template.retry_delay * 2 ** (attempt - 1))


def next_step(
    outcome: Outcome, run: Tracked, template: Template | None, policy: Policy | None
) -> Next:
    """Retry while the template has retries left, then the fallback (never a fallback's)."""
    if outcome.delivered:
        return Next("none")
    if template is not None and run.attempt <= template.retries:
        due = None
        if template.retry_delay > 0 and outcome.finished is not None:
            due = outcome.finished + retry_delay(template, run.attempt)
        return Next("retry", attempt=run.attempt + 1, due=due)
    if run.fallback_of is None and policy is not None:
        for ref in policy.template_refs:
            if ref.name == run.template and ref.fallback:
                return Next("fallback", template=ref.fallback)
    return Next("none")


def attempts_of(template: Template | None) -> int:
    """How many runs a notification of ``template`` gets at most."""
    return 1 + (template.retries if template is not None else 0)
