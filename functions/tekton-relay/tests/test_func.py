"""This function in-process, as func-python's ASGI app, posting to a stand-in broker.

The full behaviour is specified in the project's tests/functions/test_tekton_relay.py (served
over real HTTP); this is the function's own smoke test, run by `make test` from its folder.
"""

import asyncio
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from func_python.cloudevent import ASGIApplication
from function import new

from tekton_notifications.devtools.serving import UNSIGNED
from tekton_notifications.notifications import OutgoingEvent
from tekton_notifications.wire import binary_message

EVENT = OutgoingEvent(
    {
        "id": "1",
        "type": "dev.tekton.event.pipelinerun.failed.v1",
        "source": "/apis///namespaces/ci//build-1",
        "specversion": "1.0",
    },
    {"pipelineRun": {"metadata": {"name": "build-1", "namespace": "ci", "uid": "u1"}}},
)


def test_a_tekton_event_reaches_the_broker_with_the_token(tmp_path: Path) -> None:
    received: list[dict[str, str]] = []

    class Broker(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length") or 0))
            received.append({k.lower(): v for k, v in self.headers.items()})
            self.send_response(202)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    broker = ThreadingHTTPServer(("127.0.0.1", 0), Broker)
    threading.Thread(target=broker.serve_forever, daemon=True).start()
    (tmp_path / "token").write_text("a.b.c")
    function = new()
    function.start(
        {
            "K_SINK": f"http://127.0.0.1:{broker.server_address[1]}",
            "OIDC_TOKEN_FILE": str(tmp_path / "token"),
            "METRICS_PORT": "0",
            **UNSIGNED,
        }
    )
    try:
        headers, body = binary_message(EVENT)
        response = asyncio.run(_post(ASGIApplication(function), headers, body))
    finally:
        function.stop()
        broker.shutdown()
        broker.server_close()
    assert response.status_code == 202
    ((headers_seen),) = received
    assert headers_seen["authorization"] == "Bearer a.b.c"
    assert headers_seen["ce-type"] == "dev.tekton.event.pipelinerun.failed.v1"


async def _post(app: ASGIApplication, headers: dict[str, str], body: bytes) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://function") as client:
        return await client.post("/", headers=headers, content=body)
