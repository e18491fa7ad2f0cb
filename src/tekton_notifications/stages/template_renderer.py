"""Template renderer: ``matched`` in, ``rendered`` (the run to create) or ``failed`` out."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from tekton_notifications import (
    claims,
    kube,
    logs,
    metrics,
    models,
    notifications,
    rendering,
    taskruns,
    types,
)
from tekton_notifications.events import ChildRun, EventError, RunEvent
from tekton_notifications.notifications import Notification, failure
from tekton_notifications.stages.base import Response, accepted, rejected, reply, unavailable

logger = logging.getLogger(__name__)
_WHAT = {
    types.TEMPLATE_PLURAL: "templates",
    types.POLICY_PLURAL: "policies",
    types.CLUSTER_POLICY_PLURAL: "cluster policies",
}

ChildLookup = Callable[[str, tuple[ChildRun, ...]], tuple[ChildRun, ...]]


class TemplateCache:
    """NotificationTemplates by (namespace, name), compiled once per generation."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str], rendering.CompiledTemplate | str] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def reset(self, objects: list[dict[str, Any]]) -> None:
        entries = {_key(obj): _compile(obj) for obj in objects}
        with self._lock:
            self._entries = entries

    def upsert(self, obj: dict[str, Any]) -> None:
        entry = _compile(obj)
        with self._lock:
            self._entries[_key(obj)] = entry

    def delete(self, obj: dict[str, Any]) -> None:
        with self._lock:
            self._entries.pop(_key(obj), None)

    def get(self, namespace: str, name: str) -> rendering.CompiledTemplate | str | None:
        """The compiled template, the reason it is unusable, or None when it doesn't exist."""
        with self._lock:
            return self._entries.get((namespace, name))


def _key(obj: Mapping[str, Any]) -> tuple[str, str]:
    metadata = obj.get("metadata", {})
    return (str(metadata.get("namespace")), str(metadata.get("name")))


def _compile(obj: Mapping[str, Any]) -> rendering.CompiledTemplate | str:
    try:
        return rendering.compile_template(models.parse_template(obj))
    except (models.SpecError, rendering.RenderError) as error:
        logger.warning("NotificationTemplate %s/%s is invalid: %s", *_key(obj), error)
        return str(error)


class TemplateRenderer:
    name = "template-renderer"

    def __init__(
        self,
        templates: TemplateCache,
        *,
        settings: rendering.RenderSettings | None = None,
        informer: kube.Informer | None = None,
        children: ChildLookup | None = None,
        policies: claims.PolicyDirectory | None = None,
        policy_informers: tuple[kube.Informer, ...] = (),
    ) -> None:
        self.templates = templates
        self.settings = settings or rendering.RenderSettings()
        self._informer = informer
        self._children = children
        #: When set, a notification must name a policy that exists and uses this template.
        self.policies = policies
        self._policy_informers = policy_informers

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> TemplateRenderer:
        templates = TemplateCache()
        settings = rendering.RenderSettings(
            dashboard_url=environ.get("TEKTON_DASHBOARD_URL") or None
        )
        api = kube.api_client(environ)
        informer = kube.Informer(
            api,
            group=types.GROUP,
            version=types.VERSION,
            plural=types.TEMPLATE_PLURAL,
            on_reset=templates.reset,
            on_upsert=templates.upsert,
            on_delete=templates.delete,
        )
        policies = claims.PolicyDirectory()
        return cls(
            templates,
            settings=settings,
            informer=informer,
            children=lambda ns, children: kube.child_outcomes(api, ns, children),
            policies=policies,
            policy_informers=kube.policy_informers(api, policies),
        )

    def _all_informers(self) -> list[kube.Informer]:
        return [i for i in (self._informer, *self._policy_informers) if i is not None]

    def start(self) -> None:
        for informer in self._all_informers():
            informer.start()

    def stop(self) -> None:
        for informer in self._all_informers():
            informer.stop()

    def ready(self) -> tuple[bool, str]:
        for informer in self._all_informers():
            if not informer.ready:
                return (
                    False,
                    f"{informer.plural} not loaded yet: {informer.last_error or 'listing'}",
                )
        return True, f"{len(self.templates)} templates"

    def respond(self, attributes: Mapping[str, str], data: object) -> Response:
        if attributes.get("type") != notifications.MATCHED:
            return accepted(f"ignored: unsupported event type {attributes.get('type')!r}")
        try:
            notification = notifications.parse_notification(data)
        except EventError as error:
            return rejected(f"{attributes.get('id')}: {error}")
        ready, why = self.ready()
        if not ready:
            return unavailable(why)
        if self.policies is not None:
            refused = claims.refusal(notification, self.policies.claimed(notification))
            if refused:  # checked before anything about the run is read
                return rejected(f"{attributes.get('id')}: {refused}")
        notification = notification.next_hop()
        ref = notification.template_ref
        # Templates are looked up in the policy's namespace only: no cross-tenant reads.
        entry = self.templates.get(notification.policy_namespace, ref.name)
        if entry is None:
            return self._failed(
                notification,
                "TemplateNotFound",
                f"NotificationTemplate {notification.policy_namespace}/{ref.name} does not exist",
            )
        if isinstance(entry, str):
            return self._failed(notification, "InvalidTemplate", entry)
        event = self._with_child_outcomes(notification.event)
        try:
            params = entry.render(
                event=event,
                policy=notification.policy_view,
                overrides=ref.params,
                settings=self.settings,
                transition=notification.transition,
            )
        except rendering.RenderError as error:
            return self._failed(notification, error.reason, str(error))
        resource = taskruns.build_run(
            event=notification.event,
            template=entry.template,
            params=params,
            policy_namespace=notification.policy_namespace,
            policy=notification.policy_name,
            policy_kind=notification.policy_kind,
        )
        rendered = replace(notification, resource=resource)
        return reply(rendered.to_event(notifications.RENDERED))

    def _with_child_outcomes(self, event: RunEvent) -> RunEvent:
        """Current Tekton names a PipelineRun's children without their outcome: look it up
        for finished runs, so templates can say which tasks failed and why."""
        unknown = [child for child in event.children if not child.status]
        if self._children is None or not unknown or event.event not in ("failed", "successful"):
            return event
        return replace(event, children=self._children(event.namespace, event.children))

    def _failed(self, notification: Notification, reason: str, message: str) -> Response:
        metrics.RENDER_FAILURES.labels(reason).inc()
        logger.warning(
            "render failed: %s: %s",
            reason,
            message,
            extra={
                "notification": logs.fields(
                    notification.event,
                    policy=notification.policy_name,
                    template=notification.template_ref.name,
                    key=notification.key,
                    reason=reason,
                )
            },
        )
        return reply(failure(notification, stage="render", reason=reason, message=message))
