"""`tkn-notify explain NAME`: the run read from a cluster, turned into the event Tekton would
send for its current status, and compared with the cluster's policies and templates.

The cluster is the Kubernetes API emulator over HTTP, reached through a kubeconfig file.
"""

from __future__ import annotations

import copy
import json
import socket
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tekton_notifications import taskruns
from tekton_notifications.devtools.kubeapi import KubeAPIServer
from tekton_notifications.diagnosis import tekton_event_name
from tests.cli.conftest import (
    EXAMPLE_POLICIES,
    EXAMPLE_TEMPLATES,
    FAILED_PIPELINERUN,
    RUN_NAME,
    Invoke,
    run_object,
    template_object,
    write_yaml,
)
from tests.conftest import load_cloudevent, policy_object

NOTIFY = "notifications.tekton.dev"


def create_run(api: KubeAPIServer, obj: dict[str, Any]) -> None:
    plural = f"{obj['kind'].lower()}s"
    namespace = obj["metadata"]["namespace"]
    api.store.create("tekton.dev", obj["apiVersion"].split("/")[1], plural, namespace, obj)


def create_notification_object(api: KubeAPIServer, obj: dict[str, Any]) -> None:
    plural = (
        "notificationpolicies" if obj["kind"] == "NotificationPolicy" else ("notificationtemplates")
    )
    api.store.create(NOTIFY, "v1alpha1", plural, obj["metadata"]["namespace"], obj)


def failed_pipelinerun_in(api: KubeAPIServer) -> dict[str, Any]:
    run = run_object(load_cloudevent(FAILED_PIPELINERUN))
    create_run(api, run)
    return run


def with_condition(run: dict[str, Any], condition: dict[str, str] | None) -> dict[str, Any]:
    run = copy.deepcopy(run)
    run["status"]["conditions"] = [] if condition is None else [{"type": "Succeeded", **condition}]
    return run


CONDITIONS = [
    pytest.param("PipelineRun", None, "queued", id="no condition yet: queued"),
    pytest.param("CustomRun", None, "started", id="CustomRun without condition: started"),
    pytest.param("TaskRun", {"status": "Unknown", "reason": "Started"}, "started", id="started"),
    pytest.param("TaskRun", {"status": "Unknown", "reason": "Running"}, "running", id="running"),
    pytest.param("TaskRun", {"status": "Unknown", "reason": "Pending"}, "unknown", id="pending"),
    pytest.param(
        "PipelineRun",
        {"status": "Unknown", "reason": "PipelineRunPending"},
        "unknown",
        id="pipelinerun pending",
    ),
    pytest.param("TaskRun", {"status": "True", "reason": "Succeeded"}, "successful", id="true"),
    pytest.param("PipelineRun", {"status": "False", "reason": "Failed"}, "failed", id="false"),
    pytest.param(
        "PipelineRun", {"status": "False", "reason": "Cancelled"}, "failed", id="cancelled"
    ),
]


@pytest.mark.parametrize(("kind", "condition", "event"), CONDITIONS)
def test_the_event_name_follows_the_succeeded_condition(
    kind: str, condition: dict[str, str] | None, event: str
) -> None:
    run = {
        "status": {"conditions": [] if condition is None else [{"type": "Succeeded", **condition}]}
    }

    assert tekton_event_name(kind, run) == event


@pytest.mark.parametrize(("kind", "condition", "event"), CONDITIONS)
def test_a_live_run_is_explained_as_the_event_its_status_produces(
    invoke: Invoke,
    kubeapi: KubeAPIServer,
    kubeconfig: Path,
    kind: str,
    condition: dict[str, str] | None,
    event: str,
) -> None:
    base = run_object(load_cloudevent(FAILED_PIPELINERUN))
    run = with_condition({**base, "kind": kind}, condition)
    if kind == "CustomRun":
        run["apiVersion"] = "tekton.dev/v1beta1"
    create_run(kubeapi, run)

    result = invoke(
        "explain", f"{kind.lower()}/{RUN_NAME}", "--kubeconfig", kubeconfig, "-o", "json"
    )

    assert result.exit_code == 1, result.output  # no policies in the cluster
    report = json.loads(result.stdout)["event"]
    assert report["type"] == f"dev.tekton.event.{kind.lower()}.{event}.v1"
    assert report["source"] == f"/apis///namespaces/ci//{RUN_NAME}"
    assert report["fromLiveRun"] is True


