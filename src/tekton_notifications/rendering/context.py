"""The variables a template sees: ``run``, ``event``, ``policy``, ``template``, ``subscription``.

Owns turning a :class:`RunEvent` (plus the policy, the template and a transition) into the
render context, and the links to the run (Tekton Dashboard, Tekton Results). Must not: do
I/O or render.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from tekton_notifications import links
from tekton_notifications.events import EVENT_FIELDS, RunEvent
from tekton_notifications.rendering.limits import DEFAULT_SETTINGS, RenderSettings
from tekton_notifications.subscriptions import EMPTY_VIEW

#: The fields :func:`render_context` adds to the ``event`` view (``events.EVENT_FIELDS``) for
#: templates only, as JSON Schema: with it, the one source of ``tkn-notify schema --for
#: templates``, of lint's check of what templates read and of docs/templates.md.
RENDER_FIELDS: Final[Mapping[str, Mapping[str, Any]]] = {
    "links": links.LINKS_FIELD,
    "url": {
        "type": ["string", "null"],
        "description": "the run in Tekton Dashboard, or null when no Dashboard URL is configured",
    },
    "failed": {
        **EVENT_FIELDS["children"],
        "description": "the children whose status is False, same fields",
    },
    "transition": {
        "type": "string",
        "enum": ["broken", "fixed", ""],
        "description": "for a policy that lists broken or fixed: the change of its pipeline's "
        "outcome this run made, else empty",
    },
    "previous": {
        "type": ["object", "null"],
        "description": "for a fixed notification, the failure that started the streak it "
        "ends (outcome, run, completionTime); else null",
    },
}

#: The ``template`` variable's fields (``models.Template.view``).
TEMPLATE_FIELDS: Final[Mapping[str, Mapping[str, Any]]] = {
    "name": {"type": "string", "description": "the NotificationTemplate's name"},
    "namespace": {"type": "string", "description": "the NotificationTemplate's namespace"},
}


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
    scheduled: Mapping[str, Any] | None = None,
    subscription: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The variables a template sees: ``run``, ``event``, ``policy``, ``template``,
    ``subscription``.

    ``event.transition`` is ``"broken"`` or ``"fixed"`` when the run changed its pipeline's
    outcome (else ""), with the pipeline's outcome before it in ``event.previous`` (else None).
    A notification the scheduler sent (``scheduled``) adds ``event.reminder`` (count, max,
    since, redFor, redForSeconds) or ``digest`` (period, items, total, overflow); both are
    None otherwise (their schema: :data:`celcheck.TEMPLATE_ONLY`).
    """
    view = event.view()
    view["links"] = run_links(event, settings)
    view["url"] = view["links"]["dashboard"]
    view["failed"] = [child.as_dict() for child in event.failed_children]
    view["transition"] = str(transition.get("name") or "") if transition else ""
    previous = transition.get("previous") if transition else None
    view["previous"] = dict(previous) if isinstance(previous, Mapping) else None
    reminder = scheduled.get("reminder") if scheduled else None
    view["reminder"] = dict(reminder) if isinstance(reminder, Mapping) else None
    digest = scheduled.get("digest") if scheduled else None
    return {
        "run": event.run,
        "event": view,
        "policy": dict(policy),
        "template": dict(template),
        "subscription": _subscription(subscription),
        "digest": dict(digest) if isinstance(digest, Mapping) else None,
    }


def _subscription(subscription: Mapping[str, Any] | None) -> dict[str, Any]:
    view = dict(subscription if subscription is not None else EMPTY_VIEW)
    view["recipients"] = list(view.get("recipients") or [])
    return view
