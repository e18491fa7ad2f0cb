"""Subscription annotations as the policy filter reads them (issue 13): the key's grammar and
limit, the recipients, the opt-outs, and where an annotation that arrives on a run was
written (Tekton copies Pipeline, Task and PipelineRun annotations onto runs)."""

from __future__ import annotations

from typing import Any

import pytest

from tekton_notifications import subscriptions
from tekton_notifications.events import RunEvent, parse_event
from tekton_notifications.subscriptions import SubscriptionError

SUB = "notifications.tekton.dev/subscribe."


def run(
    kind: str = "PipelineRun",
    *,
    annotations: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
    event: str = "failed",
) -> RunEvent:
    envelope = {"PipelineRun": "pipelineRun", "TaskRun": "taskRun", "CustomRun": "customRun"}
    metadata: dict[str, Any] = {
        "name": "build-1",
        "namespace": "ci",
        "uid": "u1",
        "labels": labels if labels is not None else {"tekton.dev/pipeline": "build"},
        "annotations": annotations or {},
    }
    return parse_event(
        {"id": "e", "source": "s", "type": f"dev.tekton.event.{kind.lower()}.{event}.v1"},
        {envelope[kind]: {"metadata": metadata}},
    )


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        pytest.param(f"{SUB}failed.slack", ("failed", "slack"), id="event-and-template"),
        pytest.param(f"{SUB}timedOut.email", ("timedOut", "email"), id="camel-case-event"),
        pytest.param(f"{SUB}fixed.team.slack", ("fixed", "team.slack"), id="dotted-template"),
        pytest.param(
            f"{SUB}failed.{'t' * 46}", ("failed", "t" * 46), id="exactly-63-after-the-prefix"
        ),
    ],
)
def test_a_subscription_key_names_an_event_and_a_template(
    key: str, expected: tuple[str, str]
) -> None:
    assert subscriptions.parse_key(key) == expected


@pytest.mark.parametrize(
    ("key", "message"),
    [
        pytest.param(f"{SUB}failled.slack", "unknown event 'failled'", id="unknown-event"),
        pytest.param(f"{SUB}failed", "is not a NotificationTemplate name", id="no-template"),
        pytest.param(f"{SUB}failed.Slack", "is not a NotificationTemplate name", id="capitals"),
        pytest.param(
            f"{SUB}failed.{'t' * 47}", "has 64 characters; Kubernetes allows 63", id="too-long"
        ),
        pytest.param("example.com/subscribe.failed.x", "not a subscription", id="other-prefix"),
    ],
)
def test_a_malformed_key_says_what_is_wrong(key: str, message: str) -> None:
    with pytest.raises(SubscriptionError, match=message):
        subscriptions.parse_key(key)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("#team", ("#team",), id="one"),
        pytest.param("a@x.com, b@x.com", ("a@x.com", "b@x.com"), id="comma"),
        pytest.param("a@x.com;b@x.com ; ", ("a@x.com", "b@x.com"), id="semicolon-and-blank"),
        pytest.param("a, b, a", ("a", "b"), id="each-once-in-order"),
        pytest.param("", (), id="empty-means-the-templates-default"),
    ],
)
def test_recipients_are_a_list(value: str, expected: tuple[str, ...]) -> None:
    assert subscriptions.parse_recipients(value) == expected


@pytest.mark.parametrize(
    ("annotations", "found"),
    [
        pytest.param({f"{SUB}failed.slack": "#a"}, [], id="valid"),
        pytest.param(
            {"notifications.tekton.dev/unsubscribe": "yes"},
            ['must be "true"'],
            id="unsubscribe-yes",
        ),
        pytest.param(
            {"notifications.tekton.dev/unsubscribe.failled": "true"},
            ["unknown event 'failled'"],
            id="unsubscribe-unknown-event",
        ),
        pytest.param({"other/annotation": "x"}, [], id="not-ours"),
    ],
)
def test_problems_are_listed_for_lint(annotations: dict[str, str], found: list[str]) -> None:
    messages = [message for _, message in subscriptions.problems(annotations)]
    assert len(messages) == len(found)
    for message, expected in zip(messages, found, strict=True):
        assert expected in message


