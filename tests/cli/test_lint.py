"""`tkn-notify lint`: each class of problem is found offline, with file, object and field,
and the project's own examples pass."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tekton_notifications import cel
from tests.cli.conftest import (
    EXAMPLE_POLICIES,
    EXAMPLE_TEMPLATES,
    Invoke,
    template_object,
    write_yaml,
)
from tests.conftest import CATALOG, EVENTS, EXAMPLES, policy_object


def problems(invoke: Invoke, *args: Any) -> list[dict[str, str]]:
    result = invoke("lint", *args, "-o", "json")
    assert result.exit_code in (0, 1), result.output
    found: list[dict[str, str]] = json.loads(result.stdout)["problems"]
    assert (result.exit_code == 1) == bool(found)
    return found


def one(found: list[dict[str, str]], check: str) -> dict[str, str]:
    matching = [problem for problem in found if problem["check"] == check]
    assert len(matching) == 1, found
    return matching[0]


def slack_task(tmp_path: Path) -> Path:
    """A Task like the catalog's send-to-webhook-slack 0.1, written here: no ../shared needed."""
    return write_yaml(
        tmp_path / "task.yaml",
        {
            "apiVersion": "tekton.dev/v1beta1",
            "kind": "Task",
            "metadata": {
                "name": "send-to-webhook-slack",
                "labels": {"app.kubernetes.io/version": "0.1"},
            },
            "spec": {
                "params": [
                    {"name": "webhook-secret", "type": "string"},
                    {"name": "message", "type": "string"},
                    {"name": "bot-name", "type": "string", "default": "Tekton Bot"},
                    {"name": "attachments", "type": "array", "default": []},
                ]
            },
        },
    )


# --------------------------------------------------------------------------------------------
# The examples


def test_the_examples_have_no_problems(invoke: Invoke) -> None:
    result = invoke("lint", EXAMPLE_POLICIES, EXAMPLE_TEMPLATES)

    assert result.exit_code == 0, result.output
    assert result.stdout == "✓ 28 object(s) in 26 file(s): no problems.\n"


@pytest.mark.reference("catalog")
def test_the_example_templates_fit_the_catalog_tasks_they_run(invoke: Invoke) -> None:
    result = invoke("lint", EXAMPLE_POLICIES, EXAMPLE_TEMPLATES, "--tasks", CATALOG, "-o", "json")

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["tasksChecked"] is True


INVALID = sorted((EXAMPLES / "invalid").glob("*.yaml"))


@pytest.mark.parametrize("path", INVALID, ids=[path.name for path in INVALID])
def test_each_invalid_example_is_refused_with_the_api_servers_message(
    invoke: Invoke, path: Path
) -> None:
    (expected,) = re.findall(r"^#\s*expect:\s*(.+?)\s*$", path.read_text(), re.MULTILINE)

    result = invoke("lint", path)

    assert result.exit_code == 1
    assert expected in result.stdout
    assert "[schema]" in result.stdout


# --------------------------------------------------------------------------------------------
# One test per class of problem


def test_schema_reports_unknown_fields_like_kubectl(invoke: Invoke, tmp_path: Path) -> None:
    policy = policy_object()
    policy["spec"]["templateRef"] = [{"name": "slack"}]
    path = write_yaml(tmp_path / "p.yaml", policy, template_object())

    problem = one(problems(invoke, path), "schema")

    assert problem == {
        "file": str(path),
        "object": "NotificationPolicy ci/notify",
        "field": "spec.templateRef",
        "message": "unknown field",
        "check": "schema",
    }


def test_spec_reports_what_the_functions_refuse_on_load(invoke: Invoke, tmp_path: Path) -> None:
    policy = policy_object()
    policy["metadata"]["name"] = "Not_A_Name"
    path = write_yaml(tmp_path / "p.yaml", policy, template_object())

    problem = one(problems(invoke, path), "spec")

    assert problem["field"] == "metadata.name"
    assert problem["message"] == "must be a DNS-1123 name, not 'Not_A_Name'"


