"""Status recorder: ``launched``/``failed``/``suppressed`` in; Events and policy status out.

A small fourth stage so the others stay read-only on our resources (the policy filter writes
only its storm state). It records one Event on the source run and one on the policy per
notification outcome (deterministic names: a redelivery records nothing new; a suppression
goes on the run only), and keeps policy and template ``status`` current: a Ready condition
(CEL compile error, template syntax error, missing template), match and suppression counters.
Counters are batched and flushed every ``STATUS_FLUSH_SECONDS``: one status write per busy
policy per interval, never one per event.

It trusts the events no more than the other stages do: a notification must name a policy that
exists, uses the template and sees the run (:mod:`claims`), carry the key the policy filter
derives from them, and a ``launched`` run must be the one the launcher names; otherwise 400
before anything is written. The text it copies into Events is bounded and stripped of control
characters (:func:`_outcome`).
"""

from __future__ import annotations

import functools
import logging
import re
import threading
import unicodedata
from collections.abc import Callable, Mapping
from typing import Any

from tekton_notifications import (
    claims,
    deliverystatus,
    kube,
    metrics,
    models,
    notifications,
    recording,
    taskruns,
    vocabulary,
)
from tekton_notifications.caches import Bound, Key, ParsedCache, Watcher
from tekton_notifications.events import EventError
from tekton_notifications.notifications import Notification
from tekton_notifications.recording import Counters, Readiness
from tekton_notifications.stages.base import Response, accepted, rejected, unavailable
from tekton_notifications.stages.skeleton import Incoming, NotificationStage

logger = logging.getLogger(__name__)

EventWriter = Callable[[Mapping[str, Any]], bool]
StatusWriter = Callable[[str, str, str, Mapping[str, Any]], object]

#: The most characters of a failure's or suppression's message copied into an Event.
MAX_MESSAGE_CHARS = 512
#: Failure reasons are the launcher's API reasons and the renderer's RenderReasons.
_REASON = re.compile(r"^[A-Za-z0-9]{1,64}$")
_STAGES = frozenset({"render", "launch"})
_RUN_KINDS = frozenset({"TaskRun", "PipelineRun"})
#: A Kubernetes object name (DNS-1123 subdomain): what a real run's name always is.
_OBJECT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


