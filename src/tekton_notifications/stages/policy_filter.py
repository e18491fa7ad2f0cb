"""Policy filter: Tekton event in, one ``matched`` event per (policy, template ref) out."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from functools import partial
from typing import Any

from tekton_notifications import (
    cel,
    kube,
    logs,
    metrics,
    models,
    notifications,
    recording,
    runcheck,
    sink,
    storm,
    subscribing,
    subscriptions,
    tracing,
    vocabulary,
)
from tekton_notifications.caches import key_of
from tekton_notifications.definitions import Definitions, Lookup
from tekton_notifications.events import EventError, RunEvent, UnsupportedEvent, parse_event
from tekton_notifications.matching import CompiledPolicy, Match, PolicyIndex, Verdict
from tekton_notifications.notifications import Notification, OutgoingEvent
from tekton_notifications.policystate import MemoryStatus, PolicyGone, PolicyStates
from tekton_notifications.stages import base
from tekton_notifications.stages.base import (
    Blocking,
    Response,
    accepted,
    rejected,
    reply,
    unavailable,
)
from tekton_notifications.stages.skeleton import Informed
from tekton_notifications.storm import PolicyState

logger = logging.getLogger(__name__)

Publisher = base.Publisher
#: At most this many CEL expressions are evaluated for one event on the event loop.
LOOP_MAX_CEL = 32
#: Makes a cost refusal visible on the policy: (policy, message, disabled) -> an Event, and for
#: a disabled policy the ``status.disabled`` mark that makes it not Ready.
CostReporter = Callable[[models.Policy, str, bool], None]
#: Records a Kubernetes Event (a refused subscription on its run); best effort.
EventRecorder = Callable[[Mapping[str, Any]], None]


class PolicyFilter(Informed):
    """Matches against an in-memory :class:`PolicyIndex` kept current by an informer.

    One match is the reply; several are each published to the broker (``K_SINK``) and the
    answer is 202. If publishing fails midway the answer is 503: the broker redelivers the
    Tekton event, and the launcher's deterministic names make the repeats harmless.

    Policies with a rate limit or a transition (``fixed``) consult their state in ``states``
    (:mod:`tekton_notifications.storm`); a match held back becomes a ``suppressed`` event.
    """

    name = "policy-filter"

    def __init__(
        self,
        index: PolicyIndex,
        *,
        publish: Publisher | None = None,
        states: PolicyStates | None = None,
        runs: runcheck.RunCheck | None = None,
        clock: Callable[[], float] = time.time,
        report_cost: CostReporter | None = None,
        informers: tuple[kube.Informer, ...] = (),
        namespaces: subscribing.NamespaceDefaults | None = None,
        definitions: Lookup | None = None,
        record: EventRecorder | None = None,
    ) -> None:
        super().__init__(informers)
        #: Subscription defaults of each Namespace (None: namespaces are not watched).
        self.namespaces = namespaces
        #: The annotations of a run's Pipeline or Task (None: subscriptions read as the run's).
        self._definitions = definitions
        self._record = record
        self.index = index
        self._report_cost = report_cost
        self._publish = publish
        #: Without an API (tools, unit tests) state is kept in memory, per process.
        self.states = states if states is not None else MemoryStatus().states()
        #: Confirms a run before its event spends storm budget; None (tools, unit tests of
        #: matching) trusts the event. The served function always confirms.
        self.runs = runs
        self._clock = clock
        #: Policies that failed to parse, by (namespace, name): shown by ready() and logs.
        self.invalid: dict[tuple[str, str], str] = {}

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> PolicyFilter:
        index = PolicyIndex()
        publish = base.broker_publisher(environ)
        api = kube.api_client(environ)
        namespaces = subscribing.NamespaceDefaults()
        stage = cls(
            index,
            publish=publish,
            states=PolicyStates.on_api(api),
            runs=runcheck.RunCheck.on_api(api),
            report_cost=lambda policy, message, disabled: _report_cost(
                api, policy, message, disabled=disabled
            ),
            namespaces=namespaces,
            definitions=Definitions(api),
            record=lambda body: _record_event(api, body),
        )
        stage.informers = (
            *kube.policy_informers(api, stage),
            kube.namespace_informer(api, namespaces),
        )
        return stage

    def loaded(self) -> str:
        return f"{len(self.index)} policies"

    # Informer callbacks: parse once per object change, never per event.
    def reset(self, objects: list[dict[str, Any]], *, cluster: bool = False) -> None:
        for key in [k for k in self.invalid if (k[0] == "") == cluster]:
            del self.invalid[key]
        parsed = [(obj, self._parse(obj, cluster)) for obj in objects]
        self.index.replace_all((p for _, p in parsed if p is not None), cluster=cluster)
        for obj, policy in parsed:
            self.states.observe(obj, cluster=cluster)
            if policy is not None:
                self._loaded(obj, policy)

    def upsert(self, obj: dict[str, Any], *, cluster: bool = False) -> None:
        self.states.observe(obj, cluster=cluster)
        policy = self._parse(obj, cluster)
        if policy is not None:
            self.index.upsert(policy)
            self._loaded(obj, policy)
        else:
            self.delete(obj, cluster=cluster)

    def _loaded(self, obj: Mapping[str, Any], policy: models.Policy) -> None:
        """A policy disabled for cost stays so across replicas and restarts (its status says
        so, for this generation); one refused for cost at load gets its Event."""
        mark = recording.disabled_mark(obj)
        if mark is not None:
            self.index.disable(policy, str(mark.get("message")))
            return
        compiled = self.index.get(*policy.key)
        if compiled is not None and compiled.reason == cel.CelCostError.reason:
            self._refused_at_load(compiled)

    def _refused_at_load(self, compiled: CompiledPolicy) -> None:
        policy = compiled.policy
        logger.warning(
            "%s %s refused: %s", policy.kind, "/".join(filter(None, policy.key)), compiled.error
        )
        if self._report_cost is not None:
            self._report_cost(policy, str(compiled.error), False)

    def _cost_exceeded(self, verdict: Verdict) -> None:
        """Count a cost refusal; when it disabled the policy, show it on the policy."""
        policy = verdict.policy
        metrics.CEL_COST.labels(policy.namespace, policy.name, "refused").inc()
        if verdict.disabled:
            metrics.CEL_COST.labels(policy.namespace, policy.name, "disabled").inc()
            if self._report_cost is not None:
                self._report_cost(policy, str(verdict.error), True)

    def delete(self, obj: dict[str, Any], *, cluster: bool = False) -> None:
        self.index.remove(*key_of(obj, cluster=cluster))
        self.states.forget(key_of(obj, cluster=cluster))

    def _parse(self, obj: Mapping[str, Any], cluster: bool = False) -> models.Policy | None:
        key = key_of(obj, cluster=cluster)
        if cluster:  # list items may omit kind; the informer knows what it lists
            obj = {**obj, "kind": models.CLUSTER_POLICY_KIND}
        try:
            policy = models.parse_policy(obj)
        except models.SpecError as error:
            self.invalid[key] = str(error)
            logger.warning(
                "%s %s is invalid: %s",
                obj.get("kind") or "NotificationPolicy",
                "/".join(filter(None, key)),
                error,
            )
            return None
        self.invalid.pop(key, None)
        return policy

    def respond(self, attributes: Mapping[str, str], data: object) -> Response:
        outcome = self._prepare(attributes, data, on_the_loop=False)
        return outcome if isinstance(outcome, Response) else outcome()

    def prepare(self, attributes: Mapping[str, str], data: object) -> Response | Blocking:
        """The answer, when no match needs the API (state, run confirmation) or the broker
        (fan-out) and the event meets at most :data:`LOOP_MAX_CEL` expressions: most
        events, answered on the adapter's event loop with no thread hop
        (:func:`base.prepare`); else the rest of the work, for a worker thread."""
        return self._prepare(attributes, data, on_the_loop=True)

    def _prepare(
        self, attributes: Mapping[str, str], data: object, *, on_the_loop: bool
    ) -> Response | Blocking:
        ready, why = self.ready()
        if not ready:
            return unavailable(why)
        try:
            event = parse_event(attributes, data)
        except UnsupportedEvent as error:
            logger.info("ignored: %s", error)
            return accepted(f"ignored: {error}")
        except EventError as error:
            return rejected(f"{attributes.get('type')} {attributes.get('id')}: {error}")
        if event.is_notification_run:
            return accepted(f"ignored: {event.kind} {event.name} is a notification run")
        candidates = self.index.candidates(event)
        if on_the_loop and (
            sum(c.when is not None for c in candidates) > LOOP_MAX_CEL or self._may_subscribe(event)
        ):
            # Each evaluation is bounded, not their number: a namespace's many policies
            # share the CPU with the others' requests on a worker, not hold the loop. A
            # subscription may read its Pipeline or Task and record a refusal: API calls.
            return partial(self.respond, attributes, data)
        matches, errors = self.index.match(event, candidates)
        matches = [*matches, *self._subscribed(event)]
        # One trace per Tekton event: continue Tekton's, or start one here.
        traced = replace(
            event,
            extensions={
                **event.extensions,
                "traceparent": tracing.child_of(event.extensions.get("traceparent")),
            },
        )
        # What blocks: reading or writing state, confirming the run, publishing several
        # events, writing a policy's disabled mark. A suspended policy only counts.
        if (
            len(matches) <= 1
            and all(match.final or match.suspended for match in matches)
            and not any(verdict.disabled for verdict in errors)
        ):
            return self._answer(event, traced, matches, errors)
        return partial(self._answer, event, traced, matches, errors)

    def _answer(
        self,
        event: RunEvent,
        traced: RunEvent,
        matches: Sequence[Match],
        errors: Sequence[Verdict],
    ) -> Response:
        """Storm control, the log line and the reply or fan-out of one event's matches."""
        for verdict in errors:
            if verdict.cost_exceeded:
                self._cost_exceeded(verdict)
            else:
                metrics.CEL_ERRORS.labels(verdict.policy.namespace, verdict.policy.name).inc()
        try:
            outgoing, notifying = self._decide(matches, traced)
        except runcheck.Unconfirmed as refused:
            return _unconfirmed(traced, matches, refused.verdict)
        except kube.ApiError as error:
            return unavailable(f"recording policy state: {error}")
        for match in notifying:
            metrics.MATCHES.labels(
                match.policy.namespace, match.policy.name, match.template_ref.name
            ).inc()
        logger.info(
            "%s %s/%s %s: %d match(es)%s",
            event.kind,
            event.namespace,
            event.name,
            event.outcome,
            len(notifying),
            "".join(f" {m.policy.name}->{m.template_ref.name}" for m in notifying),
            extra={
                "notification": logs.fields(
                    traced, policy=",".join(m.policy.name for m in notifying) or None
                )
            },
        )
        if not outgoing:
            return accepted("no policy matched")
        if len(outgoing) == 1:
            return reply(outgoing[0])
        if self._publish is None:
            return unavailable(f"{len(outgoing)} matches need K_SINK to fan out; it is not set")
        try:
            self._publish(outgoing)
        except sink.PublishError as error:
            return unavailable(str(error))
        held = sum(event.type == notifications.SUPPRESSED for event in outgoing)
        return accepted(
            f"published {len(outgoing) - held} matches" + (f", {held} suppressed" if held else "")
        )

    def _may_subscribe(self, event: RunEvent) -> bool:
        """Whether the run or its namespace carries subscription annotations."""
        if subscriptions.has_any(event.annotations):
            return True
        return bool(self.namespaces and self.namespaces.annotations(event.namespace))

    def _subscribed(self, event: RunEvent) -> list[Match]:
        """The matches subscription annotations make; refused ones recorded on the run."""
        defaults = self.namespaces.annotations(event.namespace) if self.namespaces else {}
        if not subscriptions.has_any(event.annotations) and not defaults:
            return []
        definition = None
        if self._definitions is not None and subscriptions.has_any(event.annotations):
            definition = self._definitions(event)
        found = subscriptions.find(event, namespace=defaults, definition=definition)
        resolved = subscribing.resolve(found, event, self.index.subscribers(event.namespace))
        refused: list[subscribing.Resolution | subscriptions.Problem] = [
            *found.problems,
            *(item for item in resolved if item.status == "refused"),
        ]
        for item in refused:
            self._refused(event, item)
        for item in resolved:
            if item.status != "not selected":
                continue
            if item.verdict is not None and item.verdict.error and item.policy is not None:
                # A `when` that fails for this run: counted like the policy path's errors.
                metrics.CEL_ERRORS.labels(item.policy.namespace, item.policy.name).inc()
                logger.warning("subscription not selected: %s", item.message)
            else:
                logger.info("subscription not selected: %s", item.message)
        return [item.match for item in resolved if item.match is not None]

    def _refused(
        self, event: RunEvent, item: subscribing.Resolution | subscriptions.Problem
    ) -> None:
        message = subscribing.refused_message(item)
        metrics.SUBSCRIPTIONS_REFUSED.labels(event.namespace).inc()
        logger.warning(
            "%s on %s %s/%s: %s",
            subscribing.REFUSED_REASON,
            event.kind,
            event.namespace,
            event.name,
            message,
            extra={"notification": logs.fields(event, reason=subscribing.REFUSED_REASON)},
        )
        if self._record is not None:
            self._record(subscribing.refused_event(event, item, timestamp=recording.now()))

    def _decider(
        self, group: Sequence[Match], event: RunEvent
    ) -> Callable[[storm.PolicyState], storm.Decision]:
        # One decision per policy and event, for its template refs and the subscriptions it
        # allows together: the events any of them wants count as the policy's here.
        first = group[0]
        policy = first.policy
        if any(match.subscription is not None for match in group):
            wanted = frozenset().union(*(match.wanted for match in group))
            policy = replace(policy, events=policy.events | wanted)
        direct = any(match.direct for match in group)

        def decide(state: storm.PolicyState) -> storm.Decision:
            return storm.decide(
                policy,
                event,
                direct=direct,
                suspended=first.suspended,
                state=state,
                now=self._clock(),
            )

        return decide

    def _decide(
        self, matches: Sequence[Match], event: RunEvent
    ) -> tuple[list[OutgoingEvent], list[Match]]:
        """The events to send (matched and suppressed) and the matches that notify.

        Matches come one per template ref; storm control decides per policy, once.
        """
        by_policy: dict[tuple[str, str], list[Match]] = {}
        for match in matches:
            by_policy.setdefault(match.policy.key, []).append(match)
        outgoing: list[OutgoingEvent] = []
        notifying: list[Match] = []
        self._confirm(event, by_policy.values())
        for group in by_policy.values():
            first, policy = group[0], group[0].policy
            if all(match.final for match in group):
                outgoing.extend(matched_event(match, event) for match in group)
                notifying.extend(group)
                continue
            decide = self._decider(group, event)
            try:
                # A suspended policy needs no state: it only counts what it holds back.
                decision = (
                    decide(PolicyState()) if first.suspended else self.states.decide(policy, decide)
                )
            except PolicyGone as gone:
                logger.info("skipped: %s", gone)
                continue
            if decision.transition is not None and decision.state is not None:
                # Counted when recorded: a redelivery repeats the transition but writes nothing.
                metrics.TRANSITIONS.labels(policy.namespace, policy.name, decision.transition).inc()
            if decision.notify:
                transition = _transition(decision)
                # Each match notifies for the events it wants: this one, or the transition.
                chosen = [m for m in group if _wants(m, event, decision)]
                outgoing.extend(matched_event(m, event, transition=transition) for m in chosen)
                notifying.extend(chosen)
            elif decision.suppressed is not None:
                reason = "suspended" if first.suspended else decision.reason
                metrics.SUPPRESSED.labels(policy.namespace, policy.name, reason).inc()
                logger.info(
                    "suppressed: %s %s: %s",
                    policy.kind,
                    policy.name,
                    decision.suppressed,
                    extra={
                        "notification": logs.fields(
                            event, policy=policy.name, notes="; ".join(decision.notes)
                        )
                    },
                )
                outgoing.append(suppressed_event(first, event, reason, decision.suppressed))
                for note in decision.notes:
                    if note.startswith(storm.DIGEST_FULL):
                        logger.warning("%s %s: %s", policy.kind, policy.name, note)
            else:
                logger.debug("policy %s: %s", policy.name, "; ".join(decision.notes))
        return outgoing, notifying

    def _confirm(self, event: RunEvent, groups: Iterable[Sequence[Match]]) -> None:
        """Raise :class:`runcheck.Unconfirmed` when a match would spend storm budget on a run
        the API does not confirm; only then is the API asked (once per event)."""
        if self.runs is None:
            return
        if all(group[0].final or group[0].suspended for group in groups):
            return
        verdict = self.runs.confirm(event)
        if not verdict.confirmed:
            raise runcheck.Unconfirmed(verdict)


