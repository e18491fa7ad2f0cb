"""``event.cause`` (who started the run) and ``event.failedSteps`` (what failed), read from
what Pipelines-as-Code, Triggers and Tekton put on the run: no I/O, the project's own events.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from typing import Any

import pytest
import yaml

from tekton_notifications import causes, cel, celcheck, failures, matching, models, rendering
from tekton_notifications.events import parse_event
from tests.conftest import EXAMPLES, load_cloudevent, load_event, policy_object

PAC = "causes/pac-pipelinerun-failed.json"
TRIGGERS = "causes/triggers-pipelinerun-failed.json"
SHA = "3f9a1c7e5b2d8046a1e3c5b7d9f0a2c4e6b8d0f2"
NOBODY = dict.fromkeys(causes.CAUSE_FIELDS, "")


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        pytest.param(
            PAC,
            {
                "source": "pipelines-as-code",
                "sender": "octo-dev",
                "repository": "example/storefront",
                "repositoryUrl": "https://github.com/example/storefront",
                "sha": SHA,
                "pullRequest": "42",
                "eventType": "pull_request",
                "branch": "main",
                "provider": "github",
                "eventId": "",
            },
            id="pipelines-as-code-pull-request",
        ),
        pytest.param(
            TRIGGERS,
            {
                "source": "triggers",
                "sender": "octo-dev",
                "repository": "example/storefront",
                "repositoryUrl": "https://github.com/example/storefront",
                "sha": SHA,
                "pullRequest": "42",
                "eventType": "pull_request",
                "branch": "main",
                "provider": "github",
                "eventId": "0b8d2f4a-6c1e-4a3b-9d5f-7e2c4a6b8d01",
            },
            id="triggers-with-the-templates-annotations",
        ),
        pytest.param(
            "08-pipelinerun-failed.json",
            {**NOBODY, "source": "triggers", "eventId": "7e2c9b41-d0a3-4f86-a5e1-3b9c7d2f6e08"},
            id="triggers-alone-records-no-sender",
        ),
        pytest.param("12-taskrun-unknown.json", NOBODY, id="a-run-started-by-hand"),
    ],
)
def test_the_cause_is_read_from_the_runs_labels_and_annotations(
    fixture: str, expected: dict[str, str]
) -> None:
    assert load_event(fixture).view()["cause"] == expected


@pytest.mark.parametrize(
    ("labels", "annotations", "expected"),
    [
        pytest.param(
            {
                "pipelinesascode.tekton.dev/sender": "octo-dev",
                "pipelinesascode.tekton.dev/sha": SHA,
                "pipelinesascode.tekton.dev/git-provider": "gitlab",
                "pipelinesascode.tekton.dev/url-org": "group-sub",
                "pipelinesascode.tekton.dev/url-repository": "app",
            },
            {},
            {"sender": "octo-dev", "provider": "gitlab", "repository": "group-sub/app"},
            id="older-pac-labels-only",
        ),
        pytest.param(
            {"pipelinesascode.tekton.dev/url-org": "group-sub"},
            {"pipelinesascode.tekton.dev/url-org": "group/sub"},
            {"repository": "group/sub"},
            id="pac-annotation-wins-over-the-cleaned-label",
        ),
        pytest.param(
            {"triggers.tekton.dev/eventlistener": "gitlab"},
            {"pipelinesascode.tekton.dev/sender": "someone"},
            {"source": "pipelines-as-code", "sender": "someone"},
            id="pac-wins-over-triggers",
        ),
    ],
)
def test_cause_precedence(
    labels: dict[str, str], annotations: dict[str, str], expected: dict[str, str]
) -> None:
    cause = causes.cause_of(labels, annotations)
    assert {key: cause[key] for key in expected} == expected


def _taskrun(*steps: dict[str, Any], pod: str = "tr-pod") -> dict[str, Any]:
    return {
        "metadata": {"name": "tr", "labels": {"tekton.dev/pipelineTask": "build"}},
        "status": {"podName": pod, "steps": list(steps)},
    }


def _step(name: str, code: int | None, **extra: Any) -> dict[str, Any]:
    state = {} if code is None else {"terminated": {"exitCode": code, "reason": "Error"}}
    return {"name": name, "container": f"step-{name}", **state, **extra}


@pytest.mark.parametrize(
    ("taskrun", "step"),
    [
        pytest.param(
            _taskrun(_step("clone", 0), _step("test", 2), _step("push", 1)),
            "test",
            id="the-first-step-that-exited-non-zero",
        ),
        pytest.param(
            _taskrun(_step("test", 1, terminationReason="Skipped"), _step("lint", 137)),
            "lint",
            id="skipped-steps-are-not-failures",
        ),
        pytest.param(_taskrun(_step("test", 0), _step("wait", None)), None, id="none-failed"),
        pytest.param({"metadata": {"name": "tr"}}, None, id="no-status"),
    ],
)
def test_the_failed_step_of_a_taskrun(taskrun: dict[str, Any], step: str | None) -> None:
    found = failures.failed_step(taskrun)
    assert (found["name"] if found else None) == step
    if found:
        assert (found["pipelineTask"], found["pod"], found["container"]) == (
            "build",
            "tr-pod",
            f"step-{step}",
        )


@pytest.mark.parametrize(
    ("message", "shown"),
    [
        pytest.param(
            '[{"key":"StartedAt","value":"2026-10-14T13:41:44Z","type":3}]', "", id="results-json"
        ),
        pytest.param("OOMKilled: container used 2Gi", "OOMKilled: container used 2Gi", id="text"),
    ],
)
def test_tektons_results_json_is_not_a_message(message: str, shown: str) -> None:
    step = _step("test", 1)
    step["terminated"]["message"] = message
    found = failures.failed_step(_taskrun(step))
    assert found is not None and found["message"] == shown


@pytest.mark.parametrize(
    ("fixture", "steps"),
    [
        pytest.param("07-taskrun-failed.json", [("unit-tests", "pytest", 1)], id="taskrun"),
        pytest.param("06-taskrun-successful.json", [], id="only-failed-runs-have-them"),
        pytest.param(
            "08-pipelinerun-failed.json", [], id="current-pipelinerun-until-the-renderer-reads"
        ),
    ],
)
def test_failed_steps_in_the_event(fixture: str, steps: list[tuple[str, str, int]]) -> None:
    view = load_event(fixture).view()
    got = [(s["pipelineTask"], s["name"], s["exitCode"]) for s in view["failedSteps"]]
    assert got == steps


def test_failed_steps_of_an_older_pipelinerun_come_from_its_embedded_taskruns() -> None:
    cloudevent = copy.deepcopy(load_cloudevent("15-pipelinerun-failed-older-taskruns.json"))
    embedded = cloudevent["data"]["pipelineRun"]["status"]["taskRuns"]
    for child in embedded.values():
        if child["status"]["conditions"][0]["status"] == "False":
            child["status"]["steps"] = [_step("pytest", 3)]
            child["status"]["podName"] = "older-pod"
    steps = parse_event(cloudevent, cloudevent["data"]).view()["failedSteps"]
    assert [(s["name"], s["exitCode"], s["pod"]) for s in steps] == [("pytest", 3, "older-pod")]


@pytest.mark.parametrize(
    "when",
    [
        pytest.param('event.cause.source == "pipelines-as-code"', id="cause-source"),
        pytest.param('event.cause.sender != "" && event.cause.pullRequest != ""', id="sender"),
        pytest.param("event.failedSteps.exists(s, s.exitCode == 137)", id="oom-killed-steps"),
    ],
)
def test_policies_can_read_the_new_fields(when: str) -> None:
    compiled = cel.compile_expression(when)
    assert compiled is not None


def test_a_misspelt_cause_field_is_refused_at_load() -> None:
    with pytest.raises(cel.CelCheckError, match=r"event\.cause has no field 'author'"):
        cel.compile_expression('event.cause.author == "x"')


@pytest.mark.parametrize("fixture", [PAC, TRIGGERS, "07-taskrun-failed.json"])
def test_the_views_validate_against_the_variables_schema(fixture: str) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(celcheck.schema())
    policy = models.parse_policy(policy_object()).view()
    event = load_event(fixture)
    enriched = [{**step, "log": "boom", "logUnavailable": ""} for step in event.steps_failed()]
    event = dataclasses.replace(event, failed_steps=tuple(enriched))
    validator.validate({"event": event.view(), "policy": policy, "run": {}})


def _render(template: str, fixture: str) -> dict[str, str]:
    obj = yaml.safe_load((EXAMPLES / "templates" / f"{template}.yaml").read_text())
    rendered = rendering.compile_template(models.parse_template(obj)).render(
        event=load_event(fixture), policy={"name": "p", "namespace": "ci"}
    )
    return {name: json.loads(f'"{value}"') for name, value in rendered.items()}


@pytest.mark.parametrize("fixture", [PAC, TRIGGERS], ids=["pipelines-as-code", "triggers"])
@pytest.mark.parametrize(
    ("template", "expected"),
    [
        pytest.param(
            "github-pr-comment",
            {"REQUEST_URL": "https://github.com/example/storefront/pull/42"},
            id="github-pr-comment",
        ),
        pytest.param(
            "gitlab-status",
            {"REPO_FULL_NAME": "example/storefront", "SHA": SHA, "GITLAB_HOST_URL": "github.com"},
            id="gitlab-status",
        ),
        pytest.param(
            "gitea-status",
            {"REPO_FULL_NAME": "example/storefront", "SHA": SHA, "GITEA_HOST_URL": "github.com"},
            id="gitea-status",
        ),
    ],
)
def test_forge_templates_find_the_change_through_event_cause(
    template: str, expected: dict[str, str], fixture: str
) -> None:
    rendered = _render(template, fixture)
    assert {name: rendered[name] for name in expected} == expected


@pytest.mark.parametrize(
    ("fixture", "mention"),
    [
        pytest.param(PAC, "cc @octo-dev", id="failed-pac-run-mentions-the-sender"),
        pytest.param("08-pipelinerun-failed.json", None, id="no-sender-no-mention"),
    ],
)
def test_the_pull_request_comment_mentions_who_caused_a_failure(
    fixture: str, mention: str | None
) -> None:
    comment = _render("github-pr-comment", fixture)["COMMENT_OR_FILE"]
    assert (comment.splitlines()[-1] == mention) if mention else ("cc @" not in comment)


def _example_policies() -> list[models.Policy]:
    documents = yaml.safe_load_all((EXAMPLES / "policies" / "pac-commit-status.yaml").read_text())
    found = [models.parse_policy(obj) for obj in documents]
    comment = (EXAMPLES / "policies" / "pac-pull-request-comment.yaml").read_text()
    return [*found, models.parse_policy(yaml.safe_load(comment))]


@pytest.mark.parametrize(
    ("provider_as", "provider", "matched"),
    [
        pytest.param("annotation", "github", ["pac-pull-request-comment"], id="current-pac"),
        pytest.param("label", "github", ["pac-pull-request-comment"], id="older-pac-label"),
        pytest.param("annotation", "gitlab", ["pac-gitlab-status"], id="current-pac-gitlab"),
    ],
)
def test_the_pac_example_policies_pick_runs_by_their_provider_annotation(
    provider_as: str, provider: str, matched: list[str]
) -> None:
    """Current Pipelines-as-Code sets git-provider as an annotation only: the example
    policies read it through event.cause, so a label selector would never see it."""
    cloudevent = copy.deepcopy(load_cloudevent(PAC))
    metadata = cloudevent["data"]["pipelineRun"]["metadata"]
    key = "pipelinesascode.tekton.dev/git-provider"
    metadata["annotations"].pop(key)
    metadata["labels" if provider_as == "label" else "annotations"][key] = provider
    event = parse_event(cloudevent, cloudevent["data"])
    matches, errors = matching.PolicyIndex(_example_policies()).match(event)
    assert errors == []
    assert sorted({m.policy.name for m in matches}) == matched
