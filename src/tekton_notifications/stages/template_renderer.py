"""Template renderer: ``matched`` in, ``rendered`` (the run to create) or ``failed`` out.

A render has one budget (rendering.RenderSettings: 2 s, 100,000 steps, 16,000,000
characters built, all params together); a template that runs over it is a ``failed``
notification with reason ``RenderLimitExceeded``, and after ``rendering.RENDER_LIMIT_STRIKES``
of them it is refused without rendering until its spec changes.
"""

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
    vocabulary,
)
from tekton_notifications.caches import Key, ParsedCache, key_of
from tekton_notifications.events import ChildRun, RunEvent
from tekton_notifications.notifications import Notification, failure
from tekton_notifications.stages.base import Response, reply
from tekton_notifications.stages.failure_context import FailureContext, Reader
from tekton_notifications.stages.skeleton import Incoming, NotificationStage

logger = logging.getLogger(__name__)

ChildLookup = Callable[[str, tuple[ChildRun, ...]], tuple[ChildRun, ...]]


class LazyTemplate:
    """A listed NotificationTemplate, compiled by the first render that needs it.

    Compiling every template when the informer lists them held the renderer unready for as
    long as all of them took (14 examples: ~0.7 s of a 1.1 s cold start); an event needs one.
    The compile is the same, once per generation (an update replaces the entry), under a lock
    so concurrent first renders compile once; an invalid template is logged when first used.
    """

    __slots__ = ("_compiled", "_lock", "_object")

    def __init__(self, obj: Mapping[str, Any]) -> None:
        self._object: Mapping[str, Any] | None = obj
        self._lock = threading.Lock()
        self._compiled: rendering.CompiledTemplate | str | None = None

    @property
    def is_compiled(self) -> bool:
        return self._compiled is not None

    def compiled(self) -> rendering.CompiledTemplate | str:
        """The compiled template, or why it is invalid."""
        with self._lock:
            if self._compiled is None:
                assert self._object is not None
                self._compiled, self._object = _compile(self._object), None
            return self._compiled


class TemplateCache(ParsedCache[LazyTemplate]):
    """NotificationTemplates by (namespace, name), compiled once per generation, on first use.

    Also remembers which templates ran over their render limits: after
    ``rendering.RENDER_LIMIT_STRIKES`` such renders of one generation (counted here, or
    recorded in the template's Ready condition by the status recorder), the template is
    refused without rendering until it is changed, so a hostile template costs its
    namespace's events a budget a few times, not on every event.
    """

    def __init__(self) -> None:
        super().__init__(LazyTemplate)
        #: (namespace, name) -> (generation, renders over the limits, last message).
        self._strikes: dict[Key, tuple[int, int, str]] = {}
        self._generations: dict[Key, int] = {}

    def forgotten(self, key: Key) -> None:
        self._strikes.pop(key, None)
        self._generations.pop(key, None)

    def observed(self, obj: Mapping[str, Any]) -> None:
        """Forget strikes of an older generation; take over a RenderLimitExceeded Ready
        condition the status recorder wrote for this one (another replica saw the strikes)."""
        key, generation = key_of(obj), _generation(obj)
        self._generations[key] = generation
        strikes = self._strikes.get(key)
        if strikes is not None and strikes[0] != generation:
            del self._strikes[key]
        condition = _ready_condition(obj)
        if (
            condition.get("status") == "False"
            and condition.get("reason") == "RenderLimitExceeded"
            and condition.get("observedGeneration") == generation
        ):
            message = str(condition.get("message") or "")
            self._strikes[key] = (generation, rendering.RENDER_LIMIT_STRIKES, message)

    def compiled(self, namespace: str, name: str) -> rendering.CompiledTemplate | str | None:
        """The template compiled (compiling it now if no render has yet), why it is invalid,
        or None if there is no such template."""
        entry = self.get(namespace, name)
        return None if entry is None else entry.compiled()

    def strike(self, namespace: str, name: str, message: str) -> int:
        """Count one render of this template over its limits; returns the count so far."""
        key = (namespace, name)
        with self._lock:
            generation = self._generations.get(key, 0)
            _, count, _ = self._strikes.get(key, (generation, 0, ""))
            self._strikes[key] = (generation, count + 1, message)
            return count + 1

    def disabled(self, namespace: str, name: str) -> str | None:
        """Why this template is refused without rendering, or None."""
        with self._lock:
            strikes = self._strikes.get((namespace, name))
        if strikes is None or strikes[1] < rendering.RENDER_LIMIT_STRIKES:
            return None
        return (
            f"NotificationTemplate {namespace}/{name} is not rendered: it ran over its render "
            f"limits {strikes[1]} times (last: {strikes[2]}); change the template to try again"
        )


def _generation(obj: Mapping[str, Any]) -> int:
    try:
        return int((obj.get("metadata") or {}).get("generation") or 0)
    except (TypeError, ValueError):
        return 0


