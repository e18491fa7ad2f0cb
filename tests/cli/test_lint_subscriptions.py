"""`tkn-notify lint` checks subscription annotations on Pipelines, Tasks, runs and Namespaces
(issue 13): their form, the 63-character key limit, the event, and the template and a policy
allowing it among the files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.cli.conftest import EXAMPLE_POLICIES, Invoke, template_object, write_yaml
from tests.conftest import EXAMPLES

#: The policy that allows subscriptions in ci (slack-*, email for failed, timedOut, fixed).
POLICY = EXAMPLE_POLICIES / "team-subscriptions.yaml"

SUB = "notifications.tekton.dev/subscribe."


def annotated(kind: str, annotations: dict[str, str]) -> dict[str, Any]:
    api = "v1" if kind == "Namespace" else "tekton.dev/v1"
    metadata: dict[str, Any] = {
        "name": "ci" if kind == "Namespace" else "shop",
        "annotations": annotations,
    }
    if kind != "Namespace":
        metadata["namespace"] = "ci"
    return {"apiVersion": api, "kind": kind, "metadata": metadata}


@pytest.mark.parametrize(
    ("kind", "annotations", "message"),
    [
        pytest.param(
            "Pipeline",
            {f"{SUB}failed.{'x' * 47}": ""},
            "has 64 characters; Kubernetes allows 63",
            id="key-too-long",
        ),
        pytest.param("Task", {f"{SUB}failled.email": "a"}, "unknown event 'failled'", id="event"),
        pytest.param(
            "PipelineRun",
            {f"{SUB}failed.pagerduty": "oncall"},
            "no NotificationTemplate 'pagerduty' in namespace ci among the files",
            id="template-missing",
        ),
        pytest.param(
            "Namespace",
            {f"{SUB}succeeded.email": "a@example.com"},
            "no policy among the files allows template 'email' for succeeded",
            id="not-allowed",
        ),
        pytest.param(
            "TaskRun",
            {"notifications.tekton.dev/unsubscribe": "yes"},
            'must be "true" to opt out',
            id="unsubscribe",
        ),
    ],
)
def test_a_bad_subscription_annotation_is_a_problem(
    invoke: Invoke, tmp_path: Path, kind: str, annotations: dict[str, str], message: str
) -> None:
    path = write_yaml(tmp_path / "subscriber.yaml", annotated(kind, annotations))
    template = write_yaml(tmp_path / "email.yaml", template_object("email"))

    result = invoke("lint", POLICY, template, path)

    assert result.exit_code == 1, result.output
    assert message in result.stdout
    assert "[subscription]" in result.stdout


def test_the_example_subscriptions_have_no_problems(invoke: Invoke) -> None:
    result = invoke("lint", POLICY, EXAMPLES / "subscriptions")

    assert result.exit_code == 0, result.output
