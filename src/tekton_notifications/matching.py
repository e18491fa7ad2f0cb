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
from dataclasses import dataclass, replace
from fnmatch import fnmatchcase
from typing import Any, Final

from tekton_notifications import cel, vocabulary
from tekton_notifications.events import RunEvent
from tekton_notifications.models import Policy, TemplateRef
from tekton_notifications.selectors import Check, check_selector, selector_matches
from tekton_notifications.subscriptions import Subscription

logger = logging.getLogger(__name__)

#: The namespace key of cluster policies in the index (a namespaced policy never has "").
CLUSTER = ""
#: The bucket "kind" of policies with ``spec.subscriptions`` (any run kind and event).
SUBSCRIBERS: Final = "*subscriptions*"
#: Evaluations in a row refused for cost that disable a policy until its spec changes. Each
#: refusal costs at most one budget (most are refused by the estimate before they start), so
#: the waste is bounded either way; three tells an expression that does not fit the events it
#: meets from one unusually large event, which a success in between forgives.
COST_STRIKES: Final = 3


@dataclass(frozen=True)
class CompiledPolicy:
    """A policy ready to evaluate: CEL compiled, or the compile error that keeps it unready."""

    policy: Policy
    when: cel.Expression | None
    error: str | None = None
    #: The Ready reason of ``error``: CELCompileError, CELCostExceeded or CELCheckFailed.
    reason: str | None = None

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
    #: The error is the cost budget (``CELCostExceeded``), at load or for this event.
    cost_exceeded: bool = False
    #: This refusal disabled the policy (the :data:`COST_STRIKES`-th in a row).
    disabled: bool = False

    @property
    def suspended(self) -> bool:
        """It would have matched but for ``spec.suspend``: counted as suppressed."""
        return not self.matched and self.reason == "suspend"

    @property
    def reason(self) -> str:
        """The first failed check (``label team``), ``cel error``, ``cel cost`` or
        ``matched``."""
        if self.error:
            return "cel cost" if self.cost_exceeded else "cel error"
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
    #: Set when a subscription annotation made this match (the policy allowed it).
    subscription: Subscription | None = None

    @property
    def wanted(self) -> frozenset[str]:
        """The events this match notifies for: its subscription's, else its policy's."""
        return frozenset({self.subscription.event}) if self.subscription else self.policy.events

    @property
    def final(self) -> bool:
        """Notifies as it is, with no state to consult (no transition, no rate limit)."""
        return self.direct and not self.suspended and not self.policy.keeps_state


def compile_policy(policy: Policy) -> CompiledPolicy:
    if policy.when is None:
        return CompiledPolicy(policy, None)
    try:
        expression = cel.compile_expression(policy.when, kinds=policy.selector.kinds)
        return CompiledPolicy(policy, expression)
    except (cel.CelCostError, cel.CelCheckError) as error:
        return CompiledPolicy(policy, None, error=f"spec.when: {error}", reason=error.reason)
    except cel.CelError as error:
        return CompiledPolicy(policy, None, error=f"spec.when: {error}", reason="CELCompileError")


def evaluate(
    compiled: CompiledPolicy,
    event: RunEvent,
    activation: dict[str, Any] | None = None,
    *,
    events: frozenset[str] | None = None,
) -> Verdict:
    """Compare one policy with one event, field by field, in the order a user reads them.

    ``events``: what the event check wants instead of the policy's ``spec.events`` (a
    subscription's event, :mod:`tekton_notifications.subscribing`)."""
    policy = compiled.policy
    # The event check of the policy's own events, or of a subscription's: never of both.
    wanted = policy.events if events is None else events
    checked = replace(policy, events=wanted, subscriptions=None)
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
    direct = bool(checked.events & event.policy_events)
    if all(check.ok for check in checks):
        checks.append(_event_check(checked, event, direct))
    if not all(check.ok for check in checks):
        return Verdict(policy, False, tuple(checks))
    if compiled.error:
        cost = compiled.reason == cel.CelCostError.reason
        return Verdict(policy, False, tuple(checks), error=compiled.error, cost_exceeded=cost)
    if compiled.when is not None:
        base = activation if activation is not None else event_activation(event)
        try:
            result = compiled.when.evaluate(cel.with_policy(base, policy.view()))
        except cel.CelCostError as error:
            return Verdict(policy, False, tuple(checks), f"spec.when: {error}", cost_exceeded=True)
        except cel.CelError as error:
            return Verdict(policy, False, tuple(checks), error=f"spec.when: {error}")
        checks.append(Check("when", result, "true", str(result).lower()))
    # Last, so a suspended policy's verdict says it would have matched: that is a suppression.
    if all(check.ok for check in checks):
        checks.append(Check("suspend", not policy.suspend, "false", str(policy.suspend).lower()))
    return Verdict(policy, all(check.ok for check in checks), tuple(checks), direct=direct)


