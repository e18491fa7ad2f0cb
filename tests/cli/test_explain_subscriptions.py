"""`tkn-notify explain` shows each subscription annotation (issue 13): which one, from where
(the run, its Pipeline, its Namespace), allowed by which policy with what it renders, or
refused and why; read from manifests among the paths or from the cluster."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tekton_notifications.devtools.kubeapi import KubeAPIServer
from tests.cli.conftest import EXAMPLE_POLICIES, EXAMPLE_TEMPLATES, Invoke, run_object
from tests.conftest import EXAMPLES

#: Only what the subscriptions need (each template rendered costs time; the whole examples/
#: directory is explained in test_explain_matched.py).
POLICY = EXAMPLE_POLICIES / "team-subscriptions.yaml"
TEMPLATES = (EXAMPLE_TEMPLATES / "slack-channel.yaml", EXAMPLE_TEMPLATES / "email.yaml")
TEMPLATE_ARGS = [arg for path in TEMPLATES for arg in ("--templates", path)]

SUBSCRIPTIONS = EXAMPLES / "subscriptions"
PIPELINE_SUBSCRIBED = SUBSCRIPTIONS / "events" / "01-pipelinerun-failed-pipeline-subscribed.json"
NAMESPACE_DEFAULT = SUBSCRIPTIONS / "events" / "02-pipelinerun-timedout-namespace-default.json"
REFUSED = "refused (Event NotificationSubscriptionRefused)"


@pytest.mark.parametrize(
    ("event", "manifests", "lines", "exit_code"),
    [
        pytest.param(
            PIPELINE_SUBSCRIBED,
            (SUBSCRIPTIONS,),
            [
                '✓ subscribe.failed.slack-channel: "C0SHOPTEAM" from pipeline '
                "(Pipeline ci/shop-deploy)",
                "    allowed: allowed by NotificationPolicy ci/team-subscriptions",
                "      channel: C0SHOPTEAM",
                '✗ subscribe.failed.pagerduty: "shop-oncall" from run '
                "(PipelineRun ci/shop-deploy-x7k2m)",
                f"    {REFUSED}: notifications.tekton.dev/subscribe.failed.pagerduty",
                "    other event: subscribes to timedOut, not failed",
            ],
            0,
            id="pipeline-allowed-run-refused",
        ),
        pytest.param(
            PIPELINE_SUBSCRIBED,
            (),
            [
                '✓ subscribe.failed.slack-channel: "C0SHOPTEAM" from run '
                "(PipelineRun ci/shop-deploy-x7k2m)",
                "Subscriptions (notifications.tekton.dev/subscribe.*) (the Namespace was not "
                "read: no defaults):",
            ],
            0,
            id="without-the-pipeline-it-reads-as-the-runs",
        ),
        pytest.param(
            NAMESPACE_DEFAULT,
            (SUBSCRIPTIONS,),
            [
                '✓ subscribe.timedOut.email: "ci-leads@example.com, qa@example.com" from '
                "namespace (Namespace ci)",
                "      recipients: ci-leads@example.com qa@example.com",
            ],
            0,
            id="namespace-default",
        ),
        pytest.param(
            NAMESPACE_DEFAULT,
            (),
            [
                "Subscriptions: none on the run, its Pipeline or Task, or its Namespace (the "
                "Namespace was not read: no defaults)."
            ],
            1,
            id="no-namespace-manifest",
        ),
    ],
)
def test_each_subscription_is_shown_with_its_source_and_verdict(
    invoke: Invoke, event: Path, manifests: tuple[Path, ...], lines: list[str], exit_code: int
) -> None:
    extra = [arg for path in manifests for arg in ("--policies", path)]
    result = invoke("explain", event, "--policies", POLICY, *TEMPLATE_ARGS, *extra)
    # 0: a subscription (or a policy) notifies; 1: nothing does.
    assert result.exit_code == exit_code, result.output
    shown = result.stdout.splitlines()
    for line in lines:
        assert any(text.startswith(line) for text in shown), (line, result.stdout)


def test_json_lists_each_subscription_with_its_status(invoke: Invoke) -> None:
    result = invoke(
        "explain",
        PIPELINE_SUBSCRIBED,
        "--policies",
        POLICY,
        "--policies",
        SUBSCRIPTIONS,
        *TEMPLATE_ARGS,
        "-o",
        "json",
    )
    found = json.loads(result.stdout)["subscriptions"]["found"]
    assert {(f["annotation"].split("/")[1], f["source"], f["status"]) for f in found} == {
        ("subscribe.failed.pagerduty", "run", "refused"),
        ("subscribe.failed.slack-channel", "pipeline", "allowed"),
        ("subscribe.timedOut.email", "namespace", "other event"),
    }
    allowed = next(f for f in found if f["status"] == "allowed")
    assert allowed["policy"] == "NotificationPolicy ci/team-subscriptions"
    assert allowed["template"]["params"]["channel"] == "C0SHOPTEAM"


def test_a_live_run_is_compared_with_its_pipeline_and_namespace_in_the_cluster(
    invoke: Invoke, kubeapi: KubeAPIServer, kubeconfig: Path
) -> None:
    cloudevent = json.loads(PIPELINE_SUBSCRIBED.read_text())
    kubeapi.store.create_manifest(run_object(cloudevent))
    kubeapi.load_manifests(POLICY, *TEMPLATES, SUBSCRIPTIONS)

    result = invoke("explain", "pipelinerun/shop-deploy-x7k2m", "--kubeconfig", kubeconfig)

    assert result.exit_code == 0, result.output
    assert '✓ subscribe.failed.slack-channel: "C0SHOPTEAM" from pipeline' in result.stdout
    assert "subscribe.timedOut.email" in result.stdout  # the Namespace was read
    assert REFUSED in result.stdout
