"""Structured JSON logs: one object per line, with the notification's identity in every line.

Log calls pass the identity as ``extra={"notification": fields(...)}``; the formatter puts
those fields at the top level so a log query can follow one event id, run, policy or
template through all three functions.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from tekton_notifications.events import RunEvent

#: Field names stable across functions (documented in docs/troubleshooting.md).
FIELDS = (
    "event_id",
    "event_type",
    "run_kind",
    "run",
    "namespace",
    "policy",
    "template",
    "notification_key",
    "trace_id",
    "status",
    "reason",
)


def fields(
    event: RunEvent | None = None,
    *,
    policy: str | None = None,
    template: str | None = None,
    key: str | None = None,
    **more: Any,
) -> dict[str, Any]:
    """The identity of what a log line is about."""
    found: dict[str, Any] = {}
    if event is not None:
        found.update(
            event_id=event.id,
            event_type=event.type,
            run_kind=event.kind,
            run=event.name,
            namespace=event.namespace,
        )
        traceparent = event.extensions.get("traceparent", "")
        if traceparent.count("-") == 3:
            found["trace_id"] = traceparent.split("-")[1]
    if policy is not None:
        found["policy"] = policy
    if template is not None:
        found["template"] = template
    if key is not None:
        found["notification_key"] = key
    found.update({name: value for name, value in more.items() if value is not None})
    return found


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat().replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        notification = getattr(record, "notification", None)
        if isinstance(notification, Mapping):
            line.update(notification)
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure(environ: Mapping[str, str] | None = None) -> None:
    """``LOG_FORMAT=json`` (the default in func.yaml) or ``text``; ``LOG_LEVEL`` as usual."""
    environ = os.environ if environ is None else environ
    root = logging.getLogger()
    root.setLevel(environ.get("LOG_LEVEL", "INFO").upper())
    if environ.get("LOG_FORMAT", "text").lower() != "json":
        return
    for handler in root.handlers or [logging.StreamHandler()]:
        handler.setFormatter(JsonFormatter())
        if handler not in root.handlers:
            root.addHandler(handler)
