"""The status-recorder function: Kubernetes Events per notification outcome, and policy and
template status (Ready, match counters), written in batches, through the API emulator. Its
logic in this process (func-python's ASGI app), the wire served as kn func serves it."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tekton_notifications import notifications, taskruns
from tekton_notifications.devtools.kubeapi import KubeAPIServer
from tekton_notifications.devtools.serving import ServedFunction
from tekton_notifications.models import TemplateRef
from tekton_notifications.notifications import Notification, failure
from tests.conftest import EXAMPLES, load_event, policy_object
from tests.functions.inprocess import InProcessFunction
from tests.functions.serving import post_event

Function = InProcessFunction | ServedFunction
Start = Callable[..., Function]
InProcess = Callable[..., InProcessFunction]
GROUP, VERSION = "notifications.tekton.dev", "v1alpha1"


def notification(policy: str = "failed-pipelines", template: str = "slack-webhook") -> Notification:
    event = load_event("08-pipelinerun-failed.json")
    key = taskruns.notification_key(event, policy_namespace="ci", policy=policy, template=template)
    return Notification(
        key=key,
        event=event,
        policy_name=policy,
        policy_namespace="ci",
        template_ref=TemplateRef(template),
    )


def launched(n: Notification) -> tuple[dict[str, str], dict[str, Any]]:
    event = n.to_event(
        notifications.LAUNCHED,
        launched={
            "kind": "TaskRun",
            "name": taskruns.run_name(n.event, n.key),
            "namespace": "ci",
            "uid": "u",
            "created": True,
        },
    )
    return dict(event.attributes), dict(event.data)


def failed(n: Notification) -> tuple[dict[str, str], dict[str, Any]]:
    event = failure(
        n, stage="render", reason="UndefinedVariable", message="event.nmae is undefined"
    )
    return dict(event.attributes), dict(event.data)


def start_recorder(start: Start, kubeapi: KubeAPIServer, kubeconfig: Path) -> Function:
    kubeapi.load_manifests(EXAMPLES / "templates")
    kubeapi.store.create(
        GROUP,
        VERSION,
        "notificationpolicies",
        "ci",
        policy_object("failed-pipelines", templates=["slack-webhook", "email"]),
    )
    return start("status-recorder", KUBECONFIG=str(kubeconfig), STATUS_FLUSH_SECONDS="0.1")


@pytest.fixture
def recorder(kubeapi: KubeAPIServer, kubeconfig: Path, inprocess: InProcess) -> Function:
    """In this process: for everything but the wire."""
    return start_recorder(inprocess, kubeapi, kubeconfig)


@pytest.fixture
def any_recorder(kubeapi: KubeAPIServer, kubeconfig: Path, started: Start) -> Function:
    """In this process and served by each server: for the wire."""
    return start_recorder(started, kubeapi, kubeconfig)


def events_about(kubeapi: KubeAPIServer, name: str) -> list[dict[str, Any]]:
    return [
        e for e in kubeapi.store.list("", "events", "ci") if e["involvedObject"]["name"] == name
    ]


def status_of(
    kubeapi: KubeAPIServer, plural: str, name: str, until: Callable[[dict[str, Any]], object] = bool
) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        status: dict[str, Any] = kubeapi.store.get(GROUP, plural, "ci", name).get("status") or {}
        if until(status) or time.monotonic() > deadline:
            return status
        time.sleep(0.05)


def ready(status: dict[str, Any]) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), {})


@pytest.mark.parametrize("encoding", ["binary", "structured"])
def test_a_sent_notification_is_an_event_on_the_source_run_and_on_the_policy(
    kubeapi: KubeAPIServer, any_recorder: Function, encoding: str
) -> None:
    reply = post_event(any_recorder, *launched(notification()), encoding=encoding)
    assert (reply.status, reply.type) == (202, None)

    (on_run,) = events_about(kubeapi, "storefront-ci-run-p7v2k")
    assert on_run["involvedObject"]["kind"] == "PipelineRun"
    assert on_run["involvedObject"]["uid"] == "b2e8c4a1-6d3f-4f70-9a15-3c7e0d8b4f26"
    assert (on_run["type"], on_run["reason"]) == ("Normal", "NotificationSent")
    assert on_run["message"] == (
        "Notification sent: policy failed-pipelines, template "
        f"slack-webhook, TaskRun {taskruns.run_name(notification().event, notification().key)}"
    )
    (on_policy,) = events_about(kubeapi, "failed-pipelines")
    assert on_policy["involvedObject"]["kind"] == "NotificationPolicy"


def test_a_failed_notification_is_a_warning_event_with_the_reason(
    kubeapi: KubeAPIServer, recorder: Function
) -> None:
    post_event(recorder, *failed(notification()))
    (on_run,) = events_about(kubeapi, "storefront-ci-run-p7v2k")
    assert (on_run["type"], on_run["reason"]) == ("Warning", "NotificationFailed")
    assert "render UndefinedVariable: event.nmae is undefined" in on_run["message"]


def test_matches_are_counted_in_the_policy_status_once_per_notification(
    kubeapi: KubeAPIServer, recorder: Function
) -> None:
    first, second = notification(), notification(template="email")
    for _ in range(3):  # redeliveries of the same outcome count once
        post_event(recorder, *launched(first))
    post_event(recorder, *launched(second))

    status = status_of(
        kubeapi,
        "notificationpolicies",
        "failed-pipelines",
        until=lambda s: s.get("matchCount") == 2,
    )
    assert status["matchCount"] == 2
    assert status["lastMatchedTime"].endswith("Z")
    assert len(events_about(kubeapi, "storefront-ci-run-p7v2k")) == 2


def test_a_ready_policy_says_so(kubeapi: KubeAPIServer, recorder: Function) -> None:
    status = status_of(kubeapi, "notificationpolicies", "failed-pipelines", until=ready)
    assert ready(status)["status"] == "True"
    assert status["observedGeneration"] == 1


@pytest.mark.parametrize(
    ("policy", "reason", "message"),
    [
        (
            policy_object("bad-cel", when="event.reason =="),
            "CELCompileError",
            "spec.when: syntax error",
        ),
        (
            policy_object("no-template", templates=["nope"]),
            "TemplateNotFound",
            "NotificationTemplate ci/nope does not exist",
        ),
        (policy_object("broken-template", templates=["broken"]), "TemplateNotReady", "broken"),
    ],
    ids=["CEL compile error", "missing template", "template with a syntax error"],
)
def test_a_policy_that_cannot_work_is_not_ready_with_the_reason(
    kubeapi: KubeAPIServer,
    recorder: Function,
    policy: dict[str, Any],
    reason: str,
    message: str,
) -> None:
    kubeapi.store.create(
        GROUP,
        VERSION,
        "notificationtemplates",
        "ci",
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "NotificationTemplate",
            "metadata": {"name": "broken", "namespace": "ci"},
            "spec": {"taskRef": {"name": "x"}, "params": {"message": "{{ event.name "}},
        },
    )
    kubeapi.store.create(GROUP, VERSION, "notificationpolicies", "ci", policy)
    name = policy["metadata"]["name"]
    condition = ready(status_of(kubeapi, "notificationpolicies", name, until=ready))
    assert (condition["status"], condition["reason"]) == ("False", reason)
    assert message in condition["message"]
    template = ready(status_of(kubeapi, "notificationtemplates", "broken", until=ready))
    assert (template["status"], template["reason"]) == ("False", "TemplateSyntaxError")


def test_status_is_written_in_batches_not_per_event(
    kubeapi: KubeAPIServer, kubeconfig: Path, inprocess: InProcess
) -> None:
    kubeapi.store.create(
        GROUP,
        VERSION,
        "notificationpolicies",
        "ci",
        # Twenty templates: twenty notifications of one run, each counted.
        policy_object("failed-pipelines", templates=[f"t{index}" for index in range(20)]),
    )
    function = inprocess("status-recorder", KUBECONFIG=str(kubeconfig), STATUS_FLUSH_SECONDS="1")
    started = time.monotonic()
    for index in range(20):
        post_event(function, *launched(notification(template=f"t{index}")))
    status = status_of(
        kubeapi,
        "notificationpolicies",
        "failed-pipelines",
        until=lambda s: s.get("matchCount") == 20,
    )
    elapsed = time.monotonic() - started
    assert status["matchCount"] == 20
    writes = [
        r
        for r in kubeapi.requests
        if r.method == "PATCH" and r.path.endswith("/failed-pipelines/status")
    ]
    # One write per flush interval that saw new counts, not one per event: at most one per
    # second that passed (plus the flush in progress at each end), however slow the machine.
    assert 1 <= len(writes) <= min(int(elapsed) + 2, 19), (len(writes), elapsed)


def test_an_api_outage_while_recording_asks_for_a_retry(
    kubeapi: KubeAPIServer, recorder: Function
) -> None:
    kubeapi.faults.add(503, method="POST", path="/events", count=1)
    assert post_event(recorder, *launched(notification())).status == 503
    assert post_event(recorder, *launched(notification())).status == 202


def test_other_events_are_acknowledged(recorder: Function) -> None:
    attributes, data = launched(notification())
    reply = post_event(recorder, {**attributes, "type": notifications.MATCHED}, data)
    assert (reply.status, reply.type) == (202, None)