def test_the_same_mistake_is_reported_once_in_the_api_servers_words(
    invoke: Invoke, tmp_path: Path
) -> None:
    path = write_yaml(tmp_path / "p.yaml", policy_object(events=["failure"]), template_object())

    found = problems(invoke, path)

    assert [problem["check"] for problem in found] == ["schema"]
    assert found[0]["field"] == "spec.events[0]"
    assert found[0]["message"].startswith('Unsupported value: "failure"')


@pytest.mark.parametrize(
    ("when", "message"),
    [
        pytest.param("event.name ==", "CEL does not compile: syntax error:", id="syntax error"),
        pytest.param(
            'pipeline.name == "x"',
            "unknown variable 'pipeline'; the variables are run, event, policy",
            id="unknown variable",
        ),
        pytest.param(
            "event.durationn > 10.0",
            "CELCheckFailed: event has no field 'durationn': did you mean event.duration? "
            "(line 1, column 7)",
            id="typo in a field",
        ),
        pytest.param(
            'event.duration == "10"',
            "CELCheckFailed: event.duration is a number or null, compared with a string",
            id="literal of another type",
        ),
    ],
)
def test_cel_when_is_compiled_and_its_variables_checked(
    invoke: Invoke, tmp_path: Path, when: str, message: str
) -> None:
    path = write_yaml(tmp_path / "p.yaml", policy_object(when=when), template_object("slack"))

    problem = one(problems(invoke, path), "cel")

    assert problem["field"] == "spec.when"
    assert problem["message"].startswith(message)


def test_a_typo_in_when_fails_lint_naming_the_field_meant(invoke: Invoke, tmp_path: Path) -> None:
    """Issue 14: ``event.durationn`` used to pass lint, load Ready and never match."""
    policy = policy_object(when="event.durationn > 10.0")
    path = write_yaml(tmp_path / "p.yaml", policy, template_object("slack"))

    result = invoke("lint", path)

    assert result.exit_code == 1, result.output
    assert "did you mean event.duration?" in result.stdout


def test_cel_macro_variables_are_not_unknown(invoke: Invoke, tmp_path: Path) -> None:
    when = 'event.children.exists(c, c.status == "False") && [1].all(x, x > 0)'
    path = write_yaml(tmp_path / "p.yaml", policy_object(when=when), template_object("slack"))

    assert problems(invoke, path) == []


@pytest.mark.parametrize(
    ("source", "message"),
    [
        pytest.param(
            "{{ event.name ",
            "TemplateSyntaxError: unexpected end of template",
            id="syntax error",
        ),
        pytest.param(
            "{{ event.name | nofilter }}",
            "TemplateSyntaxError: no filter named 'nofilter'",
            id="unknown filter",
        ),
        pytest.param(
            "{% if false %}{{ pipeline.name }}{% endif %}",
            "unknown variable 'pipeline'; the variables are run, event, policy, template",
            id="unknown variable, even where not rendered",
        ),
        pytest.param(
            "{% include 'x' %}", "TemplateSyntaxError: {% include %} is not supported", id="include"
        ),
    ],
)
def test_template_params_are_compiled_as_the_renderer_compiles_them(
    invoke: Invoke, tmp_path: Path, source: str, message: str
) -> None:
    template = template_object(params={"webhook-secret": "s", "message": source})
    path = write_yaml(tmp_path / "t.yaml", template)

    problem = one(problems(invoke, path), "template")

    assert problem["object"] == "NotificationTemplate ci/slack"
    assert problem["field"] == "spec.params.message"
    assert message in problem["message"]


def test_policy_param_overrides_are_compiled_too(invoke: Invoke, tmp_path: Path) -> None:
    policy = policy_object(templates=["slack"])
    policy["spec"]["templateRefs"][0]["params"] = {"message": "{{ oops"}
    path = write_yaml(tmp_path / "p.yaml", policy, template_object())

    problem = one(problems(invoke, path), "template")

    assert problem["object"] == "NotificationPolicy ci/notify"
    assert problem["field"] == "spec.templateRefs[0].params.message"


