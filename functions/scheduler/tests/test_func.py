"""This function in-process, as func-python's ASGI app, against the API emulator.

The full behaviour is specified in the project's tests/functions/test_scheduler.py (the
exactly-once tests, and the function served over real HTTP); this is the function's own
smoke test, run by `make test` from its folder.
"""

import asyncio
from pathlib import Path

import httpx
from func_python.cloudevent import ASGIApplication
from function import new

from tekton_notifications.devtools.kubeapi import KubeAPIServer
from tekton_notifications.devtools.serving import UNSIGNED
from tekton_notifications.notifications import OutgoingEvent
from tekton_notifications.wire import binary_message

POLICY = {
    "apiVersion": "notifications.tekton.dev/v1alpha1",
    "kind": "NotificationPolicy",
    "metadata": {"name": "still-red", "namespace": "ci"},
    "spec": {
        "events": ["failed"],
        "templateRefs": [{"name": "slack"}],
        "remind": {"after": "4h", "every": "24h"},
    },
}
PING = {
    "specversion": "1.0",
    "id": "1",
    "type": "dev.knative.sources.ping",
    "source": "/apis/v1/namespaces/tekton-notifications/pingsources/scheduler",
}


def test_a_ping_with_nothing_due_is_acknowledged(tmp_path: Path) -> None:
    headers, body = binary_message(OutgoingEvent(PING, {"wake": "scheduler"}))
    with KubeAPIServer() as kubeapi:
        kubeapi.store.create_manifest(POLICY)
        kubeapi.write_kubeconfig(tmp_path / "kubeconfig")
        function = new()
        function.start(
            {"KUBECONFIG": str(tmp_path / "kubeconfig"), "METRICS_PORT": "0", **UNSIGNED}
        )
        try:
            assert all(i.wait_synced(10) for i in function._stage.informers)
            response = asyncio.run(_post(ASGIApplication(function), headers, body))
        finally:
            function.stop()
    assert response.status_code == 202
    assert response.headers["x-notifications-detail"] == "nothing due"


async def _post(app: ASGIApplication, headers: dict[str, str], body: bytes) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://function") as client:
        return await client.post("/", headers=headers, content=body)
