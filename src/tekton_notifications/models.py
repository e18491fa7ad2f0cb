"""NotificationPolicy and NotificationTemplate: parsed and validated from Kubernetes objects.

Parsing is strict and names the offending field (``spec.events[1]``), so a bad object is
reported once, on load, not on every event. Compiling CEL and templates happens elsewhere.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any, Final, cast

from tekton_notifications import vocabulary

_DNS_1123_SUBDOMAIN: Final = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_DNS_1123_LABEL: Final = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
POLICY_KIND: Final = "NotificationPolicy"
CLUSTER_POLICY_KIND: Final = "ClusterNotificationPolicy"
_DURATION: Final = re.compile(r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$")
_OPERATORS: Final = frozenset({"In", "NotIn", "Exists", "DoesNotExist"})


class SpecError(ValueError):
    """A policy or template that is invalid; the message starts with the field path."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


@dataclass(frozen=True)
class LabelRequirement:
    key: str
    operator: str
    values: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Selector:
    """Which runs a policy looks at. Empty fields select everything."""

    kinds: frozenset[str] = frozenset()
    names: tuple[str, ...] = ()
    match_labels: Mapping[str, str] = field(default_factory=dict)
    match_expressions: tuple[LabelRequirement, ...] = ()
    match_annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TemplateRef:
    name: str
    #: Param overrides (Jinja2 strings) applied over the template's own params.
    params: Mapping[str, str] = field(default_factory=dict)
    #: The template that sends this notification once its delivery has finally failed
    #: (``fallback: {name: ...}``); a fallback never has a fallback of its own.
    fallback: str | None = None


#: Budgets are kept in the policy's status (one entry per notification sent in the window), so
#: the count is bounded to keep that object small.
MAX_RATE_LIMIT: Final = 100
RATE_LIMIT_SCOPES: Final = ("policy", "pipeline")


@dataclass(frozen=True)
class RateLimit:
    """At most ``limit`` notifications per sliding ``window``, per policy or per pipeline."""

    limit: int
    window: float  # seconds
    #: As written (``10m``), for messages.
    window_text: str
    per: str = "policy"

    def describe(self) -> str:
        scope = " per pipeline" if self.per == "pipeline" else ""
        return f"{self.limit} per {self.window_text}{scope}"


#: Bounds of the scheduled features (issue 17); each keeps a little state in the policy's status.
MAX_REMINDERS: Final = 100
MAX_THRESHOLD: Final = 100
MIN_SCHEDULE_PERIOD: Final = 60.0  # the PingSource wakes the scheduler every few minutes
MAX_SCHEDULE_PERIOD: Final = 30 * 24 * 3600.0


@dataclass(frozen=True)
class Remind:
    """``spec.remind``: while a pipeline stays failing, remind ``after`` it turned red, then
    ``every`` period, at most ``max`` times; a success (``fixed``) ends it."""

    after: float  # seconds
    every: float  # seconds
    max: int
    after_text: str = ""
    every_text: str = ""


@dataclass(frozen=True)
class Threshold:
    """``spec.threshold``: ``failed``/``broken`` notify on the Nth consecutive failure only."""

    failures: int


@dataclass(frozen=True)
class Digest:
    """``spec.digest``: every ``every``, one notification summing up what was suppressed."""

    every: float  # seconds
    template_ref: TemplateRef
    every_text: str = ""


#: The ``policy`` variable's fields (:meth:`Policy.view`), as JSON Schema (see
#: ``events.EVENT_FIELDS``).
POLICY_FIELDS: Final[Mapping[str, Mapping[str, Any]]] = {
    "name": {"type": "string", "description": "the policy's name"},
    "namespace": {"type": "string", "description": "the policy's, or its templateNamespace"},
    "kind": {"type": "string", "enum": [POLICY_KIND, CLUSTER_POLICY_KIND]},
}


@dataclass(frozen=True)
class Subscriptions:
    """``spec.subscriptions``: which subscription annotations this policy honours
    (docs/subscriptions.md). Its selector, ``when``, suspend and rate limit still apply."""

    #: NotificationTemplate names or globs (``slack-*``) an annotation may name.
    templates: tuple[str, ...]
    #: Policy events an annotation may subscribe to.
    events: frozenset[str]

    def allows_template(self, name: str) -> bool:
        return any(fnmatchcase(name, pattern) for pattern in self.templates)

    def allows_event(self, event: str) -> bool:
        return event in self.events


