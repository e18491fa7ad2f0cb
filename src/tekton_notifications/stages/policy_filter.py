"""Policy filter: Tekton event in, one ``matched`` event per (policy, template ref) out."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from tekton_notifications import (
    kube,
    logs,
    metrics,
    models,
    notifications,
    sink,
    taskruns,
    tracing,
    types,
)
from tekton_notifications.events import EventError, RunEvent, UnsupportedEvent, parse_event
from tekton_notifications.matching import Match, PolicyIndex
from tekton_notifications.notifications import Notification, OutgoingEvent
from tekton_notifications.stages.base import Response, accepted, rejected, reply, unavailable

logger = logging.getLogger(__name__)

Publisher = Callable[[Sequence[OutgoingEvent]], None]


class PolicyFilter:
    """Matches against an in-memory :class:`PolicyIndex` kept current by an informer.

    One match is the reply; several are each published to the broker (``K_SINK``) and the
    answer is 202. If publishing fails midway the answer is 503: the broker redelivers the
    Tekton event, and the launcher's deterministic names make the repeats harmless.
    """

    name = "policy-filter"

    def __init__(
        self,
        index: PolicyIndex,
        *,
        publish: Publisher | None = None,
        informer: kube.Informer | None = None,
    ) -> None:
        self.index = index
        self._publish = publish
        self._informer = informer
        self._cluster_informer: kube.Informer | None = None
        #: Policies that failed to parse, by (namespace, name): shown by ready() and logs.
        self.invalid: dict[tuple[str, str], str] = {}

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> PolicyFilter:
        index = PolicyIndex()
        target = environ.get("K_SINK")
        publish = (lambda events: sink.publish(target, events)) if target else None
        stage = cls(index, publish=publish)
        api = kube.api_client(environ)
        stage._informer = kube.Informer(
            api,
            group=types.GROUP,
            version=types.VERSION,
            plural=types.POLICY_PLURAL,
            on_reset=stage.reset,
            on_upsert=stage.upsert,
            on_delete=stage.delete,
        )
        # Optional: a cluster without the ClusterNotificationPolicy CRD just has none.
        stage._cluster_informer = kube.Informer(
            api,
            group=types.GROUP,
            version=types.VERSION,
            plural=types.CLUSTER_POLICY_PLURAL,
            on_reset=stage.reset_cluster,
            on_upsert=stage.upsert_cluster,
            on_delete=stage.delete_cluster,
            optional=True,
        )
        return stage

    def _all_informers(self) -> list[kube.Informer]:
        return [i for i in (self._informer, self._cluster_informer) if i is not None]

    def start(self) -> None:
        for informer in self._all_informers():
            informer.start()

    def stop(self) -> None:
        for informer in self._all_informers():
            informer.stop()

    def ready(self) -> tuple[bool, str]:
        for informer in self._all_informers():
            if not informer.ready:
                return False, f"policies not loaded yet: {informer.last_error or 'listing'}"
        return True, f"{len(self.index)} policies"

    # Informer callbacks: parse once per object change, never per event.
    def reset(self, objects: list[dict[str, Any]], *, cluster: bool = False) -> None:
        for key in [k for k in self.invalid if (k[0] == "") == cluster]:
            del self.invalid[key]
        parsed = (self._parse(obj, cluster) for obj in objects)
        self.index.replace_all((p for p in parsed if p is not None), cluster=cluster)

    def upsert(self, obj: dict[str, Any], *, cluster: bool = False) -> None:
        policy = self._parse(obj, cluster)
        if policy is not None:
            self.index.upsert(policy)
        else:
            self.delete(obj, cluster=cluster)

    def delete(self, obj: dict[str, Any], *, cluster: bool = False) -> None:
        self.index.remove(*_key(obj, cluster))

    def reset_cluster(self, objects: list[dict[str, Any]]) -> None:
        self.reset(objects, cluster=True)

    def upsert_cluster(self, obj: dict[str, Any]) -> None:
        self.upsert(obj, cluster=True)

    def delete_cluster(self, obj: dict[str, Any]) -> None:
        self.delete(obj, cluster=True)

    def _parse(self, obj: Mapping[str, Any], cluster: bool = False) -> models.Policy | None:
        key = _key(obj, cluster)
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
        matches, errors = self.index.match(event)
        for verdict in errors:
            metrics.CEL_ERRORS.labels(verdict.policy.namespace, verdict.policy.name).inc()
        # One trace per Tekton event: continue Tekton's, or start one here.
        traced = replace(
            event,
            extensions={
                **event.extensions,
                "traceparent": tracing.child_of(event.extensions.get("traceparent")),
            },
        )
        outgoing = [matched_event(match, traced) for match in matches]
        for match in matches:
            metrics.MATCHES.labels(
                match.policy.namespace, match.policy.name, match.template_ref.name
            ).inc()
        logger.info(
            "%s %s/%s %s: %d match(es)%s",
            event.kind,
            event.namespace,
            event.name,
            event.outcome,
            len(outgoing),
            "".join(f" {m.policy.name}->{m.template_ref.name}" for m in matches),
            extra={
                "notification": logs.fields(
                    traced, policy=",".join(m.policy.name for m in matches) or None
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
        return accepted(f"published {len(outgoing)} matches")


def matched_event(match: Match, event: RunEvent) -> OutgoingEvent:
    policy = match.policy
    key = taskruns.notification_key(
        event,
        policy_namespace=policy.home_namespace,
        policy=policy.name,
        template=match.template_ref.name,
        policy_kind=policy.kind,
    )
    notification = Notification(
        key=key,
        event=event,
        policy_name=policy.name,
        policy_namespace=policy.home_namespace,
        template_ref=match.template_ref,
        policy_kind=policy.kind,
    )
    return notification.to_event(notifications.MATCHED)


def _key(obj: Mapping[str, Any], cluster: bool) -> tuple[str, str]:
    metadata = obj.get("metadata") or {}
    return ("" if cluster else str(metadata.get("namespace")), str(metadata.get("name")))