def _unconfirmed(event: RunEvent, matches: Sequence[Match], verdict: runcheck.Verdict) -> Response:
    """A Tekton event whose run the API does not confirm: nothing is sent, nothing is spent.

    422, not retried: the broker dead-letters it at once, so it shows in the dead-letter
    display with ``knativeerrorcode: 422``; the log line names the policies it would have
    spent, and ``tekton_notifications_run_checks_total`` counts it by reason.
    """
    policies = sorted({m.policy.name for m in matches})
    if verdict.retry:  # the API is down or does not show the outcome yet: the broker retries
        return unavailable(
            f"{event.type} {event.id}: run not confirmed yet ({verdict.reason}): "
            f"{verdict.message}; no storm budget spent"
        )
    message = (
        f"refused {event.type} {event.id}: run not confirmed ({verdict.reason}): "
        f"{verdict.message}; nothing sent, no storm budget spent"
    )
    logger.warning(
        "%s; policies %s",
        message,
        ",".join(policies),
        extra={
            "notification": logs.fields(
                event, policy=",".join(policies) or None, notes=verdict.reason
            )
        },
    )
    return Response(422, message=message)


def _wants(match: Match, event: RunEvent, decision: storm.Decision) -> bool:
    wanted = match.wanted
    return bool(wanted & event.policy_events) or decision.transition in wanted


