"""This function in-process, as func-python's ASGI app, against the API emulator.

The full behaviour is specified in the project's tests/functions (served over real HTTP,
on both servers); this is the function's own smoke test, run by `make test` from its folder.
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
from tekton_notifications.models import TemplateRef
from tekton_notifications.notifications import LAUNCHED, Notification
from tekton_notifications.wire import binary_message

POLICY = {
    "apiVersion": "notifications.tekton.dev/v1alpha1",
    "kind": "NotificationPolicy",
    "metadata": {"name": "failures", "namespace": "ci"},
    "spec": {"events": ["failed"], "templateRefs": [{"name": "slack"}]},
}
RUN = {
    "metadata": {"name": "build-1", "namespace": "ci", "uid": "u1"},
    "status": {"conditions": [{"type": "Succeeded", "status": "False", "reason": "Failed"}]},
}


def test_a_launched_notification_becomes_an_event_on_the_run(tmp_path: Path) -> None:
    event = parse_event(
        {
            "id": "1",
            "type": "dev.tekton.event.pipelinerun.failed.v1",
            "source": "/apis///namespaces/ci//build-1",
        },
        {"pipelineRun": RUN},
    )
    key = taskruns.notification_key(
        event, policy_namespace="ci", policy="failures", template="slack"
    )
    launched = Notification(
        key=key,
        event=event,
        policy_name="failures",
        policy_namespace="ci",
        template_ref=TemplateRef("slack"),
    )
    headers, body = binary_message(
        launched.to_event(
            LAUNCHED,
            launched={
                "kind": "TaskRun",
                "name": taskruns.run_name(event, key),
                "namespace": "ci",
                "created": True,
            },
        )
    )
    with KubeAPIServer() as kubeapi:
        # The policy the notification claims: the recorder refuses claims to missing ones.
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
        events = kubeapi.store.list("", "events", "ci")
    assert response.status_code == 202
    assert {e["involvedObject"]["kind"] for e in events} == {"PipelineRun", "NotificationPolicy"}
    assert all(e["reason"] == "NotificationSent" for e in events)


async def _post(app: ASGIApplication, headers: dict[str, str], body: bytes) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://function") as client:
        return await client.post("/", headers=headers, content=body)
