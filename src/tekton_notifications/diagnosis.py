"""Troubleshooting: why a run event did or did not notify, and what notified so far.

Owns the answers ``tkn-notify`` prints, as data: the Tekton event a live run object would
produce (:func:`event_from_run`), a verdict and the rendered params of every template ref for
every policy in scope (:func:`explain_event`), and a summary of a notification run created by
the task launcher (:func:`summarize_run`).

Pure like the rest of the core: objects in, data out. Reading files or the cluster, and
formatting, are the CLI's job. Matching and rendering are not re-implemented here: verdicts
come from :func:`matching.evaluate`, params from :meth:`rendering.CompiledTemplate.render`,
runs from :func:`taskruns.build_run`, so the answer is the one the functions would give.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal

from tekton_notifications import (
    events,
    matching,
    models,
    rendering,
    schedule,
    storm,
    subscribing,
    subscriptions,
    taskruns,
    vocabulary,
)
from tekton_notifications.events import EventError, RunEvent

#: The CloudEvents ``data`` key Tekton puts each kind of run under.
_ENVELOPES: Final[Mapping[str, str]] = {
    "TaskRun": "taskRun",
    "PipelineRun": "pipelineRun",
    "CustomRun": "customRun",
}
_STRUCTURED_DATA_KEYS: Final = ("data", "data_base64")


# --------------------------------------------------------------------------------------------
# Run objects -> the event Tekton would send


def succeeded_condition(run: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The run's ``Succeeded`` condition, or None when it has none (yet)."""
    status = run.get("status")
    conditions = status.get("conditions") if isinstance(status, Mapping) else None
    for condition in conditions if isinstance(conditions, list) else []:
        if isinstance(condition, Mapping) and condition.get("type") == "Succeeded":
            return condition
    return None


def tekton_event_name(kind: str, run: Mapping[str, Any]) -> str:
    """The Tekton event name for a run's current ``Succeeded`` condition, as Tekton derives it.

    ``True`` -> ``successful``, ``False`` -> ``failed``; ``Unknown`` with reason ``Started`` ->
    ``started``, ``Running`` -> ``running``, any other reason (``Pending``...) -> ``unknown``.
    Without a condition a TaskRun or PipelineRun is ``queued`` (Tekton >= 1.12) and a
    CustomRun ``started`` (CustomRuns have no queued event).
    """
    condition = succeeded_condition(run)
    if condition is None:
        return "started" if kind == "CustomRun" else "queued"
    status = condition.get("status")
    if status == "True":
        return "successful"
    if status == "False":
        return "failed"
    return {"Started": "started", "Running": "running"}.get(str(condition.get("reason")), "unknown")


def cloudevent_from_run(obj: Mapping[str, Any], *, event_id: str = "") -> dict[str, Any]:
    """The structured CloudEvent Tekton would send for a TaskRun/PipelineRun/CustomRun object.

    ``source`` is ``/apis///namespaces/<ns>//<name>`` as Tekton sends it; ``data`` holds the
    object without ``apiVersion`` and ``kind``. Raises :class:`EventError` for other objects.
    """
    kind = str(obj.get("kind") or "")
    if kind not in _ENVELOPES:
        raise EventError(f"not a Tekton run: kind {kind or '<none>'!r}")
    metadata = obj.get("metadata")
    if not isinstance(metadata, Mapping) or not metadata.get("name"):
        raise EventError(f"{kind} has no metadata.name")
    name, namespace = str(metadata["name"]), str(metadata.get("namespace") or "default")
    run = {key: value for key, value in obj.items() if key not in ("apiVersion", "kind")}
    event_name = tekton_event_name(kind, run)
    condition = succeeded_condition(run) or {}
    return {
        "specversion": "1.0",
        "id": event_id or f"tkn-notify-{metadata.get('uid') or name}-{event_name}",
        "source": f"/apis///namespaces/{namespace}//{name}",
        "type": f"{events.TEKTON_TYPE_PREFIX}{kind.lower()}.{event_name}.v1",
        "subject": name,
        "datacontenttype": "application/json",
        "time": str(condition.get("lastTransitionTime") or metadata.get("creationTimestamp") or ""),
        "data": {_ENVELOPES[kind]: run},
    }