class StatusRecorder(NotificationStage[tuple[str, str]]):
    """Records outcomes; what it reads of a payload is the outcome and the Event message."""

    name = "status-recorder"
    accepts = frozenset(
        {
            notifications.LAUNCHED,
            notifications.FAILED,
            notifications.SUPPRESSED,
            notifications.DELIVERED,
            notifications.DELIVERY_FAILED,
        }
    )

    def __init__(
        self,
        *,
        write_event: EventWriter,
        write_status: StatusWriter,
        flush_seconds: float = 10.0,
        informers: tuple[kube.Informer, ...] = (),
    ) -> None:
        # The valid policies, for the claim check (fed with the policy caches).
        super().__init__(policies=claims.PolicyDirectory(), informers=informers)
        self._write_event, self._write_status = write_event, write_status
        self._flush_seconds = flush_seconds
        self._lock = threading.Lock()
        #: The objects as listed, whose status this stage writes.
        self._objects: dict[str, ParsedCache[dict[str, Any]]] = {
            vocabulary.POLICY_PLURAL: ParsedCache(_as_listed),
            vocabulary.CLUSTER_POLICY_PLURAL: ParsedCache(_cluster_policy, cluster=True),
            vocabulary.TEMPLATE_PLURAL: ParsedCache(_as_listed),
        }
        self._dirty_policies: set[Key] = set()
        self._dirty_templates: set[Key] = set()
        self._counters = Counters()
        #: Delivery outcomes since the last flush, by policy key and by template key.
        self._policy_deliveries: dict[Key, deliverystatus.Tally] = {}
        self._template_deliveries: dict[Key, deliverystatus.Tally] = {}
        #: Templates whose renders ran over their limits: key -> (generation, count, last).
        self._over_limits: dict[Key, tuple[int, int, str]] = {}
        self._stopping = threading.Event()
        self._flusher = threading.Thread(target=self._flush_loop, name="status-flush", daemon=True)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> StatusRecorder:
        api = kube.api_client(environ)
        recorder = cls(
            write_event=lambda body: kube.create_event(api, body),
            write_status=lambda plural, ns, name, patch: kube.patch_status(
                api, plural, ns, name, patch
            ),
            flush_seconds=float(environ.get("STATUS_FLUSH_SECONDS", "10")),
        )
        recorder.informers = tuple(
            kube.Informer(
                api,
                plural=plural,
                watcher=recorder.watcher(plural),
                # A cluster without the ClusterNotificationPolicy CRD just has none.
                optional=plural == vocabulary.CLUSTER_POLICY_PLURAL,
            )
            for plural in (
                vocabulary.POLICY_PLURAL,
                vocabulary.TEMPLATE_PLURAL,
                vocabulary.CLUSTER_POLICY_PLURAL,
            )
        )
        return recorder

    def start(self) -> None:
        super().start()
        self._flusher.start()

    def stop(self) -> None:
        super().stop()
        self._stopping.set()
        self.flush()  # counters in memory would be lost on scale-down

    def loaded(self) -> str:
        return f"{len(self.policy_objects)} policies, {len(self.template_objects)} templates"

    @property
    def policy_objects(self) -> dict[Key, dict[str, Any]]:
        """Both kinds of policy as listed, by :func:`caches.key_of` (a snapshot)."""
        return {
            **dict(self._objects[vocabulary.POLICY_PLURAL].items()),
            **dict(self._objects[vocabulary.CLUSTER_POLICY_PLURAL].items()),
        }

    @property
    def template_objects(self) -> dict[Key, dict[str, Any]]:
        return dict(self._objects[vocabulary.TEMPLATE_PLURAL].items())

    # Informer callbacks ---------------------------------------------------------------
    def watcher(self, plural: str) -> Watcher:
        """What the informer of ``plural`` feeds."""
        return Bound(
            reset=functools.partial(self.reset, plural),
            upsert=functools.partial(self.upsert, plural),
            delete=functools.partial(self.delete, plural),
        )

    def reset(self, plural: str, objects: list[dict[str, Any]]) -> None:
        with self._lock:
            self._objects[plural].reset(objects)
            if plural != vocabulary.TEMPLATE_PLURAL:
                self._directory().reset(objects, cluster=plural == vocabulary.CLUSTER_POLICY_PLURAL)
            self._dirty_policies |= set(self.policy_objects)
            self._dirty_templates |= set(self.template_objects)

    def upsert(self, plural: str, obj: dict[str, Any]) -> None:
        with self._lock:
            self._objects[plural].upsert(obj)
            self._mark(plural, self._objects[plural].key(obj))
            if plural != vocabulary.TEMPLATE_PLURAL:
                self._directory().upsert(obj, cluster=plural == vocabulary.CLUSTER_POLICY_PLURAL)

    def delete(self, plural: str, obj: dict[str, Any]) -> None:
        with self._lock:
            self._objects[plural].delete(obj)
            self._mark(plural, self._objects[plural].key(obj))
            if plural != vocabulary.TEMPLATE_PLURAL:
                self._directory().delete(obj, cluster=plural == vocabulary.CLUSTER_POLICY_PLURAL)

    def _directory(self) -> claims.PolicyDirectory:
        assert self.policies is not None  # always set: the recorder checks every claim
        return self.policies

    def _mark(self, plural: str, key: Key) -> None:
        if plural != vocabulary.TEMPLATE_PLURAL:
            self._dirty_policies.add(key)
        else:
            # A template's readiness decides the readiness of the policies that use it.
            self._dirty_templates.add(key)
            self._dirty_policies |= {
                k for k, obj in self.policy_objects.items() if _home(obj) == key[0]
            }

    # Events ---------------------------------------------------------------------------
    def read(
        self, event_type: str, notification: Notification, data: Mapping[str, Any]
    ) -> tuple[str, str]:
        return _outcome(event_type, notification, data)

    def decide(self, incoming: Incoming[tuple[str, str]]) -> Response:
        notification, data = incoming.notification, incoming.data
        outcome, message = incoming.read
        refused = _not_ours(incoming.attributes["type"], notification, data)
        if refused:
            return rejected(f"{incoming.id}: {refused}")
        timestamp = recording.now()
        bodies = recording.run_events(
            notification, outcome=outcome, message=message, timestamp=timestamp
        )
        try:
            written = [self._write_event(body) for body in bodies]
            first_time = written[0]
        except kube.ApiError as error:
            if error.retryable:
                return unavailable(f"recording events: {error}")
            logger.warning("events not recorded for %s: %s", notification.key[:12], error)
            first_time = True
        if first_time and outcome in _DELIVERY_OUTCOMES:
            self._count_delivery(notification, data, timestamp)
        elif first_time and (notification.attempt != 1 or notification.fallback_of):
            pass  # a retry's or a fallback's run is not a new match
        elif first_time:  # a redelivered outcome is not a new match
            if outcome == "failed":
                self._count_over_limits(notification, data.get("error"))
            with self._lock:
                key = (
                    "" if notification.cluster_policy else notification.policy_namespace,
                    notification.policy_name,
                )
                if outcome == "suppressed":
                    self._counters.add_suppressed(key, timestamp)
                else:
                    self._counters.add(key, timestamp)
                self._dirty_policies.add(key)
        return accepted(f"recorded {outcome} for {notification.policy_name}")

    def _count_delivery(
        self, notification: Notification, data: Mapping[str, Any], timestamp: str
    ) -> None:
        """One finished notification run: counters, metrics, and the template's streak."""
        outcome = data["outcome"]  # checked by _outcome
        delivered = outcome.get("outcome") == "delivered"
        policy_key = (
            "" if notification.cluster_policy else notification.policy_namespace,
            notification.policy_name,
        )
        template_key = (notification.policy_namespace, notification.template_ref.name)
        failure = {
            "time": timestamp,
            "run": f"{outcome['run'].get('namespace')}/{outcome['run'].get('name')}",
            "message": _text(_failure_message(outcome), 1024),
        }
        metrics.DELIVERIES.labels(
            notification.policy_namespace,
            notification.policy_name,
            notification.template_ref.name,
            str(outcome.get("outcome")),
        ).inc()
        seconds = outcome.get("seconds")
        if isinstance(seconds, int | float) and not isinstance(seconds, bool) and seconds >= 0:
            metrics.DELIVERY_SECONDS.observe(seconds)
        with self._lock:
            for tallies, key in (
                (self._policy_deliveries, policy_key),
                (self._template_deliveries, template_key),
            ):
                tally = tallies.setdefault(key, deliverystatus.Tally())
                if delivered:
                    tally.add_delivered()
                else:
                    tally.add_failed(failure)
            self._dirty_policies.add(policy_key)
            self._dirty_templates.add(template_key)

    def _count_over_limits(self, notification: notifications.Notification, error: object) -> None:
        """A render over its limits counts against its template's Ready, per generation."""
        if not isinstance(error, Mapping) or error.get("reason") != "RenderLimitExceeded":
            return
        key = (notification.policy_namespace, notification.template_ref.name)
        with self._lock:
            template = self._objects[vocabulary.TEMPLATE_PLURAL].get(*key)
            if template is None:
                return
            generation = int((template.get("metadata") or {}).get("generation") or 0)
            seen, count, _ = self._over_limits.get(key, (generation, 0, ""))
            count = count + 1 if seen == generation else 1
            self._over_limits[key] = (generation, count, str(error.get("message") or "")[:512])
            self._mark(vocabulary.TEMPLATE_PLURAL, key)

    # Status ---------------------------------------------------------------------------
    def _flush_loop(self) -> None:
        while not self._stopping.wait(self._flush_seconds):
            try:
                self.flush()
            except Exception:  # never let the flusher die; the next interval retries
                logger.exception("status flush failed")

    def flush(self) -> int:
        """Write every status that changed; returns how many writes were made."""
        with self._lock:
            dirty_templates, self._dirty_templates = self._dirty_templates, set()
            dirty_policies, self._dirty_policies = self._dirty_policies, set()
            counts = self._counters.drain()
            policy_deliveries, self._policy_deliveries = self._policy_deliveries, {}
            template_deliveries, self._template_deliveries = self._template_deliveries, {}
            templates = self.template_objects
            policies = self.policy_objects
            over_limits = dict(self._over_limits)
        timestamp = recording.now()
        readiness = {
            key: _template_readiness(obj, over_limits.get(key)) for key, obj in templates.items()
        }
        writes = 0
        for key in sorted(dirty_templates & set(templates)):
            ok = self._write(
                vocabulary.TEMPLATE_PLURAL,
                templates[key],
                readiness[key],
                timestamp=timestamp,
                deliveries=template_deliveries.get(key),
            )
            if not ok and key in template_deliveries:
                self._restore(self._template_deliveries, key, template_deliveries[key])
            writes += ok
        for key in sorted((dirty_policies | counts.keys()) & set(policies)):
            home = _home(policies[key])
            in_namespace = {name: r for (ns, name), r in readiness.items() if ns == home}
            plural = vocabulary.CLUSTER_POLICY_PLURAL if key[0] == "" else vocabulary.POLICY_PLURAL
            ok = self._write(
                plural,
                policies[key],
                recording.policy_readiness(policies[key], in_namespace),
                matches=counts.matches.get(key, 0),
                last_matched=counts.last_matched.get(key),
                suppressed=counts.suppressed.get(key, 0),
                last_suppressed=counts.last_suppressed.get(key),
                timestamp=timestamp,
                deliveries=policy_deliveries.get(key),
            )
            if not ok and key in policy_deliveries:
                self._restore(self._policy_deliveries, key, policy_deliveries[key])
            if not ok and key in counts.keys():  # noqa: SIM118  (Counters is not a dict)
                with self._lock:  # keep the counts for the next flush
                    self._counters.restore(key, counts)
                    self._dirty_policies.add(key)
            writes += ok
        return writes

    def _restore(
        self, tallies: dict[Key, deliverystatus.Tally], key: Key, drained: deliverystatus.Tally
    ) -> None:
        """Put back a tally whose status write failed, before what came since."""
        with self._lock:
            tallies[key] = drained.merge(tallies.get(key, deliverystatus.Tally()))

    def _write(
        self,
        plural: str,
        obj: Mapping[str, Any],
        readiness: Readiness,
        *,
        timestamp: str,
        matches: int = 0,
        last_matched: str | None = None,
        suppressed: int = 0,
        last_suppressed: str | None = None,
        deliveries: deliverystatus.Tally | None = None,
    ) -> bool:
        metadata = obj.get("metadata") or {}
        patch = recording.status_patch(
            obj.get("status") or {},
            generation=int(metadata.get("generation") or 0),
            readiness=readiness,
            matches=matches,
            last_matched=last_matched,
            suppressed=suppressed,
            last_suppressed=last_suppressed,
            timestamp=timestamp,
        )
        if deliveries is not None:
            status = obj.get("status") or {}
            current = {**status, **(patch or {}).get("status", {})}
            extra = deliverystatus.fields(
                current,
                deliveries,
                template=plural == vocabulary.TEMPLATE_PLURAL,
                generation=int(metadata.get("generation") or 0),
                timestamp=timestamp,
            )
            if extra:
                patch = {"status": {**(patch or {}).get("status", {}), **extra}}
        if patch is None:
            return False
        try:
            self._write_status(
                plural, str(metadata.get("namespace") or ""), str(metadata.get("name")), patch
            )
        except kube.ApiError as error:
            logger.warning(
                "status of %s %s/%s not written: %s",
                plural,
                metadata.get("namespace"),
                metadata.get("name"),
                error,
            )
            return False
        # Our own write comes back through the watch; meanwhile keep the cache current.
        with self._lock:
            cached = self._objects[plural].get(*self._objects[plural].key(obj))
            if cached is not None:
                cached["status"] = {**(cached.get("status") or {}), **patch["status"]}
        return True