def test_a_live_run_meets_the_clusters_policies_and_templates(
    invoke: Invoke, kubeapi: KubeAPIServer, kubeconfig: Path
) -> None:
    failed_pipelinerun_in(kubeapi)
    kubeapi.load_manifests(EXAMPLE_POLICIES, EXAMPLE_TEMPLATES)

    result = invoke("explain", RUN_NAME, "--kubeconfig", kubeconfig)

    assert result.exit_code == 0, result.output
    assert f"PipelineRun ci/{RUN_NAME}: failed" in result.stdout
    assert "(the event for the run's current status, read from the cluster)" in result.stdout
    assert "14 policies (cluster, namespace ci), 1 matched" in result.stdout
    assert "✓ ci/pipelinerun-failed-slack: matched" in result.stdout
    assert "      webhook-secret: slack-webhook" in result.stdout
    assert "label team ✗ wanted web got <absent>" in result.stdout


def test_only_policies_in_the_runs_namespace_are_in_scope(
    invoke: Invoke, kubeapi: KubeAPIServer, kubeconfig: Path
) -> None:
    failed_pipelinerun_in(kubeapi)
    for policy in (policy_object("here"), policy_object("elsewhere", namespace="prod")):
        create_notification_object(kubeapi, policy)

    result = invoke("explain", RUN_NAME, "--kubeconfig", kubeconfig, "-o", "json")

    names = [policy["name"] for policy in json.loads(result.stdout)["policies"]]
    assert names == ["here"]


def test_the_failed_children_of_a_pipelinerun_are_read_for_templates(
    invoke: Invoke, kubeapi: KubeAPIServer, kubeconfig: Path
) -> None:
    run = run_object(load_cloudevent(FAILED_PIPELINERUN))
    run["status"]["childReferences"] = [
        {"kind": "TaskRun", "name": f"{RUN_NAME}-unit-tests", "pipelineTaskName": "unit-tests"}
    ]
    create_run(kubeapi, run)
    child = run_object(load_cloudevent("07-taskrun-failed.json"))
    create_run(kubeapi, child)
    create_notification_object(kubeapi, policy_object(templates=["slack"]))
    failed = "{% for c in event.failed %}{{ c.pipelineTaskName }}: {{ c.reason }}{% endfor %}"
    create_notification_object(kubeapi, template_object(params={"message": failed}))

    result = invoke("explain", f"pr/{RUN_NAME}", "--kubeconfig", kubeconfig, "-o", "json")

    (policy,) = json.loads(result.stdout)["policies"]
    assert policy["templates"][0]["params"] == {"message": "unit-tests: StepFailed"}


def test_a_policy_file_is_tried_against_a_live_run_and_the_clusters_templates(
    invoke: Invoke, kubeapi: KubeAPIServer, kubeconfig: Path, tmp_path: Path
) -> None:
    failed_pipelinerun_in(kubeapi)
    policies = write_yaml(tmp_path / "policy.yaml", policy_object(templates=["slack"]))

    result = invoke("explain", RUN_NAME, "--kubeconfig", kubeconfig, "--policies", policies)

    assert result.exit_code == 1, result.output
    assert "1 policy (files), 1 matched" in result.stdout
    assert "→ template slack ✗ missing: NotificationTemplate ci/slack does not exist" in (
        result.stdout
    )


def test_an_event_file_can_be_tried_against_the_clusters_policies(
    invoke: Invoke, kubeapi: KubeAPIServer, kubeconfig: Path, failed_pipelinerun: Path
) -> None:
    kubeapi.load_manifests(EXAMPLE_POLICIES, EXAMPLE_TEMPLATES)

    result = invoke("explain", failed_pipelinerun, "--kubeconfig", kubeconfig)

    assert result.exit_code == 0, result.output
    assert "14 policies (cluster, namespace ci), 1 matched" in result.stdout