def event_from_run(obj: Mapping[str, Any]) -> RunEvent:
    """The :class:`RunEvent` a run object's current state produces."""
    cloudevent = cloudevent_from_run(obj)
    return events.parse_event(cloudevent, cloudevent["data"])


def is_run_object(doc: Mapping[str, Any]) -> bool:
    return str(doc.get("apiVersion") or "").startswith("tekton.dev/") and doc.get("kind") in (
        _ENVELOPES
    )


def event_from_document(doc: object) -> RunEvent:
    """A run event from a structured CloudEvent, a ``to_wire`` dict, or a run object.

    Raises :class:`EventError` (or :class:`events.UnsupportedEvent`) saying what is wrong.
    """
    if not isinstance(doc, Mapping):
        raise EventError("expected a JSON object: a CloudEvent in structured form or a run")
    if is_run_object(doc):
        return event_from_run(doc)
    if isinstance(doc.get("attributes"), Mapping):
        return events.from_wire(doc)
    if "type" not in doc:
        raise EventError("not a CloudEvent (no 'type') nor a TaskRun/PipelineRun/CustomRun object")
    attributes = {k: v for k, v in doc.items() if k not in _STRUCTURED_DATA_KEYS}
    return events.parse_event(attributes, doc.get("data"))


# --------------------------------------------------------------------------------------------
# Explaining one event against policies and templates

TemplateStatus = Literal["rendered", "failed", "missing", "invalid", "unchecked"]


@dataclass(frozen=True)
class TemplateOutcome:
    """What one template ref of a matching policy would do with the event."""

    name: str
    namespace: str
    #: rendered, failed (render error), missing (no such template), invalid (does not parse
    #: or compile), unchecked (templates were not available).
    status: TemplateStatus
    params: Mapping[str, str] = field(default_factory=dict)
    #: The TaskRun/PipelineRun the launcher would create (``taskruns.build_run``).
    run: Mapping[str, Any] | None = None
    #: ``TemplateNotFound``, ``InvalidTemplate`` or a :data:`rendering.RenderReason`.
    reason: str = ""
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status in ("rendered", "unchecked")


@dataclass(frozen=True)
class PolicyExplanation:
    """One policy compared with one event, and what its templates would render."""

    name: str
    namespace: str
    #: None when the policy object is invalid (``invalid`` says why).
    verdict: matching.Verdict | None
    invalid: str = ""
    #: A ``when`` that does not compile: the policy can never match, whatever the event.
    compile_error: str = ""
    templates: tuple[TemplateOutcome, ...] = ()
    #: For policies with a rate limit, a transition or ``suspend``: what storm control decides
    #: from the state in the policy's status (as given: live objects carry it, files rarely).
    storm: storm.Decision | None = None
    #: For policies with reminders or a digest: what the scheduler owes them, in words.
    scheduled: tuple[str, ...] = ()

    @property
    def matched(self) -> bool:
        return self.verdict is not None and self.verdict.matched

    @property
    def reason(self) -> str:
        """``matched``, the first failed check (``label team``), ``cel error`` or ``invalid``."""
        return "invalid" if self.verdict is None else self.verdict.reason

    @property
    def notifies(self) -> bool:
        """Matched, not held back by storm control, and every template ref renders."""
        held = self.storm is not None and not self.storm.notify
        return self.matched and not held and all(outcome.ok for outcome in self.templates)


