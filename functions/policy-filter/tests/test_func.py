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

EVENT = {
    "ce-specversion": "1.0",
    "ce-id": "1",
    "ce-type": "dev.tekton.event.pipelinerun.failed.v1",
    "ce-source": "/apis///namespaces/ci//build-1",
    "content-type": "application/json",
}
RUN = {
    "pipelineRun": {
        "metadata": {"name": "build-1", "namespace": "ci", "uid": "u1"},
        "status": {"conditions": [{"type": "Succeeded", "status": "False", "reason": "Failed"}]},
    }
}
POLICY = {
    "apiVersion": "notifications.tekton.dev/v1alpha1",
    "kind": "NotificationPolicy",
    "metadata": {"name": "failures", "namespace": "ci"},
    "spec": {"events": ["failed"], "templateRefs": [{"name": "slack"}]},
}


def test_a_failed_pipelinerun_is_answered_with_a_matched_event(tmp_path: Path) -> None:
    with KubeAPIServer() as kubeapi:
        kubeapi.store.create(
            "notifications.tekton.dev", "v1alpha1", "notificationpolicies", "ci", POLICY
        )
        kubeapi.write_kubeconfig(tmp_path / "kubeconfig")
        function = new()
        function.start(
            {"KUBECONFIG": str(tmp_path / "kubeconfig"), "METRICS_PORT": "0", **UNSIGNED}
        )
        try:
            assert all(i.wait_synced(10) for i in function._stage.informers)
            response = asyncio.run(_post(ASGIApplication(function), EVENT, RUN))
        finally:
            function.stop()
    assert response.status_code == 200
    assert response.headers["ce-type"] == "dev.tekton.notification.matched.v1"
    assert json.loads(response.content)["policy"]["name"] == "failures"


async def _post(app: ASGIApplication, headers: dict[str, str], body: object) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://function") as client:
        return await client.post("/", headers=headers, content=json.dumps(body))