def test_params_are_rendered_against_sample_events(invoke: Invoke, tmp_path: Path) -> None:
    template = template_object(params={"message": "{{ event.results.nosuch }}"})
    path = write_yaml(tmp_path / "t.yaml", template)

    problem = one(problems(invoke, path), "render")

    assert problem["field"] == "spec.params.message"
    assert problem["message"].startswith("UndefinedVariable: event.results.nosuch is undefined")
    assert "(rendering sample event sample-pipelinerun-queued)" in problem["message"]


def test_only_samples_a_referencing_policy_can_match_are_rendered(
    invoke: Invoke, tmp_path: Path
) -> None:
    needs_completion = {"message": "{{ event.name }} ended at {{ event.completionTime }}"}
    template = template_object(params=needs_completion)
    alone = write_yaml(tmp_path / "alone.yaml", template)
    with_policy = write_yaml(
        tmp_path / "with-policy.yaml",
        template,
        policy_object(events=["failed"], templates=["slack"]),
    )

    unreferenced = one(problems(invoke, alone), "render")

    assert "event.completionTime is None" in unreferenced["message"]
    assert problems(invoke, with_policy) == []


def test_policy_overrides_are_rendered_with_the_policy(invoke: Invoke, tmp_path: Path) -> None:
    policy = policy_object(templates=["slack"])
    policy["spec"]["templateRefs"][0]["params"] = {"message": "{{ policy.name }} {{ event.url }}"}
    path = write_yaml(tmp_path / "p.yaml", policy, template_object())

    problem = one(problems(invoke, path), "render")
    clean = problems(invoke, path, "--dashboard-url", "https://tekton.example.com")

    assert problem["object"] == "NotificationPolicy ci/notify"
    assert problem["field"] == "spec.templateRefs[0].params.message"
    assert "event.url is None (null)" in problem["message"]
    assert clean == []


def test_own_events_can_replace_the_samples(invoke: Invoke, tmp_path: Path) -> None:
    template = template_object(params={"message": "{{ event.results.commit }}"})
    path = write_yaml(tmp_path / "t.yaml", template)
    succeeded = EVENTS / "06-taskrun-successful.json"

    assert problems(invoke, path, "--event", succeeded) == []
    assert one(problems(invoke, path), "render")


def test_a_template_ref_must_name_a_linted_template(invoke: Invoke, tmp_path: Path) -> None:
    path = write_yaml(
        tmp_path / "p.yaml",
        policy_object(templates=["slack", "email"]),
        template_object("slack"),
        template_object("email", namespace="other"),
    )

    problem = one(problems(invoke, path), "ref")

    assert problem["field"] == "spec.templateRefs[1].name"
    assert problem["message"] == (
        "NotificationTemplate ci/email is not among the linted files (there is one in namespace "
        "other; a policy only uses templates in its own namespace)"
    )


def test_an_object_defined_twice_is_reported(invoke: Invoke, tmp_path: Path) -> None:
    first = write_yaml(tmp_path / "a.yaml", template_object())
    write_yaml(tmp_path / "b.yaml", template_object())

    problem = one(problems(invoke, tmp_path), "duplicate")

    assert problem["file"] == str(tmp_path / "b.yaml")
    assert problem["message"] == f"defined twice: also in {first}"


def test_a_file_that_is_not_yaml_is_reported(invoke: Invoke, tmp_path: Path) -> None:
    write_yaml(tmp_path / "good.yaml", template_object())
    (tmp_path / "bad.yaml").write_text("kind: [unclosed\n")

    problem = one(problems(invoke, tmp_path), "yaml")

    assert problem["file"] == str(tmp_path / "bad.yaml")
    assert problem["message"].startswith("not valid YAML")


# --------------------------------------------------------------------------------------------
# Params against the task the template runs (--tasks)


def test_a_param_the_task_does_not_declare_is_reported(invoke: Invoke, tmp_path: Path) -> None:
    params = {"webhook-secret": "s", "message": "m", "colour": "red"}
    path = write_yaml(tmp_path / "t.yaml", template_object(params=params))

    problem = one(problems(invoke, path, "--tasks", slack_task(tmp_path)), "task")

    assert problem["field"] == "spec.params.colour"
    assert problem["message"] == (
        "Task send-to-webhook-slack 0.1 has no param 'colour'; its params are: webhook-secret, "
        "message, bot-name, attachments"
    )