def explain_event(
    event: RunEvent,
    policies: Iterable[Mapping[str, Any]],
    templates: Iterable[Mapping[str, Any]] | None = None,
    *,
    settings: rendering.RenderSettings = rendering.DEFAULT_SETTINGS,
    now: float = 0.0,
) -> list[PolicyExplanation]:
    """Every policy object's verdict on ``event``, with rendered params for matching ones.

    ``templates`` are NotificationTemplate objects; None means they are not available (the
    outcomes are then ``unchecked``). Templates are looked up in the policy's namespace, as
    the template renderer does. Policies are returned in (namespace, name) order; a policy
    object that does not parse is returned with ``invalid`` set. ``now`` (seconds since the
    epoch) is the clock for rate limits.
    """
    catalog = None if templates is None else _template_catalog(templates)
    activation = matching.event_activation(event)
    explanations: list[PolicyExplanation] = []
    for obj in policies:
        try:
            policy = models.parse_policy(obj)
        except models.SpecError as error:
            name, namespace = _identity(obj)
            explanations.append(PolicyExplanation(name, namespace, None, invalid=str(error)))
            continue
        compiled = matching.compile_policy(policy)
        verdict = matching.evaluate(compiled, event, activation)
        outcomes: tuple[TemplateOutcome, ...] = ()
        decision = None
        if verdict.suspended or (verdict.matched and policy.keeps_state):
            decision = storm.decide(
                policy,
                event,
                direct=verdict.direct,
                suspended=verdict.suspended,
                state=storm.PolicyState.from_status(obj.get("status")),
                now=now,
            )
        if verdict.matched:
            outcomes = tuple(
                _outcome(event, policy, ref, catalog, settings) for ref in policy.template_refs
            )
        state = storm.PolicyState.from_status(obj.get("status"))
        scheduled = schedule.outlook(policy, state, now) if policy.scheduled else ()
        explanations.append(
            PolicyExplanation(
                policy.name,
                policy.namespace,
                verdict,
                compile_error=compiled.error or "",
                templates=outcomes,
                storm=decision,
                scheduled=scheduled,
            )
        )
    explanations.sort(key=lambda item: (item.namespace, item.name))
    return explanations


def _identity(obj: Mapping[str, Any]) -> tuple[str, str]:
    metadata = obj.get("metadata")
    metadata = metadata if isinstance(metadata, Mapping) else {}
    return str(metadata.get("name") or "<unnamed>"), str(metadata.get("namespace") or "default")


_Entry = rendering.CompiledTemplate | str


def _template_catalog(objects: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], _Entry]:
    """Templates by (namespace, name): compiled, or why they are unusable (as the renderer)."""
    catalog: dict[tuple[str, str], _Entry] = {}
    for obj in objects:
        name, namespace = _identity(obj)
        try:
            catalog[(namespace, name)] = rendering.compile_template(models.parse_template(obj))
        except (models.SpecError, rendering.RenderError) as error:
            catalog[(namespace, name)] = str(error)
    return catalog


def _outcome(
    event: RunEvent,
    policy: models.Policy,
    ref: models.TemplateRef,
    catalog: Mapping[tuple[str, str], _Entry] | None,
    settings: rendering.RenderSettings,
    subscription: subscriptions.Subscription | None = None,
) -> TemplateOutcome:
    namespace = policy.namespace if subscription is None else policy.home_namespace
    if catalog is None:
        return TemplateOutcome(ref.name, namespace, "unchecked")
    view = subscription.view() if subscription is not None else None
    entry = catalog.get((namespace, ref.name))
    if entry is None:
        message = f"NotificationTemplate {namespace}/{ref.name} does not exist"
        return TemplateOutcome(
            ref.name, namespace, "missing", reason="TemplateNotFound", error=message
        )
    if isinstance(entry, str):
        return TemplateOutcome(
            ref.name, namespace, "invalid", reason="InvalidTemplate", error=entry
        )
    try:
        params = entry.render(
            event=event,
            policy=policy.view(),
            overrides=ref.params,
            settings=settings,
            subscription=view,
        )
    except rendering.RenderError as error:
        return TemplateOutcome(ref.name, namespace, "failed", reason=error.reason, error=str(error))
    run = taskruns.build_run(  # its key from the subscription, as the launcher's
        event=event,
        template=entry.template,
        params=params,
        policy_namespace=namespace,
        policy=policy.name,
        policy_kind=policy.kind if subscription is not None else models.POLICY_KIND,
        origin={"subscription": dict(view or {})} if subscription is not None else None,
    )
    return TemplateOutcome(ref.name, namespace, "rendered", params=params, run=run)


