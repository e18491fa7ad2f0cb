"""Storm control: rate limits and ``fixed`` through the policy filter, with their state in the
policy's status in the API emulator, surviving restarts and shared by replicas; suppressions
counted by the status recorder. All of it logic: the functions run in this process
(func-python's ASGI app); a restart is a new function instance, a replica another one."""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tekton_notifications import notifications
from tekton_notifications.devtools.kubeapi import KubeAPIServer, KubeError
from tests.conftest import EXAMPLES, load_cloudevent, policy_object
from tests.functions.inprocess import InProcessFunction
from tests.functions.serving import Reply, Target, post_cloudevent, post_event

Start = Callable[..., InProcessFunction]
GROUP, VERSION = "notifications.tekton.dev", "v1alpha1"
FAILED = "08-pipelinerun-failed.json"
SUCCEEDED = "09-pipelinerun-successful.json"


def add_policy(kubeapi: KubeAPIServer, obj: dict[str, Any]) -> None:
    kubeapi.store.create(GROUP, VERSION, "notificationpolicies", "ci", obj)


def run_of(fixture: str, serial: int, *, minute: int = 0) -> dict[str, Any]:
    """The fixture as another run of the same pipeline, finishing ``minute`` minutes later."""
    cloudevent = copy.deepcopy(load_cloudevent(fixture))
    (run,) = cloudevent["data"].values()
    metadata = run["metadata"]
    metadata["name"] = f"{metadata['name']}-{serial}"
    metadata["uid"] = f"uid-{serial}"
    metadata.setdefault("labels", {})["tekton.dev/pipeline"] = "storefront-ci"
    run["status"]["completionTime"] = f"2026-11-25T10:{minute:02d}:00Z"
    cloudevent["id"] = f"event-{serial}"
    cloudevent["source"] = f"/apis///namespaces/ci//{metadata['name']}"
    return cloudevent


def post_run(kubeapi: KubeAPIServer, function: Target, cloudevent: dict[str, Any]) -> Reply:
    """POST a Tekton event whose run exists, as Tekton's do: the filter confirms the run (by
    name and uid) before the event may spend storm budget."""
    ((key, run),) = cloudevent["data"].items()
    kind = key[0].upper() + key[1:]
    stored = {**run, "apiVersion": "tekton.dev/v1", "kind": kind}
    with contextlib.suppress(KubeError):  # a redelivery: the run is already there
        namespace = run["metadata"]["namespace"]
        kubeapi.store.create(
            "tekton.dev", "v1", f"{key.lower()}s", namespace, stored, keep_uid=True
        )
    return post_cloudevent(function, cloudevent)


def status_of(kubeapi: KubeAPIServer, name: str) -> dict[str, Any]:
    status: dict[str, Any] = (
        kubeapi.store.get(GROUP, "notificationpolicies", "ci", name).get("status") or {}
    )
    return status


def filter_for(start: Start, kubeconfig: Path) -> InProcessFunction:
    return start("policy-filter", KUBECONFIG=str(kubeconfig))


def test_a_storm_sends_the_limit_and_answers_the_rest_with_suppressed_events(
    kubeapi: KubeAPIServer, kubeconfig: Path, inprocess: Start
) -> None:
    add_policy(kubeapi, policy_object("storm", rate_limit={"limit": 2, "window": "1h"}))
    function = filter_for(inprocess, kubeconfig)

    replies = [post_run(kubeapi, function, run_of(FAILED, n)) for n in range(5)]

    assert [r.type for r in replies] == [notifications.MATCHED] * 2 + [notifications.SUPPRESSED] * 3
    suppressed = replies[2].data["suppressed"]
    assert suppressed["reason"] == "ratelimit"
    assert suppressed["message"].startswith("rate limit reached: 2 sent, at most 2 per 1h")
    sent = status_of(kubeapi, "storm")["rateLimit"]["sent"]
    assert len(sent) == 2


def test_the_budget_survives_a_restart_of_the_filter(
    kubeapi: KubeAPIServer, kubeconfig: Path, inprocess: Start
) -> None:
    add_policy(kubeapi, policy_object("storm", rate_limit={"limit": 1, "window": "1h"}))
    first = filter_for(inprocess, kubeconfig)
    assert post_run(kubeapi, first, run_of(FAILED, 1)).type == notifications.MATCHED
    first.stop()

    restarted = filter_for(inprocess, kubeconfig)
    assert post_run(kubeapi, restarted, run_of(FAILED, 2)).type == notifications.SUPPRESSED
    # ... and a redelivery of the notification it already let through still goes through.
    assert post_run(kubeapi, restarted, run_of(FAILED, 1)).type == notifications.MATCHED


def test_two_replicas_share_one_budget(
    kubeapi: KubeAPIServer, kubeconfig: Path, inprocess: Start
) -> None:
    add_policy(kubeapi, policy_object("storm", rate_limit={"limit": 3, "window": "1h"}))
    replicas = [filter_for(inprocess, kubeconfig), filter_for(inprocess, kubeconfig)]

    def post(serial: int) -> Reply:
        return post_run(kubeapi, replicas[serial % 2], run_of(FAILED, serial))

    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(post, range(16)))

    assert all(r.status == 200 for r in replies), [r.detail for r in replies]
    assert sum(r.type == notifications.MATCHED for r in replies) == 3
    assert len(status_of(kubeapi, "storm")["rateLimit"]["sent"]) == 3


