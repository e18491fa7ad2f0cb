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
from tekton_notifications.events import parse_event
from tekton_notifications.models import TemplateRef
from tekton_notifications.notifications import MATCHED, Notification, notification_key
from tekton_notifications.wire import binary_message

TEMPLATE = {
    "apiVersion": "notifications.tekton.dev/v1alpha1",
    "kind": "NotificationTemplate",
    "metadata": {"name": "slack", "namespace": "ci"},
    "spec": {
        "taskRef": {"name": "send-to-webhook-slack"},
        "params": {"message": "{{ event.name }} {{ event.outcome }}"},
    },
}
#: The policy the matched event names: the renderer refuses claims to policies that don't exist.
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


def test_a_matched_event_is_rendered_into_a_taskrun(tmp_path: Path) -> None:
    event = parse_event(
        {
            "id": "1",
            "type": "dev.tekton.event.pipelinerun.failed.v1",
            "source": "/apis///namespaces/ci//build-1",
        },
        {"pipelineRun": RUN},
    )
    matched = Notification(
        # Every stage checks the key against the claim: the one the policy filter computes.
        key=notification_key(event, policy_namespace="ci", policy="failures", template="slack"),
        event=event,
        policy_name="failures",
        policy_namespace="ci",
        template_ref=TemplateRef("slack"),
    )
    headers, body = binary_message(matched.to_event(MATCHED))
    with KubeAPIServer() as kubeapi:
        kubeapi.store.create(
            "notifications.tekton.dev", "v1alpha1", "notificationtemplates", "ci", TEMPLATE
        )
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
            response = asyncio.run(_post(ASGIApplication(function), headers, body))
        finally:
            function.stop()
    assert response.headers["ce-type"] == "dev.tekton.notification.rendered.v1"
    resource = json.loads(response.content)["resource"]
    assert resource["spec"]["params"] == [{"name": "message", "value": "build-1 failed"}]


async def _post(app: ASGIApplication, headers: dict[str, str], body: bytes) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://function") as client:
        return await client.post("/", headers=headers, content=body)