class _Diagnose(Exception):
    """The hot path met an error: :func:`evaluate` builds the verdict that reports it."""


def _admits(
    compiled: CompiledPolicy, event: RunEvent, activation: cel.Activation
) -> tuple[bool, bool] | None:
    """:func:`evaluate`'s answer without its checks: ``(direct, suspended)`` when the policy
    matches (or would, but for ``spec.suspend``), None when it does not. Raises
    :class:`_Diagnose` on a compile, cost or evaluation error, which only :func:`evaluate`
    reports. Same order and same checks; ``tests/core/test_policy_matching.py`` holds both
    paths to the same answers."""
    policy = compiled.policy
    if (policy.cluster or event.namespace != policy.namespace) and not namespace_check(
        policy, event.namespace
    ).ok:
        return None
    if not selector_matches(
        policy.selector,
        kind=event.kind,
        name=event.name,
        labels=event.labels,
        annotations=event.annotations,
    ):
        return None
    direct = bool(policy.events & event.policy_events)
    if not direct and not (policy.tracks_outcomes and event.final_outcome is not None):
        return None
    if compiled.error:
        raise _Diagnose
    when = compiled.when
    if when is not None:
        # The policy variable only for the expressions that read it: one Activation less.
        variables = (
            cel.with_policy(activation, policy.view()) if "policy" in when.paths else activation
        )
        try:
            if not when.evaluate(variables):
                return None
        except cel.CelError:
            raise _Diagnose from None
    return direct, policy.suspend


def _event_check(policy: Policy, event: RunEvent, direct: bool) -> Check:
    """The event is listed, or it is a finished run a transition (``fixed``) depends on."""
    wanted = " or ".join(sorted(policy.events)) or "none: it only honours subscriptions"
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


def event_activation(event: RunEvent) -> cel.Activation:
    return cel.activation(run=event.run, event=cel.Lazy(event.view), policy={})