SLACK = f"{SUB}failed.slack"


@pytest.mark.parametrize(
    ("event", "definition", "namespace", "sources", "ignored"),
    [
        pytest.param(
            run(annotations={SLACK: "#a"}), None, None, [("run", "#a")], [], id="on-the-run"
        ),
        pytest.param(
            run(annotations={SLACK: "#a"}),
            {SLACK: "#a"},
            None,
            [("pipeline", "#a")],
            [],
            id="copied-from-the-pipeline",
        ),
        pytest.param(
            run(annotations={SLACK: "#run"}),
            {SLACK: "#pipeline"},
            None,
            [("run", "#run")],
            [],
            id="the-run-overrides-its-pipeline",
        ),
        pytest.param(
            run("TaskRun", annotations={SLACK: "#a"}, labels={"tekton.dev/task": "lint"}),
            {SLACK: "#a"},
            None,
            [("task", "#a")],
            [],
            id="copied-from-the-task",
        ),
        pytest.param(
            run(
                "TaskRun",
                annotations={SLACK: "#a"},
                labels={"tekton.dev/pipelineRun": "build-1", "tekton.dev/task": "lint"},
            ),
            {},
            None,
            [],
            ["copied from PipelineRun build-1"],
            id="a-pipelines-taskrun-inherits-from-its-pipelinerun",
        ),
        pytest.param(
            run(), None, {SLACK: "#ns"}, [("namespace", "#ns")], [], id="namespace-default"
        ),
        pytest.param(
            run(annotations={"notifications.tekton.dev/unsubscribe": "true"}),
            None,
            {SLACK: "#ns"},
            [],
            ["opts out with notifications.tekton.dev/unsubscribe"],
            id="opted-out-of-every-default",
        ),
        pytest.param(
            run(annotations={"notifications.tekton.dev/unsubscribe.succeeded": "true"}),
            None,
            {SLACK: "#ns"},
            [("namespace", "#ns")],
            [],
            id="opted-out-of-another-event-only",
        ),
        pytest.param(
            run(annotations={SLACK: "#ns"}),
            None,
            {SLACK: "#ns"},
            [("run", "#ns")],
            ["subscribes to the same already"],
            id="same-as-the-namespace-once",
        ),
    ],
)
def test_where_a_subscription_was_written(
    event: RunEvent,
    definition: dict[str, str] | None,
    namespace: dict[str, str] | None,
    sources: list[tuple[str, str]],
    ignored: list[str],
) -> None:
    found = subscriptions.find(event, namespace=namespace, definition=definition)
    assert [(s.source, ",".join(s.recipients)) for s in found.subscriptions] == sources
    assert len(found.ignored) == len(ignored)
    for item, why in zip(found.ignored, ignored, strict=True):
        assert why in item.why


@pytest.mark.parametrize(
    ("labels", "reported"),
    [
        pytest.param({"tekton.dev/pipeline": "build"}, 2, id="on-a-pipelinerun"),
        pytest.param(
            {"tekton.dev/pipelineRun": "build-1", "tekton.dev/task": "lint"},
            0,
            id="copied-onto-its-taskruns-reported-once-on-the-pipelinerun",
        ),
    ],
)
def test_a_malformed_annotation_is_reported_where_it_was_written(
    labels: dict[str, str], reported: int
) -> None:
    bad = {f"{SUB}failled.slack": "#a", "notifications.tekton.dev/unsubscribe": "no"}
    kind = "PipelineRun" if "tekton.dev/pipeline" in labels else "TaskRun"
    found = subscriptions.find(run(kind, annotations=bad, labels=labels), definition={})
    assert len(found.problems) == reported
