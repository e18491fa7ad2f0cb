"""The template-renderer function, templates from the emulator: its logic in this process
(func-python's ASGI app), the wire and its start-up served as kn func serves it."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tekton_notifications.devtools.kubeapi import KubeAPIServer
from tekton_notifications.devtools.serving import ServedFunction, free_port, write_kubeconfig
from tekton_notifications.matching import Match
from tekton_notifications.models import TemplateRef, parse_policy
from tekton_notifications.stages.policy_filter import matched_event
from tests.conftest import EXAMPLES, load_event, policy_object
from tests.functions.inprocess import InProcessFunction
from tests.functions.serving import post_event, probe

Serve = Callable[..., ServedFunction]
Function = InProcessFunction | ServedFunction
Start = Callable[..., Function]


def add_template(kubeapi: KubeAPIServer, name: str, namespace: str = "ci", **spec: Any) -> None:
    kubeapi.store.create(
        "notifications.tekton.dev",
        "v1alpha1",
        "notificationtemplates",
        namespace,
        {
            "apiVersion": "notifications.tekton.dev/v1alpha1",
            "kind": "NotificationTemplate",
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        },
    )


def matched(
    template: str = "slack-webhook",
    *,
    namespace: str = "ci",
    params: dict[str, str] | None = None,
    fixture: str = "08-pipelinerun-failed.json",
) -> tuple[dict[str, str], dict[str, Any]]:
    policy = parse_policy(policy_object("failed-pipelines", namespace, templates=[template]))
    event = matched_event(Match(policy, TemplateRef(template, params or {})), load_event(fixture))
    return dict(event.attributes), dict(event.data)


#: Every template the tests below name: the renderer refuses claims to policies that don't
#: use the template (claims.py), so the tests' policy uses them all.
TEMPLATES_NAMED = [
    "slack-webhook",
    "no-such-template",
    "team-b-only",
    "typo",
    "both-refs",
    "notify-pipeline",
]


def start_renderer(start: Start, kubeapi: KubeAPIServer, kubeconfig: Path) -> Function:
    kubeapi.load_manifests(EXAMPLES / "templates")
    kubeapi.store.create(
        "notifications.tekton.dev",
        "v1alpha1",
        "notificationpolicies",
        "ci",
        policy_object("failed-pipelines", templates=TEMPLATES_NAMED),
    )
    return start(
        "template-renderer",
        KUBECONFIG=str(kubeconfig),
        TEKTON_DASHBOARD_URL="https://dashboard.example.com",
    )


@pytest.fixture
def renderer(
    kubeapi: KubeAPIServer, kubeconfig: Path, inprocess: Callable[..., InProcessFunction]
) -> Function:
    """In this process: for everything but the wire and start-up."""
    return start_renderer(inprocess, kubeapi, kubeconfig)


@pytest.fixture
def any_renderer(kubeapi: KubeAPIServer, kubeconfig: Path, started: Start) -> Function:
    """In this process and served by each server: for the wire."""
    return start_renderer(started, kubeapi, kubeconfig)


@pytest.mark.parametrize("encoding", ["binary", "structured"])
def test_a_matched_event_is_rendered_into_the_taskrun_to_create(
    any_renderer: Function, encoding: str
) -> None:
    attributes, data = matched()
    reply = post_event(any_renderer, attributes, data, encoding=encoding)

    assert reply.status == 200, reply.body
    assert reply.type == "dev.tekton.notification.rendered.v1"
    resource = reply.data["resource"]
    template = yaml.safe_load((EXAMPLES / "templates" / "slack-webhook.yaml").read_text())
    assert resource["apiVersion"] == "tekton.dev/v1"
    assert resource["kind"] == "TaskRun"
    assert resource["spec"]["taskRef"] == template["spec"]["taskRef"]
    assert resource["spec"]["timeout"] == template["spec"]["timeout"]
    assert resource["metadata"]["namespace"] == "ci"
    assert resource["metadata"]["name"].startswith("storefront-ci-run-p7v2k-failed-")
    assert resource["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "tekton-notifications",
        "notifications.tekton.dev/policy": "failed-pipelines",
        "notifications.tekton.dev/template": "slack-webhook",
        "notifications.tekton.dev/source-kind": "PipelineRun",
        "notifications.tekton.dev/source-name": "storefront-ci-run-p7v2k",
        "notifications.tekton.dev/source-uid": "b2e8c4a1-6d3f-4f70-9a15-3c7e0d8b4f26",
        "notifications.tekton.dev/event": "failed",
    }
    params = {p["name"]: p["value"] for p in resource["spec"]["params"]}
    assert set(params) == set(template["spec"]["params"])
    assert "storefront-ci-run-p7v2k" in params["message"]
    assert (
        "dashboard.example.com/#/namespaces/ci/pipelineruns/storefront-ci-run-p7v2k"
        in (params["message"])
    )
    assert reply.data["key"] == data["key"]


def test_policy_param_overrides_replace_the_templates_params(renderer: Function) -> None:
    attributes, data = matched(params={"bot-name": "CI for {{ event.namespace }}"})
    reply = post_event(renderer, attributes, data)
    params = {p["name"]: p["value"] for p in reply.data["resource"]["spec"]["params"]}
    assert params["bot-name"] == "CI for ci"


def test_a_missing_template_is_a_failed_event_not_a_retry(renderer: Function) -> None:
    attributes, data = matched("no-such-template")
    reply = post_event(renderer, attributes, data)
    assert (reply.status, reply.type) == (200, "dev.tekton.notification.failed.v1")
    assert reply.data["error"] == {
        "stage": "render",
        "reason": "TemplateNotFound",
        "message": "NotificationTemplate ci/no-such-template does not exist",
    }


def test_templates_of_another_namespace_are_never_used(
    kubeapi: KubeAPIServer, renderer: Function
) -> None:
    add_template(kubeapi, "team-b-only", "team-b", taskRef={"name": "x"}, params={"a": "b"})
    attributes, data = matched("team-b-only")
    reply = post_event(renderer, attributes, data)
    assert reply.data["error"]["reason"] == "TemplateNotFound"


def test_an_undefined_variable_is_a_failed_event_naming_it(
    kubeapi: KubeAPIServer, renderer: Function
) -> None:
    add_template(
        kubeapi,
        "typo",
        taskRef={"name": "send-to-webhook-slack"},
        params={"message": "{{ event.nmae }} failed"},
    )
    _wait_for_templates(renderer, kubeapi)
    reply = post_event(renderer, *matched("typo"))
    error = reply.data["error"]
    assert (error["stage"], error["reason"]) == ("render", "UndefinedVariable")
    assert "typo" in error["message"] and "message" in error["message"]
    assert "nmae" in error["message"]


def test_an_invalid_template_object_is_a_failed_event_with_the_field(
    kubeapi: KubeAPIServer, renderer: Function
) -> None:
    add_template(kubeapi, "both-refs", taskRef={"name": "a"}, pipelineRef={"name": "b"})
    _wait_for_templates(renderer, kubeapi)
    reply = post_event(renderer, *matched("both-refs"))
    assert reply.data["error"]["reason"] == "InvalidTemplate"
    assert "set exactly one of taskRef and pipelineRef" in reply.data["error"]["message"]


def test_a_pipeline_template_renders_a_pipelinerun(
    kubeapi: KubeAPIServer, renderer: Function
) -> None:
    add_template(
        kubeapi,
        "notify-pipeline",
        pipelineRef={"name": "notify"},
        params={"run": "{{ event.name }}"},
        serviceAccountName="notifier",
        timeout="10m",
    )
    _wait_for_templates(renderer, kubeapi)
    resource = post_event(renderer, *matched("notify-pipeline")).data["resource"]
    assert resource["kind"] == "PipelineRun"
    assert resource["spec"]["pipelineRef"] == {"name": "notify"}
    assert resource["spec"]["taskRunTemplate"] == {"serviceAccountName": "notifier"}
    assert resource["spec"]["timeouts"] == {"pipeline": "10m"}
    assert resource["spec"]["params"] == [{"name": "run", "value": "storefront-ci-run-p7v2k"}]


def test_a_malformed_matched_event_is_a_400(renderer: Function) -> None:
    attributes, _ = matched()
    reply = post_event(renderer, attributes, {"key": "k", "policy": {"name": "p"}})
    assert reply.status == 400
    assert "'policy' needs name and namespace" in reply.json["message"]


def test_until_templates_are_loaded_it_asks_for_a_retry(tmp_path: Path, served: Serve) -> None:
    unreachable = tmp_path / "kubeconfig"
    write_kubeconfig(unreachable, f"http://127.0.0.1:{free_port()}")
    renderer = served("template-renderer", wait_ready=False, KUBECONFIG=str(unreachable))
    reply = post_event(renderer, *matched())
    assert reply.status == 503
    assert "templates not loaded yet" in reply.json["message"]


def _wait_for_templates(renderer: Function, kubeapi: KubeAPIServer) -> None:
    count = len(kubeapi.store.list("notifications.tekton.dev", "notificationtemplates"))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            readiness = probe(renderer).body.decode()
            if readiness.split("; ")[0] == f"{count} templates":
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    # functions-framework has no readiness endpoint: give its watch a moment instead.
    time.sleep(0.5)


def test_failed_children_of_a_current_pipelinerun_are_looked_up_for_the_message(
    kubeapi: KubeAPIServer, renderer: Function
) -> None:
    """Current Tekton lists children without outcome; the renderer reads the child TaskRuns."""
    for task, status, reason, message in [
        ("fetch-source", "True", "Succeeded", "All Steps have completed executing"),
        ("unit-tests", "False", "StepFailed", '"step-pytest" exited with code 1: Error'),
    ]:
        kubeapi.store.create(
            "tekton.dev",
            "v1",
            "taskruns",
            "ci",
            {
                "apiVersion": "tekton.dev/v1",
                "kind": "TaskRun",
                "metadata": {"name": f"storefront-ci-run-p7v2k-{task}", "namespace": "ci"},
                "status": {
                    "conditions": [
                        {
                            "type": "Succeeded",
                            "status": status,
                            "reason": reason,
                            "message": message,
                        }
                    ]
                },
            },
        )
    reply = post_event(renderer, *matched())
    params = {p["name"]: p["value"] for p in reply.data["resource"]["spec"]["params"]}
    assert "unit-tests" in params["message"]
    assert "StepFailed" in params["message"]
    assert "fetch-source" not in params["message"]