def test_a_required_task_param_the_template_leaves_unset_is_reported(
    invoke: Invoke, tmp_path: Path
) -> None:
    path = write_yaml(tmp_path / "t.yaml", template_object(params={"webhook-secret": "s"}))

    problem = one(problems(invoke, path, "--tasks", slack_task(tmp_path)), "task")

    assert problem["field"] == "spec.params"
    assert problem["message"] == (
        "required param 'message' of Task send-to-webhook-slack 0.1 is not set (it has no default)"
    )


def test_a_required_param_every_policy_supplies_is_set(invoke: Invoke, tmp_path: Path) -> None:
    policy = policy_object(templates=["slack"])
    policy["spec"]["templateRefs"][0]["params"] = {"message": "{{ event.name }}"}
    path = write_yaml(tmp_path / "t.yaml", policy, template_object(params={"webhook-secret": "s"}))

    assert problems(invoke, path, "--tasks", slack_task(tmp_path)) == []


def test_a_policy_override_the_task_does_not_declare_is_reported(
    invoke: Invoke, tmp_path: Path
) -> None:
    policy = policy_object(templates=["slack"])
    policy["spec"]["templateRefs"][0]["params"] = {"channel": "#ci"}
    path = write_yaml(tmp_path / "t.yaml", policy, template_object())

    problem = one(problems(invoke, path, "--tasks", slack_task(tmp_path)), "task")

    assert problem["object"] == "NotificationPolicy ci/notify"
    assert problem["field"] == "spec.templateRefs[0].params.channel"


def test_an_array_param_cannot_be_set_from_a_template(invoke: Invoke, tmp_path: Path) -> None:
    params = {"webhook-secret": "s", "message": "m", "attachments": "[]"}
    path = write_yaml(tmp_path / "t.yaml", template_object(params=params))

    problem = one(problems(invoke, path, "--tasks", slack_task(tmp_path)), "task")

    assert "is of type array; a template renders strings" in problem["message"]


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        pytest.param(
            {"name": "send-to-nowhere"},
            "no Task named 'send-to-nowhere' among --tasks",
            id="unknown task",
        ),
        pytest.param(
            {
                "resolver": "hub",
                "params": [
                    {"name": "kind", "value": "task"},
                    {"name": "name", "value": "send-to-webhook-slack"},
                    {"name": "version", "value": "0.3"},
                ],
            },
            "Task send-to-webhook-slack version 0.3 is not among --tasks (found: 0.1)",
            id="unknown version through the hub resolver",
        ),
    ],
)
def test_a_task_that_is_not_among_the_given_tasks_is_reported(
    invoke: Invoke, tmp_path: Path, ref: dict[str, Any], message: str
) -> None:
    template = template_object()
    template["spec"]["taskRef"] = ref
    path = write_yaml(tmp_path / "t.yaml", template)

    problem = one(problems(invoke, path, "--tasks", slack_task(tmp_path)), "task")

    assert problem["field"] == "spec.taskRef"
    assert problem["message"] == message


# --------------------------------------------------------------------------------------------
# Output and exit codes


#: How each engine's parser words ``x ==`` (docs/policies.md, "CEL engines").
INCOMPLETE_EQUALITY = {
    "python": "x == ^",
    "rust": "1:5: mismatched input '<EOF>' expecting {'[', '{', '(', '.', '-', '!', 'true', "
    "'false', 'null', NUM_FLOAT, NUM_INT, NUM_UINT, STRING, BYTES, IDENTIFIER}",
}


def test_text_output_is_one_line_per_problem_then_a_summary(invoke: Invoke, tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "p.yaml", policy_object(templates=["nope"], when="x =="))

    result = invoke("lint", path)

    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        f"{path}: NotificationPolicy ci/notify: spec.when: CEL does not compile: syntax error: "
        f"{INCOMPLETE_EQUALITY[cel.selected_engine()]} [cel]",
        f"{path}: NotificationPolicy ci/notify: spec.templateRefs[0].name: NotificationTemplate "
        "ci/nope is not among the linted files [ref]",
        "2 problem(s) in 1 of 1 object(s), 1 file(s).",
    ]


