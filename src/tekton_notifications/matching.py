"""Which policies a run event matches, and why each other policy did not.

A :class:`PolicyIndex` buckets policies by (namespace, kind, event), so an event only meets the
few policies that could match it; only those run selectors and CEL. The same checks produce a
:class:`Verdict` for troubleshooting, so "why did (or didn't) this notify?" has one answer.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from tekton_notifications import cel, types
from tekton_notifications.events import RunEvent
from tekton_notifications.models import Policy, TemplateRef
from tekton_notifications.selectors import Check, check_selector

logger = logging.getLogger(__name__)

#: The namespace key of cluster policies in the index (a namespaced policy never has "").
CLUSTER = ""


@dataclass(frozen=True)
class CompiledPolicy:
    """A policy ready to evaluate: CEL compiled, or the compile error that keeps it unready."""

    policy: Policy
    when: cel.Expression | None
    error: str | None = None

    @property
    def ready(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class Verdict:
    policy: Policy
    matched: bool
    checks: tuple[Check, ...]
    #: Set when the CEL expression failed to compile or to evaluate for this event.
    error: str | None = None
    #: The event is one the policy lists; False when it matched only because a transition
    #: (``fixed``) depends on it, so whether it notifies is decided by :mod:`storm`.
    direct: bool = True

    @property
    def suspended(self) -> bool:
        """It would have matched but for ``spec.suspend``: counted as suppressed."""
        return not self.matched and self.reason == "suspend"

    @property
    def reason(self) -> str:
        """The first failed check (``label team``), ``cel error``, or ``matched``."""
        if self.error:
            return "cel error"
        for check in self.checks:
            if not check.ok:
                return check.field
        return "matched"


@dataclass(frozen=True)
class Match:
    policy: Policy
    template_ref: TemplateRef
    #: See :attr:`Verdict.direct`.
    direct: bool = True
    #: The policy is suspended: nothing is sent, the match is counted as suppressed.
    suspended: bool = False

    @property
    def final(self) -> bool:
        """Notifies as it is, with no state to consult (no transition, no rate limit)."""
        return self.direct and not self.suspended and not self.policy.keeps_state


def compile_policy(policy: Policy) -> CompiledPolicy:
    if policy.when is None:
        return CompiledPolicy(policy, None)
    try:
        return CompiledPolicy(policy, cel.compile_expression(policy.when))
    except cel.CelError as error:
        return CompiledPolicy(policy, None, error=f"spec.when: {error}")


def evaluate(
    compiled: CompiledPolicy, event: RunEvent, activation: dict[str, Any] | None = None
) -> Verdict:
    """Compare one policy with one event, field by field, in the order a user reads them."""
    policy = compiled.policy
    checks = [
        Check(
            "loop guard",
            not event.is_notification_run,
            "not a notification run",
            "notification run" if event.is_notification_run else "user run",
        ),
        namespace_check(policy, event.namespace),
    ]
    if all(check.ok for check in checks):
        checks.extend(
            check_selector(
                policy.selector,
                kind=event.kind,
                name=event.name,
                labels=event.labels,
                annotations=event.annotations,
            )
        )
    direct = bool(policy.events & event.policy_events)
    if all(check.ok for check in checks):
        checks.append(_event_check(policy, event, direct))
    if not all(check.ok for check in checks):
        return Verdict(policy, False, tuple(checks))
    if compiled.error:
        return Verdict(policy, False, tuple(checks), error=compiled.error)
    if compiled.when is not None:
        base = activation if activation is not None else event_activation(event)
        try:
            result = compiled.when.evaluate(cel.with_policy(base, policy.view()))
        except cel.CelError as error:
            return Verdict(policy, False, tuple(checks), error=f"spec.when: {error}")
        checks.append(Check("when", result, "true", str(result).lower()))
    # Last, so a suspended policy's verdict says it would have matched: that is a suppression.
    if all(check.ok for check in checks):
        checks.append(Check("suspend", not policy.suspend, "false", str(policy.suspend).lower()))
    return Verdict(policy, all(check.ok for check in checks), tuple(checks), direct=direct)


def _event_check(policy: Policy, event: RunEvent, direct: bool) -> Check:
    """The event is listed, or it is a finished run a transition (``fixed``) depends on."""
    wanted = " or ".join(sorted(policy.events))
    got = " / ".join(sorted(event.policy_events))
    if direct or not policy.tracks_outcomes or event.final_outcome is None:
        return Check("event", direct, wanted, got)
    # Not notified for itself; still needed to know each pipeline's last outcome.
    return Check("event", True, wanted, f"{got} (a transition depends on it)")


def namespace_check(policy: Policy, namespace: str) -> Check:
    """A namespaced policy sees its own namespace; a cluster policy its ``namespaces``."""
    if not policy.cluster:
        return Check("namespace", namespace == policy.namespace, policy.namespace, namespace)
    if not policy.namespaces:
        return Check("namespace", True, "any namespace", namespace)
    ok = any(fnmatchcase(namespace, pattern) for pattern in policy.namespaces)
    return Check("namespace", ok, " or ".join(policy.namespaces), namespace)


def event_activation(event: RunEvent) -> dict[str, Any]:
    return cel.activation(run=event.run, event=event.view(), policy={})


class PolicyIndex:
    """Policies by (namespace, kind, policy event); safe to update while events are matched."""

    def __init__(self, policies: Iterable[Policy] = ()) -> None:
        self._lock = threading.Lock()
        self._policies: dict[tuple[str, str], CompiledPolicy] = {}
        self._buckets: dict[tuple[str, str, str], dict[tuple[str, str], CompiledPolicy]] = (
            defaultdict(dict)
        )
        for policy in policies:
            self.upsert(policy)

    def __len__(self) -> int:
        return len(self._policies)

    def upsert(self, policy: Policy) -> CompiledPolicy:
        """Add or replace a policy; CEL is recompiled only when the expression changed."""
        with self._lock:
            previous = self._policies.get(policy.key)
        if previous is not None and previous.policy.when == policy.when:
            compiled = CompiledPolicy(policy, previous.when, previous.error)
        else:
            compiled = compile_policy(policy)
        with self._lock:
            self._drop(policy.key)
            self._policies[policy.key] = compiled
            for bucket in self._bucket_keys(policy):
                self._buckets[bucket][policy.key] = compiled
        return compiled

    def remove(self, namespace: str, name: str) -> None:
        with self._lock:
            self._drop((namespace, name))

    def replace_all(self, policies: Iterable[Policy], *, cluster: bool = False) -> None:
        """Swap in a fresh list of one kind (after a re-list), keeping compiled CEL where
        unchanged; policies of the other kind are untouched."""
        incoming = {policy.key: policy for policy in policies}
        with self._lock:
            stale = [
                key
                for key, compiled in self._policies.items()
                if compiled.policy.cluster == cluster and key not in incoming
            ]
        for key in stale:
            self.remove(*key)
        for policy in incoming.values():
            self.upsert(policy)

    def get(self, namespace: str, name: str) -> CompiledPolicy | None:
        return self._policies.get((namespace, name))

    def all(self) -> list[CompiledPolicy]:
        with self._lock:
            return list(self._policies.values())

    def candidates(self, event: RunEvent) -> list[CompiledPolicy]:
        """Policies whose namespace, kind and events could match: the only ones evaluated."""
        found: dict[tuple[str, str], CompiledPolicy] = {}
        with self._lock:
            for namespace in (event.namespace, CLUSTER):
                for policy_event in event.policy_events:
                    bucket = self._buckets.get((namespace, event.kind, policy_event))
                    if bucket:
                        found.update(bucket)
        return sorted(found.values(), key=lambda compiled: compiled.policy.key)

    def match(self, event: RunEvent) -> tuple[list[Match], list[Verdict]]:
        """The matches (one per policy and template ref) and the verdicts that had CEL errors.

        Matches that are not :attr:`Match.final` (suspended, rate-limited or transition
        policies) still need :func:`tekton_notifications.storm.decide` to say if they notify.
        """
        if event.is_notification_run:
            return [], []
        candidates = self.candidates(event)
        if not candidates:
            return [], []
        activation = event_activation(event) if any(c.when or c.error for c in candidates) else {}
        matches: list[Match] = []
        errors: list[Verdict] = []
        for compiled in candidates:
            verdict = evaluate(compiled, event, activation)
            if verdict.error:
                errors.append(verdict)
                logger.warning(
                    "policy %s/%s skipped for %s %s/%s: %s",
                    compiled.policy.namespace,
                    compiled.policy.name,
                    event.kind,
                    event.namespace,
                    event.name,
                    verdict.error,
                )
            elif verdict.matched or verdict.suspended:
                matches.extend(
                    Match(compiled.policy, ref, verdict.direct, verdict.suspended)
                    for ref in compiled.policy.template_refs
                )
        return matches, errors

    def explain(self, event: RunEvent) -> list[Verdict]:
        """A verdict for every policy in the event's namespace and every cluster policy."""
        activation = event_activation(event)
        with self._lock:
            in_scope = [
                c
                for c in self._policies.values()
                if c.policy.namespace in (event.namespace, CLUSTER)
            ]
        in_scope.sort(key=lambda compiled: compiled.policy.key)
        return [evaluate(compiled, event, activation) for compiled in in_scope]

    def _drop(self, key: tuple[str, str]) -> None:
        previous = self._policies.pop(key, None)
        if previous is None:
            return
        for bucket in self._bucket_keys(previous.policy):
            self._buckets[bucket].pop(key, None)

    @staticmethod
    def _bucket_keys(policy: Policy) -> list[tuple[str, str, str]]:
        kinds = policy.selector.kinds or frozenset(types.RUN_KINDS)
        # Cluster policies share one bucket per (kind, event); their namespace globs are
        # checked per candidate, so a cluster policy costs every namespace one check.
        events = set(policy.events)
        if policy.tracks_outcomes:  # every finished run may change a pipeline's outcome
            events = (events - types.TRANSITION_EVENTS) | {"succeeded", "failed"}
        return [(policy.namespace, kind, event) for kind in kinds for event in events]