@dataclass(frozen=True)
class Policy:
    """A NotificationPolicy, or a ClusterNotificationPolicy (``cluster``, ``namespace`` "")."""

    name: str
    namespace: str
    events: frozenset[str]
    template_refs: tuple[TemplateRef, ...]
    selector: Selector = Selector()
    when: str | None = None
    suspend: bool = False
    uid: str = ""
    generation: int = 0
    cluster: bool = False
    #: Cluster policies: the namespaces (exact or glob) whose runs they see; empty = all.
    namespaces: tuple[str, ...] = ()
    #: Cluster policies: where their templates live and their runs are created.
    template_namespace: str = ""
    rate_limit: RateLimit | None = None
    #: Reminders while a pipeline stays failing (the scheduler sends them).
    remind: Remind | None = None
    #: Notify failures only on the Nth consecutive failure of a pipeline.
    threshold: Threshold | None = None
    #: A periodic summary of what the rate limit held back (the scheduler sends it).
    digest: Digest | None = None
    subscriptions: Subscriptions | None = None

    @property
    def tracks_own_outcomes(self) -> bool:
        """Whether its own spec (events, threshold, remind) needs every finished run of the
        pipelines it selects: a transition, a streak or a red pipeline may change."""
        transitions = bool(self.events & vocabulary.TRANSITION_EVENTS)
        return transitions or self.threshold is not None or self.remind is not None

    @property
    def tracks_outcomes(self) -> bool:
        """Whether this policy needs the previous outcome of each pipeline it selects."""
        subscribed = self.subscriptions.events if self.subscriptions else frozenset()
        return self.tracks_own_outcomes or bool(subscribed & vocabulary.TRANSITION_EVENTS)

    @property
    def scheduled(self) -> bool:
        """Whether the scheduler has anything to send for this policy."""
        return self.remind is not None or self.digest is not None

    @property
    def all_template_refs(self) -> tuple[TemplateRef, ...]:
        """The templates this policy may notify with: its own and its digest's."""
        if self.digest is None or any(
            r.name == self.digest.template_ref.name for r in self.template_refs
        ):
            return self.template_refs
        return (*self.template_refs, self.digest.template_ref)

    @property
    def keeps_state(self) -> bool:
        """Whether matching needs this policy's state (rate limit budget, last outcomes)."""
        return self.rate_limit is not None or self.tracks_outcomes

    @property
    def kind(self) -> str:
        return CLUSTER_POLICY_KIND if self.cluster else POLICY_KIND

    @property
    def key(self) -> tuple[str, str]:
        """Unique across both kinds: a namespaced policy always has a namespace."""
        return (self.namespace, self.name)

    @property
    def home_namespace(self) -> str:
        """Where this policy's templates are read and its notification runs created.

        A namespaced policy's own namespace; for a cluster policy, ``templateNamespace``:
        never the tenant's namespace, which a platform policy must not write to.
        """
        return self.template_namespace if self.cluster else self.namespace

    def view(self) -> dict[str, Any]:
        """The ``policy`` variable that CEL expressions and templates see (the keys of
        :data:`POLICY_FIELDS`)."""
        return {"name": self.name, "namespace": self.home_namespace, "kind": self.kind}


#: Bounds of spec.context.logs (the CRD says the same): what one failed step may quote.
LOG_LINES_MAX: Final = 200
LOG_BYTES_MAX: Final = 65_536


@dataclass(frozen=True)
class LogTail:
    """How much of a failed step's log a template quotes (spec.context.logs)."""

    lines: int = 20
    max_bytes: int = 4_096