def _outcome(
    event_type: str, notification: Notification, payload: Mapping[str, Any]
) -> tuple[str, str]:
    """The outcome and the Event message; :class:`EventError` when the payload is malformed.

    Only fields of the expected types are used, and free text is bounded and printable: an
    Event message is read by people (``kubectl describe``) and by tools.
    """
    if event_type == notifications.LAUNCHED:
        run = _object(payload, "launched")
        kind, name = run.get("kind"), run.get("name")
        if not isinstance(kind, str) or kind not in _RUN_KINDS or not isinstance(name, str):
            raise EventError("launched: needs kind TaskRun or PipelineRun and a name")
        return "sent", recording.sent_message(notification, {"kind": kind, "name": name})
    if event_type in (notifications.DELIVERED, notifications.DELIVERY_FAILED):
        outcome = _object(payload, "outcome")
        run = _object(outcome, "run")
        if (
            run.get("kind") not in _RUN_KINDS
            or not isinstance(run.get("name"), str)
            or outcome.get("outcome") not in ("delivered", "failed", "timedOut")
            or (outcome.get("outcome") == "delivered") != (event_type == notifications.DELIVERED)
        ):
            raise EventError("outcome: needs a run (kind, name) and an outcome of its event type")
        if event_type == notifications.DELIVERED:
            return "delivered", recording.delivered_message(notification, run)
        return "deliveryFailed", recording.delivery_failed_message(
            notification, run, _failure_message(outcome), _text(_next_step(outcome))
        )
    if event_type == notifications.SUPPRESSED:
        details = _object(payload, "suppressed")
        view = {name: _text(details.get(name)) for name in ("reason", "message")}
        return "suppressed", recording.suppressed_message(notification, view)
    error = _object(payload, "error")
    stage, reason = error.get("stage"), error.get("reason")
    if (
        not isinstance(stage, str)
        or stage not in _STAGES
        or not isinstance(reason, str)
        or not _REASON.match(reason)
    ):
        raise EventError(
            "error: needs stage render or launch and a reason of at most 64 letters and digits"
        )
    view = {"stage": stage, "reason": reason, "message": _text(error.get("message"))}
    return "failed", recording.failed_message(notification, view)


