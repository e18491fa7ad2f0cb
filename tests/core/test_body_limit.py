"""Oversized bodies are refused before they are buffered (adapters/bodylimit.py), in-process.

The app behind the middleware reads its body the way func-python 0.8 does (every chunk until
``more_body`` is false); the tests count what it was made to read. Served, the same is
measured in tests/reliability/test_hostile_load.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import MutableMapping
from typing import Any

import pytest
from func_python.cloudevent import ASGIApplication

from tekton_notifications.adapters import bodylimit
from tekton_notifications.adapters.funcpython import Function
from tekton_notifications.stages import base

LIMIT = 1000
CHUNK = 300


class Client:
    """One request's messages in, the answer's messages out, and what was read."""

    def __init__(self, path: str, body: bytes, *, chunked: bool) -> None:
        headers = [] if chunked else [(b"content-length", str(len(body)).encode())]
        self.scope: dict[str, Any] = {"type": "http", "path": path, "headers": headers}
        self.chunks = [body[i : i + CHUNK] for i in range(0, len(body), CHUNK)] or [b""]
        self.received = 0
        self.sent: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        chunk = self.chunks[self.received]
        self.received += 1
        more = self.received < len(self.chunks)
        return {"type": "http.request", "body": chunk, "more_body": more}

    async def send(self, message: MutableMapping[str, Any]) -> None:
        self.sent.append(dict(message))

    @property
    def status(self) -> int:
        return int(self.sent[0]["status"])

    @property
    def detail(self) -> str:
        headers = dict(self.sent[0]["headers"])
        return bytes(headers[base.DETAIL_HEADER.encode()]).decode()


class Reader:
    """Reads the whole body like func-python, then answers 200 with its length."""

    def __init__(self) -> None:
        self.failure: Exception | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        body = b""
        try:
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
        except bodylimit.BodyTooLarge as error:
            self.failure = error
            await send({"type": "http.response.start", "status": 500, "headers": []})
            await send({"type": "http.response.body", "body": b"too late"})
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(len(body)).encode()})


@pytest.mark.parametrize(
    ("path", "size", "chunked", "status", "chunks_read", "detail"),
    [
        pytest.param("/", LIMIT, False, 200, 4, None, id="at-the-limit"),
        pytest.param(
            "/",
            LIMIT + 1,
            False,
            413,
            0,
            "request body of 1001 bytes is over the limit of 1000 bytes",
            id="content-length-over-refused-unread",
        ),
        pytest.param(
            "/", 40 * LIMIT, False, 413, 0, None, id="content-length-far-over-refused-unread"
        ),
        pytest.param("/", LIMIT, True, 200, 4, None, id="chunked-at-the-limit"),
        pytest.param(
            "/",
            40 * LIMIT,
            True,
            413,
            4,
            "chunked request body is over the limit of 1000 bytes",
            id="chunked-over-refused-once-past-the-limit",
        ),
        pytest.param("/health/liveness", 40 * LIMIT, False, 200, 134, None, id="probes-unlimited"),
    ],
)
def test_body_limit(
    path: str, size: int, chunked: bool, status: int, chunks_read: int, detail: str | None
) -> None:
    client, app = Client(path, b"x" * size, chunked=chunked), Reader()
    middleware = bodylimit.BodyLimit(app, LIMIT, detail_header=base.DETAIL_HEADER)
    asyncio.run(middleware(client.scope, client.receive, client.send))
    assert client.status == status
    assert client.received == chunks_read
    assert len(client.sent) == 2, "one answer, the app's late one dropped"
    if detail is not None:
        assert client.detail == detail
        assert json.loads(client.sent[1]["body"]) == {"message": detail}
    if chunked and status == 413:
        assert isinstance(app.failure, bodylimit.BodyTooLarge), "the app's read must fail"


def test_a_function_instance_puts_the_limit_in_front_of_func_python() -> None:
    """What func's service/main.py serves: ``ASGIApplication(new())``, limited from new()."""
    function = Function(lambda cfg: pytest.fail("not started in this test"))
    application = ASGIApplication(function)
    assert bodylimit.install(base.MAX_EVENT_BYTES, detail_header=base.DETAIL_HEADER)
    client = Client("/", b"", chunked=False)
    client.scope.update(
        method="POST", headers=[(b"content-length", str(base.MAX_EVENT_BYTES + 1).encode())]
    )
    asyncio.run(application(client.scope, client.receive, client.send))
    assert (client.status, client.received) == (413, 0)
