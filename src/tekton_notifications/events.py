"""Tekton CloudEvents -> one typed :class:`RunEvent`.

Owns the knowledge of how Tekton shapes its events (type names, the ``data`` envelope, the
v1beta1 status fields, old and new child-run layouts, cancel/timeout reasons). Works on plain
CloudEvent attributes and data, so it depends on no CloudEvents SDK and does no I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from types import MappingProxyType
from typing import Any, Final, cast

from tekton_notifications import causes, failures, vocabulary

TEKTON_TYPE_PREFIX: Final = "dev.tekton.event."
_TYPE_RE: Final = re.compile(r"^dev\.tekton\.event\.(taskrun|pipelinerun|customrun)\.([a-z]+)\.v1$")
_SOURCE_RE: Final = re.compile(
    r"^/apis/[^/]*/[^/]*/namespaces/(?P<ns>[^/]+)/[^/]*/(?P<name>[^/]+)$"
)

_KINDS: Final[Mapping[str, tuple[vocabulary.RunKind, str]]] = {
    "taskrun": ("TaskRun", "taskRun"),
    "pipelinerun": ("PipelineRun", "pipelineRun"),
    "customrun": ("CustomRun", "customRun"),
}
_EVENTS_BY_KIND: Final[Mapping[str, frozenset[str]]] = {
    "taskrun": frozenset({"queued", "started", "running", "unknown", "successful", "failed"}),
    "pipelinerun": frozenset({"queued", "started", "running", "unknown", "successful", "failed"}),
    "customrun": frozenset({"started", "running", "successful", "failed"}),
}

#: Condition reasons of a ``failed`` event that mean the run was cancelled or timed out.
CANCELLED_REASONS: Final = frozenset(
    {"TaskRunCancelled", "Cancelled", "PipelineRunCancelled", "CustomRunCancelled"}
)
TIMED_OUT_REASONS: Final = frozenset({"TaskRunTimeout", "PipelineRunTimeout", "CustomRunTimedOut"})

#: Extensions worth carrying along the chain (tracing, Knative bookkeeping is dropped).
CARRIED_EXTENSIONS: Final = ("traceparent", "tracestate")


class EventError(ValueError):
    """A Tekton event that can never be processed: answer 4xx, do not retry."""


class UnsupportedEvent(EventError):
    """An event type this project does not handle (not Tekton's, or a future Tekton type)."""


_STRING: Final[Mapping[str, Any]] = {"type": "string"}
_TIME: Final[Mapping[str, Any]] = {"type": ["string", "null"], "format": "date-time"}
_STRINGS: Final[Mapping[str, Any]] = {"type": "object", "additionalProperties": {"type": "string"}}

#: The fields of a child run in ``event.children`` (:meth:`ChildRun.as_dict`), as JSON Schema.
CHILD_FIELDS: Final[Mapping[str, Mapping[str, Any]]] = {
    "name": {**_STRING, "description": "the child run's name"},
    "kind": {
        "type": "string",
        "enum": ["TaskRun", "CustomRun", "Run"],
        "description": "Run: a custom task run of Tekton before 0.45 (status.runs)",
    },
    "pipelineTaskName": {**_STRING, "description": "its task in the Pipeline"},
    "status": {
        "type": "string",
        "enum": ["True", "False", "Unknown", ""],
        "description": 'its Succeeded condition; "" when the status only references it '
        "(Tekton 0.45 and later)",
    },
    "reason": {**_STRING, "description": "its Succeeded condition's reason"},
    "message": {**_STRING, "description": "its Succeeded condition's message"},
}

#: The ``event`` variable's fields (:meth:`RunEvent.view`), as JSON Schema: the one source of
#: ``tkn-notify schema``, of the check of ``when`` expressions (:mod:`celcheck`) and of the
#: variables' table in docs/templates.md (``python -m tekton_notifications.cli.variablesdoc``).
#: The same keys for every run kind; ``x-run-kinds`` names the kinds whose events fill a field
#: (a TaskRun's ``children`` is empty), so a policy of other kinds reading it is refused.
EVENT_FIELDS: Final[Mapping[str, Mapping[str, Any]]] = {
    "id": {**_STRING, "description": "the CloudEvent's id"},
    "type": {**_STRING, "description": "the CloudEvent's type"},
    "source": {**_STRING, "description": "the CloudEvent's source"},
    "time": {**_STRING, "description": "the CloudEvent's time"},
    "kind": {"type": "string", "enum": list(vocabulary.RUN_KINDS)},
    "event": {
        "type": "string",
        "enum": ["queued", "started", "running", "unknown", "successful", "failed"],
        "description": "Tekton's event name",
    },
    "outcome": {
        **_STRING,
        "description": "the most specific policy event: queued, started, running, unknown, "
        "succeeded, failed, cancelled, timedOut",
    },
    "name": {**_STRING, "description": "the run's name"},
    "namespace": {**_STRING, "description": "the run's namespace"},
    "uid": {**_STRING, "description": "the run's uid"},
    "labels": {**_STRINGS, "description": "the run's labels"},
    "annotations": {**_STRINGS, "description": "the run's annotations"},
    "reason": {**_STRING, "description": 'the Succeeded condition\'s reason ("" when absent)'},
    "message": {**_STRING, "description": 'the Succeeded condition\'s message ("" when absent)'},
    "startTime": {**_TIME, "description": "RFC 3339; null before the run starts"},
    "completionTime": {**_TIME, "description": "RFC 3339; null before the run ends"},
    "duration": {"type": ["number", "null"], "description": "seconds from start to completion"},
    "results": {"type": "object", "description": "the run's results by name"},
    "children": {
        "type": "array",
        "x-run-kinds": ["PipelineRun"],
        "description": "the child runs of a PipelineRun",
        "items": {
            "type": "object",
            "properties": dict(CHILD_FIELDS),
            "required": list(CHILD_FIELDS),
            "additionalProperties": False,
        },
    },
    "pipeline": {
        **_STRING,
        "description": "the series the run belongs to: its Pipeline, <pipeline>/<task> for a "
        "pipeline's TaskRun, a standalone TaskRun's Task",
    },
    "cause": {
        "type": "object",
        "description": "who or what caused the run (Pipelines-as-Code, Triggers): causes.py",
        "properties": dict(causes.CAUSE_FIELDS),
        "required": list(causes.CAUSE_FIELDS),
        "additionalProperties": False,
    },
    "failedSteps": {
        "type": "array",
        "description": "the failed step of each failed TaskRun (a PipelineRun's children are "
        "read by the template renderer; empty before that, e.g. in a policy's when)",
        "items": {
            "type": "object",
            "properties": dict(failures.FAILED_STEP_FIELDS),
            "required": list(failures.FAILED_STEP_FIELDS),
            "additionalProperties": False,
        },
    },
}


@dataclass(frozen=True)
class ChildRun:
    """A TaskRun or CustomRun of a PipelineRun, as far as the PipelineRun's status tells."""

    name: str
    kind: str
    pipeline_task_name: str
    #: "True", "False", "Unknown", or "" when the status only references the child.
    status: str = ""
    reason: str = ""
    message: str = ""

    def as_dict(self) -> dict[str, str]:
        return {
            "name": self.name,
            "kind": self.kind,
            "pipelineTaskName": self.pipeline_task_name,
            "status": self.status,
            "reason": self.reason,
            "message": self.message,
        }


@dataclass(frozen=True)
class RunEvent:
    """One Tekton run event: what happened to which run, and the run as Tekton sent it."""

    id: str
    type: str
    source: str
    time: str
    kind: vocabulary.RunKind
    #: The Tekton event name: queued, started, running, unknown, successful, failed.
    tekton_event: str
    name: str
    namespace: str
    uid: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    reason: str
    message: str
    start_time: datetime | None
    completion_time: datetime | None
    results: Mapping[str, Any]
    children: tuple[ChildRun, ...]
    #: The policy events this event satisfies, e.g. {"failed", "cancelled"}.
    policy_events: frozenset[str]
    #: The run object as sent by Tekton (v1beta1 form, without apiVersion/kind).
    run: Mapping[str, Any] = field(repr=False)
    extensions: Mapping[str, str] = field(default_factory=dict)
    #: The failed steps of a PipelineRun's child TaskRuns, once the template renderer read
    #: them (None: not read; a TaskRun's own come from its status).
    failed_steps: tuple[Mapping[str, Any], ...] | None = field(default=None, repr=False)

    @property
    def outcome(self) -> str:
        """The most specific policy event: ``cancelled`` rather than ``failed``."""
        for specific in ("cancelled", "timedOut"):
            if specific in self.policy_events:
                return specific
        return "succeeded" if self.tekton_event == "successful" else self.tekton_event

    @property
    def final_outcome(self) -> str | None:
        """``succeeded`` or ``failed`` (timeouts included) for a finished run, else None.

        Cancelled runs have none: a user stopping a run neither breaks nor fixes a pipeline.
        """
        if self.tekton_event == "successful":
            return "succeeded"
        if self.tekton_event == "failed" and "cancelled" not in self.policy_events:
            return "failed"
        return None

    @property
    def pipeline(self) -> str:
        """The series of runs this one belongs to: "the same pipeline", run after run.

        A PipelineRun's Pipeline; a pipeline's TaskRun or CustomRun is ``<pipeline>/<task>``; a
        standalone TaskRun its Task. Runs of embedded specs get Tekton's label with their own
        name, so their ``generateName`` stands in; failing that, the run's own name.
        """
        labels = self.labels
        pipeline = labels.get("tekton.dev/pipeline", "")
        if pipeline == self.name:
            pipeline = self._generated_from() or pipeline
        if self.kind == "PipelineRun":
            return pipeline or self._generated_from() or self.name
        task = labels.get("tekton.dev/pipelineTask", "")
        if pipeline and task:
            return f"{pipeline}/{task}"
        for key in ("tekton.dev/task", "tekton.dev/clusterTask"):
            if labels.get(key) and labels[key] != self.name:
                return labels[key]
        return self._generated_from() or self.name

    def _generated_from(self) -> str:
        metadata = self.run.get("metadata")
        generate_name = metadata.get("generateName") if isinstance(metadata, Mapping) else None
        return str(generate_name).rstrip("-") if isinstance(generate_name, str) else ""

    @property
    def duration(self) -> float | None:
        """Seconds from start to completion, when both are known."""
        if self.start_time is None or self.completion_time is None:
            return None
        return (self.completion_time - self.start_time).total_seconds()

    @cached_property  # asked once per candidate policy: scan the labels once
    def is_notification_run(self) -> bool:
        """True for runs this project created: they must never notify (loop guard)."""
        if self.labels.get(vocabulary.MANAGED_BY_LABEL) == vocabulary.MANAGED_BY_VALUE:
            return True
        return any(key.startswith(vocabulary.LABEL_PREFIX) for key in self.labels)

    @property
    def failed_children(self) -> tuple[ChildRun, ...]:
        return tuple(child for child in self.children if child.status == "False")

    def view(self) -> dict[str, Any]:
        """The ``event`` variable that CEL expressions and templates see: the keys and types
        of :data:`EVENT_FIELDS` (a test holds them equal for every sample event)."""
        return {
            "id": self.id,
            "type": self.type,
            "source": self.source,
            "time": self.time,
            "kind": self.kind,
            "event": self.tekton_event,
            "outcome": self.outcome,
            "name": self.name,
            "namespace": self.namespace,
            "uid": self.uid,
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "reason": self.reason,
            "message": self.message,
            "startTime": _format_time(self.start_time),
            "completionTime": _format_time(self.completion_time),
            "duration": self.duration,
            "results": dict(self.results),
            "children": [child.as_dict() for child in self.children],
            "pipeline": self.pipeline,
            "cause": causes.cause_of(self.labels, self.annotations),
            "failedSteps": [dict(step) for step in self.steps_failed()],
        }

    def steps_failed(self) -> tuple[Mapping[str, Any], ...]:
        """``event.failedSteps``: read from the run's own status where it has them."""
        if self.failed_steps is not None:
            return self.failed_steps
        if self.tekton_event != "failed":
            return ()
        status = self.run.get("status")
        if not isinstance(status, Mapping):
            return ()
        if self.kind == "TaskRun":
            step = failures.failed_step(self.run)
            return (step,) if step is not None else ()
        return tuple(failures.embedded_failed_steps(status))

    def to_wire(self) -> dict[str, Any]:
        """The original CloudEvent, so the next stage can parse exactly what Tekton sent."""
        attributes = {
            "id": self.id,
            "type": self.type,
            "source": self.source,
            "time": self.time,
            **self.extensions,
        }
        return {"attributes": attributes, "data": {_KINDS[self.kind.lower()][1]: self.run}}


def from_wire(wire: Mapping[str, Any]) -> RunEvent:
    """Inverse of :meth:`RunEvent.to_wire`."""
    attributes = wire.get("attributes")
    if not isinstance(attributes, Mapping):
        raise EventError("run event: 'attributes' must be an object")
    return parse_event(attributes, wire.get("data"))


def is_tekton_type(event_type: str) -> bool:
    return event_type.startswith(TEKTON_TYPE_PREFIX)


def parse_event(attributes: Mapping[str, Any], data: object) -> RunEvent:
    """Parse a Tekton CloudEvent given its attributes and (decoded or raw JSON) data.

    Raises :class:`UnsupportedEvent` for types this project does not handle and
    :class:`EventError`, naming what is wrong, for a Tekton event that is malformed.
    """
    event_type = str(attributes.get("type") or "")
    matched = _TYPE_RE.match(event_type)
    if matched is None or matched[2] not in _EVENTS_BY_KIND[matched[1]]:
        raise UnsupportedEvent(f"unsupported event type {event_type!r}")
    kind, envelope_key = _KINDS[matched[1]]
    event_name = matched[2]

    payload = _decode_data(data)
    run = payload.get(envelope_key)
    if not isinstance(run, Mapping):
        found = ", ".join(sorted(map(str, payload))) or "nothing"
        raise EventError(f"{event_type}: data must hold {envelope_key!r}; found {found}")
    metadata = _mapping(run, "metadata", envelope_key)
    status = _mapping(run, "status", envelope_key)
    name, namespace = _identity(attributes, metadata, envelope_key)
    condition = _succeeded_condition(status)
    reason = str(condition.get("reason") or "")

    policy_events = {_POLICY_EVENT[event_name]}
    if event_name == "failed":
        if reason in CANCELLED_REASONS:
            policy_events.add("cancelled")
        if reason in TIMED_OUT_REASONS:
            policy_events.add("timedOut")

    return RunEvent(
        id=str(attributes.get("id") or ""),
        type=event_type,
        source=str(attributes.get("source") or ""),
        time=str(attributes.get("time") or ""),
        kind=kind,
        tekton_event=event_name,
        name=name,
        namespace=namespace,
        uid=str(metadata.get("uid") or ""),
        labels=_string_map(metadata.get("labels"), f"{envelope_key}.metadata.labels"),
        annotations=_string_map(
            metadata.get("annotations"), f"{envelope_key}.metadata.annotations"
        ),
        reason=reason,
        message=str(condition.get("message") or ""),
        start_time=_parse_time(status.get("startTime"), f"{envelope_key}.status.startTime"),
        completion_time=_parse_time(
            status.get("completionTime"), f"{envelope_key}.status.completionTime"
        ),
        results=MappingProxyType(_results(status)),
        children=_children(status),
        policy_events=frozenset(policy_events),
        run=run,
        extensions={key: str(attributes[key]) for key in CARRIED_EXTENSIONS if attributes.get(key)},
    )


_POLICY_EVENT: Final[Mapping[str, str]] = {
    "queued": "queued",
    "started": "started",
    "running": "running",
    "unknown": "unknown",
    "successful": "succeeded",
    "failed": "failed",
}


def _decode_data(data: object) -> Mapping[str, Any]:
    if isinstance(data, bytes | bytearray | str):
        if not data:
            raise EventError("event has no data; Tekton events carry the run as JSON")
        try:
            data = json.loads(data)
        except ValueError as error:  # also integers over Python's 4300-digit limit
            raise EventError(f"event data is not valid JSON: {error}") from None
        except RecursionError:
            raise EventError("event data is not valid JSON: nested too deeply") from None
    if data is None:
        raise EventError("event has no data; Tekton events carry the run as JSON")
    if not isinstance(data, Mapping):
        raise EventError(f"event data must be a JSON object, not {type(data).__name__}")
    return cast(Mapping[str, Any], data)


def _mapping(parent: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = parent.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise EventError(f"{where}.{key} must be an object, not {type(value).__name__}")
    return value


def _identity(
    attributes: Mapping[str, Any], metadata: Mapping[str, Any], where: str
) -> tuple[str, str]:
    """Name and namespace from the object, falling back to the event's ``source``."""
    name = metadata.get("name")
    namespace = metadata.get("namespace")
    from_source = _SOURCE_RE.match(str(attributes.get("source") or ""))
    if not name and from_source:
        name = from_source["name"]
    if not namespace and from_source:
        namespace = from_source["ns"]
    if not name or not isinstance(name, str):
        raise EventError(f"{where}.metadata.name is missing and the source does not name the run")
    if not namespace or not isinstance(namespace, str):
        raise EventError(f"{where}.metadata.namespace is missing and the source has no namespace")
    return name, namespace


def _succeeded_condition(status: Mapping[str, Any]) -> Mapping[str, Any]:
    conditions = status.get("conditions")
    if not isinstance(conditions, list):
        return {}
    for condition in conditions:
        if isinstance(condition, Mapping) and condition.get("type") == "Succeeded":
            return condition
    return {}


def _string_map(value: object, where: str) -> Mapping[str, str]:
    if value is None:
        return MappingProxyType({})
    if not isinstance(value, Mapping):
        raise EventError(f"{where} must be an object, not {type(value).__name__}")
    return MappingProxyType({str(key): str(item) for key, item in value.items()})


def _parse_time(value: object, where: str) -> datetime | None:
    if value in (None, ""):
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise EventError(f"{where} is not an RFC 3339 time: {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_time(text: str) -> datetime | None:
    """An RFC 3339 time, or None when ``text`` is not one (for times read back from status)."""
    try:
        return _parse_time(text, "time")
    except EventError:
        return None


def format_time(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def _format_time(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def _results(status: Mapping[str, Any]) -> dict[str, Any]:
    """Results by name: v1beta1 ``taskResults``/``pipelineResults``, v1 ``results``."""
    found: dict[str, Any] = {}
    for key in ("results", "taskResults", "pipelineResults"):
        entries = status.get(key)
        if isinstance(entries, list):
            for entry in entries:
                if isinstance(entry, Mapping) and "name" in entry:
                    found[str(entry["name"])] = entry.get("value")
    return found


def _children(status: Mapping[str, Any]) -> tuple[ChildRun, ...]:
    """Child runs from ``childReferences`` (current) or ``taskRuns``/``runs`` (before v0.45)."""
    children: list[ChildRun] = []
    references = status.get("childReferences")
    if isinstance(references, list):
        for reference in references:
            if isinstance(reference, Mapping) and reference.get("name"):
                children.append(
                    ChildRun(
                        name=str(reference["name"]),
                        kind=str(reference.get("kind") or "TaskRun"),
                        pipeline_task_name=str(reference.get("pipelineTaskName") or ""),
                    )
                )
    for key, kind in (("taskRuns", "TaskRun"), ("runs", "Run")):
        embedded = status.get(key)
        if not isinstance(embedded, Mapping):
            continue
        for child_name, child in embedded.items():
            if not isinstance(child, Mapping):
                continue
            child_status = child.get("status")
            condition = _succeeded_condition(
                child_status if isinstance(child_status, Mapping) else {}
            )
            children.append(
                ChildRun(
                    name=str(child_name),
                    kind=kind,
                    pipeline_task_name=str(child.get("pipelineTaskName") or ""),
                    status=str(condition.get("status") or ""),
                    reason=str(condition.get("reason") or ""),
                    message=str(condition.get("message") or "").strip(),
                )
            )
    return tuple(children)