def test_namespace_option_overrides_the_kubeconfig_context(
    invoke: Invoke, kubeapi: KubeAPIServer, kubeconfig: Path
) -> None:
    run = run_object(load_cloudevent(FAILED_PIPELINERUN))
    run["metadata"]["namespace"] = "prod"
    create_run(kubeapi, run)

    in_context = invoke("explain", RUN_NAME, "--kubeconfig", kubeconfig)
    in_prod = invoke("explain", RUN_NAME, "--kubeconfig", kubeconfig, "-n", "prod")

    assert in_context.exit_code == 2
    assert f"no PipelineRun or TaskRun or CustomRun named '{RUN_NAME}' in namespace 'ci'" in (
        in_context.stderr
    )
    assert in_prod.exit_code == 1
    assert f"PipelineRun prod/{RUN_NAME}: failed" in in_prod.stdout


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        pytest.param(RUN_NAME, "names several runs; say which: pipelinerun/", id="ambiguous"),
        pytest.param(f"deployment/{RUN_NAME}", "unknown run kind 'deployment'", id="bad kind"),
        pytest.param("taskrun/nosuch", "no TaskRun named 'nosuch'", id="not found"),
    ],
)
def test_a_run_reference_that_names_no_single_run_is_an_input_error(
    invoke: Invoke, kubeapi: KubeAPIServer, kubeconfig: Path, reference: str, message: str
) -> None:
    run = failed_pipelinerun_in(kubeapi)
    create_run(kubeapi, {**run, "kind": "TaskRun"})

    result = invoke("explain", reference, "--kubeconfig", kubeconfig)

    assert result.exit_code == 2
    assert message in result.stderr


def test_a_refusal_from_the_api_is_a_cluster_error(
    invoke: Invoke, kubeapi: KubeAPIServer, kubeconfig: Path
) -> None:
    failed_pipelinerun_in(kubeapi)
    kubeapi.faults.add(
        403,
        method="GET",
        path="/notificationpolicies",
        message='notificationpolicies.notifications.tekton.dev is forbidden: User "dev" '
        'cannot list resource "notificationpolicies"',
    )

    result = invoke("explain", RUN_NAME, "--kubeconfig", kubeconfig)

    assert result.exit_code == 3
    assert "listing notificationpolicies.notifications.tekton.dev in namespace ci: the API " in (
        result.stderr
    )
    assert "answered 403" in result.stderr


