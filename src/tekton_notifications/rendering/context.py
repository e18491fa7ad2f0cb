"""The variables a template sees: ``run``, ``event``, ``policy``, ``template``, ``subscription``.

Owns turning a :class:`RunEvent` (plus the policy, the template and a transition) into the
render context, and the run's Tekton Dashboard URL. Must not: do I/O or render.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import quote

from tekton_notifications.events import RunEvent
from tekton_notifications.rendering.limits import DEFAULT_SETTINGS, RenderSettings
from tekton_notifications.subscriptions import EMPTY_VIEW

_KIND_PATHS: Final[Mapping[str, str]] = {
    "PipelineRun": "pipelineruns",
    "TaskRun": "taskruns",
    "CustomRun": "customruns",
}


def dashboard_url(event: RunEvent, settings: RenderSettings) -> str | None:
    """The run's page in Tekton Dashboard, or None when no dashboard is configured."""
    if not settings.dashboard_url:
        return None
    base = settings.dashboard_url.rstrip("/")
    return (
        f"{base}/#/namespaces/{quote(event.namespace, safe='')}/"
        f"{_KIND_PATHS[event.kind]}/{quote(event.name, safe='')}"
    )


def render_context(
    event: RunEvent,
    *,
    policy: Mapping[str, Any],
    template: Mapping[str, Any],
    settings: RenderSettings = DEFAULT_SETTINGS,
    transition: Mapping[str, Any] | None = None,
    subscription: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The variables a template sees: ``run``, ``event``, ``policy``, ``template``,
    ``subscription``.

    ``event.transition`` is ``"broken"`` or ``"fixed"`` when the run changed its pipeline's
    outcome (else ""), with the pipeline's outcome before it in ``event.previous`` (else None).
    """
    view = event.view()
    view["url"] = dashboard_url(event, settings)
    view["failed"] = [child.as_dict() for child in event.failed_children]
    view["transition"] = str(transition.get("name") or "") if transition else ""
    previous = transition.get("previous") if transition else None
    view["previous"] = dict(previous) if isinstance(previous, Mapping) else None
    return {
        "run": event.run,
        "event": view,
        "policy": dict(policy),
        "template": dict(template),
        "subscription": _subscription(subscription),
    }


def _subscription(subscription: Mapping[str, Any] | None) -> dict[str, Any]:
    view = dict(subscription if subscription is not None else EMPTY_VIEW)
    view["recipients"] = list(view.get("recipients") or [])
    return view
