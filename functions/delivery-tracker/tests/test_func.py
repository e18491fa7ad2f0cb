"""This function in-process, as func-python's ASGI app, against the API emulator.

The full behaviour is specified in the project's tests (tests/core/test_delivery.py,
tests/e2e/test_delivery_tracking.py, the soak); this is the function's own smoke test, run by
`make test` from its folder: a notification run's failure becomes its outcome event.
"""

import asyncio
from pathlib import Path

import httpx
from func_python.cloudevent import ASGIApplication
from function import new

from tekton_notifications import taskruns
from tekton_notifications.devtools.kubeapi import KubeAPIServer
from tekton_notifications.devtools.serving import UNSIGNED
from tekton_notifications.events import parse_event
from tekton_notifications.models import parse_template
from tekton_notifications.notifications import DELIVERY_FAILED, OutgoingEvent
from tekton_notifications.wire import binary_message

TEMPLATE = {
    "apiVersion": "notifications.tekton.dev/v1alpha1",
    "kind": "NotificationTemplate",
    "metadata": {"name": "slack", "namespace": "ci"},
    "spec": {"taskRef": {"name": "send-to-webhook-slack"}, "params": {"message": "x"}},
}
POLICY = {
    "apiVersion": "notifications.tekton.dev/v1alpha1",
    "kind": "NotificationPolicy",
    "metadata": {"name": "failures", "namespace": "ci"},
    "spec": {"events": ["failed"], "templateRefs": [{"name": "slack"}]},
}
FAILED = {"conditions": [{"type": "Succeeded", "status": "False", "reason": "Failed"}]}
SOURCE = {
    "apiVersion": "tekton.dev/v1",
    "kind": "PipelineRun",
    "metadata": {"name": "build-1", "namespace": "ci", "uid": "u1"},
    "status": FAILED,
}


def test_a_failed_notification_run_becomes_a_deliveryfailed_event(tmp_path: Path) -> None:
    event = parse_event(
        {"id": "1", "type": "dev.tekton.event.pipelinerun.failed.v1", "source": "/x"},
        {"pipelineRun": SOURCE},
    )
    run = taskruns.build_run(
        event=event,
        template=parse_template(TEMPLATE),
        params={"message": "x"},
        policy_namespace="ci",
        policy="failures",
    )
    with KubeAPIServer() as kubeapi:
        kubeapi.store.create_manifest(TEMPLATE)
        kubeapi.store.create_manifest(POLICY)
        kubeapi.store.create("tekton.dev", "v1", "pipelineruns", "ci", SOURCE, keep_uid=True)
        stored = kubeapi.store.create("tekton.dev", "v1", "taskruns", "ci", run)
        kubeapi.write_kubeconfig(tmp_path / "kubeconfig")
        finished = {**stored, "status": {**FAILED, "steps": []}}
        headers, body = binary_message(
            OutgoingEvent(
                {
                    "specversion": "1.0",
                    "id": "2",
                    "type": "dev.tekton.event.taskrun.failed.v1",
                    "source": f"/apis///namespaces/ci//{run['metadata']['name']}",
                },
                {"taskRun": finished},
            )
        )
        function = new()
        function.start(
            {"KUBECONFIG": str(tmp_path / "kubeconfig"), "METRICS_PORT": "0", **UNSIGNED}
        )
        try:
            assert all(i.wait_synced(10) for i in function._stage.informers)
            response = asyncio.run(_post(ASGIApplication(function), headers, body))
        finally:
            function.stop()
    assert response.status_code == 200
    assert response.headers["ce-type"] == DELIVERY_FAILED


async def _post(app: ASGIApplication, headers: dict[str, str], body: bytes) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://function") as client:
        return await client.post("/", headers=headers, content=body)
