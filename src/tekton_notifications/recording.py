"""What the status recorder writes: Kubernetes Events and policy/template status.

Pure: builds Event objects, readiness conditions and status patches from data. The
status-recorder stage does the I/O, batching counters so load never means a write per event.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from tekton_notifications import cel, models, vocabulary
from tekton_notifications.notifications import Notification

COMPONENT: Final = "tekton-notifications"
READY: Final = "Ready"


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _event_name(owner: str, key: str, outcome: str) -> str:
    """Deterministic, so a redelivered outcome records once (409 on the second create)."""
    suffix = f".{key[:12]}.{outcome}"
    return owner[: 253 - len(suffix)] + suffix


_REASONS: Final = {
    "sent": "NotificationSent",
    "failed": "NotificationFailed",
    "suppressed": "NotificationSuppressed",
    "delivered": "NotificationDelivered",
    "deliveryFailed": "NotificationDeliveryFailed",
}
#: Outcomes recorded on the source run only (their counts are in the policy's status).
_RUN_ONLY: Final = frozenset({"suppressed", "delivered", "deliveryFailed"})


def run_events(
    notification: Notification, *, outcome: str, message: str, timestamp: str
) -> list[dict[str, Any]]:
    """Kubernetes Events on the source run and on the policy, for one notification outcome.

    ``outcome`` is ``sent``, ``failed`` or ``suppressed``; ``kubectl describe pipelinerun X``
    shows them. A suppression is recorded on the run only: in a storm, one Event per run on
    the policy would be a storm of its own (its status counts them instead).
    """
    event = notification.event
    warning = outcome in ("failed", "deliveryFailed")
    reason = _REASONS[outcome]
    # Each attempt of a notification has its own outcome Events (the key is the same).
    name_outcome = outcome.lower() + (
        f"-a{notification.attempt}" if notification.attempt != 1 else ""
    )
    if notification.cluster_policy:  # cluster-scoped: its Events live in "default"
        policy_target = {
            "apiVersion": f"{vocabulary.GROUP}/{vocabulary.VERSION}",
            "kind": notification.policy_kind,
            "name": notification.policy_name,
            "namespace": "default",
        }
    else:
        policy_target = {
            "apiVersion": f"{vocabulary.GROUP}/{vocabulary.VERSION}",
            "kind": notification.policy_kind,
            "name": notification.policy_name,
            "namespace": notification.policy_namespace,
        }
    targets = [
        {
            "apiVersion": "tekton.dev/v1",
            "kind": event.kind,
            "name": event.name,
            "namespace": event.namespace,
            "uid": event.uid,
        },
        policy_target,
    ]
    if outcome in _RUN_ONLY:
        del targets[1]
    bodies = []
    for target in targets:
        involved = {k: v for k, v in target.items() if v}
        if target["kind"] == models.CLUSTER_POLICY_KIND:
            involved.pop("namespace")
        bodies.append(
            {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {
                    "name": _event_name(target["name"], notification.key, name_outcome),
                    "namespace": target["namespace"],
                    "labels": {vocabulary.MANAGED_BY_LABEL: vocabulary.MANAGED_BY_VALUE},
                },
                "involvedObject": involved,
                "reason": reason,
                "message": message[:1024],
                "type": "Warning" if warning else "Normal",
                "source": {"component": COMPONENT},
                "reportingComponent": f"{COMPONENT}/status-recorder",
                "reportingInstance": "status-recorder",
                "firstTimestamp": timestamp,
                "lastTimestamp": timestamp,
                "count": 1,
            }
        )
    return bodies


def sent_message(notification: Notification, run: Mapping[str, Any]) -> str:
    return (
        f"Notification sent: policy {notification.policy_name}, template "
        f"{notification.template_ref.name}, {run.get('kind', 'TaskRun')} {run.get('name')}"
    )


def _which(notification: Notification) -> str:
    attempt = f", attempt {notification.attempt}" if notification.attempt != 1 else ""
    fallback = f" (fallback of {notification.fallback_of})" if notification.fallback_of else ""
    return (
        f"policy {notification.policy_name}, template {notification.template_ref.name}"
        f"{fallback}{attempt}"
    )


def delivered_message(notification: Notification, run: Mapping[str, Any]) -> str:
    return (
        f"Notification delivered: {_which(notification)}, "
        f"{run.get('kind', 'TaskRun')} {run.get('name')} succeeded"
    )


def delivery_failed_message(
    notification: Notification, run: Mapping[str, Any], why: str, next_step: str
) -> str:
    return (
        f"Notification delivery failed: {_which(notification)}, "
        f"{run.get('kind', 'TaskRun')} {run.get('name')}: {why}"
        + (f"; {next_step}" if next_step else "")
    )


def suppressed_message(notification: Notification, suppressed: Mapping[str, Any]) -> str:
    return (
        f"Notification suppressed: policy {notification.policy_name}: "
        f"{suppressed.get('message') or suppressed.get('reason')}"
    )


def failed_message(notification: Notification, error: Mapping[str, Any]) -> str:
    return (
        f"Notification failed: policy {notification.policy_name}, template "
        f"{notification.template_ref.name}: {error.get('stage')} {error.get('reason')}: "
        f"{error.get('message')}"
    )


@dataclass(frozen=True)
class Readiness:
    ready: bool
    reason: str
    message: str

    def condition(self, generation: int, timestamp: str) -> dict[str, Any]:
        return {
            "type": READY,
            "status": "True" if self.ready else "False",
            "reason": self.reason,
            "message": self.message[:32768],
            "lastTransitionTime": timestamp,
            "observedGeneration": generation,
        }


#: The status field where the policy filter marks a policy it disabled (see matching).
DISABLED: Final = "disabled"


def disabled_mark(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The policy filter's ``status.disabled``, if it was set for the current generation
    (a new spec gets a new chance: an older mark is ignored)."""
    status = obj.get("status")
    mark = status.get(DISABLED) if isinstance(status, Mapping) else None
    generation = (obj.get("metadata") or {}).get("generation") or 0
    if isinstance(mark, Mapping) and mark.get("generation") == generation:
        return mark
    return None