def _transition(decision: storm.Decision) -> dict[str, Any] | None:
    if decision.transition is None:
        return None
    previous = decision.previous.view() if decision.previous is not None else None
    return {"name": decision.transition, "previous": previous}


def _notification(
    match: Match, event: RunEvent, transition: Mapping[str, Any] | None = None
) -> Notification:
    policy = match.policy
    subscription = match.subscription.view() if match.subscription is not None else None
    key = notifications.notification_key(
        event,
        policy_namespace=policy.home_namespace,
        policy=policy.name,
        template=match.template_ref.name,
        policy_kind=policy.kind,
        subscription=subscription,
    )
    return Notification(
        key=key,
        event=event,
        policy_name=policy.name,
        policy_namespace=policy.home_namespace,
        template_ref=match.template_ref,
        policy_kind=policy.kind,
        transition=transition,
        subscription=subscription,
    )


def matched_event(
    match: Match, event: RunEvent, *, transition: Mapping[str, Any] | None = None
) -> OutgoingEvent:
    return _notification(match, event, transition).to_event(notifications.MATCHED)


def suppressed_event(match: Match, event: RunEvent, reason: str, message: str) -> OutgoingEvent:
    """For the status recorder: counted in the policy's status, an Event on the run."""
    return _notification(match, event).to_event(
        notifications.SUPPRESSED, suppressed={"reason": reason, "message": message}
    )


def _record_event(api: Any, body: Mapping[str, Any]) -> None:
    """Best effort: a refused subscription is also in the log line and the metric."""
    try:
        kube.create_event(api, body)
    except kube.ApiError as error:
        logger.warning("Event %s not recorded: %s", body["metadata"]["name"], error)


def _report_cost(api: Any, policy: models.Policy, message: str, *, disabled: bool) -> None:
    """An Event on the policy and, when disabled, its ``status.disabled`` mark (which the
    status recorder turns into Ready False). Best effort: a failed write is logged; the
    policy is skipped in this process either way."""
    timestamp = recording.now()
    reason = cel.CelCostError.reason
    plural = vocabulary.CLUSTER_POLICY_PLURAL if policy.cluster else vocabulary.POLICY_PLURAL
    try:
        if disabled:
            status = recording.disabled_status(
                reason=reason, message=message, generation=policy.generation, timestamp=timestamp
            )
            kube.patch_status(api, plural, policy.namespace, policy.name, {"status": status})
        kube.create_event(
            api, recording.policy_event(policy, reason=reason, message=message, timestamp=timestamp)
        )
    except kube.ApiError as error:
        logger.warning("%s %s: cost refusal not recorded: %s", policy.kind, policy.name, error)