def test_failed_and_fixed_notifies_once_when_the_pipeline_is_fixed_even_after_a_restart(
    kubeapi: KubeAPIServer, kubeconfig: Path, inprocess: Start
) -> None:
    add_policy(kubeapi, policy_object("fixes", events=["failed", "fixed"]))
    function = filter_for(inprocess, kubeconfig)

    failure = post_run(kubeapi, function, run_of(FAILED, 1, minute=1))
    assert failure.type == notifications.MATCHED
    assert failure.data["transition"] == {"name": "broken", "previous": None}
    (outcome,) = status_of(kubeapi, "fixes")["outcomes"]
    assert (outcome["pipeline"], outcome["outcome"]) == ("storefront-ci", "failed")

    function.stop()
    function = filter_for(inprocess, kubeconfig)

    fixed = post_run(kubeapi, function, run_of(SUCCEEDED, 2, minute=2))
    assert fixed.type == notifications.MATCHED
    assert fixed.data["transition"] == {
        "name": "fixed",
        "previous": {
            "outcome": "failed",
            "run": "storefront-ci-run-p7v2k-1",
            "completionTime": "2026-11-25T10:01:00Z",
        },
    }
    redelivered = post_run(kubeapi, function, run_of(SUCCEEDED, 2, minute=2))
    assert redelivered.headers["ce-id"] == fixed.headers["ce-id"]
    assert redelivered.data["transition"]["name"] == "fixed"

    still_good = post_run(kubeapi, function, run_of(SUCCEEDED, 3, minute=3))
    assert (still_good.status, still_good.type) == (202, None)


def test_a_suspended_policy_answers_with_a_suppressed_event(
    kubeapi: KubeAPIServer, kubeconfig: Path, inprocess: Start
) -> None:
    add_policy(kubeapi, policy_object("paused", suspend=True))
    function = filter_for(inprocess, kubeconfig)
    reply = post_run(kubeapi, function, run_of(FAILED, 1))
    assert reply.type == notifications.SUPPRESSED
    assert reply.data["suppressed"] == {"reason": "suspended", "message": "policy is suspended"}
    assert "rateLimit" not in status_of(kubeapi, "paused"), "a suspension writes no state"


def test_the_filter_asks_for_a_retry_when_it_cannot_write_the_state(
    kubeapi: KubeAPIServer, kubeconfig: Path, inprocess: Start
) -> None:
    add_policy(kubeapi, policy_object("storm", rate_limit={"limit": 2, "window": "1h"}))
    function = filter_for(inprocess, kubeconfig)
    kubeapi.faults.add(503, method="PATCH", path="/status$", count=100)

    reply = post_run(kubeapi, function, run_of(FAILED, 1))

    assert reply.status == 503
    assert "recording policy state" in reply.detail
    kubeapi.faults.clear()
    assert post_run(kubeapi, function, run_of(FAILED, 1)).type == notifications.MATCHED


@pytest.fixture
def recorder(kubeapi: KubeAPIServer, kubeconfig: Path, inprocess: Start) -> InProcessFunction:
    kubeapi.load_manifests(EXAMPLES / "templates")
    return inprocess("status-recorder", KUBECONFIG=str(kubeconfig), STATUS_FLUSH_SECONDS="0.1")


def test_suppressions_are_counted_in_status_and_recorded_on_the_run_once_each(
    kubeapi: KubeAPIServer, kubeconfig: Path, inprocess: Start, recorder: InProcessFunction
) -> None:
    add_policy(
        kubeapi,
        policy_object(
            "storm", templates=["slack-webhook"], rate_limit={"limit": 1, "window": "1h"}
        ),
    )
    function = filter_for(inprocess, kubeconfig)
    replies = [post_run(kubeapi, function, run_of(FAILED, n)) for n in range(4)]
    suppressed = [r for r in replies if r.type == notifications.SUPPRESSED]
    assert len(suppressed) == 3
    for reply in [*suppressed, suppressed[0]]:  # the last one is a redelivery
        attributes = {k[3:]: v for k, v in reply.headers.items() if k.startswith("ce-")}
        assert post_event(recorder, attributes, reply.data).status == 202

    deadline = time.monotonic() + 10
    while status_of(kubeapi, "storm").get("suppressedCount") != 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    status = status_of(kubeapi, "storm")
    assert status["suppressedCount"] == 3
    assert status["lastSuppressedTime"].endswith("Z")
    on_run = [
        e
        for e in kubeapi.store.list("", "events", "ci")
        if e["involvedObject"]["name"] == "storefront-ci-run-p7v2k-1"
    ]
    assert [(e["type"], e["reason"]) for e in on_run] == [("Normal", "NotificationSuppressed")]
    assert on_run[0]["message"].startswith(
        "Notification suppressed: policy storm: rate limit reached: 1 sent, at most 1 per 1h"
    )
