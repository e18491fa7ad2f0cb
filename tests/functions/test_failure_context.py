"""The template renderer quotes why a run failed: the failed step of each failed child
TaskRun and, for a template that opts in (spec.context.logs), the end of its log, read
through the official client from the emulator's pods/log. A log that cannot be read is said
in the message, logged and counted; it never fails the notification."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tekton_notifications import failures, kube, metrics
from tekton_notifications.devtools.kubeapi import KubeAPIServer
from tekton_notifications.devtools.serving import ServedFunction
from tekton_notifications.events import RunEvent, parse_event
from tekton_notifications.matching import Match
from tekton_notifications.models import TemplateRef, parse_policy, parse_template
from tekton_notifications.stages.failure_context import MAX_LOGS, FailureContext, Reader
from tekton_notifications.stages.policy_filter import matched_event
from tests.conftest import EXAMPLES, load_cloudevent, load_event, policy_object
from tests.functions.inprocess import InProcessFunction
from tests.functions.serving import post_event

Function = InProcessFunction | ServedFunction
POD = "storefront-ci-run-p7v2k-unit-tests-pod"
TOKEN = "ghp_" + "Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0Fe9Dc8"
LOG = (
    "\x1b[1m============ test session starts ============\x1b[0m\n"
    "collected 214 items\n"
    f"+ git fetch https://x-access-token:{TOKEN}@github.com/example/storefront\n"
    "tests/test_checkout.py ..........F\n"
    "\x1b[31mFAILED\x1b[0m tests/test_checkout.py::test_retry_on_503 - assert 2 == 3\n"
    "\x1b[31m======= 1 failed, 213 passed in 94.20s =======\x1b[0m\n"
)
#: The templates of the tests: opting in to logs, naming failedSteps only, and neither.
TEMPLATES = ["slack-failure-log", "steps-only", "slack-webhook"]


def _store_run(kubeapi: KubeAPIServer, *, pod: bool = True) -> None:
    """The failed PipelineRun's children, as the API holds them, and the failing pod's log."""
    failed = load_cloudevent("07-taskrun-failed.json")["data"]["taskRun"]
    succeeded = json.loads(json.dumps(failed))
    succeeded["metadata"]["name"] = "storefront-ci-run-p7v2k-fetch-source"
    succeeded["status"]["conditions"][0].update(status="True", reason="Succeeded")
    succeeded["status"]["steps"][0]["terminated"]["exitCode"] = 0
    for taskrun in (failed, succeeded):
        kubeapi.store.create(
            "tekton.dev",
            "v1",
            "taskruns",
            "ci",
            {"apiVersion": "tekton.dev/v1", "kind": "TaskRun", **taskrun},
        )
    if pod:
        kubeapi.store.create(
            "",
            "v1",
            "pods",
            "ci",
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": POD, "namespace": "ci"},
                "spec": {"containers": [{"name": "step-pytest"}]},
            },
        )
        kubeapi.pod_logs.put("ci", POD, "step-pytest", LOG)


def _start(start: Callable[..., Function], kubeapi: KubeAPIServer, kubeconfig: Path) -> Function:
    kubeapi.load_manifests(EXAMPLES / "templates")
    kubeapi.store.create(
        "notifications.tekton.dev",
        "v1alpha1",
        "notificationtemplates",
        "ci",
        {
            "apiVersion": "notifications.tekton.dev/v1alpha1",
            "kind": "NotificationTemplate",
            "metadata": {"name": "steps-only", "namespace": "ci"},
            "spec": {
                "taskRef": {"name": "send-to-webhook-slack"},
                "params": {
                    "message": "{% for s in event.failedSteps %}{{ s.name }}={{ s.exitCode }}"
                    "[{{ s.log }}]{% endfor %}"
                },
            },
        },
    )
    kubeapi.store.create(
        "notifications.tekton.dev",
        "v1alpha1",
        "notificationpolicies",
        "ci",
        policy_object("failed-pipelines", templates=TEMPLATES),
    )
    return start(
        "template-renderer",
        KUBECONFIG=str(kubeconfig),
        TEKTON_DASHBOARD_URL="dashboard=https://tekton.example.com,results=https://results.example.com",
    )


def _message(renderer: Function, template: str) -> str:
    policy = parse_policy(policy_object("failed-pipelines", "ci", templates=TEMPLATES))
    event = matched_event(
        Match(policy, TemplateRef(template, {})), load_event("08-pipelinerun-failed.json")
    )
    reply = post_event(renderer, dict(event.attributes), dict(event.data))
    assert (reply.status, reply.type) == (200, "dev.tekton.notification.rendered.v1"), reply.body
    params = {p["name"]: p["value"] for p in reply.data["resource"]["spec"]["params"]}
    text: str = (
        json.loads(f'"{params["message"]}"') if "\\u" in params["message"] else params["message"]
    )
    return text


@pytest.fixture
def renderer(
    kubeapi: KubeAPIServer, kubeconfig: Path, inprocess: Callable[..., InProcessFunction]
) -> Function:
    return _start(inprocess, kubeapi, kubeconfig)


def _log_reads(kubeapi: KubeAPIServer) -> list[dict[str, str]]:
    return [r.query for r in kubeapi.requests if r.path.endswith("/log")]


def test_the_failure_message_quotes_the_end_of_the_failed_steps_log_redacted(
    kubeapi: KubeAPIServer, renderer: Function
) -> None:
    _store_run(kubeapi)
    message = _message(renderer, "slack-failure-log")

    assert "• `unit-tests` step `pytest` exited 1 (Error)" in message
    assert "FAILED tests/test_checkout.py::test_retry_on_503 - assert 2 == 3" in message
    assert "https://[REDACTED:url-credentials]@github.com/example/storefront" in message
    assert TOKEN not in message and "\x1b" not in message
    assert "results.example.com/apis/results.tekton.dev" not in message  # not stored by Results
    # The template asked for 15 lines and 2048 bytes: the API is asked for the lines and, as
    # limitBytes keeps the start of the tail, four times the bytes.
    assert _log_reads(kubeapi) == [
        {"container": "step-pytest", "tailLines": "15", "limitBytes": "8192"}
    ]


@pytest.mark.parametrize(
    ("fault", "said", "result"),
    [
        pytest.param(None, "log not read: NotFound: pods", "not_found", id="pod-gone"),
        pytest.param(
            (403, "Forbidden", 'pods "x" is forbidden: cannot get resource "pods/log"'),
            "log not read: Forbidden: pods",
            "forbidden",
            id="overlay-not-installed",
        ),
    ],
)
def test_a_log_that_cannot_be_read_is_said_and_counted_not_a_failure(
    kubeapi: KubeAPIServer,
    renderer: Function,
    fault: tuple[int, str, str] | None,
    said: str,
    result: str,
) -> None:
    _store_run(kubeapi, pod=fault is not None)
    if fault is not None:
        kubeapi.faults.add(fault[0], method="GET", path="/log", reason=fault[1], message=fault[2])
    counted = metrics.FAILURE_CONTEXT.labels("log", result)
    before = counted._value.get()

    message = _message(renderer, "slack-failure-log")

    assert "• `unit-tests` step `pytest` exited 1 (Error)" in message
    assert said in message
    assert counted._value.get() == before + 1


@pytest.mark.parametrize(
    ("template", "quoted", "log_reads"),
    [
        pytest.param("steps-only", "pytest=1[]", 0, id="failedSteps-without-logs"),
        pytest.param("slack-webhook", "", 0, id="a-template-that-reads-neither"),
    ],
)
def test_only_what_the_template_asks_for_is_read(
    kubeapi: KubeAPIServer, renderer: Function, template: str, quoted: str, log_reads: int
) -> None:
    _store_run(kubeapi)
    message = _message(renderer, template)
    assert quoted in message
    assert len(_log_reads(kubeapi)) == log_reads


def test_served_the_renderer_quotes_the_log(
    kubeapi: KubeAPIServer, kubeconfig: Path, served: Callable[..., ServedFunction]
) -> None:
    """As kn func serves it: the function's own client reads the emulator's pods/log."""
    _store_run(kubeapi)
    message = _message(_start(served, kubeapi, kubeconfig), "slack-failure-log")
    assert "FAILED tests/test_checkout.py::test_retry_on_503" in message
    assert "[REDACTED:url-credentials]" in message and TOKEN not in message


def _failed_pipelinerun(children: int) -> RunEvent:
    cloudevent = load_cloudevent("08-pipelinerun-failed.json")
    status = cloudevent["data"]["pipelineRun"]["status"]
    status["childReferences"] = [
        {
            "apiVersion": "tekton.dev/v1",
            "kind": "TaskRun",
            "name": f"child-{n}",
            "pipelineTaskName": f"t{n}",
        }
        for n in range(children)
    ]
    return parse_event(cloudevent, cloudevent["data"])


def test_children_and_logs_read_are_bounded_and_finished_children_cached(
    kubeapi: KubeAPIServer, kubeconfig: Path
) -> None:
    """25 failed children: 20 are read, 5 logs are quoted, the rest say why not; the same run
    rendered again (another template, another policy) reads no TaskRun twice."""
    for n in range(25):
        taskrun = _taskrun_failed(f"child-{n}")
        kubeapi.store.create("tekton.dev", "v1", "taskruns", "ci", taskrun)
        kubeapi.store.create("", "v1", "pods", "ci", _pod(f"child-{n}-pod"))
        kubeapi.pod_logs.put("ci", f"child-{n}-pod", "step-pytest", f"child {n} failed\n")
    context = FailureContext(Reader.over(kube.connect(str(kubeconfig)).api))
    template = parse_template(
        {
            "metadata": {"name": "t", "namespace": "ci"},
            "spec": {"taskRef": {"name": "x"}, "context": {"logs": {"lines": 5}}},
        }
    )
    event = _failed_pipelinerun(25)

    steps = context.enrich(event, template, {}).steps_failed()
    taskrun_reads = [r for r in kubeapi.requests if "/taskruns/" in r.path]
    context.enrich(event, template, {})

    assert len(steps) == failures.MAX_CHILDREN == len(taskrun_reads)
    assert [s["log"] for s in steps[:MAX_LOGS]] == [f"child {n} failed" for n in range(MAX_LOGS)]
    assert {s["logUnavailable"] for s in steps[MAX_LOGS:]} == {
        f"only the first {MAX_LOGS} failed steps' logs are read"
    }
    assert len([r for r in kubeapi.requests if "/taskruns/" in r.path]) == len(taskrun_reads)


def _taskrun_failed(name: str) -> dict[str, Any]:
    taskrun = json.loads(json.dumps(load_cloudevent("07-taskrun-failed.json")["data"]["taskRun"]))
    taskrun["metadata"] = {"name": name, "namespace": "ci"}
    taskrun["status"]["podName"] = f"{name}-pod"
    return {"apiVersion": "tekton.dev/v1", "kind": "TaskRun", **taskrun}


def _pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "ci"},
        "spec": {"containers": [{"name": "step-pytest"}]},
    }