def test_without_crds_the_schema_is_skipped_with_a_note(invoke: Invoke, tmp_path: Path) -> None:
    (tmp_path / "crds").mkdir()
    path = write_yaml(tmp_path / "t.yaml", template_object())

    result = invoke("lint", path, "--crds", tmp_path / "crds", "-o", "json")

    assert result.exit_code == 0
    assert json.loads(result.stdout)["schemaChecked"] is False
    assert "note: schema not checked: no notifications.tekton.dev/v1alpha1 CRDs" in result.stderr


def test_files_without_policies_or_templates_are_an_input_error(
    invoke: Invoke, tmp_path: Path
) -> None:
    write_yaml(
        tmp_path / "cm.yaml", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}
    )

    result = invoke("lint", tmp_path)

    assert result.exit_code == 2
    assert (
        "no NotificationPolicy, NotificationTemplate or subscription annotation in 1 file(s)"
        in (result.stderr)
    )


def test_a_path_that_does_not_exist_is_a_usage_error(invoke: Invoke, tmp_path: Path) -> None:
    result = invoke("lint", tmp_path / "absent")

    assert result.exit_code == 2


TEAM_SELECTORS = {
    "matchLabels": {"matchLabels": {"team": "web"}},
    "In": {"matchExpressions": [{"key": "team", "operator": "In", "values": ["web"]}]},
    "Exists": {"matchExpressions": [{"key": "team", "operator": "Exists"}]},
}


def test_a_label_no_selector_guarantees_must_be_read_with_a_default(
    invoke: Invoke, tmp_path: Path
) -> None:
    template = template_object(params={"message": "team {{ event.labels.team }}"})
    path = write_yaml(tmp_path / "t.yaml", template, policy_object(templates=["slack"]))

    problem = one(problems(invoke, path), "render")

    assert "event.labels.team is undefined: event.labels has no key 'team'" in problem["message"]


@pytest.mark.parametrize("selector", TEAM_SELECTORS.values(), ids=TEAM_SELECTORS.keys())
def test_a_label_the_policy_selects_on_may_be_read_directly(
    invoke: Invoke, tmp_path: Path, selector: dict[str, Any]
) -> None:
    template = template_object(params={"message": "team {{ event.labels.team }}"})
    policy = policy_object(templates=["slack"], selector=selector)
    path = write_yaml(tmp_path / "t.yaml", template, policy)

    assert problems(invoke, path) == []


def cluster_policy(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "notifications.tekton.dev/v1alpha1",
        "kind": "ClusterNotificationPolicy",
        "metadata": {"name": "platform"},
        "spec": {
            "events": ["failed"],
            "templateNamespace": "platform",
            "templateRefs": [{"name": "slack"}],
            **spec,
        },
    }


def test_a_cluster_policy_is_linted_against_the_templates_of_its_template_namespace(
    invoke: Invoke, tmp_path: Path
) -> None:
    good = write_yaml(
        tmp_path / "good.yaml", cluster_policy(), template_object("slack", namespace="platform")
    )
    assert problems(invoke, good) == []

    misplaced = write_yaml(
        tmp_path / "misplaced.yaml", cluster_policy(), template_object("slack", namespace="ci")
    )
    problem = one(problems(invoke, misplaced), "ref")
    assert problem["object"] == "ClusterNotificationPolicy platform"
    assert problem["message"].startswith(
        "NotificationTemplate platform/slack is not among the linted files (there is one in "
        "namespace ci"
    )


def test_a_cluster_policy_gets_the_schema_spec_and_cel_checks_too(
    invoke: Invoke, tmp_path: Path
) -> None:
    path = write_yaml(
        tmp_path / "p.yaml",
        cluster_policy(when='pipeline.name == "x"', rateLimit={"limit": 0, "window": "1m"}),
        template_object("slack", namespace="platform"),
    )
    found = problems(invoke, path)
    assert {problem["check"] for problem in found} >= {"schema", "cel"}
    assert any(problem["field"] == "spec.rateLimit.limit" for problem in found), found
