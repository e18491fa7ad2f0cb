"""Tekton's substitution in Task specs and the kubelet's in env values, as the step runner
applies them: one pass per kind of variable, params first, unknown references kept."""

from __future__ import annotations

import pytest

from tekton_notifications.devtools import tektonvars

VARIABLES = tektonvars.Variables(
    params={
        "message": "hi",
        "webhook-secret": "slack-webhook",
        "dotted.name": "dot",
        "sneaky": "$(context.taskRun.name)",
        "dollar": "$(URL)",
    },
    task_run={"name": "notify-1", "namespace": "ci", "uid": "u-1"},
    task_name="send-to-webhook-slack",
    workspaces={"output": "/tmp/run/workspace/output"},
    results_dir="/tmp/run/results",
    retry_count=2,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("$(params.message)", "hi", id="param-dot"),
        pytest.param("$(params['message'])", "hi", id="param-single-quoted"),
        pytest.param('$(params["webhook-secret"])', "slack-webhook", id="param-double-quoted"),
        pytest.param("$(params['dotted.name'])", "dot", id="param-with-dot-in-brackets"),
        pytest.param("a $(params.message) b $(params.message)", "a hi b hi", id="every-occurrence"),
        pytest.param("$(params.unknown)", "$(params.unknown)", id="unknown-param-kept"),
        pytest.param("$(context.taskRun.name)", "notify-1", id="context-taskrun-name"),
        pytest.param("$(context.taskRun.namespace)", "ci", id="context-taskrun-namespace"),
        pytest.param("$(context.taskRun.uid)", "u-1", id="context-taskrun-uid"),
        pytest.param("$(context.task.name)", "send-to-webhook-slack", id="context-task-name"),
        pytest.param("$(context.task.retry-count)", "2", id="context-retry-count"),
        pytest.param("$(workspaces.output.path)", "/tmp/run/workspace/output", id="workspace-path"),
        pytest.param("$(workspaces.output.bound)", "true", id="workspace-bound"),
        pytest.param("$(workspaces.cache.bound)", "false", id="workspace-unbound"),
        pytest.param("$(results.commit.path)", "/tmp/run/results/commit", id="result-path"),
        pytest.param("$(results['commit'].path)", "/tmp/run/results/commit", id="result-bracket"),
        # Tekton's passes run one after the other: a param that holds a context reference
        # is expanded by the context pass (why templates escape `$` in run data).
        pytest.param("$(params.sneaky)", "notify-1", id="param-value-then-context-pass"),
        # ...but within the param pass a value is not substituted again, and `$(URL)` is
        # left for the kubelet.
        pytest.param("$(params.dollar)", "$(URL)", id="param-value-keeps-env-reference"),
    ],
)
def test_substitute(text: str, expected: str) -> None:
    assert tektonvars.substitute(text, VARIABLES) == expected


@pytest.mark.parametrize(
    ("value", "env", "expected"),
    [
        pytest.param("$(URL)", {"URL": "https://x"}, "https://x", id="defined-variable"),
        pytest.param("$(NOPE)", {}, "$(NOPE)", id="undefined-kept"),
        pytest.param("$$(URL)", {"URL": "https://x"}, "$(URL)", id="double-dollar-escapes"),
        pytest.param("cost $$5", {}, "cost $5", id="double-dollar-to-one"),
        pytest.param("$(", {}, "$(", id="unterminated"),
        pytest.param("a$(A)b$(B)", {"A": "1", "B": "2"}, "a1b2", id="several"),
    ],
)
def test_kubernetes_expand(value: str, env: dict[str, str], expected: str) -> None:
    assert tektonvars.kubernetes_expand(value, env) == expected


def test_param_values_take_the_run_over_the_defaults() -> None:
    declared = [
        {"name": "webhook-secret"},
        {"name": "bot-name", "default": "Tekton Bot"},
        {"name": "icon-emoji", "default": ":robot_face:"},
    ]
    given = [{"name": "webhook-secret", "value": "s"}, {"name": "bot-name", "value": "Tekton"}]
    values = tektonvars.param_values(declared, given)
    assert values == {"webhook-secret": "s", "bot-name": "Tekton", "icon-emoji": ":robot_face:"}
    assert tektonvars.missing_params(declared, values) == []
    assert tektonvars.missing_params(declared, {}) == ["webhook-secret"]


def test_substitute_tree_reaches_env_volumes_and_scripts() -> None:
    step = {
        "script": "echo $(params.message)",
        "env": [
            {"name": "URL", "valueFrom": {"secretKeyRef": {"name": "$(params.webhook-secret)"}}}
        ],
        "args": ["$(context.taskRun.name)", 3],
    }
    assert tektonvars.substitute_tree(step, VARIABLES) == {
        "script": "echo hi",
        "env": [{"name": "URL", "valueFrom": {"secretKeyRef": {"name": "slack-webhook"}}}],
        "args": ["notify-1", 3],
    }
