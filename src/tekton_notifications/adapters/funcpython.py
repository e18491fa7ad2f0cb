"""A stage as a ``kn func`` Python function instance (served by func-python, cloudevents 2)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from cloudevents.core.v1.event import CloudEvent

from tekton_notifications import logs, metrics, signing
from tekton_notifications.stages import base
from tekton_notifications.stages.base import Response, Stage
from tekton_notifications.wire import attributes_as_text

logger = logging.getLogger(__name__)

StageFactory = Callable[[Mapping[str, str]], Stage]
Send = Any  # func-python's CloudEventSender: awaitable, with .binary() and .http()


class Function:
    """What ``new()`` returns: func-python calls ``start(env)``, ``handle`` per event, etc."""

    def __init__(self, factory: StageFactory) -> None:
        self._factory = factory
        self._stage: Stage | None = None

    def start(self, cfg: Mapping[str, str]) -> None:
        logs.configure(cfg)
        metrics.serve(cfg)
        try:
            self._stage = base.build(self._factory, cfg)
        except signing.SigningKeyError as error:
            # func-python logs an exception from start() and serves on without a function:
            # exit instead, so the pod fails visibly (CrashLoopBackOff) with this reason.
            raise SystemExit(f"not starting: {error}") from None
        self._stage.start()

    def stop(self) -> None:
        if self._stage is not None:
            self._stage.stop()

    def alive(self) -> tuple[bool, str]:
        return True, "alive"

    def ready(self) -> tuple[bool, str]:
        if self._stage is None:
            return False, "not started"
        return self._stage.ready()

    async def handle(
        self, scope: dict[str, Any], receive: Callable[[], Awaitable[Any]], send: Send
    ) -> None:
        if self._stage is None:
            await _plain(send, Response(503, message="function not started"))
            return
        event = scope["event"]
        size = _body_size(scope, event.get_data())
        if size > base.MAX_EVENT_BYTES:
            # func-python has read the body already; this keeps it from going further.
            await _plain(send, base.too_large(size))
            return
        attributes = attributes_as_text(event.get_attributes())
        # Stages block on locks and, for the launcher, on the API: keep the loop free.
        response = await asyncio.to_thread(base.handle, self._stage, attributes, event.get_data())
        if response.event is None:
            await _plain(send, response)
            return
        reply = CloudEvent(
            attributes=dict(response.event.attributes), data=dict(response.event.data)
        )
        await send.binary(reply, response.status)


def _body_size(scope: Mapping[str, Any], data: object) -> int:
    """The request's Content-Length; for a chunked request, the size of its data."""
    for name, value in scope.get("headers") or ():
        if name.lower() == b"content-length" and value.isdigit():
            return int(value)
    if isinstance(data, bytes | str):
        return len(data)
    return len(json.dumps(data)) if data is not None else 0


async def _plain(send: Send, response: Response) -> None:
    status, headers, body = response.http()
    headers["content-length"] = str(len(body))
    start = {
        "type": "http.response.start",
        "status": status,
        "headers": [(name.encode(), value.encode("latin-1")) for name, value in headers.items()],
    }
    await send.http(start)
    await send.http({"type": "http.response.body", "body": body})
