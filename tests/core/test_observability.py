"""Trace context, structured logs and metrics: what an operator relies on to follow one
notification through the functions."""

from __future__ import annotations

import json
import logging

import pytest

from tekton_notifications import logs, metrics, tracing
from tekton_notifications.models import TemplateRef
from tekton_notifications.notifications import MATCHED, Notification
from tekton_notifications.stages.base import Response, handle
from tests.conftest import load_event

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_a_child_keeps_the_trace_and_flags_and_gets_a_new_parent_id() -> None:
    child = tracing.child_of(TRACEPARENT)
    assert tracing.is_valid(child)
    assert tracing.trace_id(child) == "0af7651916cd43dd8448eb211c80319c"
    assert child.endswith("-01")
    assert child.split("-")[2] != "b7ad6b7169203331"


@pytest.mark.parametrize(
    "parent",
    [
        None,
        "",
        "garbage",
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
        "01-0af7-b7ad-01",
    ],
    ids=["absent", "empty", "garbage", "zero trace", "zero span", "wrong shape"],
)
def test_an_absent_or_invalid_parent_starts_a_new_trace(parent: str | None) -> None:
    started = tracing.child_of(parent)
    assert tracing.is_valid(started)
    assert tracing.trace_id(started) != tracing.trace_id(parent)


def test_each_hop_of_a_notification_continues_the_trace() -> None:
    event = load_event("08-pipelinerun-failed.json")
    traced = Notification(
        key="k" * 64,
        policy_name="p",
        policy_namespace="ci",
        template_ref=TemplateRef("t"),
        event=event.__class__(**{**event.__dict__, "extensions": {"traceparent": TRACEPARENT}}),
    )
    hop = traced.next_hop()
    outgoing = hop.to_event(MATCHED)
    assert tracing.trace_id(outgoing.attributes["traceparent"]) == tracing.trace_id(TRACEPARENT)
    assert outgoing.attributes["traceparent"] != TRACEPARENT


def test_json_logs_carry_the_notifications_identity_at_the_top_level() -> None:
    event = load_event("08-pipelinerun-failed.json")
    record = logging.LogRecord(
        "tekton_notifications.stages", logging.INFO, __file__, 1, "launched %s", ("x",), None
    )
    record.notification = logs.fields(event, policy="p", template="t", key="abc")
    line = json.loads(logs.JsonFormatter().format(record))
    assert line["message"] == "launched x"
    assert line["level"] == "info"
    assert {
        k: line[k]
        for k in (
            "event_id",
            "run_kind",
            "run",
            "namespace",
            "policy",
            "template",
            "notification_key",
        )
    } == {
        "event_id": event.id,
        "run_kind": "PipelineRun",
        "run": "storefront-ci-run-p7v2k",
        "namespace": "ci",
        "policy": "p",
        "template": "t",
        "notification_key": "abc",
    }


class Exploding:
    name = "exploding"

    def respond(self, attributes: object, data: object) -> Response:
        raise RuntimeError("a bug")

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def ready(self) -> tuple[bool, str]:
        return True, "ok"


def test_every_event_is_timed_and_counted_and_a_bug_is_a_500_not_a_crash(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from prometheus_client import generate_latest

    response = handle(Exploding(), {"type": "t.x", "id": "1"}, None)
    assert response.status == 500
    assert "a bug" not in response.message  # the traceback goes to the log, not the wire
    assert "a bug" in caplog.text
    text = generate_latest(metrics.REGISTRY).decode()
    assert (
        'tekton_notifications_events_received_total{code="500",stage="exploding",type="t.x"} 1.0'
    ) in text
    assert 'tekton_notifications_handle_seconds_count{stage="exploding"} 1.0' in text
