"""`tkn-notify explain` says, field by field, why a policy did not match a Tekton event.

One case per reason the policy filter can refuse an event, each checked in the text a human
reads and in the JSON a script reads. The event is from tests/data/events: PipelineRun
ci/storefront-ci-run-p7v2k failed (labels tekton.dev/pipeline=storefront-ci, annotation
example.com/git-repo=https://github.com/example/storefront), or its unit-tests TaskRun.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tekton_notifications import cel
from tests.cli.conftest import FAILED_PIPELINERUN, Invoke, write_event, write_yaml
from tests.conftest import load_cloudevent, policy_object

#: How each engine's parser words ``event.labels[`` (docs/policies.md, "CEL engines"): the
#: command says what the engine the filter runs says.
SYNTAX_ERRORS = {
    "python": "event.labels[ ^",
    "rust": "1:14: mismatched input '<EOF>' expecting {'[', '{', '(', '.', '-', '!', '?', "
    "'true', 'false', 'null', NUM_FLOAT, NUM_INT, NUM_UINT, STRING, BYTES, IDENTIFIER}",
}


@dataclass(frozen=True)
class Reason:
    policy: dict[str, Any]
    #: The line `explain` prints for the failing field.
    line: str
    #: ``reason`` in the JSON output.
    reason: str
    event: str = FAILED_PIPELINERUN
    #: Labels added to the event's run (to make it a notification run).
    extra_labels: tuple[tuple[str, str], ...] = ()


REASONS = {
    "wrong kind": Reason(
        policy_object(selector={"kinds": ["TaskRun"]}),
        "kind ✗ wanted TaskRun got PipelineRun",
        "kind",
    ),
    "other namespace": Reason(
        policy_object(namespace="prod"), "namespace ✗ wanted prod got ci", "namespace"
    ),
    "label with another value": Reason(
        policy_object(selector={"matchLabels": {"tekton.dev/pipeline": "deploy"}}),
        "label tekton.dev/pipeline ✗ wanted deploy got storefront-ci",
        "label tekton.dev/pipeline",
    ),
    "label absent": Reason(
        policy_object(selector={"matchLabels": {"team": "web"}}),
        "label team ✗ wanted web got <absent>",
        "label team",
    ),
    "label expression": Reason(
        policy_object(
            selector={
                "matchExpressions": [
                    {"key": "tekton.dev/pipeline", "operator": "In", "values": ["a", "b"]}
                ]
            }
        ),
        "label tekton.dev/pipeline ✗ wanted in (a, b) got storefront-ci",
        "label tekton.dev/pipeline",
    ),
    "annotation": Reason(
        policy_object(
            selector={
                "matchAnnotations": {"example.com/git-repo": "https://github.com/example/web"}
            }
        ),
        "annotation example.com/git-repo ✗ wanted https://github.com/example/web "
        "got https://github.com/example/storefront",
        "annotation example.com/git-repo",
    ),
    "name glob": Reason(
        policy_object(selector={"names": ["deploy-*", "release-?"]}),
        "name ✗ wanted deploy-* or release-? got storefront-ci-run-p7v2k",
        "name",
    ),
    "event": Reason(
        policy_object(events=["succeeded", "cancelled"]),
        "event ✗ wanted cancelled or succeeded got failed",
        "event",
    ),
    "suspended": Reason(policy_object(suspend=True), "suspend ✗ wanted false got true", "suspend"),
    "CEL false": Reason(policy_object(when="event.duration > 3600.0"), "when → false", "when"),
    "CEL error": Reason(
        policy_object(when='event.labels["team"] == "web"'),
        "CEL error: no such member in mapping: 'team'",
        "cel error",
    ),
    "CEL field that does not exist": Reason(
        policy_object(when="event.durationn > 10.0"),
        "CEL error: event has no field 'durationn': did you mean event.duration? "
        "(line 1, column 7)",
        "cel error",
    ),
    "CEL syntax error": Reason(
        policy_object(when="event.labels["),
        "CEL error: syntax error: " + SYNTAX_ERRORS[cel.selected_engine()],
        "cel error",
    ),
    "loop guard": Reason(
        policy_object(selector={"kinds": ["TaskRun"]}),
        "loop guard ✗ wanted not a notification run got notification run",
        "loop guard",
        event="07-taskrun-failed.json",
        extra_labels=(("app.kubernetes.io/managed-by", "tekton-notifications"),),
    ),
}


def files(tmp_path: Path, case: Reason) -> tuple[Path, Path]:
    cloudevent = load_cloudevent(case.event)
    run = next(iter(cloudevent["data"].values()))
    run["metadata"]["labels"].update(dict(case.extra_labels))
    event = write_event(tmp_path / "event.json", cloudevent)
    return event, write_yaml(tmp_path / "policy.yaml", case.policy)


@pytest.mark.parametrize("case", REASONS.values(), ids=REASONS.keys())
def test_text_names_the_field_that_refused_the_event_with_wanted_and_got(
    invoke: Invoke, tmp_path: Path, case: Reason
) -> None:
    event, policies = files(tmp_path, case)

    result = invoke("explain", event, "--policies", policies)

    assert result.exit_code == 1, result.output
    name = f"{case.policy['metadata']['namespace']}/{case.policy['metadata']['name']}"
    assert f"✗ {name}: not matched" in result.stdout
    assert f"    {case.line}\n" in result.stdout
    assert "0 matched" in result.stdout


@pytest.mark.parametrize("case", REASONS.values(), ids=REASONS.keys())
def test_json_gives_the_reason_and_every_check_made(
    invoke: Invoke, tmp_path: Path, case: Reason
) -> None:
    event, policies = files(tmp_path, case)

    result = invoke("explain", event, "--policies", policies, "-o", "json")

    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    (policy,) = report["policies"]
    assert policy["matched"] is False
    assert policy["reason"] == case.reason
    failed = [check for check in policy["checks"] if not check["ok"]]
    if case.reason == "cel error":
        assert failed == []
        assert f"CEL error: {policy['celError']}" == case.line
    else:
        (check,) = failed
        assert check["field"] == case.reason
        assert check["got"] in case.line
        assert case.reason == "when" or check["wanted"] in case.line


def test_checks_are_listed_in_the_order_the_policy_filter_makes_them(
    invoke: Invoke, failed_pipelinerun: Path, tmp_path: Path
) -> None:
    policy = policy_object(
        selector={
            "kinds": ["PipelineRun"],
            "names": ["storefront-*"],
            "matchLabels": {"tekton.dev/pipeline": "storefront-ci"},
            "matchAnnotations": {"example.com/git-repo": "https://github.com/example/storefront"},
        },
        when='event.reason == "Failed"',
    )
    policies = write_yaml(tmp_path / "policy.yaml", policy)

    result = invoke("explain", failed_pipelinerun, "--policies", policies, "-o", "json")

    (explained,) = json.loads(result.stdout)["policies"]
    assert [check["field"] for check in explained["checks"]] == [
        "loop guard",
        "namespace",
        "kind",
        "name",
        "label tekton.dev/pipeline",
        "annotation example.com/git-repo",
        "event",
        "when",
        "suspend",
    ]
    assert explained["matched"] is True


def test_an_invalid_policy_is_listed_as_never_loaded_with_the_field_at_fault(
    invoke: Invoke, failed_pipelinerun: Path, tmp_path: Path
) -> None:
    policies = write_yaml(tmp_path / "policy.yaml", policy_object(events=["failure"]))

    text = invoke("explain", failed_pipelinerun, "--policies", policies)
    data = invoke("explain", failed_pipelinerun, "--policies", policies, "-o", "json")

    assert text.exit_code == data.exit_code == 1
    assert "✗ ci/notify: invalid policy, never loaded: spec.events[0]: unknown event" in text.stdout
    (policy,) = json.loads(data.stdout)["policies"]
    assert policy["reason"] == "invalid"
    assert policy["invalid"].startswith("spec.events[0]: unknown event 'failure'")


def test_a_when_that_does_not_compile_is_noted_even_when_an_earlier_field_fails(
    invoke: Invoke, failed_pipelinerun: Path, tmp_path: Path
) -> None:
    policies = write_yaml(
        tmp_path / "policy.yaml", policy_object(events=["succeeded"], when="event.name ==")
    )

    result = invoke("explain", failed_pipelinerun, "--policies", policies)

    assert "event ✗ wanted succeeded got failed" in result.stdout
    assert "note: spec.when does not compile, so this policy never matches: syntax error" in (
        result.stdout
    )