def _ready_condition(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    status = obj.get("status")
    conditions = status.get("conditions") if isinstance(status, Mapping) else None
    for condition in conditions if isinstance(conditions, list) else []:
        if isinstance(condition, Mapping) and condition.get("type") == "Ready":
            return condition
    return {}


def _compile(obj: Mapping[str, Any]) -> rendering.CompiledTemplate | str:
    try:
        return rendering.compile_template(models.parse_template(obj))
    except (models.SpecError, rendering.RenderError) as error:
        logger.warning("NotificationTemplate %s/%s is invalid: %s", *key_of(obj), error)
        return str(error)


class TemplateRenderer(NotificationStage[None]):
    """Renders the run a ``matched`` notification's template builds; nothing else to read."""

    name = "template-renderer"
    accepts = frozenset({notifications.MATCHED})

    def __init__(
        self,
        templates: TemplateCache,
        *,
        settings: rendering.RenderSettings | None = None,
        children: ChildLookup | None = None,
        policies: claims.PolicyDirectory | None = None,
        informers: tuple[kube.Informer, ...] = (),
        failure_context: FailureContext | None = None,
    ) -> None:
        super().__init__(policies=policies, informers=informers)
        self.templates = templates
        self.settings = settings or rendering.RenderSettings()
        self._children = children
        self._failure_context = failure_context

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> TemplateRenderer:
        templates = TemplateCache()
        settings = rendering.RenderSettings(
            dashboard_url=environ.get("TEKTON_DASHBOARD_URL") or None
        )
        api = kube.api_client(environ)
        policies = claims.PolicyDirectory()
        return cls(
            templates,
            settings=settings,
            children=lambda ns, children: kube.child_outcomes(api, ns, children),
            policies=policies,
            informers=(
                kube.Informer(api, plural=vocabulary.TEMPLATE_PLURAL, watcher=templates),
                *kube.policy_informers(api, policies),
            ),
            failure_context=FailureContext(Reader.over(api)),
        )

    def loaded(self) -> str:
        return f"{len(self.templates)} templates"

    def read(self, event_type: str, notification: Notification, data: Mapping[str, Any]) -> None:
        return None

    def decide(self, incoming: Incoming[None]) -> Response:
        notification = incoming.notification.next_hop()
        ref = notification.template_ref
        # Templates are looked up in the policy's namespace only: no cross-tenant reads.
        entry = self.templates.compiled(notification.policy_namespace, ref.name)
        if entry is None:
            return self._failed(
                notification,
                "TemplateNotFound",
                f"NotificationTemplate {notification.policy_namespace}/{ref.name} does not exist",
            )
        if isinstance(entry, str):
            return self._failed(notification, "InvalidTemplate", entry)
        disabled = self.templates.disabled(notification.policy_namespace, ref.name)
        if disabled is not None:
            return self._failed(notification, "RenderLimitExceeded", disabled)
        event = self._with_child_outcomes(notification.event)
        if self._failure_context is not None:
            event = self._failure_context.enrich(event, entry.template, ref.params)
        try:
            params = entry.render(
                event=event,
                policy=notification.policy_view,
                overrides=ref.params,
                settings=self.settings,
                transition=notification.transition,
                scheduled=notification.scheduled,
                subscription=notification.subscription,
            )
        except rendering.RenderError as error:
            if error.reason == "RenderLimitExceeded":
                strikes = self.templates.strike(
                    notification.policy_namespace, ref.name, error.detail
                )
                # Counted in RENDER_FAILURES{reason="RenderLimitExceeded"} by _failed.
                logger.warning(
                    "NotificationTemplate %s/%s ran over its render limits (%d of %d%s)",
                    notification.policy_namespace,
                    ref.name,
                    strikes,
                    rendering.RENDER_LIMIT_STRIKES,
                    "; refused from now on" if strikes >= rendering.RENDER_LIMIT_STRIKES else "",
                )
            return self._failed(notification, error.reason, str(error))
        resource = taskruns.build_run(
            event=notification.event,
            template=entry.template,
            params=params,
            policy_namespace=notification.policy_namespace,
            policy=notification.policy_name,
            policy_kind=notification.policy_kind,
            key=notification.key,  # checked against the claim by the opening
            attempt=notification.attempt,
            fallback_of=notification.fallback_of,
            origin=notification.origin,
        )
        rendered = replace(notification, resource=resource)
        return reply(rendered.to_event(notifications.RENDERED))

    def _with_child_outcomes(self, event: RunEvent) -> RunEvent:
        """Current Tekton names a PipelineRun's children without their outcome: look it up
        for finished runs, so templates can say which tasks failed and why."""
        unknown = [child for child in event.children if not child.status]
        finished = event.tekton_event in ("failed", "successful")
        if self._children is None or not unknown or not finished:
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
