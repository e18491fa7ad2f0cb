"""What every stage returns and exposes to the adapters."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from tekton_notifications.notifications import OutgoingEvent

logger = logging.getLogger("tekton_notifications.stages")


@dataclass(frozen=True)
class Response:
    """An HTTP answer: a reply event, or a status with a short JSON message."""

    status: int
    event: OutgoingEvent | None = None
    message: str = ""

    @property
    def body(self) -> dict[str, Any]:
        return {"message": self.message}


def accepted(message: str) -> Response:
    """Processed, nothing to reply (2xx: the broker must not retry)."""
    return Response(202, message=message)


def rejected(message: str) -> Response:
    """Can never succeed (4xx: the broker dead-letters it at once)."""
    logger.warning("rejected: %s", message)
    return Response(400, message=message)


def unavailable(message: str) -> Response:
    """May succeed later (5xx: the broker retries with backoff)."""
    logger.warning("unavailable: %s", message)
    return Response(503, message=message)


def reply(event: OutgoingEvent) -> Response:
    return Response(200, event=event)


class Stage(Protocol):
    """The surface an adapter needs: lifecycle, readiness and one call per event."""

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def ready(self) -> tuple[bool, str]: ...

    def respond(self, attributes: Mapping[str, str], data: object) -> Response: ...
