"""The func-python adapter frees an event's worker when its thread ends, not when its request
does: a request cancelled mid-way (the client went away) must not hide a thread that is still
busy, or stuck, from the per-namespace shares and the liveness watchdog.

Driven through func-python's real ASGI app, with a stage that blocks until told to finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Mapping
from typing import Any

import pytest
from func_python.cloudevent import ASGIApplication

from tekton_notifications import metrics, signing, wire
from tekton_notifications.adapters.funcpython import Function
from tekton_notifications.stages.base import Response, accepted

NAMESPACE = "team-a"
STAGE = "blocking-stage"
WAIT = 10.0


class Blocking:
    """A stage whose every event holds its thread until :attr:`go` is set."""

    name = STAGE

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.go = threading.Event()

    def start(self) -> None:
        return None

    def stop(self) -> None:
        self.go.set()

    def ready(self) -> tuple[bool, str]:
        return True, "ready"

    def respond(self, attributes: Mapping[str, str], data: object) -> Response:
        self.entered.set()
        self.go.wait(WAIT)
        return accepted("done")


def _request() -> tuple[dict[str, Any], bytes]:
    data = {"taskRun": {"metadata": {"name": "build-1", "namespace": NAMESPACE}}}
    message = wire.Message(
        {
            "specversion": "1.0",
            "id": "event-1",
            "source": "/tekton/test",
            "type": "dev.tekton.event.taskrun.failed.v1",
            "datacontenttype": "application/json",
        },
        json.dumps(data).encode(),
    )
    headers, body = wire.binary(message)
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()]
        + [(b"content-length", str(len(body)).encode())],
    }
    return scope, body


def _in_flight() -> float | None:
    return metrics.REGISTRY.get_sample_value(
        "tekton_notifications_in_flight", {"stage": STAGE, "namespace": NAMESPACE}
    )


async def _cancel_mid_way(stage: Blocking) -> tuple[float | None, float | None]:
    function = Function(lambda env: stage)
    app = ASGIApplication(function)
    function.start({signing.SWITCH: signing.DISABLED, "METRICS_PORT": "0"})
    scope, body = _request()
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    try:
        request = asyncio.create_task(app(scope, receive, send))
        entered = await asyncio.to_thread(stage.entered.wait, WAIT)
        assert entered, "the stage never got the event"
        request.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await request
        while_busy = _in_flight()
        stage.go.set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT
        while _in_flight() is not None and loop.time() < deadline:
            await asyncio.sleep(0.01)
        assert not sent, "a cancelled request got an answer"
        return while_busy, _in_flight()
    finally:
        stage.go.set()
        function.stop()


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        pytest.param("request cancelled, thread still busy", 1.0, id="held-while-busy"),
        pytest.param("thread done", None, id="freed-when-done"),
    ],
)
def test_a_cancelled_request_keeps_its_worker_until_its_thread_ends(
    when: str, expected: float | None
) -> None:
    while_busy, after = asyncio.run(_cancel_mid_way(Blocking()))
    got = while_busy if when.startswith("request cancelled") else after
    assert got == expected, when