def _not_ours(
    event_type: str, notification: Notification, payload: Mapping[str, Any]
) -> str | None:
    """Why the notification cannot come from the stages, once its claim and key hold."""
    if not _OBJECT_NAME.match(notification.event.name):
        return "its run's name is not a Kubernetes object name"
    if event_type in (
        notifications.LAUNCHED,
        notifications.DELIVERED,
        notifications.DELIVERY_FAILED,
    ):
        run = (
            payload["launched"]
            if event_type == notifications.LAUNCHED
            else payload["outcome"]["run"]
        )
        expected = taskruns.run_name(notification.event, notification.key, notification.attempt)
        if run.get("name") != expected or run.get("namespace") != notification.policy_namespace:
            return (
                f"launched run must be {notification.policy_namespace}/{expected}, the run the "
                "launcher names for this notification"
            )
    return None


#: What the recorder hears from the delivery tracker (recording.run_events' outcomes).
_DELIVERY_OUTCOMES = frozenset({"delivered", "deliveryFailed"})


def _failure_message(outcome: Mapping[str, Any]) -> str:
    """What failed, as Tekton reports it: outcome, reason, the failing step and its message."""
    step = _text(outcome.get("step"), 64)
    parts = [
        _text(outcome.get("outcome"), 16),
        _text(outcome.get("reason"), 64),
        f"step {step}" if step else "",
        _text(outcome.get("message")),
    ]
    return ": ".join(part for part in parts if part)


