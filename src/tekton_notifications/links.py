"""Links to a run: its Tekton Dashboard page and its Tekton Results record, from one setting.

The setting (``TEKTON_DASHBOARD_URL``, ``--dashboard-url``) is either the Dashboard's base
URL, as before, or comma-separated ``dashboard=URL`` and ``results=URL`` entries::

    https://tekton.example.com
    dashboard=https://tekton.example.com,results=https://tekton-results.example.com

Owns the syntax of that setting and the URL shapes. Must not: do I/O.

A Results link is the record's REST resource,
``{results}/apis/results.tekton.dev/v1alpha2/parents/{record}``, where ``{record}`` is the
``results.tekton.dev/record`` annotation the Results watcher writes on the runs it stores
(``<namespace>/results/<result>/records/<record>``): a run without it has no Results link.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Final
from urllib.parse import quote, urlsplit

RESULTS_RECORD_ANNOTATION: Final = "results.tekton.dev/record"
_KIND_PATHS: Final[Mapping[str, str]] = {
    "PipelineRun": "pipelineruns",
    "TaskRun": "taskruns",
    "CustomRun": "customruns",
}
_KEYS: Final = ("dashboard", "results")


#: ``event.links`` (templates only), as JSON Schema: for the render fields' schema.
LINKS_FIELD: Final[Mapping[str, object]] = {
    "type": "object",
    "description": "links to the run: its Tekton Dashboard page and its Tekton Results record",
    "properties": {
        "dashboard": {
            "type": ["string", "null"],
            "description": "the run in Tekton Dashboard (same as event.url), or null",
        },
        "results": {
            "type": ["string", "null"],
            "description": "the run's record in the Tekton Results API, or null when Results "
            "is not configured or has not stored the run (results.tekton.dev/record)",
        },
    },
    "required": ["dashboard", "results"],
    "additionalProperties": False,
}


@dataclass(frozen=True)
class Links:
    """The base URLs links are built from; None where not configured."""

    dashboard: str | None = None
    results: str | None = None


NO_LINKS: Final = Links()


@lru_cache(maxsize=16)
def parse(setting: str | None) -> Links:
    """The :class:`Links` a setting names; raises ValueError, naming the problem, when the
    setting is not a URL or a list of ``dashboard=URL`` / ``results=URL`` entries."""
    if not setting or not setting.strip():
        return NO_LINKS
    found: dict[str, str] = {}
    for entry in (part.strip() for part in setting.split(",")):
        key, equals, value = entry.partition("=")
        if equals and key.strip() in _KEYS:
            key, value = key.strip(), value.strip()
        elif not found and "=" not in entry.split("://", 1)[0]:
            key, value = "dashboard", entry
        else:
            raise ValueError(
                f"link setting {setting!r}: {entry!r} is not dashboard=URL or results=URL"
            )
        if key in found:
            raise ValueError(f"link setting {setting!r}: {key} is given twice")
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"link setting {setting!r}: {key} must be an http(s) URL")
        found[key] = value.rstrip("/")
    return Links(dashboard=found.get("dashboard"), results=found.get("results"))


def dashboard_url(links: Links, *, kind: str, namespace: str, name: str) -> str | None:
    """The run's page in Tekton Dashboard, or None when no dashboard is configured."""
    if links.dashboard is None:
        return None
    return (
        f"{links.dashboard}/#/namespaces/{quote(namespace, safe='')}/"
        f"{_KIND_PATHS[kind]}/{quote(name, safe='')}"
    )


def results_url(links: Links, annotations: Mapping[str, str]) -> str | None:
    """The run's record in the Tekton Results API, or None (no Results configured, or the
    run not stored by Results yet)."""
    record = annotations.get(RESULTS_RECORD_ANNOTATION, "")
    parts = record.split("/")
    if links.results is None or len(parts) != 5 or parts[1::2] != ["results", "records"]:
        return None
    path = "/".join(quote(part, safe="") for part in parts)
    return f"{links.results}/apis/results.tekton.dev/v1alpha2/parents/{path}"
