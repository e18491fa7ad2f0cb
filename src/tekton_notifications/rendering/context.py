"""The variables a template sees: ``run``, ``event``, ``policy``, ``template``.

Owns turning a :class:`RunEvent` (plus the policy, the template and a transition) into the
render context, and the run's Tekton Dashboard URL. Must not: do I/O or render.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import quote

from tekton_notifications.events import RunEvent
from tekton_notifications.rendering.limits import DEFAULT_SETTINGS, RenderSettings

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
    scheduled: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The variables a template sees: ``run``, ``event``, ``policy``, ``template``.

    ``event.transition`` is ``"broken"`` or ``"fixed"`` when the run changed its pipeline's
    outcome (else ""), with the pipeline's outcome before it in ``event.previous`` (else None).
    A notification the scheduler sent (``scheduled``) adds ``event.reminder`` (count, max,
    since, redFor, redForSeconds) or ``digest`` (period, items, total, overflow); both are
    None otherwise (:data:`SCHEDULED_FIELDS`).
    """
    view = event.view()
    view["url"] = dashboard_url(event, settings)
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
        "digest": dict(digest) if isinstance(digest, Mapping) else None,
    }


_TIME: Final[Mapping[str, Any]] = {"type": "string", "format": "date-time"}
_RUN: Final[Mapping[str, Any]] = {
    "type": "object",
    "properties": {"run": {"type": "string"}, "namespace": {"type": "string"}, "time": _TIME},
}

#: What templates see of a scheduled notification (issue 17), as JSON Schema: the
#: ``event.reminder`` of a reminder and the ``digest`` of a digest (None in any other
#: notification; a ``when`` never sees them: the scheduler sends them, not a Tekton event).
SCHEDULED_FIELDS: Final[Mapping[str, Mapping[str, Any]]] = {
    "event.reminder": {
        "type": ["object", "null"],
        "description": "set in a reminder: the pipeline is still failing",
        "properties": {
            "count": {"type": "integer", "description": "this reminder's number, from 1"},
            "max": {"type": "integer", "description": "spec.remind.max"},
            "since": {**_TIME, "description": "when the pipeline turned red"},
            "redFor": {"type": "string", "description": "how long, as people say it: 4h 10m"},
            "redForSeconds": {"type": "integer"},
        },
    },
    "digest": {
        "type": ["object", "null"],
        "description": "set in a digest: what the rate limit held back in one period",
        "properties": {
            "period": {
                "type": "object",
                "properties": {"start": _TIME, "end": _TIME},
            },
            "items": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "kind": {"type": "string"},
                        "pipeline": {"type": "string"},
                        "outcome": {"type": "string"},
                        "count": {"type": "integer"},
                        "first": _RUN,
                        "last": _RUN,
                    },
                },
            },
            "total": {"type": "integer", "description": "suppressions in the period"},
            "overflow": {"type": "integer", "description": "of pipelines past the 50 listed"},
        },
    },
}