def disabled_status(
    *, reason: str, message: str, generation: int, timestamp: str
) -> dict[str, Any]:
    """The ``status`` fields that mark a policy disabled for this generation."""
    return {
        DISABLED: {
            "reason": reason,
            "message": message[:1024],
            "generation": generation,
            "time": timestamp,
        }
    }


def policy_event(
    policy: models.Policy, *, reason: str, message: str, timestamp: str
) -> dict[str, Any]:
    """A Warning Event on a policy that is not ready, named per (generation, reason) so it is
    recorded once however many replicas or reloads see it."""
    namespace = policy.namespace or "default"  # cluster-scoped: its Events live in "default"
    involved = {
        "apiVersion": f"{vocabulary.GROUP}/{vocabulary.VERSION}",
        "kind": policy.kind,
        "name": policy.name,
        "uid": policy.uid,
    }
    if not policy.cluster:
        involved["namespace"] = policy.namespace
    suffix = f".g{policy.generation}.{reason.lower()}"
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": policy.name[: 253 - len(suffix)] + suffix,
            "namespace": namespace,
            "labels": {vocabulary.MANAGED_BY_LABEL: vocabulary.MANAGED_BY_VALUE},
        },
        "involvedObject": {k: v for k, v in involved.items() if v},
        "reason": reason,
        "message": message[:1024],
        "type": "Warning",
        "source": {"component": COMPONENT},
        "reportingComponent": f"{COMPONENT}/policy-filter",
        "reportingInstance": "policy-filter",
        "firstTimestamp": timestamp,
        "lastTimestamp": timestamp,
        "count": 1,
    }


def policy_readiness(obj: Mapping[str, Any], templates: Mapping[str, Readiness]) -> Readiness:
    """Ready when the spec parses, CEL compiles and every referenced template is ready.

    ``templates`` maps the names of templates in the policy's namespace to their readiness.
    """
    try:
        policy = models.parse_policy(obj)
    except models.SpecError as error:
        return Readiness(False, "InvalidSpec", str(error))
    if policy.when is not None:
        try:
            cel.compile_expression(policy.when, kinds=policy.selector.kinds)
        except (cel.CelCostError, cel.CelCheckError) as error:
            return Readiness(False, error.reason, f"spec.when: {error}")
        except cel.CelError as error:
            return Readiness(False, "CELCompileError", f"spec.when: {error}")
    disabled = disabled_mark(obj)
    if disabled is not None:
        return Readiness(False, str(disabled.get("reason")), str(disabled.get("message")))
    refs = [(f"spec.templateRefs[{i}]", ref) for i, ref in enumerate(policy.template_refs)]
    if policy.digest is not None:  # the digest's template must be there when it is due
        refs.append(("spec.digest.templateRef", policy.digest.template_ref))
    for path, ref in refs:
        found = templates.get(ref.name)
        if found is None:
            return Readiness(
                False,
                "TemplateNotFound",
                f"{path}: NotificationTemplate {policy.namespace}/{ref.name} does not exist",
            )
        if not found.ready:
            return Readiness(False, "TemplateNotReady", f"{path}: {ref.name}: {found.message}")
    return Readiness(
        True,
        "Ready",
        f"{len(policy.template_refs)} template(s), events {', '.join(sorted(policy.events))}",
    )


