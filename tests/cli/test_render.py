"""`tkn-notify render`: the run one template would create for one event, never created."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tekton_notifications import models, rendering, taskruns
from tekton_notifications.diagnosis import event_from_document
from tests.cli.conftest import (
    EXAMPLE_POLICIES,
    EXAMPLE_TEMPLATES,
    FAILED_PIPELINERUN,
    Invoke,
    template_object,
    write_yaml,
)
from tests.conftest import EXAMPLES, load_cloudevent, policy_object

SLACK = EXAMPLE_TEMPLATES / "slack-webhook.yaml"
CANCELLED_POLICY = EXAMPLE_POLICIES / "cancelled-vs-timedout.yaml"


def build(
    template_file: Path,
    event: dict[str, object],
    *,
    policy: str,
    namespace: str = "ci",
    overrides: dict[str, str] | None = None,
    dashboard: str | None = None,
) -> dict[str, object]:
    """What the template-renderer would send the launcher."""
    template = models.parse_template(yaml.safe_load(template_file.read_text()))
    run_event = event_from_document(event)
    params = rendering.compile_template(template).render(
        event=run_event,
        policy={"name": policy, "namespace": namespace},
        overrides=overrides or {},
        settings=rendering.RenderSettings(dashboard_url=dashboard),
    )
    return taskruns.build_run(
        event=run_event, template=template, params=params, policy_namespace=namespace, policy=policy
    )


def test_prints_the_taskrun_yaml_that_build_run_makes(
    invoke: Invoke, failed_pipelinerun: Path
) -> None:
    result = invoke(
        "render", SLACK, failed_pipelinerun, "--dashboard-url", "https://tekton.example.com"
    )

    assert result.exit_code == 0, result.output
    expected = build(
        SLACK,
        load_cloudevent(FAILED_PIPELINERUN),
        policy="tkn-notify",
        dashboard="https://tekton.example.com",
    )
    assert yaml.safe_load(result.stdout) == expected


def test_a_policy_applies_its_param_overrides_name_and_namespace(
    invoke: Invoke, tmp_path: Path
) -> None:
    cancelled = load_cloudevent("10-pipelinerun-cancelled.json")
    event = tmp_path / "event.json"
    event.write_text(json.dumps(cancelled))

    result = invoke("render", SLACK, event, "--policy", CANCELLED_POLICY, "-o", "json")

    assert result.exit_code == 0, result.output
    run = json.loads(result.stdout)
    assert run == build(
        SLACK,
        cancelled,
        policy="pipelinerun-cancelled-slack",
        overrides={"bot-name": "Tekton (cancelled runs)"},
    )
    assert {"name": "bot-name", "value": "Tekton (cancelled runs)"} in run["spec"]["params"]
    assert run["metadata"]["labels"]["notifications.tekton.dev/event"] == "cancelled"


def test_text_output_summarises_the_run(invoke: Invoke, failed_pipelinerun: Path) -> None:
    result = invoke("render", EXAMPLE_TEMPLATES / "email.yaml", failed_pipelinerun, "-o", "text")

    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].startswith("TaskRun ci/storefront-ci-run-p7v2k-failed-")
    assert "  ref: sendmail" in lines
    assert "    recipients: ci-team@example.com" in lines


def test_a_pipeline_template_renders_a_pipelinerun(
    invoke: Invoke, failed_pipelinerun: Path, tmp_path: Path
) -> None:
    template = template_object(params={"text": "{{ event.name }}"})
    template["spec"] = {
        "pipelineRef": {"name": "notify-all"},
        "params": {"text": "{{ event.name }}"},
        "timeout": "10m",
    }
    path = write_yaml(tmp_path / "template.yaml", template)

    result = invoke("render", path, failed_pipelinerun)

    run = yaml.safe_load(result.stdout)
    assert run["kind"] == "PipelineRun"
    assert run["spec"]["pipelineRef"] == {"name": "notify-all"}
    assert run["spec"]["timeouts"] == {"pipeline": "10m"}


def test_a_render_error_is_printed_and_exits_1(
    invoke: Invoke, failed_pipelinerun: Path, tmp_path: Path
) -> None:
    path = write_yaml(tmp_path / "t.yaml", template_object(params={"message": "{{ event.url }}"}))

    result = invoke("render", path, failed_pipelinerun)

    assert result.exit_code == 1
    assert result.stdout == ""
    assert (
        "Error: NotificationTemplate ci/slack, param 'message': UndefinedVariable: event.url is "
        "None (null)" in result.stderr
    )


def test_notes_on_stderr_keep_stdout_parsable(
    invoke: Invoke, failed_pipelinerun: Path, tmp_path: Path
) -> None:
    policy = write_yaml(tmp_path / "p.yaml", policy_object(namespace="prod", templates=["other"]))

    result = invoke("render", SLACK, failed_pipelinerun, "--policy", policy)

    assert result.exit_code == 0
    assert yaml.safe_load(result.stdout)["metadata"]["namespace"] == "prod"
    assert "does not reference template 'slack-webhook'" in result.stderr
    assert "a policy in 'prod' never matches it" in result.stderr


def test_a_file_with_several_templates_needs_a_name(
    invoke: Invoke, failed_pipelinerun: Path, tmp_path: Path
) -> None:
    path = write_yaml(tmp_path / "t.yaml", template_object("a"), template_object("b"))

    ambiguous = invoke("render", path, failed_pipelinerun)
    chosen = invoke("render", path, failed_pipelinerun, "--name", "b")

    assert ambiguous.exit_code == 2
    assert "holds several NotificationTemplates (a, b): use --name" in ambiguous.stderr
    assert chosen.exit_code == 0
    assert (
        yaml.safe_load(chosen.stdout)["metadata"]["labels"]["notifications.tekton.dev/template"]
        == "b"
    )


@pytest.mark.parametrize(
    ("template", "message"),
    [
        pytest.param(
            EXAMPLE_POLICIES / "pipelinerun-failed-slack.yaml",
            "no NotificationTemplate",
            id="no template",
        ),
        pytest.param(
            EXAMPLES / "invalid" / "template-bad-timeout.yaml",
            "invalid NotificationTemplate: spec.timeout",
            id="invalid template",
        ),
    ],
)
def test_a_template_file_without_a_usable_template_is_an_input_error(
    invoke: Invoke, failed_pipelinerun: Path, template: Path, message: str
) -> None:
    result = invoke("render", template, failed_pipelinerun)

    assert result.exit_code == 2
    assert message in result.stderr
