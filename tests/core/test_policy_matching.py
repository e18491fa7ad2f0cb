"""Which policies an event matches: a table per selector field, event, CEL, tenancy, guard."""

from __future__ import annotations

from typing import Any

import pytest

from tekton_notifications import cel
from tekton_notifications.events import RunEvent, parse_event
from tekton_notifications.matching import PolicyIndex, compile_policy, evaluate, event_activation
from tekton_notifications.models import parse_policy
from tests.conftest import policy_object


def run_event(
    *,
    kind: str = "PipelineRun",
    event: str = "failed",
    reason: str = "Failed",
    name: str = "build-and-test-run-8x2kq",
    namespace: str = "ci",
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> RunEvent:
    key = kind[0].lower() + kind[1:]
    run = {
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": "u-1",
            "labels": {"team": "web", "tekton.dev/pipeline": "build-and-test"}
            if labels is None
            else labels,
            "annotations": annotations or {},
        },
        "status": {
            "conditions": [
                {
                    "type": "Succeeded",
                    "status": "False",
                    "reason": reason,
                    "message": "Tasks Completed: 2 (Failed: 1)",
                }
            ]
        },
    }
    return parse_event(
        {
            "id": "e1",
            "source": f"/apis///namespaces/{namespace}//{name}",
            "type": f"dev.tekton.event.{kind.lower()}.{event}.v1",
        },
        {key: run},
    )


def matches(policy: dict[str, Any], event: RunEvent) -> bool:
    """The index's answer (its hot path builds no checks), held equal to the verdict that
    ``tkn-notify explain`` shows for the same policy and event."""
    parsed = parse_policy(policy)
    found, _ = PolicyIndex([parsed]).match(event)
    matched = any(not match.suspended for match in found)
    assert evaluate(compile_policy(parsed), event).matched is matched
    return matched


