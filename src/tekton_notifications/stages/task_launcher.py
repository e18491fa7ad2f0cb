"""Task launcher: ``rendered`` in, the run created, ``launched`` (or ``failed``) out.

It trusts nothing in the event but the param values: the claim (:mod:`claims`) must name a
real policy and template, the key must be the one of the claim (both checked by the opening,
:mod:`.skeleton`), and the run must be the one that template builds for that key
(:func:`taskruns.not_allowed`, :func:`taskruns.not_from_template`): only the param values
are the renderer's. A run with any other field (a pod template, workspaces, another service
account or resolver) is refused with 400, signed or not.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from tekton_notifications import claims, kube, logs, metrics, notifications, taskruns, vocabulary
from tekton_notifications.events import EventError
from tekton_notifications.notifications import Notification, failure
from tekton_notifications.stages.base import Response, rejected, reply, unavailable
from tekton_notifications.stages.skeleton import Incoming, NotificationStage

logger = logging.getLogger(__name__)

Creator = Callable[[Mapping[str, Any]], kube.Created]


class TaskLauncher(NotificationStage[None]):
    """Creates the run. 409 means an earlier delivery already did: that is success."""

    name = "task-launcher"
    accepts = frozenset({notifications.RENDERED})

    def __init__(
        self,
        create: Creator,
        *,
        policies: claims.PolicyDirectory | None = None,
        templates: claims.TemplateDirectory | None = None,
        informers: tuple[kube.Informer, ...] = (),
    ) -> None:
        super().__init__(policies=policies, informers=informers)
        self._create = create
        #: When set, the run must be what its template builds, not just allowed fields.
        self.templates = templates

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> TaskLauncher:
        api = kube.api_client(environ)
        policies = claims.PolicyDirectory()
        templates = claims.TemplateDirectory()
        return cls(
            lambda body: kube.create_run(api, body),
            policies=policies,
            templates=templates,
            informers=(
                *kube.policy_informers(api, policies),
                kube.Informer(api, plural=vocabulary.TEMPLATE_PLURAL, watcher=templates),
            ),
        )

    def read(self, event_type: str, notification: Notification, data: Mapping[str, Any]) -> None:
        malformed = _malformed(notification.resource)
        if malformed:
            raise EventError(malformed)

    def decide(self, incoming: Incoming[None]) -> Response:
        attributes, policy = incoming.attributes, incoming.policy
        rendered = incoming.notification  # as the renderer built the run, before this hop
        notification = rendered.next_hop()
        problem = _unsafe(notification)
        if problem:
            return self._failed(notification, "Refused", problem)
        assert notification.resource is not None
        refused = taskruns.not_allowed(notification.resource)
        if refused:
            return self._not_admitted(attributes, rendered, refused)
        if self.templates is not None:
            template = self.templates.get(
                notification.policy_namespace, notification.template_ref.name
            )
            if template is None or isinstance(template, str):
                # Gone or broken since it was rendered: nothing to compare with, ever.
                reason = "TemplateNotFound" if template is None else "InvalidTemplate"
                return self._failed(notification, reason, template or "template deleted")
            refused = taskruns.not_from_template(
                notification.resource,
                event=rendered.event,
                template=template,
                param_names=claims.param_names(policy, template),
                policy_namespace=rendered.policy_namespace,
                policy=rendered.policy_name,
                policy_kind=rendered.policy_kind,
                key=rendered.key,  # checked against the claim by the opening
                attempt=rendered.attempt,
                fallback_of=rendered.fallback_of,
                origin=rendered.origin,
            )
            if refused:
                return self._not_admitted(attributes, rendered, refused)
        try:
            created = self._create(notification.resource)
        except kube.ApiError as error:
            if error.retryable:
                metrics.LAUNCHES.labels("retry").inc()
                return unavailable(f"creating {_describe(notification)}: {error}")
            return self._failed(notification, error.reason or str(error.status), error.message)
        metrics.LAUNCHES.labels("created" if created.created else "existed").inc()
        logger.info(
            "%s %s/%s %s for %s",
            created.kind,
            created.namespace,
            created.name,
            "created" if created.created else "already existed",
            _describe(notification),
            extra={"notification": _log_fields(notification, status=created.name)},
        )
        run = {
            "kind": created.kind,
            "name": created.name,
            "namespace": created.namespace,
            "uid": created.uid,
            "created": created.created,
        }
        return reply(notification.to_event(notifications.LAUNCHED, launched=run))

    def _not_admitted(
        self, attributes: Mapping[str, str], notification: Notification, why: str
    ) -> Response:
        """A run the template cannot have produced: a forgery, or a bug to look at (400)."""
        metrics.LAUNCHES.labels("refused").inc()
        return rejected(
            f"{attributes.get('id')}: run not admitted for {_describe(notification)}: {why}"
        )

    def _failed(self, notification: Notification, reason: str, message: str) -> Response:
        metrics.LAUNCHES.labels("failed").inc()
        logger.warning(
            "launch failed for %s: %s: %s",
            _describe(notification),
            reason,
            message,
            extra={"notification": _log_fields(notification, reason=reason)},
        )
        return reply(failure(notification, stage="launch", reason=reason, message=message))


def _log_fields(notification: Notification, **more: str) -> dict[str, object]:
    return logs.fields(
        notification.event,
        policy=notification.policy_name,
        template=notification.template_ref.name,
        key=notification.key,
        **more,
    )


def _malformed(resource: Mapping[str, Any] | None) -> str | None:
    """Why the run is not even shaped like one (400), before its content is judged."""
    if resource is None:
        return None  # a missing run is refused by _unsafe, as before
    metadata, spec = resource.get("metadata"), resource.get("spec")
    if not isinstance(metadata, Mapping) or not isinstance(spec, Mapping):
        return "resource: metadata and spec must be objects"
    for name in ("labels", "annotations"):
        if not isinstance(metadata.get(name) or {}, Mapping):
            return f"resource: metadata.{name} must be an object"
    return None


def _unsafe(notification: Notification) -> str | None:
    """Refuse a resource that would act outside the policy's namespace or escape the guard."""
    resource = notification.resource
    if resource is None:
        return "rendered event carries no resource"
    metadata = resource.get("metadata") or {}
    if resource.get("apiVersion") != "tekton.dev/v1" or resource.get("kind") not in (
        "TaskRun",
        "PipelineRun",
    ):
        return "only tekton.dev/v1 TaskRuns and PipelineRuns are launched"
    if metadata.get("namespace") != notification.policy_namespace:
        return (
            f"run namespace {taskruns.shown(metadata.get('namespace'))} differs from the "
            f"policy's {notification.policy_namespace!r}"
        )
    spec = resource.get("spec") or {}
    if (
        "taskSpec" in spec
        or "pipelineSpec" in spec
        or not ("taskRef" in spec or "pipelineRef" in spec)
    ):
        # Templates only ever render a reference: inline steps can only come from a forgery.
        return "only runs of a referenced Task or Pipeline are launched, never inline steps"
    labels = metadata.get("labels") or {}
    if labels.get(vocabulary.MANAGED_BY_LABEL) != vocabulary.MANAGED_BY_VALUE:
        return "run lacks the managed-by label that keeps it from notifying again"
    return None


def _describe(notification: Notification) -> str:
    event = notification.event
    return (
        f"{event.kind} {event.namespace}/{event.name} {event.outcome} via "
        f"{notification.policy_namespace}/{notification.policy_name} "
        f"-> {notification.template_ref.name}"
    )