# --------------------------------------------------------------------------------------------
# Subscription annotations: found, allowed or refused, rendered


@dataclass(frozen=True)
class SubscriptionExplanation:
    """One subscription annotation of the event's run, its Pipeline/Task or its Namespace."""

    resolution: subscribing.Resolution
    template: TemplateOutcome | None = None
    storm: storm.Decision | None = None

    @property
    def notifies(self) -> bool:
        held = self.storm is not None and not self.storm.notify
        ok = self.template is not None and self.template.ok
        return self.resolution.status == "allowed" and not held and ok


@dataclass(frozen=True)
class SubscriptionsExplained:
    found: subscriptions.Found
    items: tuple[SubscriptionExplanation, ...] = ()
    #: Whether the Namespace's annotations were known (a manifest or the cluster).
    namespace_known: bool = False


def explain_subscriptions(
    event: RunEvent,
    policies: Iterable[Mapping[str, Any]],
    templates: Iterable[Mapping[str, Any]] | None = None,
    *,
    namespace: Mapping[str, str] | None = None,
    definition: Mapping[str, str] | None = None,
    settings: rendering.RenderSettings = rendering.DEFAULT_SETTINGS,
    now: float = 0.0,
) -> SubscriptionsExplained:
    """Every subscription concerning ``event`` and what becomes of it, as the policy filter
    decides (:func:`subscriptions.find`, :func:`subscribing.resolve`), with the params an
    allowed one renders. ``namespace``/``definition``: the annotations of the run's Namespace
    and of its Pipeline or Task, None when not known."""
    found = subscriptions.find(event, namespace=namespace, definition=definition)
    compiled: list[matching.CompiledPolicy] = []
    objects: dict[tuple[str, str], Mapping[str, Any]] = {}
    for obj in policies:
        try:
            policy = models.parse_policy(obj)
        except models.SpecError:
            continue  # explain_event reports it
        compiled.append(matching.compile_policy(policy))
        objects[policy.key] = obj
    catalog = None if templates is None else _template_catalog(templates)
    items: list[SubscriptionExplanation] = []
    for resolution in subscribing.resolve(found, event, compiled):
        match, outcome, decision = resolution.match, None, None
        if match is not None:
            policy = match.policy
            if match.suspended or not match.final:
                wanted = replace(policy, events=policy.events | match.wanted)
                decision = storm.decide(
                    wanted,
                    event,
                    direct=match.direct,
                    suspended=match.suspended,
                    state=storm.PolicyState.from_status(objects[policy.key].get("status")),
                    now=now,
                )
                subscribed = resolution.subscription.event
                if (
                    decision.notify
                    and subscribed not in event.policy_events
                    and decision.transition != subscribed
                ):
                    note = f"no {subscribed} transition"
                    decision = replace(decision, notify=False, notes=(*decision.notes, note))
            outcome = _outcome(
                event, policy, match.template_ref, catalog, settings, resolution.subscription
            )
        items.append(SubscriptionExplanation(resolution, outcome, decision))
    return SubscriptionsExplained(found, tuple(items), namespace_known=namespace is not None)


# --------------------------------------------------------------------------------------------
# Notification runs (what the task launcher created)

#: The label selector of every run this project creates.
MANAGED_SELECTOR: Final = f"{vocabulary.MANAGED_BY_LABEL}={vocabulary.MANAGED_BY_VALUE}"