SELECTOR_TABLE = [
    ("kinds: listed kind matches", {"kinds": ["PipelineRun"]}, {}, True),
    ("kinds: other kind does not", {"kinds": ["TaskRun"]}, {}, False),
    ("kinds: several kinds", {"kinds": ["TaskRun", "PipelineRun"]}, {}, True),
    ("kinds: absent means all", {}, {"kind": "CustomRun"}, True),
    ("names: exact", {"names": ["build-and-test-run-8x2kq"]}, {}, True),
    ("names: glob", {"names": ["build-*"]}, {}, True),
    ("names: glob with ?", {"names": ["build-and-test-run-?????"]}, {}, True),
    ("names: no pattern fits", {"names": ["deploy-*", "release"]}, {}, False),
    ("names: glob is case sensitive", {"names": ["BUILD-*"]}, {}, False),
    ("matchLabels: equal", {"matchLabels": {"team": "web"}}, {}, True),
    ("matchLabels: different value", {"matchLabels": {"team": "api"}}, {}, False),
    ("matchLabels: absent label", {"matchLabels": {"env": "prod"}}, {}, False),
    ("matchLabels: all must hold", {"matchLabels": {"team": "web", "env": "prod"}}, {}, False),
    (
        "In: value listed",
        {"matchExpressions": [{"key": "team", "operator": "In", "values": ["api", "web"]}]},
        {},
        True,
    ),
    (
        "In: absent label",
        {"matchExpressions": [{"key": "env", "operator": "In", "values": ["prod"]}]},
        {},
        False,
    ),
    (
        "NotIn: value listed",
        {"matchExpressions": [{"key": "team", "operator": "NotIn", "values": ["web"]}]},
        {},
        False,
    ),
    (
        "NotIn: absent label matches",
        {"matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["prod"]}]},
        {},
        True,
    ),
    (
        "Exists",
        {"matchExpressions": [{"key": "tekton.dev/pipeline", "operator": "Exists"}]},
        {},
        True,
    ),
    ("Exists: absent", {"matchExpressions": [{"key": "env", "operator": "Exists"}]}, {}, False),
    ("DoesNotExist", {"matchExpressions": [{"key": "env", "operator": "DoesNotExist"}]}, {}, True),
    (
        "DoesNotExist: present",
        {"matchExpressions": [{"key": "team", "operator": "DoesNotExist"}]},
        {},
        False,
    ),
    (
        "matchAnnotations: equal",
        {"matchAnnotations": {"notify": "true"}},
        {"annotations": {"notify": "true"}},
        True,
    ),
    (
        "matchAnnotations: different",
        {"matchAnnotations": {"notify": "true"}},
        {"annotations": {"notify": "false"}},
        False,
    ),
    ("matchAnnotations: absent", {"matchAnnotations": {"notify": "true"}}, {}, False),
]


@pytest.mark.parametrize(
    ("selector", "event_args", "expected"),
    [row[1:] for row in SELECTOR_TABLE],
    ids=[row[0] for row in SELECTOR_TABLE],
)
def test_selector_fields(
    selector: dict[str, Any], event_args: dict[str, Any], expected: bool
) -> None:
    assert matches(policy_object(selector=selector), run_event(**event_args)) is expected


EVENT_TABLE = [
    # (policy events, tekton event, condition reason, expected)
    (["queued"], "queued", "", True),
    (["started"], "started", "Started", True),
    (["running"], "running", "Running", True),
    (["unknown"], "unknown", "Pending", True),
    (["succeeded"], "successful", "Succeeded", True),
    (["succeeded"], "failed", "Failed", False),
    (["failed"], "failed", "Failed", True),
    (["failed"], "successful", "Succeeded", False),
    (["started"], "running", "Running", False),
    # failed matches every failed event; cancelled/timedOut select only those
    (["failed"], "failed", "TaskRunCancelled", True),
    (["failed"], "failed", "PipelineRunTimeout", True),
    (["cancelled"], "failed", "TaskRunCancelled", True),
    (["cancelled"], "failed", "Cancelled", True),
    (["cancelled"], "failed", "PipelineRunCancelled", True),
    (["cancelled"], "failed", "Failed", False),
    (["cancelled"], "failed", "PipelineRunTimeout", False),
    (["timedOut"], "failed", "TaskRunTimeout", True),
    (["timedOut"], "failed", "PipelineRunTimeout", True),
    (["timedOut"], "failed", "Cancelled", False),
    (["timedOut"], "failed", "StepFailed", False),
    (["cancelled", "timedOut"], "failed", "TaskRunTimeout", True),
    (["started", "succeeded"], "successful", "Succeeded", True),
]


@pytest.mark.parametrize(
    ("events", "tekton_event", "reason", "expected"),
    EVENT_TABLE,
    ids=[f"{'+'.join(r[0])}<-{r[1]}:{r[2] or '-'}" for r in EVENT_TABLE],
)
def test_events(events: list[str], tekton_event: str, reason: str, expected: bool) -> None:
    event = run_event(event=tekton_event, reason=reason)
    assert matches(policy_object(events=events), event) is expected


CEL_TABLE = [
    ("true", 'event.reason == "Failed"', True),
    ("false", 'event.reason == "Cancelled"', False),
    ("label by index", 'run.metadata.labels["tekton.dev/pipeline"] == "build-and-test"', True),
    (
        "has() guards a missing label",
        'has(run.metadata.labels.env) && run.metadata.labels.env == "p"',
        False,
    ),
    ("policy variable", 'policy.name == "notify" && policy.namespace == "ci"', True),
    (
        "string functions",
        'event.name.startsWith("build-") && event.message.contains("Failed: 1")',
        True,
    ),
    ("event fields", 'event.kind == "PipelineRun" && event.outcome == "failed"', True),
]


@pytest.mark.parametrize(
    ("when", "expected"), [row[1:] for row in CEL_TABLE], ids=[row[0] for row in CEL_TABLE]
)
def test_cel_when(when: str, expected: bool) -> None:
    assert matches(policy_object(when=when), run_event()) is expected


@pytest.mark.parametrize(
    ("when", "error"),
    [
        ('run.metadata.labels.env == "prod"', "no such member"),
        ("event.name", "must evaluate to bool"),
        ("1 / 0 == 1", "division or modulo by zero"),
    ],
    ids=["missing key", "not a bool", "runtime error"],
)
def test_a_cel_runtime_error_is_no_match_and_is_reported(when: str, error: str) -> None:
    index = PolicyIndex([parse_policy(policy_object(when=when))])
    found, errors = index.match(run_event())
    assert found == []
    assert len(errors) == 1
    assert error in (errors[0].error or "")


def test_a_cel_error_in_one_policy_does_not_break_the_others() -> None:
    index = PolicyIndex(
        [
            parse_policy(policy_object("broken", when="run.nosuch.field == 1")),
            parse_policy(policy_object("uncompilable", when="event.reason ==")),
            parse_policy(policy_object("fine", when='event.reason == "Failed"')),
        ]
    )
    found, errors = index.match(run_event())
    assert [m.policy.name for m in found] == ["fine"]
    assert sorted(v.policy.name for v in errors) == ["broken", "uncompilable"]


def test_a_cel_syntax_error_is_found_when_the_policy_is_loaded() -> None:
    compiled = compile_policy(parse_policy(policy_object(when="event.reason ==")))
    assert not compiled.ready
    assert compiled.error is not None and compiled.error.startswith("spec.when: syntax error")


def test_cel_is_compiled_once_per_expression_not_per_event_or_reload() -> None:
    index = PolicyIndex()
    first = index.upsert(parse_policy(policy_object(when='event.reason == "Failed"')))
    changed_labels_only = policy_object(when='event.reason == "Failed"', suspend=False)
    second = index.upsert(parse_policy(changed_labels_only))
    assert second.when is first.when
    third = index.upsert(parse_policy(policy_object(when='event.reason == "X"')))
    assert third.when is not first.when


def test_a_suspended_policy_never_matches() -> None:
    assert not matches(policy_object(suspend=True), run_event())
    assert matches(policy_object(suspend=False), run_event())


def test_a_suspended_policy_that_would_match_is_reported_for_counting_as_suppressed() -> None:
    found, _ = PolicyIndex([parse_policy(policy_object(suspend=True))]).match(run_event())
    assert [match.suspended for match in found] == [True]
    assert not found[0].final
    other_namespace, _ = PolicyIndex([parse_policy(policy_object(suspend=True))]).match(
        run_event(namespace="elsewhere")
    )
    assert other_namespace == []


def test_a_namespaced_policy_only_sees_runs_in_its_own_namespace() -> None:
    policy = policy_object(namespace="team-a")
    assert matches(policy, run_event(namespace="team-a"))
    assert not matches(policy, run_event(namespace="team-b"))


def test_runs_created_by_this_project_never_match_even_a_catch_all_policy() -> None:
    catch_all = policy_object(
        events=list(("queued", "started", "running", "unknown", "succeeded", "failed"))
    )
    ours = run_event(
        kind="TaskRun",
        labels={
            "app.kubernetes.io/managed-by": "tekton-notifications",
            "notifications.tekton.dev/policy": "notify",
        },
    )
    assert not matches(catch_all, ours)


def test_each_template_ref_of_a_matching_policy_is_its_own_match() -> None:
    index = PolicyIndex([parse_policy(policy_object(templates=["slack", "email"]))])
    found, _ = index.match(run_event())
    assert [m.template_ref.name for m in found] == ["slack", "email"]


def test_only_policies_that_could_match_are_candidates() -> None:
    index = PolicyIndex(
        [parse_policy(policy_object(f"other-ns-{i}", f"ns-{i}")) for i in range(200)]
        + [
            parse_policy(policy_object(f"taskruns-{i}", selector={"kinds": ["TaskRun"]}))
            for i in range(200)
        ]
        + [parse_policy(policy_object(f"started-{i}", events=["started"])) for i in range(200)]
        + [parse_policy(policy_object("the-one"))]
    )
    assert [c.policy.name for c in index.candidates(run_event())] == ["the-one"]


def test_updates_and_deletes_take_effect_in_the_index() -> None:
    index = PolicyIndex([parse_policy(policy_object(events=["failed"]))])
    assert index.candidates(run_event())
    index.upsert(parse_policy(policy_object(events=["succeeded"])))
    assert not index.candidates(run_event())
    index.upsert(parse_policy(policy_object(events=["failed"])))
    index.remove("ci", "notify")
    assert not index.candidates(run_event()) and len(index) == 0


def test_replace_all_drops_policies_that_are_gone() -> None:
    index = PolicyIndex([parse_policy(policy_object("a")), parse_policy(policy_object("b"))])
    index.replace_all([parse_policy(policy_object("b"))])
    assert [c.policy.name for c in index.all()] == ["b"]


def test_a_verdict_says_which_field_failed_and_what_was_wanted() -> None:
    policy = compile_policy(parse_policy(policy_object(selector={"matchLabels": {"team": "api"}})))
    verdict = evaluate(policy, run_event())
    assert not verdict.matched
    assert verdict.reason == "label team"
    failed = [c for c in verdict.checks if not c.ok]
    assert (failed[0].wanted, failed[0].got) == ("api", "web")


def test_explain_lists_every_policy_in_the_namespace_with_its_verdict() -> None:
    index = PolicyIndex(
        [
            parse_policy(policy_object("hit")),
            parse_policy(policy_object("wrong-event", events=["succeeded"])),
            parse_policy(policy_object("elsewhere", "other")),
        ]
    )
    verdicts = {v.policy.name: v.reason for v in index.explain(run_event())}
    assert verdicts == {"hit": "matched", "wrong-event": "event"}


@pytest.mark.parametrize(
    ("when", "built"),
    [
        pytest.param('run.metadata.labels["team"] == "web"', False, id="reads run: no view"),
        pytest.param('event.reason == "Failed"', True, id="reads event: the view, once"),
    ],
)
def test_the_event_view_is_built_only_for_expressions_that_read_it(when: str, built: bool) -> None:
    """Building the ``event`` variable costs ~15-30 us per event; most whens read ``run``."""
    event = run_event()
    activation = event_activation(event)
    compiled = compile_policy(parse_policy(policy_object(when=when)))
    assert compiled.when is not None

    assert compiled.when.evaluate(activation) is True
    assert isinstance(dict.__getitem__(activation, "event"), cel.Lazy) is not built
