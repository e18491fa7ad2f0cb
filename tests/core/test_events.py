"""Parsing Tekton CloudEvents into RunEvents: every fixture, every type, every bad input."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tekton_notifications.events import (
    EventError,
    RunEvent,
    UnsupportedEvent,
    from_wire,
    parse_event,
)
from tests.conftest import (
    event_files,
    load_cloudevent,
    load_event,
    load_realworld,
    realworld_files,
)

CAPTURED = pytest.mark.reference("fixtures/tekton-events/realworld")


def _what_its_json_says(cloudevent: dict[str, Any]) -> None:
    envelope_key, run = next(iter(cloudevent["data"].items()))
    event = parse_event(cloudevent, json.dumps(cloudevent["data"]))

    assert event.id == cloudevent["id"]
    assert event.type == cloudevent["type"]
    assert event.kind.lower() == envelope_key.lower()
    assert event.type.split(".")[4] == event.tekton_event
    assert event.name == run["metadata"]["name"]
    assert event.namespace == run["metadata"]["namespace"]
    assert event.uid == run["metadata"].get("uid", "")
    assert dict(event.labels) == run["metadata"].get("labels", {})
    assert dict(event.annotations) == run["metadata"].get("annotations", {})
    conditions = run.get("status", {}).get("conditions", [])
    assert event.reason == (conditions[0].get("reason", "") if conditions else "")
    assert event.message == (conditions[0].get("message", "") if conditions else "")
    assert event.run == run


@pytest.mark.parametrize("path", event_files(), ids=lambda p: p.name)
def test_every_event_parses_to_what_its_json_says(path: Path) -> None:
    _what_its_json_says(json.loads(path.read_text()))


@CAPTURED
@pytest.mark.parametrize(
    "path", realworld_files() or [Path("realworld")], ids=lambda p: f"realworld/{p.name}"
)
def test_every_captured_event_parses_to_what_its_json_says(path: Path) -> None:
    """Events captured from a production Tekton: the parser against reality, not our guess."""
    _what_its_json_says(json.loads(path.read_text()))


SPOT_CHECKS: list[tuple[str, dict[str, Any]]] = [
    (
        "01-pipelinerun-queued.json",
        {"kind": "PipelineRun", "tekton_event": "queued", "outcome": "queued", "start_time": None},
    ),
    (
        "06-taskrun-successful.json",
        {
            "kind": "TaskRun",
            "outcome": "succeeded",
            "duration": 13.0,
            "results": {
                "commit": "9c41e7b2d05a8f36e1c4b7a90d2e5f8316ab4c07",
                "url": "https://github.com/example/storefront.git",
            },
        },
    ),
    (
        "07-taskrun-failed.json",
        {
            "outcome": "failed",
            "reason": "StepFailed",
            "duration": 102.0,
            "message": '"step-pytest" exited with code 1: Error',
            "pipeline": "storefront-ci/unit-tests",
        },
    ),
    (
        "08-pipelinerun-failed.json",
        {
            "outcome": "failed",
            "reason": "Failed",
            "policy_events": frozenset({"failed"}),
            "start_time": datetime(2026, 10, 14, 13, 41, 22, tzinfo=UTC),
            "completion_time": datetime(2026, 10, 14, 13, 43, 20, tzinfo=UTC),
            "final_outcome": "failed",
        },
    ),
    (
        "10-pipelinerun-cancelled.json",
        {
            "tekton_event": "failed",
            "outcome": "cancelled",
            "policy_events": frozenset({"failed", "cancelled"}),
            "final_outcome": None,
        },
    ),
    (
        "11-taskrun-cancelled.json",
        {
            "outcome": "cancelled",
            "reason": "TaskRunCancelled",
            "pipeline": "storefront-ci/unit-tests",
        },
    ),
    (
        "12-taskrun-unknown.json",
        {
            "tekton_event": "unknown",
            "outcome": "unknown",
            "reason": "Pending",
            "pipeline": "db-migrate",
        },
    ),
    (
        "13-taskrun-timedout.json",
        {
            "outcome": "timedOut",
            "policy_events": frozenset({"failed", "timedOut"}),
            "duration": 1800.0,
        },
    ),
    (
        "14-pipelinerun-timedout.json",
        {"outcome": "timedOut", "reason": "PipelineRunTimeout", "pipeline": "nightly-e2e"},
    ),
    (
        # Pipelines-as-Code runs an embedded spec: Tekton labels it with the run's own name.
        "15-pipelinerun-failed-older-taskruns.json",
        {"outcome": "failed", "pipeline": "docs-site-pr-1042", "is_notification_run": False},
    ),
    (
        "16-customrun-started.json",
        {"kind": "CustomRun", "tekton_event": "started", "pipeline": "release-train/approve"},
    ),
    (
        "17-customrun-timedout.json",
        {"kind": "CustomRun", "outcome": "timedOut", "reason": "CustomRunTimedOut"},
    ),
]


@pytest.mark.parametrize(("name", "expected"), SPOT_CHECKS, ids=[n for n, _ in SPOT_CHECKS])
def test_fields_spot_checked_per_event(name: str, expected: dict[str, Any]) -> None:
    event = load_event(name)
    for field, value in expected.items():
        assert getattr(event, field) == value, field


CAPTURED_SPOT_CHECKS: list[tuple[str, dict[str, Any]]] = [
    ("event-taskrun.unknown.json", {"tekton_event": "unknown", "reason": "Pending"}),
    (
        "taskrun-unknown-from-docs-events-md.json",
        {"namespace": "default", "name": "curl-run-6gplk"},
    ),
]


@CAPTURED
@pytest.mark.parametrize(
    ("name", "expected"), CAPTURED_SPOT_CHECKS, ids=[n for n, _ in CAPTURED_SPOT_CHECKS]
)
def test_fields_spot_checked_per_captured_event(name: str, expected: dict[str, Any]) -> None:
    event = load_realworld(name)
    for field, value in expected.items():
        assert getattr(event, field) == value, field


def test_child_runs_come_from_child_references_in_current_tekton() -> None:
    event = load_event("08-pipelinerun-failed.json")
    assert [(c.name, c.pipeline_task_name, c.kind) for c in event.children] == [
        ("storefront-ci-run-p7v2k-fetch-source", "fetch-source", "TaskRun"),
        ("storefront-ci-run-p7v2k-unit-tests", "unit-tests", "TaskRun"),
    ]


def test_child_runs_with_messages_come_from_task_runs_in_older_tekton() -> None:
    event = load_event("15-pipelinerun-failed-older-taskruns.json")
    failed = event.failed_children
    assert [child.pipeline_task_name for child in failed] == ["build"]
    assert failed[0].message.startswith('"step-hugo" exited with code 255')
    assert failed[0].reason == "Failed"


@CAPTURED
def test_child_runs_with_messages_come_from_task_runs_of_a_captured_older_tekton() -> None:
    event = load_realworld("event-pipelinerun.failed.json")
    failed = event.failed_children
    assert [child.pipeline_task_name for child in failed] == ["build-binaries"]
    assert failed[0].message.startswith('"step-build" exited with code 1')
    assert failed[0].reason == "Failed"


def test_pipeline_results_are_read_from_v1beta1_pipeline_results() -> None:
    event = load_event("09-pipelinerun-successful.json")
    assert set(event.results) == {"image-digest"}


def _event(event_type: str, data: object, **attributes: str) -> RunEvent:
    return parse_event(
        {"id": "1", "source": "/apis///namespaces/ci//x", "type": event_type, **attributes}, data
    )


def _run(reason: str = "", *, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": "x", "namespace": "ci", "uid": "u1", "labels": labels or {}},
        "status": {"conditions": [{"type": "Succeeded", "status": "False", "reason": reason}]},
    }


TYPES = [
    (f"dev.tekton.event.{kind}.{name}.v1", kind, name)
    for kind in ("taskrun", "pipelinerun")
    for name in ("queued", "started", "running", "unknown", "successful", "failed")
] + [
    (f"dev.tekton.event.customrun.{name}.v1", "customrun", name)
    for name in ("started", "running", "successful", "failed")
]


@pytest.mark.parametrize(("event_type", "kind", "name"), TYPES, ids=[t for t, _, _ in TYPES])
def test_every_tekton_event_type_is_understood(event_type: str, kind: str, name: str) -> None:
    key = {"taskrun": "taskRun", "pipelinerun": "pipelineRun", "customrun": "customRun"}[kind]
    event = _event(event_type, {key: _run()})
    assert event.kind.lower() == kind
    assert event.tekton_event == name


@pytest.mark.parametrize(
    ("reason", "policy_events", "outcome"),
    [
        ("Failed", {"failed"}, "failed"),
        ("TaskRunCancelled", {"failed", "cancelled"}, "cancelled"),
        ("Cancelled", {"failed", "cancelled"}, "cancelled"),
        ("PipelineRunCancelled", {"failed", "cancelled"}, "cancelled"),
        ("TaskRunTimeout", {"failed", "timedOut"}, "timedOut"),
        ("PipelineRunTimeout", {"failed", "timedOut"}, "timedOut"),
    ],
)
def test_cancelled_and_timed_out_runs_are_failed_events_with_a_refinement(
    reason: str, policy_events: set[str], outcome: str
) -> None:
    event = _event("dev.tekton.event.pipelinerun.failed.v1", {"pipelineRun": _run(reason)})
    assert event.policy_events == policy_events
    assert event.outcome == outcome


@pytest.mark.parametrize(
    "event_type",
    [
        "com.example.other",
        "dev.tekton.event.taskrun.exploded.v1",
        "dev.tekton.event.taskrun.failed.v2",
        "dev.tekton.event.customrun.queued.v1",
        "dev.tekton.event.stepaction.started.v1",
        "",
    ],
)
def test_types_we_do_not_handle_are_unsupported_not_malformed(event_type: str) -> None:
    with pytest.raises(UnsupportedEvent, match="unsupported event type"):
        _event(event_type, {"taskRun": _run()})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (None, "event has no data"),
        (b"", "event has no data"),
        (b"{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ({"pipelineRun": _run()}, "data must hold 'taskRun'; found pipelineRun"),
        ({"taskRun": "text"}, "data must hold 'taskRun'"),
        ({"taskRun": {"metadata": []}}, "taskRun.metadata must be an object"),
        (
            {"taskRun": {"metadata": {"name": "x", "namespace": "ci", "labels": ["a"]}}},
            "taskRun.metadata.labels must be an object",
        ),
        (
            {
                "taskRun": {
                    "metadata": {"name": "x", "namespace": "ci"},
                    "status": {"startTime": "yesterday"},
                }
            },
            "taskRun.status.startTime is not an RFC 3339 time",
        ),
    ],
)
def test_malformed_tekton_events_say_what_is_wrong(data: object, message: str) -> None:
    with pytest.raises(EventError, match=message):
        _event("dev.tekton.event.taskrun.failed.v1", data)


def test_name_and_namespace_fall_back_to_the_source_when_the_object_lacks_them() -> None:
    event = parse_event(
        {
            "id": "1",
            "type": "dev.tekton.event.taskrun.started.v1",
            "source": "/apis///namespaces/team-a//build-1",
        },
        {"taskRun": {"metadata": {}, "status": {}}},
    )
    assert (event.namespace, event.name) == ("team-a", "build-1")


def test_an_event_without_any_way_to_name_the_run_is_malformed() -> None:
    with pytest.raises(EventError, match=r"metadata\.name is missing"):
        parse_event(
            {"id": "1", "type": "dev.tekton.event.taskrun.started.v1", "source": "tekton"},
            {"taskRun": {}},
        )


def test_runs_created_by_tekton_notifications_are_recognised_for_the_loop_guard() -> None:
    ours = _event(
        "dev.tekton.event.taskrun.failed.v1",
        {"taskRun": _run(labels={"app.kubernetes.io/managed-by": "tekton-notifications"})},
    )
    child_of_ours = _event(
        "dev.tekton.event.taskrun.failed.v1",
        {"taskRun": _run(labels={"notifications.tekton.dev/policy": "p"})},
    )
    theirs = _event(
        "dev.tekton.event.taskrun.failed.v1",
        {"taskRun": _run(labels={"app.kubernetes.io/managed-by": "tekton-pipelines"})},
    )
    assert ours.is_notification_run
    assert child_of_ours.is_notification_run
    assert not theirs.is_notification_run


def test_the_wire_form_round_trips_including_trace_context() -> None:
    cloudevent = load_cloudevent("08-pipelinerun-failed.json")
    cloudevent["traceparent"] = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    event = parse_event(cloudevent, cloudevent["data"])
    again = from_wire(json.loads(json.dumps(event.to_wire())))
    assert again == event
    assert again.extensions == {"traceparent": cloudevent["traceparent"]}
