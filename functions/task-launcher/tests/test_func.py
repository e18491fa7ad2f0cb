"""This function in-process, as func-python's ASGI app, against the API emulator.

The full behaviour is specified in the project's tests/functions (served over real HTTP,
on both servers); this is the function's own smoke test, run by `make test` from its folder.
"""

import asyncio
import json
from pathlib import Path

import httpx
from func_python.cloudevent import ASGIApplication
from function import new

from tekton_notifications.devtools.kubeapi import KubeAPIServer
from tekton_notifications.devtools.serving import UNSIGNED


def test_an_event_that_is_not_for_it_is_acknowledged_without_a_reply(tmp_path: Path) -> None:
    with KubeAPIServer() as kubeapi:
        kubeapi.write_kubeconfig(tmp_path / "kubeconfig")
        function = new()
        function.start(
            {"KUBECONFIG": str(tmp_path / "kubeconfig"), "METRICS_PORT": "0", **UNSIGNED}
        )
        try:
            response = asyncio.run(_post(ASGIApplication(function)))
        finally:
            function.stop()
    assert response.status_code == 202
    assert response.content == b""
    assert "unsupported event type" in response.headers["x-notifications-detail"]


async def _post(app: ASGIApplication) -> httpx.Response:
    headers = {
        "ce-specversion": "1.0",
        "ce-id": "1",
        "ce-source": "/x",
        "ce-type": "com.example.other",
        "content-type": "application/json",
    }
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://function") as client:
        return await client.post("/", headers=headers, content=json.dumps({}))