class PolicyIndex:
    """Policies by (namespace, kind, policy event); safe to update while events are matched."""

    def __init__(self, policies: Iterable[Policy] = ()) -> None:
        self._lock = threading.Lock()
        self._policies: dict[tuple[str, str], CompiledPolicy] = {}
        self._buckets: dict[tuple[str, str, str], dict[tuple[str, str], CompiledPolicy]] = (
            defaultdict(dict)
        )
        #: Consecutive cost refusals per policy, and the policies they disabled (with the
        #: generation disabled and why): skipped until a new generation.
        self._strikes: dict[tuple[str, str], int] = {}
        self._disabled: dict[tuple[str, str], tuple[int, str]] = {}
        for policy in policies:
            self.upsert(policy)

    def __len__(self) -> int:
        return len(self._policies)

    def upsert(self, policy: Policy) -> CompiledPolicy:
        """Add or replace a policy; CEL is recompiled only when the expression changed, or
        the run kinds it is checked against (``spec.selector.kinds``)."""
        with self._lock:
            previous = self._policies.get(policy.key)
        if (
            previous is not None
            and previous.policy.when == policy.when
            and previous.policy.selector.kinds == policy.selector.kinds
        ):
            compiled = CompiledPolicy(policy, previous.when, previous.error, previous.reason)
        else:
            compiled = compile_policy(policy)
        with self._lock:
            self._drop(policy.key)
            self._policies[policy.key] = compiled
            for bucket in self._bucket_keys(policy):
                self._buckets[bucket][policy.key] = compiled
            if previous is None or previous.policy.generation != policy.generation:
                self._strikes.pop(policy.key, None)
            disabled = self._disabled.get(policy.key)
            if disabled is not None and disabled[0] != policy.generation:
                del self._disabled[policy.key]  # a new spec gets a new chance
        return compiled

    def disable(self, policy: Policy, message: str) -> None:
        """Skip ``policy`` in matching until its generation changes (also when a replica or an
        earlier process disabled it: its status says so)."""
        with self._lock:
            self._disabled[policy.key] = (policy.generation, message)

    def disabled(self, namespace: str, name: str) -> str | None:
        """Why the policy is disabled, or None."""
        found = self._disabled.get((namespace, name))
        return found[1] if found is not None else None

    def remove(self, namespace: str, name: str) -> None:
        with self._lock:
            self._drop((namespace, name))
            self._strikes.pop((namespace, name), None)
            self._disabled.pop((namespace, name), None)

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

    def match(
        self, event: RunEvent, candidates: list[CompiledPolicy] | None = None
    ) -> tuple[list[Match], list[Verdict]]:
        """The matches (one per policy and template ref) and the verdicts that had CEL errors.

        Matches that are not :attr:`Match.final` (suspended, rate-limited or transition
        policies) still need :func:`tekton_notifications.storm.decide` to say if they notify.
        ``candidates``: :meth:`candidates` of ``event``, when the caller has them already.
        """
        if event.is_notification_run:
            return [], []
        if candidates is None:
            candidates = self.candidates(event)
        if not candidates:
            return [], []
        # The event's view is built only when some candidate has CEL to run.
        activation = (
            event_activation(event) if any(c.when for c in candidates) else cel.Activation({})
        )
        matches: list[Match] = []
        errors: list[Verdict] = []
        for compiled in candidates:
            policy = compiled.policy
            if policy.key in self._disabled:
                continue  # logged and counted once, when it was disabled
            try:
                admitted = _admits(compiled, event, activation)
            except _Diagnose:
                pass
            else:
                if compiled.when is not None and self._strikes:
                    self._strikes.pop(policy.key, None)  # a success forgives cost refusals
                if admitted is not None:
                    direct, suspended = admitted
                    matches.extend(
                        Match(policy, ref, direct, suspended) for ref in policy.template_refs
                    )
                continue
            # An error: the diagnostic path says which, for the log, the metric and strikes.
            verdict = evaluate(compiled, event, activation)
            if compiled.when is not None:  # refused at load: unready already, not a strike
                verdict = self._strike(verdict)
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

    def _strike(self, verdict: Verdict) -> Verdict:
        """Count a cost refusal in a row; the :data:`COST_STRIKES`-th disables the policy."""
        key = verdict.policy.key
        if not verdict.cost_exceeded or verdict.error is None:
            if verdict.error is None:
                self._strikes.pop(key, None)
            return verdict
        with self._lock:
            if key in self._disabled:  # another event in flight disabled it meanwhile
                return verdict
            strikes = self._strikes[key] = self._strikes.get(key, 0) + 1
            if strikes < COST_STRIKES:
                return verdict
            message = (
                f"disabled after {strikes} evaluations in a row over the cost budget; "
                f"last: {verdict.error}"
            )
            self._disabled[key] = (verdict.policy.generation, message)
        logger.warning(
            "%s %s disabled until its spec changes: %s",
            verdict.policy.kind,
            "/".join(filter(None, key)),
            message,
        )
        return replace(verdict, disabled=True, error=message)

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
        verdicts = []
        for compiled in in_scope:
            disabled = self._disabled.get(compiled.policy.key)
            if disabled is not None:
                verdicts.append(
                    Verdict(compiled.policy, False, (), error=disabled[1], cost_exceeded=True)
                )
            else:
                verdicts.append(evaluate(compiled, event, activation))
        return verdicts

    def _drop(self, key: tuple[str, str]) -> None:
        previous = self._policies.pop(key, None)
        if previous is None:
            return
        for bucket in self._bucket_keys(previous.policy):
            self._buckets[bucket].pop(key, None)

    @staticmethod
    def _bucket_keys(policy: Policy) -> list[tuple[str, str, str]]:
        kinds = policy.selector.kinds or frozenset(vocabulary.RUN_KINDS)
        extra = [(policy.namespace, SUBSCRIBERS, "")] if policy.subscriptions else []
        # Cluster policies share one bucket per (kind, event); their namespace globs are
        # checked per candidate, so a cluster policy costs every namespace one check.
        events = set(policy.events)
        # Subscriptions' own transitions use their bucket.
        if policy.tracks_own_outcomes:
            events = (events - vocabulary.TRANSITION_EVENTS) | {"succeeded", "failed"}
        return [(policy.namespace, kind, event) for kind in kinds for event in events] + extra

    def subscribers(self, namespace: str) -> list[CompiledPolicy]:
        """Policies with ``spec.subscriptions`` that may see runs in ``namespace`` (namespaced
        ones first, then cluster ones, each by name), skipping disabled ones."""
        found: list[CompiledPolicy] = []
        with self._lock:
            for scope in (namespace, CLUSTER):
                bucket = self._buckets.get((scope, SUBSCRIBERS, ""), {})
                found.extend(c for key, c in sorted(bucket.items()) if key not in self._disabled)
        return found