def _next_step(outcome: Mapping[str, Any]) -> str:
    """What the tracker does next, as words for the Event."""
    next_step = outcome.get("next")
    if not isinstance(next_step, Mapping):
        return ""
    if next_step.get("step") == "retry":
        due = next_step.get("due")
        when = f" at {due}" if isinstance(due, str) and due else ""
        return f"retrying (attempt {next_step.get('attempt')} of {outcome.get('attempts')}){when}"
    if next_step.get("step") == "fallback":
        return f"falling back to template {next_step.get('template')}"
    return "giving up"


def _object(payload: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = payload.get(name)
    if not isinstance(value, Mapping):
        raise EventError(f"notification data: {name!r} must be an object")
    return value


def _text(value: object, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``value`` as one printable line of at most ``limit`` characters (non-text: empty)."""
    if not isinstance(value, str):
        return ""
    printable = "".join(
        " " if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") else c
        for c in value[: limit * 4]
    )
    line = " ".join(printable.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _template_readiness(
    obj: Mapping[str, Any], over_limits: tuple[int, int, str] | None
) -> Readiness:
    """Counts of renders over their limits apply to the generation they were made with."""
    generation = int((obj.get("metadata") or {}).get("generation") or 0)
    if over_limits is None or over_limits[0] != generation:
        return recording.template_readiness(obj)
    return recording.template_readiness(obj, over_limits=over_limits[1], last=over_limits[2])


def _as_listed(obj: dict[str, Any]) -> dict[str, Any]:
    return obj


def _cluster_policy(obj: dict[str, Any]) -> dict[str, Any]:
    """List items may omit kind; the informer knows what it lists."""
    return {**obj, "kind": models.CLUSTER_POLICY_KIND}


def _home(policy: Mapping[str, Any]) -> str:
    """Where a policy's templates live: its namespace, or a cluster policy's templateNamespace."""
    if policy.get("kind") == models.CLUSTER_POLICY_KIND:
        return str((policy.get("spec") or {}).get("templateNamespace") or "")
    return str((policy.get("metadata") or {}).get("namespace"))