def test_an_unreachable_api_is_a_cluster_error(invoke: Invoke, tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = KubeAPIServer(port=port)
    server._url = f"http://127.0.0.1:{port}"  # a kubeconfig for a server that is not running
    server.write_kubeconfig(tmp_path / "kubeconfig")

    result = invoke("explain", RUN_NAME, "--kubeconfig", tmp_path / "kubeconfig")

    assert result.exit_code == 3
    assert "cannot reach the Kubernetes API" in result.stderr


def test_a_missing_kubeconfig_is_a_cluster_error(invoke: Invoke, tmp_path: Path) -> None:
    result = invoke("explain", RUN_NAME, "--kubeconfig", tmp_path / "absent")

    assert result.exit_code == 3
    assert "no usable Kubernetes configuration" in result.stderr


def test_a_rendered_run_is_looked_up_in_the_cluster_by_its_deterministic_name(
    invoke: Invoke, kubeapi: KubeAPIServer, kubeconfig: Path
) -> None:
    failed_pipelinerun_in(kubeapi)
    kubeapi.load_manifests(EXAMPLE_POLICIES, EXAMPLE_TEMPLATES)
    before = invoke("explain", RUN_NAME, "--kubeconfig", kubeconfig, "-o", "json")
    (matched,) = [p for p in json.loads(before.stdout)["policies"] if p["matched"]]
    run = matched["templates"][0]["run"]
    assert run["inCluster"] == {"exists": False}
    kubeapi.store.create(
        "tekton.dev",
        "v1",
        "taskruns",
        "ci",
        {
            "apiVersion": "tekton.dev/v1",
            "kind": "TaskRun",
            "metadata": {"name": run["name"], "namespace": "ci"},
            "status": {
                "conditions": [{"type": "Succeeded", "status": "False", "reason": "Failed"}]
            },
        },
    )

    after = invoke("explain", RUN_NAME, "--kubeconfig", kubeconfig)

    assert before.exit_code == after.exit_code == 0
    assert f"renders TaskRun {run['name']}\n      in the cluster: Failed (Failed)\n" in after.stdout


def test_a_rendered_run_missing_from_the_cluster_points_at_the_launch(
    invoke: Invoke, kubeapi: KubeAPIServer, kubeconfig: Path
) -> None:
    failed_pipelinerun_in(kubeapi)
    kubeapi.load_manifests(EXAMPLE_POLICIES, EXAMPLE_TEMPLATES)

    result = invoke("explain", RUN_NAME, "--kubeconfig", kubeconfig)

    assert "      not in the cluster: the launch failed or is still to come" in result.stdout


def test_a_spent_rate_limit_in_the_policys_status_is_why_a_run_did_not_notify(
    invoke: Invoke, kubeapi: KubeAPIServer, kubeconfig: Path
) -> None:
    failed_pipelinerun_in(kubeapi)
    create_notification_object(kubeapi, template_object())
    policy = policy_object("storm", rate_limit={"limit": 2, "window": "168h"})
    create_notification_object(kubeapi, policy)
    now = time.time()
    sent = [{"occurrence": f"other-{n}", "time": _rfc3339(now - 60 * n)} for n in (1, 2)]
    kubeapi.store.patch(
        NOTIFY,
        "notificationpolicies",
        "ci",
        "storm",
        {"status": {"rateLimit": {"sent": sent}}},
        subresource="status",
    )

    result = invoke("explain", RUN_NAME, "--kubeconfig", kubeconfig)

    assert result.exit_code != 0, result.output
    assert "✓ ci/storm: matched" in result.stdout
    assert "✗ suppressed: rate limit reached: 2 sent, at most 2 per 168h" in result.stdout
    report = json.loads(
        invoke("explain", RUN_NAME, "--kubeconfig", kubeconfig, "-o", "json").stdout
    )
    (storm,) = report["policies"]
    assert storm["stormControl"]["notifies"] is False


def test_a_success_after_a_recorded_failure_is_explained_as_fixed(
    invoke: Invoke, kubeapi: KubeAPIServer, kubeconfig: Path
) -> None:
    run = with_condition(
        run_object(load_cloudevent(FAILED_PIPELINERUN)), {"status": "True", "reason": "Succeeded"}
    )
    create_run(kubeapi, run)
    create_notification_object(kubeapi, template_object())
    create_notification_object(kubeapi, policy_object("fixes", events=["fixed"]))
    failure = {
        "kind": "PipelineRun",
        "pipeline": "storefront-ci",
        "outcome": "failed",
        "run": "storefront-ci-run-earlier",
        "uid": "earlier",
        "completionTime": "2020-01-01T00:00:00Z",
    }
    kubeapi.store.patch(
        NOTIFY,
        "notificationpolicies",
        "ci",
        "fixes",
        {"status": {"outcomes": [failure]}},
        subresource="status",
    )

    result = invoke("explain", RUN_NAME, "--kubeconfig", kubeconfig)

    assert result.exit_code == 0, result.output
    assert "storm control: previous outcome: storefront-ci: failed -> succeeded" in result.stdout
    assert "✓ notifies as fixed" in result.stdout


def _rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_live_explanation_shows_how_the_notification_was_delivered(
    invoke: Invoke, kubeapi: KubeAPIServer, kubeconfig: Path
) -> None:
    """Two failed attempts, then the fallback delivered: read from the runs labelled alike."""
    source = failed_pipelinerun_in(kubeapi)
    kubeapi.load_manifests(EXAMPLE_POLICIES, EXAMPLE_TEMPLATES)
    before = invoke("explain", RUN_NAME, "--kubeconfig", kubeconfig, "-o", "json")
    (matched,) = [p for p in json.loads(before.stdout)["policies"] if p["matched"]]
    template = matched["templates"][0]
    labels = {
        taskruns.POLICY_LABEL: matched["name"],
        taskruns.TEMPLATE_LABEL: template["name"],
        taskruns.SOURCE_UID_LABEL: source["metadata"]["uid"],
        taskruns.EVENT_LABEL: "failed",
    }
    runs = [
        (template["run"]["name"], labels, "False"),
        (f"{template['run']['name']}-r2", {**labels, taskruns.ATTEMPT_LABEL: "2"}, "False"),
        (
            "fallback-run",
            {
                **labels,
                taskruns.TEMPLATE_LABEL: "email",
                taskruns.FALLBACK_OF_LABEL: template["name"],
            },
            "True",
        ),
    ]
    for name, run_labels, succeeded in runs:
        kubeapi.store.create(
            "tekton.dev",
            "v1",
            "taskruns",
            "ci",
            {
                "apiVersion": "tekton.dev/v1",
                "kind": "TaskRun",
                "metadata": {"name": name, "namespace": "ci", "labels": run_labels},
                "status": {"conditions": [{"type": "Succeeded", "status": succeeded}]},
            },
        )

    after = invoke("explain", RUN_NAME, "--kubeconfig", kubeconfig)
    as_json = invoke("explain", RUN_NAME, "--kubeconfig", kubeconfig, "-o", "json")

    assert (
        "      delivery: failed after 2 attempts; fallback email (fallback-run): delivered\n"
        in after.stdout
    )
    (matched,) = [p for p in json.loads(as_json.stdout)["policies"] if p["matched"]]
    in_cluster = matched["templates"][0]["run"]["inCluster"]
    assert (in_cluster["attempts"], in_cluster["fallback"]["delivery"]) == (2, "delivered")
