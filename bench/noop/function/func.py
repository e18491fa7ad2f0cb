"""The throughput baseline: a func-python function that answers 202 at once.

Served exactly like ours (``func_python.cloudevent.serve(new)``), so func-python still decodes
each CloudEvent; what it does not do is anything of ours.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any


class NoOp:
    def start(self, cfg: Mapping[str, str]) -> None:
        return None

    def stop(self) -> None:
        return None

    def alive(self) -> tuple[bool, str]:
        return True, "alive"

    def ready(self) -> tuple[bool, str]:
        return True, "ready"

    async def handle(
        self, scope: dict[str, Any], receive: Callable[[], Awaitable[Any]], send: Any
    ) -> None:
        start = {
            "type": "http.response.start",
            "status": 202,
            "headers": [(b"content-length", b"0")],
        }
        await send.http(start)
        await send.http({"type": "http.response.body", "body": b""})


def new() -> NoOp:
    return NoOp()