@dataclass(frozen=True)
class NotificationRun:
    """A TaskRun/PipelineRun created by the task launcher, as ``history`` shows it."""

    kind: str
    name: str
    namespace: str
    created: str
    policy: str
    policy_namespace: str
    template: str
    source_kind: str
    source_name: str
    source_uid: str
    event: str
    #: Succeeded, Failed, Running or Pending (no Succeeded condition yet).
    status: str
    reason: str
    message: str
    start_time: str
    completion_time: str
    #: Which run of its notification: 1, then one per retry (label .../attempt).
    attempt: int = 1
    #: For a fallback: the template whose delivery finally failed.
    fallback_of: str = ""

    @property
    def delivery(self) -> str:
        """delivered, failed, timedOut (what the delivery tracker records), or pending."""
        if self.status == "Succeeded":
            return "delivered"
        if self.status == "Failed":
            return "timedOut" if self.reason in events.TIMED_OUT_REASONS else "failed"
        return "pending"

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "namespace": self.namespace,
            "created": self.created,
            "policy": self.policy,
            "policyNamespace": self.policy_namespace,
            "template": self.template,
            "sourceKind": self.source_kind,
            "sourceName": self.source_name,
            "sourceUid": self.source_uid,
            "event": self.event,
            "status": self.status,
            "reason": self.reason,
            "message": self.message,
            "startTime": self.start_time,
            "completionTime": self.completion_time,
            "attempt": self.attempt,
            "fallbackOf": self.fallback_of,
            "delivery": self.delivery,
        }


def label_selector(*, run: str | None = None, policy: str | None = None) -> str:
    """The selector for notification runs, optionally of one source run and/or one policy.

    Names go through :func:`taskruns.label_value`, exactly as the launcher wrote the labels.
    """
    parts = [MANAGED_SELECTOR]
    if run:
        parts.append(f"{taskruns.SOURCE_NAME_LABEL}={taskruns.label_value(run)}")
    if policy:
        parts.append(f"{taskruns.POLICY_LABEL}={taskruns.label_value(policy)}")
    return ",".join(parts)


def summarize_run(obj: Mapping[str, Any]) -> NotificationRun:
    metadata = obj.get("metadata") or {}
    labels = metadata.get("labels") or {}
    annotations = metadata.get("annotations") or {}
    status = obj.get("status") or {}
    condition = succeeded_condition(obj)
    state = "Pending"
    if condition is not None:
        state = {"True": "Succeeded", "False": "Failed"}.get(
            str(condition.get("status")), "Running"
        )
    return NotificationRun(
        kind=str(obj.get("kind") or ""),
        name=str(metadata.get("name") or ""),
        namespace=str(metadata.get("namespace") or ""),
        created=str(metadata.get("creationTimestamp") or ""),
        policy=str(labels.get(taskruns.POLICY_LABEL) or ""),
        policy_namespace=str(
            annotations.get(taskruns.POLICY_NAMESPACE_ANNOTATION) or metadata.get("namespace") or ""
        ),
        template=str(labels.get(taskruns.TEMPLATE_LABEL) or ""),
        source_kind=str(labels.get(taskruns.SOURCE_KIND_LABEL) or ""),
        source_name=str(labels.get(taskruns.SOURCE_NAME_LABEL) or ""),
        source_uid=str(labels.get(taskruns.SOURCE_UID_LABEL) or ""),
        event=str(labels.get(taskruns.EVENT_LABEL) or ""),
        status=state,
        reason=str((condition or {}).get("reason") or ""),
        message=str((condition or {}).get("message") or ""),
        start_time=str(status.get("startTime") or ""),
        completion_time=str(status.get("completionTime") or ""),
        attempt=_attempt(labels.get(taskruns.ATTEMPT_LABEL)),
        fallback_of=str(labels.get(taskruns.FALLBACK_OF_LABEL) or ""),
    )


def _attempt(label: object) -> int:
    try:
        return max(1, int(str(label))) if label is not None else 1
    except ValueError:
        return 1


def newest_first(runs: Iterable[NotificationRun]) -> list[NotificationRun]:
    """Newest first by creation time; runs created in the same second by start time."""
    return sorted(runs, key=lambda run: (run.created, run.start_time, run.name), reverse=True)
