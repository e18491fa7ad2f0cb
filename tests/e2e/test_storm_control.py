"""Storm control end to end: a pipeline failing in a loop, then fixed, through the broker, the
Triggers in knative/, the four functions and the API emulator."""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tekton_notifications.devtools.chain import LocalChain
from tests.conftest import EXAMPLES, load_cloudevent

pytestmark = pytest.mark.slow

STORM = 12
LIMIT = 5  # examples/policies/pipelinerun-failed-slack.yaml: 5 per 10m per pipeline


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalChain]:
    manifests = (EXAMPLES / "policies", EXAMPLES / "templates")
    with LocalChain(tmp_path_factory.mktemp("storm"), manifests=manifests, time_scale=0.05) as c:
        yield c


def run_of(fixture: str, pipeline: str, serial: int, minute: int) -> dict[str, Any]:
    cloudevent = copy.deepcopy(load_cloudevent(fixture))
    (run,) = cloudevent["data"].values()
    metadata = run["metadata"]
    metadata["name"] = f"{pipeline}-{serial:03d}"
    metadata["uid"] = f"{pipeline}-uid-{serial}"
    metadata["labels"] = {"tekton.dev/pipeline": pipeline}
    run["status"]["completionTime"] = f"2026-11-25T10:{minute:02d}:00Z"
    cloudevent["id"] = f"{pipeline}-event-{serial}"
    cloudevent["source"] = f"/apis///namespaces/ci//{metadata['name']}"
    return cloudevent


def slack_runs(chain: LocalChain, pipeline: str) -> list[dict[str, Any]]:
    return [
        r
        for r in chain.notification_runs()
        if r["metadata"]["labels"]["notifications.tekton.dev/source-name"].startswith(pipeline)
        and r["metadata"]["labels"]["notifications.tekton.dev/policy"] == "pipelinerun-failed-slack"
    ]


def policy_status(chain: LocalChain) -> dict[str, Any]:
    (policy,) = [p for p in chain.policies() if p["metadata"]["name"] == "pipelinerun-failed-slack"]
    status: dict[str, Any] = policy.get("status") or {}
    return status


def test_a_failing_loop_sends_the_limit_counts_the_rest_and_says_when_it_is_fixed(
    chain: LocalChain,
) -> None:
    failures = [run_of("08-pipelinerun-failed.json", "flaky", n, minute=n) for n in range(STORM)]
    # The broker delivers concurrently, so which of two failures in flight the filter decides
    # first is not fixed (each waits for its run's confirmation, runcheck.py): let the first
    # one land, as a looping pipeline's failures are minutes apart.
    assert chain.send(failures[0]) == 202
    assert chain.wait_idle()
    for cloudevent in failures[1:] + failures[:3]:  # and three redeliveries
        assert chain.send(cloudevent) == 202
    assert chain.wait_idle()

    assert len(slack_runs(chain, "flaky")) == LIMIT
    deadline = time.monotonic() + 10
    while policy_status(chain).get("suppressedCount") != STORM - LIMIT:
        assert time.monotonic() < deadline, policy_status(chain)
        time.sleep(0.1)
    suppressed_on = {
        e["involvedObject"]["name"]
        for e in chain.kubernetes_events("ci")
        if e["reason"] == "NotificationSuppressed"
    }
    assert len(suppressed_on) == STORM - LIMIT

    fixed = run_of("09-pipelinerun-successful.json", "flaky", 99, minute=59)
    assert chain.send(fixed) == 202
    assert chain.wait_idle()

    (notification,) = [
        r
        for r in slack_runs(chain, "flaky")
        if r["metadata"]["labels"]["notifications.tekton.dev/source-name"] == "flaky-099"
    ]
    message = next(p["value"] for p in notification["spec"]["params"] if p["name"] == "message")
    assert "flaky is fixed" in message
    assert "It had failed since flaky-000." in message
    (outcome,) = [o for o in policy_status(chain)["outcomes"] if o["pipeline"] == "flaky"]
    assert (outcome["outcome"], outcome["previousOutcome"]) == ("succeeded", "failed")
    assert chain.failures.events == []
    assert chain.router.dead_letters == []


def test_a_budget_per_pipeline_leaves_other_pipelines_alone(chain: LocalChain) -> None:
    for n in range(3):
        event = run_of("08-pipelinerun-failed.json", "steady", n, minute=n)
        assert chain.send(event) == 202
    assert chain.wait_idle()
    assert len(slack_runs(chain, "steady")) == 3
