"""The task-launcher function against the API emulator: its logic in this process
(func-python's ASGI app), the wire served as kn func serves it.

The TaskRun must exist exactly once however often the event is delivered, and the API's
answers map to success, a ``failed`` event (never retried) or a 5xx (retried by the broker).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tekton_notifications import notifications, taskruns
from tekton_notifications.devtools.kubeapi import KubeAPIServer
from tekton_notifications.devtools.serving import ServedFunction
from tekton_notifications.models import TemplateRef, parse_template
from tekton_notifications.notifications import Notification
from tests.conftest import load_event, policy_object
from tests.functions.inprocess import InProcessFunction
from tests.functions.serving import post_event

Function = InProcessFunction | ServedFunction
Start = Callable[..., Function]

TEMPLATE_OBJECT = {
    "apiVersion": "notifications.tekton.dev/v1alpha1",
    "kind": "NotificationTemplate",
    "metadata": {"name": "slack", "namespace": "ci"},
    "spec": {
        "taskRef": {"name": "send-to-webhook-slack"},
        "params": {"message": "unused", "webhook-secret": "slack-webhook"},
        "serviceAccountName": "notifier",
        "timeout": "5m",
    },
}
TEMPLATE = parse_template(TEMPLATE_OBJECT)


def rendered_event(
    *, namespace: str = "ci", **resource_changes: Any
) -> tuple[dict[str, str], dict[str, Any]]:
    event = load_event("08-pipelinerun-failed.json")
    key = taskruns.notification_key(
        event, policy_namespace="ci", policy="failed-pipelines", template="slack"
    )
    resource = taskruns.build_run(
        event=event,
        template=TEMPLATE,
        params={"message": "storefront-ci-run-p7v2k failed", "webhook-secret": "slack-webhook"},
        policy_namespace="ci",
        policy="failed-pipelines",
    )
    resource["metadata"]["namespace"] = namespace
    resource.update(resource_changes)
    notification = Notification(
        key=key,
        event=event,
        policy_name="failed-pipelines",
        policy_namespace="ci",
        template_ref=TemplateRef("slack"),
        resource=resource,
    )
    outgoing = notification.to_event(notifications.RENDERED)
    return dict(outgoing.attributes), dict(outgoing.data)


def start_launcher(start: Start, kubeapi: KubeAPIServer, kubeconfig: Path) -> Function:
    # The policy and template the rendered events name: the launcher refuses claims to
    # missing ones, and compares the run with the template.
    kubeapi.store.create_manifest(copy.deepcopy(TEMPLATE_OBJECT))
    kubeapi.store.create(
        "notifications.tekton.dev",
        "v1alpha1",
        "notificationpolicies",
        "ci",
        policy_object("failed-pipelines", templates=["slack"]),
    )
    return start("task-launcher", KUBECONFIG=str(kubeconfig))


@pytest.fixture
def launcher(
    kubeapi: KubeAPIServer, kubeconfig: Path, inprocess: Callable[..., InProcessFunction]
) -> Function:
    """In this process: for everything but the wire."""
    return start_launcher(inprocess, kubeapi, kubeconfig)


@pytest.fixture
def any_launcher(kubeapi: KubeAPIServer, kubeconfig: Path, started: Start) -> Function:
    """In this process and served by each server: for the wire."""
    return start_launcher(started, kubeapi, kubeconfig)


def taskruns_in(kubeapi: KubeAPIServer, namespace: str = "ci") -> list[dict[str, Any]]:
    return kubeapi.store.list("tekton.dev", "taskruns", namespace)


@pytest.mark.parametrize("encoding", ["binary", "structured"])
def test_the_rendered_taskrun_is_created_and_reported_as_launched(
    kubeapi: KubeAPIServer, any_launcher: Function, encoding: str
) -> None:
    attributes, data = rendered_event()
    reply = post_event(any_launcher, attributes, data, encoding=encoding)

    assert reply.status == 200, reply.body
    assert reply.type == "dev.tekton.notification.launched.v1"
    (created,) = taskruns_in(kubeapi)
    assert created["metadata"]["name"] == data["resource"]["metadata"]["name"]
    assert created["spec"] == data["resource"]["spec"]
    assert created["metadata"]["labels"] == data["resource"]["metadata"]["labels"]
    launched = reply.data["launched"]
    assert launched == {
        "kind": "TaskRun",
        "name": created["metadata"]["name"],
        "namespace": "ci",
        "uid": created["metadata"]["uid"],
        "created": True,
    }


def test_a_second_delivery_creates_nothing_new_and_still_succeeds(
    kubeapi: KubeAPIServer, launcher: Function
) -> None:
    attributes, data = rendered_event()
    first = post_event(launcher, attributes, data)
    second = post_event(launcher, attributes, data)

    assert len(taskruns_in(kubeapi)) == 1
    assert second.status == 200
    assert second.type == "dev.tekton.notification.launched.v1"
    assert second.data["launched"]["created"] is False
    assert second.data["launched"]["name"] == first.data["launched"]["name"]


@pytest.mark.parametrize("status", [500, 503, 429])
def test_a_retryable_api_failure_is_a_5xx_so_the_broker_retries(
    kubeapi: KubeAPIServer, launcher: Function, status: int
) -> None:
    kubeapi.faults.add(status, method="POST", path="/taskruns")
    attributes, data = rendered_event()
    reply = post_event(launcher, attributes, data)
    assert reply.status == 503
    assert str(status) in reply.json["message"]
    assert taskruns_in(kubeapi) == []
    retried = post_event(launcher, attributes, data)
    assert retried.type == "dev.tekton.notification.launched.v1"
    assert len(taskruns_in(kubeapi)) == 1


def test_a_dropped_connection_is_retryable_too(kubeapi: KubeAPIServer, launcher: Function) -> None:
    kubeapi.faults.add(method="POST", path="/taskruns", mode="drop")
    attributes, data = rendered_event()
    assert post_event(launcher, attributes, data).status == 503


@pytest.mark.parametrize(
    ("status", "reason"), [(403, "Forbidden"), (422, "Invalid"), (404, "NotFound")]
)
def test_a_refusal_by_the_api_is_a_failed_event_not_a_retry(
    kubeapi: KubeAPIServer, launcher: Function, status: int, reason: str
) -> None:
    kubeapi.faults.add(
        status,
        method="POST",
        path="/taskruns",
        message=f"taskruns.tekton.dev is {reason.lower()} here",
    )
    attributes, data = rendered_event()
    reply = post_event(launcher, attributes, data)

    assert reply.status == 200
    assert reply.type == "dev.tekton.notification.failed.v1"
    assert reply.data["error"] == {
        "stage": "launch",
        "reason": reason,
        "message": f"taskruns.tekton.dev is {reason.lower()} here",
    }


def test_a_run_outside_the_policy_namespace_is_refused(
    kubeapi: KubeAPIServer, launcher: Function
) -> None:
    attributes, data = rendered_event(namespace="kube-system")
    reply = post_event(launcher, attributes, data)
    assert reply.type == "dev.tekton.notification.failed.v1"
    assert reply.data["error"]["reason"] == "Refused"
    assert kubeapi.store.list("tekton.dev", "taskruns", None) == []


def test_only_tekton_runs_are_launched(kubeapi: KubeAPIServer, launcher: Function) -> None:
    attributes, data = rendered_event(apiVersion="v1", kind="Pod")
    reply = post_event(launcher, attributes, data)
    assert reply.data["error"]["reason"] == "Refused"


def test_a_rendered_event_without_its_payload_is_a_400(launcher: Function) -> None:
    attributes, _ = rendered_event()
    reply = post_event(launcher, attributes, {"key": "k"})
    assert reply.status == 400
    assert "'policy' needs name and namespace" in reply.json["message"]


def test_other_event_types_are_acknowledged_without_a_reply(launcher: Function) -> None:
    attributes, data = rendered_event()
    reply = post_event(launcher, {**attributes, "type": notifications.MATCHED}, data)
    assert (reply.status, reply.type) == (202, None)
    assert "unsupported event type" in reply.detail
