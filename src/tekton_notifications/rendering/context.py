"""The variables a template sees: ``run``, ``event``, ``policy``, ``template``.

Owns turning a :class:`RunEvent` (plus the policy, the template and a transition) into the
render context, and the links to the run (Tekton Dashboard, Tekton Results). Must not: do
I/O or render.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tekton_notifications import links
from tekton_notifications.events import RunEvent
from tekton_notifications.rendering.limits import DEFAULT_SETTINGS, RenderSettings


def dashboard_url(event: RunEvent, settings: RenderSettings) -> str | None:
    """The run's page in Tekton Dashboard, or None when no dashboard is configured."""
    configured = links.parse(settings.dashboard_url)
    return links.dashboard_url(
        configured, kind=event.kind, namespace=event.namespace, name=event.name
    )


def run_links(event: RunEvent, settings: RenderSettings) -> dict[str, str | None]:
    """``event.links``: the run's Dashboard page and Tekton Results record (None where not
    configured, or for Results, where the run has no record yet)."""
    configured = links.parse(settings.dashboard_url)
    return {
        "dashboard": dashboard_url(event, settings),
        "results": links.results_url(configured, event.annotations),
    }


def render_context(
    event: RunEvent,
    *,
    policy: Mapping[str, Any],
    template: Mapping[str, Any],
    settings: RenderSettings = DEFAULT_SETTINGS,
    transition: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The variables a template sees: ``run``, ``event``, ``policy``, ``template``.

    ``event.transition`` is ``"broken"`` or ``"fixed"`` when the run changed its pipeline's
    outcome (else ""), with the pipeline's outcome before it in ``event.previous`` (else None).
    """
    view = event.view()
    view["links"] = run_links(event, settings)
    view["url"] = view["links"]["dashboard"]
    view["failed"] = [child.as_dict() for child in event.failed_children]
    view["transition"] = str(transition.get("name") or "") if transition else ""
    previous = transition.get("previous") if transition else None
    view["previous"] = dict(previous) if isinstance(previous, Mapping) else None
    return {"run": event.run, "event": view, "policy": dict(policy), "template": dict(template)}