def _log_tail(spec: Mapping[str, Any]) -> LogTail | None:
    context = _object(spec.get("context"), "spec.context")
    if context.get("logs") is None:
        return None
    logs = _object(context.get("logs"), "spec.context.logs")
    default = LogTail()
    lines, max_bytes = logs.get("lines", default.lines), logs.get("maxBytes", default.max_bytes)
    for name, value, top in (
        ("lines", lines, LOG_LINES_MAX),
        ("maxBytes", max_bytes, LOG_BYTES_MAX),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= top:
            raise SpecError(f"spec.context.logs.{name}", f"must be an integer from 1 to {top}")
    return LogTail(lines=lines, max_bytes=max_bytes)


@dataclass(frozen=True)
class Template:
    name: str
    namespace: str
    #: "Task" (creates a TaskRun) or "Pipeline" (creates a PipelineRun).
    target: str
    #: The taskRef or pipelineRef exactly as written: a name, or a resolver with params.
    ref: Mapping[str, Any]
    params: Mapping[str, str]
    service_account_name: str | None = None
    workspaces: tuple[Mapping[str, Any], ...] = ()
    pod_template: Mapping[str, Any] | None = None
    timeout: str | None = None
    uid: str = ""
    generation: int = 0
    #: spec.context.logs: quote the last ``lines`` lines (at most ``max_bytes`` bytes) of
    #: each failed step's log in ``event.failedSteps[].log``; None: logs are not read.
    logs: LogTail | None = None
    #: How often a failed notification run is run again (0 to ``MAX_RETRIES``).
    retries: int = 0
    #: Seconds before the first retry, doubled for each further one (delivery.retry_delay).
    retry_delay: float = 0.0

    @property
    def run_kind(self) -> vocabulary.RunKind:
        return "TaskRun" if self.target == "Task" else "PipelineRun"

    def view(self) -> dict[str, Any]:
        """The ``template`` variable that templates see."""
        return {"name": self.name, "namespace": self.namespace}


def parse_policy(obj: Mapping[str, Any]) -> Policy:
    """Build a :class:`Policy` from a NotificationPolicy or ClusterNotificationPolicy object,
    or raise :class:`SpecError`."""
    name, namespace, uid, generation = _metadata(obj)
    spec = _object(obj.get("spec"), "spec", required=True)
    cluster = obj.get("kind") == CLUSTER_POLICY_KIND
    namespaces: list[str] = []
    template_namespace = ""
    if cluster:
        namespace = ""
        selector_spec = _object(spec.get("selector"), "spec.selector")
        namespaces = _string_list(selector_spec.get("namespaces"), "spec.selector.namespaces")
        template_namespace = spec.get("templateNamespace") or ""
        if not isinstance(template_namespace, str) or not _DNS_1123_LABEL.match(template_namespace):
            raise SpecError(
                "spec.templateNamespace",
                f"must name the namespace of the templates, not {template_namespace!r}",
            )
    subscriptions = _subscriptions(spec.get("subscriptions"))
    # A policy that only honours subscriptions needs no events or templateRefs of its own.
    events = _string_list(spec.get("events"), "spec.events", required=subscriptions is None)
    for index, event in enumerate(events):
        if event not in vocabulary.POLICY_EVENTS:
            expected = ", ".join(vocabulary.POLICY_EVENTS)
            raise SpecError(
                f"spec.events[{index}]", f"unknown event {event!r}; expected one of {expected}"
            )
    when = spec.get("when")
    if when is not None and (not isinstance(when, str) or not when.strip()):
        raise SpecError("spec.when", "must be a non-empty CEL expression string")
    suspend = spec.get("suspend", False)
    if not isinstance(suspend, bool):
        raise SpecError("spec.suspend", "must be true or false")
    digest = _digest(spec.get("digest"))
    if digest is not None and spec.get("rateLimit") is None:
        raise SpecError("spec.digest", "needs spec.rateLimit: it sums up what the limit held back")
    template_refs = _template_refs(spec.get("templateRefs"), required=subscriptions is None)
    if bool(template_refs) != bool(events):
        missing = "spec.events" if template_refs else "spec.templateRefs"
        raise SpecError(missing, "must be a non-empty list: events and templateRefs go together")
    return Policy(
        name=name,
        namespace=namespace,
        events=frozenset(events),
        template_refs=template_refs,
        selector=_selector(spec.get("selector")),
        when=when,
        suspend=suspend,
        uid=uid,
        generation=generation,
        cluster=cluster,
        namespaces=tuple(namespaces),
        template_namespace=template_namespace,
        rate_limit=_rate_limit(spec.get("rateLimit")),
        remind=_remind(spec.get("remind"), events),
        threshold=_threshold(spec.get("threshold"), events),
        digest=digest,
        subscriptions=subscriptions,
    )


def _subscriptions(value: object) -> Subscriptions | None:
    if value is None:
        return None
    spec = _object(value, "spec.subscriptions")
    templates = _string_list(spec.get("templates"), "spec.subscriptions.templates", required=True)
    events = _string_list(spec.get("events"), "spec.subscriptions.events", required=True)
    for index, event in enumerate(events):
        if event not in vocabulary.POLICY_EVENTS:
            expected = ", ".join(vocabulary.POLICY_EVENTS)
            raise SpecError(
                f"spec.subscriptions.events[{index}]",
                f"unknown event {event!r}; expected one of {expected}",
            )
    return Subscriptions(templates=tuple(templates), events=frozenset(events))


def parse_duration(text: str) -> float:
    """Seconds in a Go duration such as ``1h30m`` or ``90s``; ValueError when it is not one."""
    if not _DURATION.match(text):
        raise ValueError(f"not a duration: {text!r}")
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(
        float(number) * units[unit]
        for number, _, unit in re.findall(r"([0-9]+(\.[0-9]+)?)(ns|us|µs|ms|s|m|h)", text)
    )


def _rate_limit(value: object) -> RateLimit | None:
    if value is None:
        return None
    spec = _object(value, "spec.rateLimit")
    limit = spec.get("limit")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_RATE_LIMIT:
        raise SpecError(
            "spec.rateLimit.limit", f"must be a whole number from 1 to {MAX_RATE_LIMIT}"
        )
    window = spec.get("window")
    try:
        seconds = parse_duration(window) if isinstance(window, str) else 0.0
    except ValueError:
        seconds = 0.0
    if not 1 <= seconds <= 7 * 24 * 3600:
        raise SpecError(
            "spec.rateLimit.window",
            f"must be a duration from 1s to 168h such as 10m or 1h, not {window!r}",
        )
    per = spec.get("per", "policy")
    if per not in RATE_LIMIT_SCOPES:
        raise SpecError("spec.rateLimit.per", f"must be policy or pipeline, not {per!r}")
    return RateLimit(limit=limit, window=seconds, window_text=str(window), per=str(per))


def _period(value: object, path: str, *, low: float = MIN_SCHEDULE_PERIOD) -> float:
    try:
        seconds = parse_duration(value) if isinstance(value, str) else 0.0
    except ValueError:
        seconds = 0.0
    if not low <= seconds <= MAX_SCHEDULE_PERIOD:
        raise SpecError(
            path,
            f"must be a duration from {low:g}s to 720h such as 4h or 24h, not {value!r}",
        )
    return seconds


def _whole(value: object, path: str, top: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= top:
        raise SpecError(path, f"must be a whole number from 1 to {top}")
    return value


def _failures_listed(events: list[str], path: str) -> None:
    if not {"failed", "broken"} & set(events):
        raise SpecError(path, "needs failed or broken in spec.events: it is about failures")


def _remind(value: object, events: list[str]) -> Remind | None:
    if value is None:
        return None
    spec = _object(value, "spec.remind")
    _failures_listed(events, "spec.remind")
    after = _period(spec.get("after"), "spec.remind.after", low=0.0)
    every = _period(spec.get("every"), "spec.remind.every")
    count = _whole(spec.get("max", 5), "spec.remind.max", MAX_REMINDERS)
    return Remind(after, every, count, str(spec.get("after")), str(spec.get("every")))


def _threshold(value: object, events: list[str]) -> Threshold | None:
    if value is None:
        return None
    spec = _object(value, "spec.threshold")
    _failures_listed(events, "spec.threshold")
    return Threshold(_whole(spec.get("failures"), "spec.threshold.failures", MAX_THRESHOLD))


def _digest(value: object) -> Digest | None:
    if value is None:
        return None
    spec = _object(value, "spec.digest")
    every = _period(spec.get("every"), "spec.digest.every")
    ref = _object(spec.get("templateRef"), "spec.digest.templateRef", required=True)
    name = ref.get("name")
    if not isinstance(name, str) or not _DNS_1123_SUBDOMAIN.match(name):
        raise SpecError(
            "spec.digest.templateRef.name", f"must name a NotificationTemplate, not {name!r}"
        )
    params = _string_map(ref.get("params"), "spec.digest.templateRef.params")
    return Digest(every, TemplateRef(name=name, params=params), str(spec.get("every")))


def parse_template(obj: Mapping[str, Any]) -> Template:
    """Build a :class:`Template` from a NotificationTemplate object, or raise :class:`SpecError`."""
    name, namespace, uid, generation = _metadata(obj)
    spec = _object(obj.get("spec"), "spec", required=True)
    has_task, has_pipeline = "taskRef" in spec, "pipelineRef" in spec
    if has_task == has_pipeline:
        raise SpecError("spec", "set exactly one of taskRef and pipelineRef")
    ref_field = "taskRef" if has_task else "pipelineRef"
    ref = _object(spec[ref_field], f"spec.{ref_field}", required=True)
    if bool(ref.get("name")) == bool(ref.get("resolver")):
        raise SpecError(f"spec.{ref_field}", "set exactly one of name and resolver")
    params = _string_map(spec.get("params"), "spec.params")
    account = spec.get("serviceAccountName")
    if account is not None and (not isinstance(account, str) or not account):
        raise SpecError("spec.serviceAccountName", "must be a non-empty string")
    workspaces = spec.get("workspaces") or []
    if not isinstance(workspaces, list):
        raise SpecError("spec.workspaces", "must be a list of workspace bindings")
    for index, workspace in enumerate(workspaces):
        if not isinstance(workspace, Mapping) or not workspace.get("name"):
            raise SpecError(f"spec.workspaces[{index}]", "must be an object with a name")
    timeout = spec.get("timeout")
    if timeout is not None and (not isinstance(timeout, str) or not _DURATION.match(timeout)):
        raise SpecError("spec.timeout", f"must be a duration such as 10m or 1h30m, not {timeout!r}")
    pod_template = spec.get("podTemplate")
    if pod_template is not None:
        pod_template = _object(pod_template, "spec.podTemplate")
    retries, retry_delay = _retries(spec)
    return Template(
        name=name,
        namespace=namespace,
        target="Task" if has_task else "Pipeline",
        ref=ref,
        params=params,
        service_account_name=account,
        workspaces=tuple(cast(list[Mapping[str, Any]], workspaces)),
        pod_template=pod_template,
        timeout=timeout,
        uid=uid,
        generation=generation,
        logs=_log_tail(spec),
        retries=retries,
        retry_delay=retry_delay,
    )


#: Bounds of ``spec.retries`` and ``spec.retryDelay`` (the delay doubles per retry, so five
#: retries of one hour wait 31 hours at most).
MAX_RETRIES: Final = 5
MAX_RETRY_DELAY: Final = 3600.0


def _retries(spec: Mapping[str, Any]) -> tuple[int, float]:
    retries = spec.get("retries", 0)
    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= MAX_RETRIES:
        raise SpecError("spec.retries", f"must be a whole number from 0 to {MAX_RETRIES}")
    delay = spec.get("retryDelay")
    if delay is None:
        return retries, 0.0
    try:
        seconds = parse_duration(delay) if isinstance(delay, str) else -1.0
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= MAX_RETRY_DELAY:
        raise SpecError(
            "spec.retryDelay", f"must be a duration from 0s to 1h such as 30s, not {delay!r}"
        )
    return retries, seconds


def _metadata(obj: Mapping[str, Any]) -> tuple[str, str, str, int]:
    metadata = _object(obj.get("metadata"), "metadata", required=True)
    name = metadata.get("name")
    if not isinstance(name, str) or not _DNS_1123_SUBDOMAIN.match(name):
        raise SpecError("metadata.name", f"must be a DNS-1123 name, not {name!r}")
    namespace = metadata.get("namespace") or "default"
    generation = metadata.get("generation") or 0
    return name, str(namespace), str(metadata.get("uid") or ""), int(generation)


def _object(value: object, path: str, *, required: bool = False) -> Mapping[str, Any]:
    if value is None and not required:
        return {}
    if not isinstance(value, Mapping):
        raise SpecError(path, "is required" if value is None else "must be an object")
    return value


def _string_list(value: object, path: str, *, required: bool = False) -> list[str]:
    if value is None and not required:
        return []
    if not isinstance(value, list) or (required and not value):
        raise SpecError(path, "must be a non-empty list" if required else "must be a list")
    for index, item in enumerate(value):
        if not isinstance(item, str) or not item:
            raise SpecError(f"{path}[{index}]", "must be a non-empty string")
    return cast(list[str], value)


def _string_map(value: object, path: str) -> dict[str, str]:
    mapping = _object(value, path)
    for key, item in mapping.items():
        if not isinstance(item, str):
            raise SpecError(f"{path}.{key}", f"must be a string, not {type(item).__name__}")
    return dict(mapping)


def _selector(value: object) -> Selector:
    spec = _object(value, "spec.selector")
    kinds = _string_list(spec.get("kinds"), "spec.selector.kinds")
    for index, kind in enumerate(kinds):
        if kind not in vocabulary.RUN_KINDS:
            raise SpecError(
                f"spec.selector.kinds[{index}]",
                f"unknown kind {kind!r}; expected one of {', '.join(vocabulary.RUN_KINDS)}",
            )
    expressions = spec.get("matchExpressions") or []
    if not isinstance(expressions, list):
        raise SpecError("spec.selector.matchExpressions", "must be a list")
    return Selector(
        kinds=frozenset(kinds),
        names=tuple(_string_list(spec.get("names"), "spec.selector.names")),
        match_labels=_string_map(spec.get("matchLabels"), "spec.selector.matchLabels"),
        match_expressions=tuple(
            _requirement(item, f"spec.selector.matchExpressions[{index}]")
            for index, item in enumerate(expressions)
        ),
        match_annotations=_string_map(
            spec.get("matchAnnotations"), "spec.selector.matchAnnotations"
        ),
    )


def _requirement(value: object, path: str) -> LabelRequirement:
    spec = _object(value, path, required=True)
    key, operator = spec.get("key"), spec.get("operator")
    if not isinstance(key, str) or not key:
        raise SpecError(f"{path}.key", "is required")
    if operator not in _OPERATORS:
        raise SpecError(f"{path}.operator", f"must be one of {', '.join(sorted(_OPERATORS))}")
    values = _string_list(spec.get("values"), f"{path}.values")
    if operator in ("In", "NotIn") and not values:
        raise SpecError(f"{path}.values", f"must be non-empty for operator {operator}")
    if operator in ("Exists", "DoesNotExist") and values:
        raise SpecError(f"{path}.values", f"must be empty for operator {operator}")
    return LabelRequirement(key=key, operator=str(operator), values=frozenset(values))


def _template_refs(value: object, *, required: bool = True) -> tuple[TemplateRef, ...]:
    if value is None and not required:
        return ()
    if not isinstance(value, list) or (required and not value):
        raise SpecError("spec.templateRefs", "must be a non-empty list")
    refs: list[TemplateRef] = []
    for index, item in enumerate(value):
        path = f"spec.templateRefs[{index}]"
        spec = _object(item, path, required=True)
        name = spec.get("name")
        if not isinstance(name, str) or not _DNS_1123_SUBDOMAIN.match(name):
            raise SpecError(f"{path}.name", f"must name a NotificationTemplate, not {name!r}")
        if any(ref.name == name for ref in refs):
            raise SpecError(f"{path}.name", f"template {name!r} is referenced twice")
        refs.append(
            TemplateRef(
                name=name,
                params=_string_map(spec.get("params"), f"{path}.params"),
                fallback=_fallback(spec.get("fallback"), name, path),
            )
        )
    return tuple(refs)


def _fallback(value: object, name: str, path: str) -> str | None:
    if value is None:
        return None
    fallback = _object(value, f"{path}.fallback").get("name")
    if not isinstance(fallback, str) or not _DNS_1123_SUBDOMAIN.match(fallback):
        raise SpecError(
            f"{path}.fallback.name", f"must name a NotificationTemplate, not {fallback!r}"
        )
    if fallback == name:
        raise SpecError(f"{path}.fallback.name", "a template cannot be its own fallback")
    return fallback
