"""The policy-filter function, fed tests/data/events: its logic in this process (func-python's
ASGI app), the wire and its readiness served as kn func serves it.

Policies come from the Kubernetes API emulator through the official client (list + watch).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tekton_notifications.devtools.kubeapi import KubeAPIServer
from tekton_notifications.devtools.serving import ServedFunction, free_port, write_kubeconfig
from tests.conftest import load_cloudevent, policy_object
from tests.functions.inprocess import InProcessFunction
from tests.functions.serving import (
    CaptureServer,
    post_cloudevent,
    post_event,
    probe,
    request,
)

FAILED_PIPELINERUN = "08-pipelinerun-failed.json"
Serve = Callable[..., ServedFunction]
Function = InProcessFunction | ServedFunction
Start = Callable[..., Function]


def add_policy(kubeapi: KubeAPIServer, obj: dict[str, object]) -> None:
    metadata = obj["metadata"]
    assert isinstance(metadata, dict)
    kubeapi.store.create(
        "notifications.tekton.dev", "v1alpha1", "notificationpolicies", metadata["namespace"], obj
    )


def start_filter(
    start: Start, kubeapi: KubeAPIServer, kubeconfig: Path, broker_sink: CaptureServer
) -> Function:
    add_policy(kubeapi, policy_object("failed-pipelines", selector={"kinds": ["PipelineRun"]}))
    return start("policy-filter", KUBECONFIG=str(kubeconfig), K_SINK=_url(broker_sink))


@pytest.fixture
def policy_filter(
    kubeapi: KubeAPIServer,
    kubeconfig: Path,
    broker_sink: CaptureServer,
    inprocess: Callable[..., InProcessFunction],
) -> Function:
    """In this process: for everything but the wire and start-up."""
    return start_filter(inprocess, kubeapi, kubeconfig, broker_sink)


@pytest.fixture
def any_filter(
    kubeapi: KubeAPIServer, kubeconfig: Path, broker_sink: CaptureServer, started: Start
) -> Function:
    """In this process and served by each server: for the wire."""
    return start_filter(started, kubeapi, kubeconfig, broker_sink)


def _url(capture: CaptureServer) -> str:
    return f"http://127.0.0.1:{capture._server.server_address[1]}"


@pytest.mark.parametrize("encoding", ["binary", "structured"])
def test_a_matching_tekton_event_is_answered_with_one_matched_event(
    any_filter: Function, encoding: str
) -> None:
    cloudevent = load_cloudevent(FAILED_PIPELINERUN)
    reply = post_cloudevent(any_filter, cloudevent, encoding=encoding)

    assert reply.status == 200, reply.body
    assert reply.type == "dev.tekton.notification.matched.v1"
    assert reply.headers["ce-source"] == (
        "/apis/notifications.tekton.dev/v1alpha1/namespaces/ci/notificationpolicies/failed-pipelines"
    )
    assert reply.headers["ce-subject"] == "pipelineruns/ci/storefront-ci-run-p7v2k"
    data = reply.data
    assert data["policy"] == {
        "name": "failed-pipelines",
        "namespace": "ci",
        "kind": "NotificationPolicy",
    }
    assert data["templateRef"] == {"name": "slack", "params": {}}
    assert data["runEvent"]["attributes"]["id"] == cloudevent["id"]
    assert data["runEvent"]["data"] == cloudevent["data"]
    assert len(data["key"]) == 64


def test_a_tekton_redelivery_yields_the_same_matched_event_id(
    policy_filter: Function,
) -> None:
    cloudevent = load_cloudevent(FAILED_PIPELINERUN)
    first = post_cloudevent(policy_filter, cloudevent)
    again = post_cloudevent(policy_filter, {**cloudevent, "id": "a-new-id-from-a-retry"})
    assert first.headers["ce-id"] == again.headers["ce-id"]


def test_an_event_no_policy_matches_is_accepted_without_a_reply(
    policy_filter: Function,
) -> None:
    reply = post_cloudevent(policy_filter, load_cloudevent("06-taskrun-successful.json"))
    assert (reply.status, reply.type) == (202, None)
    assert reply.detail == "no policy matched"


def test_several_matches_are_published_to_the_broker_one_by_one(
    kubeapi: KubeAPIServer, policy_filter: Function, broker_sink: CaptureServer
) -> None:
    add_policy(kubeapi, policy_object("also-email", templates=["email", "teams"]))
    _wait_for_policies(policy_filter, 2)

    reply = post_cloudevent(policy_filter, load_cloudevent(FAILED_PIPELINERUN))

    assert reply.status == 202
    assert reply.detail == "published 3 matches"
    assert broker_sink.types == ["dev.tekton.notification.matched.v1"] * 3
    refs = sorted(json.loads(body)["templateRef"]["name"] for _, body in broker_sink.received)
    assert refs == ["email", "slack", "teams"]


def test_a_broker_that_refuses_fan_out_makes_the_whole_event_retryable(
    kubeapi: KubeAPIServer, policy_filter: Function, broker_sink: CaptureServer
) -> None:
    add_policy(kubeapi, policy_object("also-email", templates=["email"]))
    _wait_for_policies(policy_filter, 2)
    broker_sink.status = 500
    reply = post_cloudevent(policy_filter, load_cloudevent(FAILED_PIPELINERUN))
    assert reply.status == 503
    assert "answered 500" in reply.json["message"]


def test_a_policy_created_after_start_is_seen_through_the_watch(
    kubeapi: KubeAPIServer, policy_filter: Function
) -> None:
    event = load_cloudevent("06-taskrun-successful.json")
    assert post_cloudevent(policy_filter, event).status == 202
    add_policy(
        kubeapi,
        policy_object("succeeded-taskruns", events=["succeeded"], selector={"kinds": ["TaskRun"]}),
    )
    _wait_for_policies(policy_filter, 2)
    reply = post_cloudevent(policy_filter, event)
    assert reply.type == "dev.tekton.notification.matched.v1"


@pytest.mark.parametrize("encoding", ["binary", "structured"])
def test_event_types_it_does_not_handle_are_acknowledged_and_logged(
    policy_filter: Function, encoding: str
) -> None:
    reply = post_event(
        policy_filter,
        {"specversion": "1.0", "id": "1", "source": "/x", "type": "com.example.build.done"},
        {"a": 1},
        encoding=encoding,
    )
    assert (reply.status, reply.type) == (202, None)
    assert "unsupported event type 'com.example.build.done'" in reply.detail


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"{not json", "event data is not valid JSON"),
        (
            {"pipelineRun": {"metadata": {"name": "x", "namespace": "ci"}}},
            "data must hold 'taskRun'; found pipelineRun",
        ),
    ],
    ids=["invalid JSON", "wrong envelope"],
)
def test_a_malformed_tekton_event_is_a_400_that_says_what_is_wrong(
    policy_filter: Function, data: object, message: str
) -> None:
    attributes = {
        "specversion": "1.0",
        "id": "bad-1",
        "source": "/apis///namespaces/ci//x",
        "type": "dev.tekton.event.taskrun.failed.v1",
    }
    reply = post_event(policy_filter, attributes, data)
    assert reply.status == 400
    assert message in reply.json["message"]


def test_a_request_that_is_not_a_cloudevent_is_a_400(any_filter: Function) -> None:
    body = json.dumps({"hello": "world"}).encode()
    reply = request(any_filter, "POST", headers={"content-type": "application/json"}, body=body)
    assert reply.status == 400


def test_a_notification_run_never_matches(policy_filter: Function) -> None:
    cloudevent = load_cloudevent(FAILED_PIPELINERUN)
    cloudevent["data"]["pipelineRun"]["metadata"]["labels"].update(
        {
            "app.kubernetes.io/managed-by": "tekton-notifications",
            "notifications.tekton.dev/policy": "failed-pipelines",
        }
    )
    reply = post_cloudevent(policy_filter, cloudevent)
    assert reply.status == 202
    assert "is a notification run" in reply.detail


def test_a_policy_in_another_namespace_does_not_see_the_run(
    kubeapi: KubeAPIServer, kubeconfig: Path, inprocess: Callable[..., InProcessFunction]
) -> None:
    add_policy(kubeapi, policy_object("other-team", namespace="team-b"))
    function = inprocess("policy-filter", KUBECONFIG=str(kubeconfig))
    reply = post_cloudevent(function, load_cloudevent(FAILED_PIPELINERUN))
    assert (reply.status, reply.detail) == (202, "no policy matched")


def test_until_policies_are_loaded_it_is_not_ready_and_asks_for_a_retry(
    tmp_path: Path, served: Serve
) -> None:
    unreachable = tmp_path / "kubeconfig"
    write_kubeconfig(unreachable, f"http://127.0.0.1:{free_port()}")  # nothing listens there
    function = served("policy-filter", wait_ready=False, KUBECONFIG=str(unreachable))

    assert probe(function).status != 200
    reply = post_cloudevent(function, load_cloudevent(FAILED_PIPELINERUN))
    assert reply.status == 503
    assert "policies not loaded yet" in reply.json["message"]


def _wait_for_policies(function: Function, count: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        readiness = probe(function).body.decode()
        if readiness.split("; ")[0] == f"{count} policies":
            return
        time.sleep(0.05)
    raise AssertionError(f"{function.name} did not see {count} policies:\n{function.log()}")
