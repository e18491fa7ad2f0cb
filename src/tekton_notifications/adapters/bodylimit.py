"""Refuse an oversized request body before func-python buffers it.

func-python 0.8 reads the whole body (by repeated ``bytes +=``, quadratic: 40 MB chunked took
34 s) and decodes it before it calls the function's ``handle``, so the function alone can
only refuse after paying for it. func's generated ``service/main.py`` hands the function to
``func_python.cloudevent.serve``, which wraps it in ``ASGIApplication`` and serves that: the
only place our code can stand in front of the read is that class's ``__call__``.
:func:`install` wraps it with :class:`BodyLimit`, an ordinary ASGI middleware, when the
function instance is created (before ``serve`` starts the server).

:class:`BodyLimit` answers 413 at once to a ``Content-Length`` over the limit, without
reading a byte. A chunked body is counted as it arrives: past the limit, 413 is sent, and
the wrapped app's read fails (it sees :class:`BodyTooLarge`); whatever it answers after that
is dropped. func-python logs that failure as ``Unexpected error: ...``, with our reason.
Health probes are never limited.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Marks the wrapper :func:`install` put in place, so a second call does nothing.
_MARK: Final = "_tekton_notifications_body_limit"
_HEALTH: Final = ("/health/liveness", "/health/readiness")


class BodyTooLarge(Exception):
    """Raised from ``receive`` once a chunked body passes the limit (413 already sent)."""


def message(size: int | None, limit: int) -> str:
    """The 413's detail; ``size`` is None for a chunked body (refused before its end)."""
    if size is None:
        return f"chunked request body is over the limit of {limit} bytes"
    return f"request body of {size} bytes is over the limit of {limit} bytes"


def content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers") or ():
        if name.lower() == b"content-length" and value.isdigit():
            return int(value)
    return None


class BodyLimit:
    """ASGI middleware: 413 for request bodies over ``limit`` bytes, before they are buffered."""

    def __init__(self, app: ASGIApp, limit: int, *, detail_header: str) -> None:
        self.app, self.limit, self.detail_header = app, limit, detail_header

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http" or scope.get("path") in _HEALTH:
            await self.app(scope, receive, send)
            return
        declared = content_length(scope)
        if declared is not None and declared > self.limit:
            await self._refuse(send, message(declared, self.limit))
            return
        answered = False
        received = 0

        async def limited_receive() -> Message:
            nonlocal received, answered
            msg = await receive()
            received += len(msg.get("body", b""))
            if received > self.limit and not answered:
                answered = True
                reason = message(None, self.limit)
                await self._refuse(send, reason)
                raise BodyTooLarge(f"{reason}: answered 413")
            return msg

        async def guarded_send(msg: Message) -> None:
            if not answered:  # after our 413 the app's own answer goes nowhere
                await send(msg)

        await self.app(scope, limited_receive, guarded_send)

    async def _refuse(self, send: Send, reason: str) -> None:
        logger.warning("rejected: %s", reason)
        body = json.dumps({"message": reason}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (self.detail_header.encode(), reason.encode("latin-1", "replace")),
            # The rest of the body is not read: the connection cannot be reused.
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def install(limit: int, *, detail_header: str) -> bool:
    """Put :class:`BodyLimit` in front of func-python's ``ASGIApplication``; once per process.

    False (and a warning) when func-python is missing or has no such class: then bodies are
    refused only after func-python has read them (``handle`` still checks their size).
    """
    try:
        from func_python import cloudevent
    except ImportError:
        logger.warning("func-python not importable: request bodies are limited only after reading")
        return False
    application = getattr(cloudevent, "ASGIApplication", None)
    original = vars(application).get("__call__") if isinstance(application, type) else None
    if application is None or original is None:
        logger.warning("func-python has no ASGIApplication: bodies limited only after reading")
        return False
    if getattr(original, _MARK, False):
        return True

    async def limited_call(self: Any, scope: Scope, receive: Receive, send: Send) -> None:
        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            await original(self, scope, receive, send)

        await BodyLimit(app, limit, detail_header=detail_header)(scope, receive, send)

    setattr(limited_call, _MARK, True)
    application.__call__ = limited_call
    return True
