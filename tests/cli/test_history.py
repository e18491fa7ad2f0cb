"""`tkn-notify history`: the notification runs created so far, read from the cluster through
a kubeconfig (the API emulator over HTTP), newest first, with their status."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tekton_notifications import diagnosis, models, taskruns
from tekton_notifications.cli.history import age
from tekton_notifications.devtools.kubeapi import KubeAPIServer
from tests.cli.conftest import FAILED_PIPELINERUN, Invoke, template_object
from tests.conftest import load_cloudevent

CONDITIONS = {
    "succeeded": {"type": "Succeeded", "status": "True", "reason": "Succeeded"},
    "failed": {"type": "Succeeded", "status": "False", "reason": "TaskRunImagePullFailed"},
    "running": {"type": "Succeeded", "status": "Unknown", "reason": "Running"},
    "timedOut": {"type": "Succeeded", "status": "False", "reason": "TaskRunTimeout"},
}


def notification_run(
    *,
    policy: str = "pipelinerun-failed-slack",
    template: str = "slack",
    namespace: str = "ci",
    source: str = FAILED_PIPELINERUN,
    state: str | None = "succeeded",
    started: str = "2025-06-12T09:16:05Z",
    pipeline: bool = False,
    attempt: int = 1,
    fallback_of: str | None = None,
) -> dict[str, Any]:
    """A run exactly as the launcher creates it (``taskruns.build_run``), plus a status."""
    cloudevent = load_cloudevent(source)
    next(iter(cloudevent["data"].values()))["metadata"]["namespace"] = namespace
    event = diagnosis.event_from_document(cloudevent)
    obj = template_object(template, namespace)
    if pipeline:
        obj["spec"] = {"pipelineRef": {"name": "notify"}, "params": {}}
    body = taskruns.build_run(
        event=event,
        template=models.parse_template(obj),
        params={"message": "hi"},
        policy_namespace=namespace,
        policy=policy,
        attempt=attempt,
        fallback_of=fallback_of,
    )
    if state is not None:
        body["status"] = {"conditions": [CONDITIONS[state]], "startTime": started}
    return body


def store(api: KubeAPIServer, *runs: dict[str, Any]) -> None:
    for run in runs:
        plural = f"{run['kind'].lower()}s"
        api.store.create("tekton.dev", "v1", plural, run["metadata"]["namespace"], run)


def user_taskrun() -> dict[str, Any]:
    return {
        "apiVersion": "tekton.dev/v1",
        "kind": "TaskRun",
        "metadata": {"name": "build", "namespace": "ci", "labels": {"team": "web"}},
        "spec": {"taskRef": {"name": "build"}},
    }


def test_lists_notification_runs_with_policy_template_source_and_status(
    invoke: Invoke, kubeapi: KubeAPIServer, kubeconfig: Path
) -> None:
    run = notification_run(state="failed")
    store(kubeapi, run, user_taskrun())

    result = invoke("history", "--kubeconfig", kubeconfig)

    assert result.exit_code == 0, result.output
    header, row = result.stdout.splitlines()
    assert header.split() == [
        "NAME",
        "KIND",
        "SOURCE",
        "EVENT",
        "POLICY",
        "TEMPLATE",
        "ATTEMPT",
        "DELIVERY",
        "STATUS",
        "AGE",
    ]
    assert row.split()[:10] == [
        run["metadata"]["name"],
        "TaskRun",
        "PipelineRun/storefront-ci-run-p7v2k",
        "failed",
        "pipelinerun-failed-slack",
        "slack",
        "1",
        "failed",
        "Failed",
        "(TaskRunImagePullFailed)",
    ]


def test_json_has_every_label_and_the_condition(
    invoke: Invoke, kubeapi: KubeAPIServer, kubeconfig: Path
) -> None:
    run = notification_run(state="failed")
    store(kubeapi, run)

    result = invoke("history", "--kubeconfig", kubeconfig, "-o", "json")

    (listed,) = json.loads(result.stdout)
    labels = run["metadata"]["labels"]
    assert listed == {
        "kind": "TaskRun",
        "name": run["metadata"]["name"],
        "namespace": "ci",
        "created": listed["created"],
        "policy": "pipelinerun-failed-slack",
        "policyNamespace": "ci",
        "template": "slack",
        "sourceKind": "PipelineRun",
        "sourceName": "storefront-ci-run-p7v2k",
        "sourceUid": labels[taskruns.SOURCE_UID_LABEL],
        "event": "failed",
        "status": "Failed",
        "reason": "TaskRunImagePullFailed",
        "message": "",
        "startTime": "2025-06-12T09:16:05Z",
        "completionTime": "",
        "attempt": 1,
        "fallbackOf": "",
        "delivery": "failed",
    }


def test_newest_first_taskruns_and_pipelineruns_together(
    invoke: Invoke, kubeapi: KubeAPIServer, kubeconfig: Path
) -> None:
    older = notification_run(template="a", started="2025-06-12T09:16:05Z")
    newer = notification_run(template="b", started="2025-06-12T09:17:05Z", pipeline=True)
    pending = notification_run(template="c", state=None)
    store(kubeapi, older, newer, pending)

    result = invoke("history", "--kubeconfig", kubeconfig, "-o", "yaml")

    listed = yaml.safe_load(result.stdout)
    assert [(run["template"], run["kind"], run["status"]) for run in listed] == [
        ("b", "PipelineRun", "Succeeded"),
        ("a", "TaskRun", "Succeeded"),
        ("c", "TaskRun", "Pending"),
    ]


def test_runs_created_in_different_seconds_are_ordered_by_creation_time() -> None:
    first = diagnosis.summarize_run(
        {"metadata": {"name": "x", "creationTimestamp": "2025-01-01T00:00:09Z"}}
    )
    second = diagnosis.summarize_run(
        {"metadata": {"name": "y", "creationTimestamp": "2025-01-01T00:00:10Z"}}
    )

    assert diagnosis.newest_first([first, second]) == [second, first]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param(
            [],
            {
                ("ci", "p1", "storefront-ci-run-p7v2k"),
                ("ci", "p2", "storefront-ci-run-p7v2k-unit-tests"),
            },
            id="context namespace",
        ),
        pytest.param(["-n", "prod"], {("prod", "p1", "storefront-ci-run-p7v2k")}, id="-n"),
        pytest.param(
            ["-A"],
            {
                ("ci", "p1", "storefront-ci-run-p7v2k"),
                ("ci", "p2", "storefront-ci-run-p7v2k-unit-tests"),
                ("prod", "p1", "storefront-ci-run-p7v2k"),
            },
            id="-A",
        ),
        pytest.param(
            ["--policy", "p2"], {("ci", "p2", "storefront-ci-run-p7v2k-unit-tests")}, id="--policy"
        ),
        pytest.param(
            ["--run", "storefront-ci-run-p7v2k"],
            {("ci", "p1", "storefront-ci-run-p7v2k")},
            id="--run",
        ),
        pytest.param(
            ["--limit", "1", "--policy", "p1"],
            {("ci", "p1", "storefront-ci-run-p7v2k")},
            id="--limit",
        ),
    ],
)
def test_filters_select_by_namespace_policy_and_source_run(
    invoke: Invoke,
    kubeapi: KubeAPIServer,
    kubeconfig: Path,
    args: list[str],
    expected: set[tuple[str, str, str]],
) -> None:
    store(
        kubeapi,
        notification_run(policy="p1"),
        notification_run(policy="p2", source="07-taskrun-failed.json"),
        notification_run(policy="p1", namespace="prod"),
    )

    result = invoke("history", "--kubeconfig", kubeconfig, *args, "-o", "json")

    assert result.exit_code == 0, result.output
    listed = {(r["namespace"], r["policy"], r["sourceName"]) for r in json.loads(result.stdout)}
    assert listed == expected


def test_each_notification_shows_its_attempts_and_delivery_outcome(
    invoke: Invoke, kubeapi: KubeAPIServer, kubeconfig: Path
) -> None:
    """Two failed attempts, a third timed out, then the fallback delivered by email."""
    store(
        kubeapi,
        notification_run(state="failed"),
        notification_run(state="failed", attempt=2),
        notification_run(state="timedOut", attempt=3),
        notification_run(template="email", fallback_of="slack"),
    )

    result = invoke("history", "--kubeconfig", kubeconfig, "-o", "json")

    assert result.exit_code == 0, result.output
    listed = sorted(
        (r["template"], r["attempt"], r["fallbackOf"], r["delivery"])
        for r in json.loads(result.stdout)
    )
    assert listed == [
        ("email", 1, "slack", "delivered"),
        ("slack", 1, "", "failed"),
        ("slack", 2, "", "failed"),
        ("slack", 3, "", "timedOut"),
    ]
    table = invoke("history", "--kubeconfig", kubeconfig).stdout
    assert {line.split()[6:8][0] for line in table.splitlines()[1:]} == {"1", "2", "3", "fallback"}


def test_all_namespaces_adds_a_namespace_column(
    invoke: Invoke, kubeapi: KubeAPIServer, kubeconfig: Path
) -> None:
    store(kubeapi, notification_run(namespace="prod"))

    result = invoke("history", "-A", "--kubeconfig", kubeconfig)

    header, row = result.stdout.splitlines()
    assert header.split()[0] == "NAMESPACE"
    assert row.split()[0] == "prod"


def test_no_notification_runs_exits_1_with_a_note(
    invoke: Invoke, kubeapi: KubeAPIServer, kubeconfig: Path
) -> None:
    store(kubeapi, user_taskrun())

    text = invoke("history", "--kubeconfig", kubeconfig)
    data = invoke("history", "--kubeconfig", kubeconfig, "-o", "json")

    assert text.exit_code == data.exit_code == 1
    assert text.stdout == ""
    assert "No notification runs in namespace ci" in text.stderr
    assert json.loads(data.stdout) == []


def test_namespace_and_all_namespaces_together_are_a_usage_error(
    invoke: Invoke, kubeconfig: Path
) -> None:
    result = invoke("history", "-n", "ci", "-A", "--kubeconfig", kubeconfig)

    assert result.exit_code == 2
    assert "either -n/--namespace or -A/--all-namespaces" in result.stderr


def test_a_forbidden_list_is_a_cluster_error(
    invoke: Invoke, kubeapi: KubeAPIServer, kubeconfig: Path
) -> None:
    kubeapi.faults.add(403, method="GET", path="/taskruns", message="taskruns is forbidden")

    result = invoke("history", "--kubeconfig", kubeconfig)

    assert result.exit_code == 3
    assert (
        "listing taskruns.tekton.dev in namespace ci: the API answered 403: taskruns is forbidden"
        in (result.stderr)
    )


@pytest.mark.parametrize(
    ("created", "shown"),
    [
        ("2025-06-12T09:59:18Z", "42s"),
        ("2025-06-12T09:55:00Z", "5m"),
        ("2025-06-12T07:00:00Z", "3h"),
        ("2025-06-10T10:00:00Z", "2d"),
        ("not a time", "?"),
    ],
)
def test_age_is_shown_like_kubectl(created: str, shown: str) -> None:
    from datetime import UTC, datetime

    assert age(created, datetime(2025, 6, 12, 10, 0, 0, tzinfo=UTC)) == shown