def template_readiness(
    obj: Mapping[str, Any], *, over_limits: int = 0, last: str = ""
) -> Readiness:
    """Ready when the params compile and the template's renders did not run over their
    limits ``rendering.RENDER_LIMIT_STRIKES`` times (``over_limits``) in this generation."""
    # Here, not at the top: the policy filter uses this module but renders nothing, and
    # Jinja2 would cost every one of its cold starts ~0.1 s.
    from tekton_notifications import rendering

    try:
        rendering.compile_template(models.parse_template(obj))
    except models.SpecError as error:
        return Readiness(False, "InvalidSpec", str(error))
    except rendering.RenderError as error:
        return Readiness(False, error.reason, str(error))
    if over_limits >= rendering.RENDER_LIMIT_STRIKES:
        return Readiness(
            False,
            "RenderLimitExceeded",
            f"{over_limits} renders ran over their limits (last: {last}); "
            "the template is not rendered until it changes",
        )
    return Readiness(True, "Ready", "params compile")


@dataclass
class Counters:
    """Matches and suppressions seen since the last flush, per policy (namespace, name)."""

    matches: dict[tuple[str, str], int] = field(default_factory=dict)
    last_matched: dict[tuple[str, str], str] = field(default_factory=dict)
    suppressed: dict[tuple[str, str], int] = field(default_factory=dict)
    last_suppressed: dict[tuple[str, str], str] = field(default_factory=dict)

    def add(self, key: tuple[str, str], timestamp: str) -> None:
        self.matches[key] = self.matches.get(key, 0) + 1
        self.last_matched[key] = timestamp

    def add_suppressed(self, key: tuple[str, str], timestamp: str) -> None:
        self.suppressed[key] = self.suppressed.get(key, 0) + 1
        self.last_suppressed[key] = timestamp

    def keys(self) -> set[tuple[str, str]]:
        return set(self.matches) | set(self.suppressed)

    def drain(self) -> Counters:
        """These counts, leaving this object empty."""
        drained = Counters(self.matches, self.last_matched, self.suppressed, self.last_suppressed)
        self.matches, self.last_matched, self.suppressed, self.last_suppressed = {}, {}, {}, {}
        return drained

    def restore(self, key: tuple[str, str], drained: Counters) -> None:
        """Put back one policy's drained counts, after its status write failed."""
        for mine, theirs in (
            (self.matches, drained.matches),
            (self.suppressed, drained.suppressed),
        ):
            if key in theirs:
                mine[key] = mine.get(key, 0) + theirs[key]
        for latest, old in (
            (self.last_matched, drained.last_matched),
            (self.last_suppressed, drained.last_suppressed),
        ):
            if key in old:
                latest.setdefault(key, old[key])


def status_patch(
    current: Mapping[str, Any],
    *,
    generation: int,
    readiness: Readiness,
    matches: int = 0,
    last_matched: str | None = None,
    suppressed: int = 0,
    last_suppressed: str | None = None,
    timestamp: str,
) -> dict[str, Any] | None:
    """The merge patch for ``status``, or None when nothing would change."""
    status = dict(current or {})
    conditions = [c for c in status.get("conditions") or [] if isinstance(c, Mapping)]
    previous = next((c for c in conditions if c.get("type") == READY), None)
    condition = readiness.condition(generation, timestamp)
    if previous is not None and all(
        previous.get(k) == condition[k]
        for k in ("status", "reason", "message", "observedGeneration")
    ):
        condition = dict(previous)  # unchanged: keep its transition time
    patch: dict[str, Any] = {}
    if condition != previous:
        patch["conditions"] = [c for c in conditions if c.get("type") != READY] + [condition]
    if status.get("observedGeneration") != generation:
        patch["observedGeneration"] = generation
    if matches:
        patch["matchCount"] = int(status.get("matchCount") or 0) + matches
    if last_matched:
        patch["lastMatchedTime"] = last_matched
    if suppressed:
        patch["suppressedCount"] = int(status.get("suppressedCount") or 0) + suppressed
    if last_suppressed:
        patch["lastSuppressedTime"] = last_suppressed
    return {"status": patch} if patch else None
