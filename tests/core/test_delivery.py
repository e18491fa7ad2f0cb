"""Delivery tracking, decided in-process: what a finished notification run says, what follows.

The runs are the ones the renderer builds (taskruns.build_run) for tests/data/delivery's
templates; the finish events are Tekton's shape (tests/e2e/tekton_finish.py). The served
function and the chain are in tests/e2e/test_delivery_tracking.py and the soak.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from tekton_notifications import (
    claims,
    delivery,
    deliverystatus,
    metrics,
    notifications,
    taskruns,
    vocabulary,
)
from tekton_notifications.events import RunEvent, parse_event
from tekton_notifications.kube import ApiError
from tekton_notifications.models import (
    Policy,
    SpecError,
    Template,
    TemplateRef,
    parse_policy,
    parse_template,
)
from tekton_notifications.notifications import Notification, OutgoingEvent, parse_notification
from tekton_notifications.stages.delivery_tracker import DeliveryTracker
from tekton_notifications.stages.status_recorder import StatusRecorder
from tests.conftest import load_cloudevent, load_event
from tests.e2e.tekton_finish import finish_event

DATA = Path(__file__).resolve().parents[1] / "data" / "delivery" / "policies-and-templates.yaml"
OBJECTS = [o for o in yaml.safe_load_all(DATA.read_text()) if o]
TEMPLATES = {
    o["metadata"]["name"]: parse_template(o) for o in OBJECTS if o["kind"] == "NotificationTemplate"
}
POLICIES = {
    o["metadata"]["name"]: parse_policy(o) for o in OBJECTS if o["kind"] == "NotificationPolicy"
}
SOURCE = load_event("08-pipelinerun-failed.json")
FINISHED = datetime(2026, 10, 14, 13, 45, tzinfo=UTC)


def notification_run(
    template: str = "slack-retrying", *, attempt: int = 1, fallback_of: str | None = None
) -> dict[str, Any]:
    """A run of storefront-failures for SOURCE, as the API has it (with a uid)."""
    run = taskruns.build_run(
        event=SOURCE,
        template=TEMPLATES[template],
        params={"message": "m"},
        policy_namespace="ci",
        policy="storefront-failures",
        attempt=attempt,
        fallback_of=fallback_of,
    )
    run["metadata"]["uid"] = f"uid-{run['metadata']['name']}"
    return run


def finished(run: dict[str, Any], **how: Any) -> RunEvent:
    cloudevent = finish_event(run, finished=FINISHED, **how)
    return parse_event(cloudevent, cloudevent["data"])


# --- outcome of a finished run ----------------------------------------------------------


@pytest.mark.parametrize(
    ("how", "expected"),
    [
        pytest.param({"succeeded": True}, ("delivered", "", ""), id="successful"),
        pytest.param(
            {"succeeded": False},
            ("failed", "post", "curl: (22) The requested URL returned error: 404"),
            id="curl-404",
        ),
        pytest.param(
            {"succeeded": False, "reason": "TaskRunTimeout", "step": "send", "message": ""},
            ("timedOut", "send", ""),
            id="timed-out",
        ),
    ],
)
def test_outcome_names_the_failing_step_and_tektons_message(
    how: dict[str, Any], expected: tuple[str, str, str]
) -> None:
    outcome = delivery.outcome_of(finished(notification_run(), **how))
    assert (outcome.outcome, outcome.step) == expected[:2]
    assert expected[2] in outcome.message
    assert outcome.finished == FINISHED


def test_a_run_is_read_back_into_the_notification_it_sends() -> None:
    run = notification_run("email-fallback", fallback_of="slack-retrying")
    found = delivery.tracked({**run, "kind": "TaskRun"})
    assert isinstance(found, delivery.Tracked)
    assert (found.policy, found.template, found.fallback_of, found.attempt) == (
        "storefront-failures",
        "email-fallback",
        "slack-retrying",
        1,
    )
    assert (found.source_kind, found.source_name, found.source_uid) == (
        SOURCE.kind,
        SOURCE.name,
        SOURCE.uid,
    )


@pytest.mark.parametrize(
    ("remove", "why"),
    [
        pytest.param(("labels", "app.kubernetes.io/managed-by"), "not labelled", id="not-ours"),
        pytest.param(
            ("annotations", taskruns.POLICY_NAMESPACE_ANNOTATION),
            "policy namespace",
            id="no-policy-namespace",
        ),
        pytest.param(("labels", taskruns.TEMPLATE_LABEL), "template", id="no-template"),
    ],
)
def test_a_run_without_what_the_launcher_sets_is_not_tracked(
    remove: tuple[str, str], why: str
) -> None:
    run = notification_run()
    del run["metadata"][remove[0]][remove[1]]
    found = delivery.tracked(run)
    assert isinstance(found, str) and why in found


# --- what comes next --------------------------------------------------------------------


def template(retries: int = 0, delay: float = 0.0) -> Template:
    return Template(
        name="slack-retrying",
        namespace="ci",
        target="Task",
        ref={"name": "t"},
        params={},
        retries=retries,
        retry_delay=delay,
    )


WITH_FALLBACK = POLICIES["storefront-failures"]
FAILED = delivery.Outcome("failed", "Failed", "post", "404", FINISHED)
DELIVERED = delivery.Outcome("delivered", "Succeeded", "", "", FINISHED)


@pytest.mark.parametrize(
    ("outcome", "attempt", "fallback_of", "tmpl", "policy", "expected"),
    [
        pytest.param(
            DELIVERED, 1, None, template(2), WITH_FALLBACK, delivery.Next("none"), id="delivered"
        ),
        pytest.param(
            FAILED,
            1,
            None,
            template(2),
            WITH_FALLBACK,
            delivery.Next("retry", 2),
            id="retry-at-once",
        ),
        pytest.param(
            FAILED,
            2,
            None,
            template(2, 10.0),
            WITH_FALLBACK,
            delivery.Next("retry", 3, FINISHED + timedelta(seconds=20)),
            id="retry-delay-doubles",
        ),
        pytest.param(
            FAILED,
            3,
            None,
            template(2),
            WITH_FALLBACK,
            delivery.Next("fallback", template="email-fallback"),
            id="retries-spent-fallback",
        ),
        pytest.param(
            FAILED,
            1,
            "slack-retrying",
            None,
            WITH_FALLBACK,
            delivery.Next("none"),
            id="fallback-has-none",
        ),
        pytest.param(FAILED, 1, None, template(0), None, delivery.Next("none"), id="policy-gone"),
    ],
)
def test_next_step(
    outcome: delivery.Outcome,
    attempt: int,
    fallback_of: str | None,
    tmpl: Template | None,
    policy: Policy | None,
    expected: delivery.Next,
) -> None:
    run = delivery.tracked(notification_run(attempt=attempt))
    assert isinstance(run, delivery.Tracked)
    run = delivery.Tracked(**{**run.__dict__, "fallback_of": fallback_of})
    assert delivery.next_step(outcome, run, tmpl, policy) == expected


def test_attempts_and_fallbacks_have_their_own_deterministic_names_and_labels() -> None:
    names = [notification_run(attempt=n)["metadata"]["name"] for n in (1, 2, 3)]
    assert names[1:] == [f"{names[0]}-r2", f"{names[0]}-r3"]
    assert all(len(name) <= 63 for name in names)
    assert notification_run(attempt=2)["metadata"]["labels"][taskruns.ATTEMPT_LABEL] == "2"
    fallback = notification_run("email-fallback", fallback_of="slack-retrying")["metadata"]
    primary = taskruns.build_run(
        event=SOURCE,
        template=TEMPLATES["email-fallback"],
        params={},
        policy_namespace="ci",
        policy="storefront-failures",
    )["metadata"]
    assert fallback["name"] != primary["name"], "a fallback never shares a primary's name"


# --- spec -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("obj", "path"),
    [
        pytest.param(
            {"kind": "NotificationTemplate", "spec": {"taskRef": {"name": "t"}, "retries": 6}},
            "spec.retries",
            id="six-retries",
        ),
        pytest.param(
            {
                "kind": "NotificationTemplate",
                "spec": {"taskRef": {"name": "t"}, "retries": 1, "retryDelay": "2h"},
            },
            "spec.retryDelay",
            id="delay-over-an-hour",
        ),
        pytest.param(
            {
                "kind": "NotificationPolicy",
                "spec": {
                    "events": ["failed"],
                    "templateRefs": [{"name": "a", "fallback": {"name": "a"}}],
                },
            },
            "spec.templateRefs[0].fallback.name",
            id="own-fallback",
        ),
    ],
)
def test_bad_retries_and_fallbacks_are_refused_at_load(obj: dict[str, Any], path: str) -> None:
    obj = {**obj, "metadata": {"name": "x", "namespace": "ci"}}
    parse = parse_template if obj["kind"] == "NotificationTemplate" else parse_policy
    with pytest.raises(SpecError) as raised:
        parse(obj)
    assert raised.value.path == path


def test_a_fallback_claim_holds_only_for_the_fallback_its_policy_names() -> None:
    def claim(template: str, fallback_of: str) -> str | None:
        notification = Notification(
            key="",
            event=SOURCE,
            policy_name="storefront-failures",
            policy_namespace="ci",
            template_ref=TemplateRef(template),
            fallback_of=fallback_of,
        )
        return claims.refusal(notification, WITH_FALLBACK)

    assert claim("email-fallback", "slack-retrying") is None
    assert "no fallback 'slack-once'" in str(claim("slack-once", "slack-retrying"))


# --- status -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "outcomes", "streak", "delivering"),
    [
        pytest.param(0, "FF", 2, "True", id="two-failures-still-delivering"),
        pytest.param(2, "F", 3, "False", id="third-in-a-row"),
        pytest.param(5, "FD", 0, "True", id="delivered-resets"),
        pytest.param(0, "DFFF", 3, "False", id="after-a-delivery"),
    ],
)
def test_delivering_turns_false_after_consecutive_failures(
    before: int, outcomes: str, streak: int, delivering: str
) -> None:
    tally = deliverystatus.Tally()
    for outcome in outcomes:
        if outcome == "D":
            tally.add_delivered()
        else:
            tally.add_failed({"time": "t", "run": "ci/r", "message": "failed: 404"})
    status = {"consecutiveDeliveryFailures": before}
    fields = deliverystatus.fields(status, tally, template=True, generation=1, timestamp="t")
    assert fields.get("consecutiveDeliveryFailures", before) == streak
    (condition,) = fields["conditions"]
    assert condition["status"] == delivering
    assert fields.get("deliveredCount", 0) == outcomes.count("D")


# --- the stage, in-process ----------------------------------------------------------------


class Runs:
    """The runs the API has, by (kind, namespace, name): the tracker's reads."""

    def __init__(self, *runs: dict[str, Any]) -> None:
        self.runs = {
            (r["kind"], r["metadata"]["namespace"], r["metadata"]["name"]): r for r in runs
        }

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        try:
            return self.runs[(kind, namespace, name)]
        except KeyError:
            raise ApiError(
                verb="get", what=name, status=404, reason="NotFound", message="", retryable=False
            ) from None


def tracker(
    *runs: dict[str, Any], sent: list[OutgoingEvent] | None = None
) -> tuple[DeliveryTracker, list[list[str]]]:
    published: list[list[str]] = []

    def publish(events: Sequence[OutgoingEvent]) -> None:
        published.append([e.type for e in events])
        (sent if sent is not None else []).extend(events)

    stage = DeliveryTracker(
        get_run=Runs(*runs).get,
        publish=publish,
        clock=lambda: FINISHED.timestamp() + 60,
    )
    for obj in OBJECTS:
        if obj["kind"] == "NotificationTemplate":
            stage.templates.upsert(obj)
        else:
            stage.policies.upsert(obj)
    return stage, published


SOURCE_RUN = {
    **load_cloudevent("08-pipelinerun-failed.json")["data"]["pipelineRun"],
    "kind": "PipelineRun",
}


def respond(stage: DeliveryTracker, run: dict[str, Any], **how: Any) -> tuple[int, str, str]:
    cloudevent = finish_event(run, finished=FINISHED, **how)
    attributes = {k: str(v) for k, v in cloudevent.items() if k != "data"}
    response = stage.respond(attributes, cloudevent["data"])
    return response.status, response.event.type if response.event else "", response.message


@pytest.mark.parametrize(
    ("run", "how", "expected", "published"),
    [
        pytest.param(
            notification_run(),
            {"succeeded": True},
            (200, notifications.DELIVERED),
            [],
            id="delivered",
        ),
        pytest.param(
            notification_run(),
            {"succeeded": False},
            (202, ""),
            [[notifications.DELIVERY_FAILED, notifications.MATCHED]],
            id="failed-retried",
        ),
        pytest.param(
            notification_run(attempt=3),
            {"succeeded": False},
            (202, ""),
            [[notifications.DELIVERY_FAILED, notifications.MATCHED]],
            id="spent-falls-back",
        ),
        pytest.param(
            notification_run("email-fallback", fallback_of="slack-retrying"),
            {"succeeded": False},
            (200, notifications.DELIVERY_FAILED),
            [],
            id="failed-fallback-ends",
        ),
    ],
)
def test_the_tracker_replies_with_the_outcome_and_publishes_the_next_step(
    run: dict[str, Any], how: dict[str, Any], expected: tuple[int, str], published: list[list[str]]
) -> None:
    run = {**run, "kind": "TaskRun"}
    stage, sent = tracker(run, SOURCE_RUN)
    assert respond(stage, run, **how)[:2] == expected
    assert sent == published


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        pytest.param("not-ours", (202, "ignored: not a notification run"), id="not-ours"),
        pytest.param("forged-uid", (400, "has uid"), id="forged-uid"),
        pytest.param("source-gone", (202, "no longer exists"), id="source-gone"),
        pytest.param("run-gone", (202, "no longer exists"), id="run-gone"),
        pytest.param("malformed", (202, "refused by the policy filter"), id="malformed"),
    ],
)
def test_the_tracker_refuses_or_ignores_what_it_cannot_track(
    change: str, expected: tuple[int, str]
) -> None:
    run = {**notification_run(), "kind": "TaskRun"}
    stored = [run, SOURCE_RUN]
    event_run = run
    if change == "not-ours":
        event_run = {**run, "metadata": {**run["metadata"], "labels": {}}}
    if change == "forged-uid":
        event_run = {**run, "metadata": {**run["metadata"], "uid": "forged"}}
    if change == "source-gone":
        stored = [run]
    if change == "run-gone":
        stored = [SOURCE_RUN]
    if change == "malformed":
        event_run = {**run, "metadata": {**run["metadata"], "name": 5}}
    stage, sent = tracker(*stored)
    status, _, message = respond(stage, event_run, succeeded=False)
    assert (status, expected[1] in message) == (expected[0], True), message
    assert sent == []


def test_a_run_is_counted_once_however_its_outcome_and_launch_are_ordered() -> None:
    """The retry's failure reaches the recorder before its ``launched`` and both come twice:
    one failure counted on the policy and the template, one metric, and no new match."""
    run = {**notification_run(attempt=2), "kind": "TaskRun"}
    sent: list[OutgoingEvent] = []
    stage, _ = tracker(run, SOURCE_RUN, sent=sent)
    respond(stage, run, succeeded=False)
    failed, _matched_fallback = sent
    assert failed.type == notifications.DELIVERY_FAILED
    launched = parse_notification(failed.data).to_event(
        notifications.LAUNCHED,
        launched={"kind": "TaskRun", "name": run["metadata"]["name"], "namespace": "ci"},
    )
    written: dict[str, dict[str, Any]] = {}

    def write_event(body: Any) -> bool:  # as the API: a second create of a name is a 409
        return written.setdefault(body["metadata"]["name"], body) is body

    recorder = StatusRecorder(write_event=write_event, write_status=lambda *_: None)
    for obj in OBJECTS:
        kind = obj["kind"]
        recorder.upsert(
            vocabulary.TEMPLATE_PLURAL
            if kind == "NotificationTemplate"
            else vocabulary.POLICY_PLURAL,
            {**obj, "metadata": {**obj["metadata"], "generation": 1}},
        )
    labels = ("ci", "storefront-failures", "slack-retrying", "failed")
    before = (
        metrics.REGISTRY.get_sample_value(
            "tekton_notifications_deliveries_total",
            dict(zip(("namespace", "policy", "template", "outcome"), labels, strict=True)),
        )
        or 0
    )
    for event in (failed, failed, launched, launched):
        response = recorder.respond(event.attributes, event.data)
        assert response.status == 202, response.message
    recorder.flush()
    policy = recorder.policy_objects[("ci", "storefront-failures")]["status"]
    template = recorder.template_objects[("ci", "slack-retrying")]["status"]
    assert (policy["deliveryFailedCount"], policy.get("matchCount", 0)) == (1, 0)
    assert (template["deliveryFailedCount"], template["consecutiveDeliveryFailures"]) == (1, 1)
    assert "step post" in policy["lastDeliveryFailure"]["message"]
    after = metrics.REGISTRY.get_sample_value(
        "tekton_notifications_deliveries_total",
        dict(zip(("namespace", "policy", "template", "outcome"), labels, strict=True)),
    )
    assert after == before + 1
    reasons = sorted(body["reason"] for body in written.values())
    assert reasons == ["NotificationDeliveryFailed", "NotificationSent", "NotificationSent"]


ORIGINS = [
    pytest.param(
        {
            "subscription": {
                "recipients": ["C0SHOP"],
                "event": "failed",
                "template": "slack-retrying",
                "source": "pipeline",
                "annotation": "notifications.tekton.dev/subscribe.failed.slack-retrying",
            }
        },
        id="made-by-a-subscription",
    ),
    pytest.param(
        {"scheduled": {"id": "reminder/storefront/1", "reminder": {"count": 1, "max": 3}}},
        id="made-by-the-scheduler",
    ),
]


@pytest.mark.parametrize("origin", ORIGINS)
def test_a_run_a_subscription_or_the_scheduler_made_is_tracked_and_retried_as_itself(
    origin: dict[str, Any],
) -> None:
    """Their key holds what made them (recipients, the due item), so the run keeps it
    (``taskruns.ORIGIN_ANNOTATION``): without it the tracker named another run and refused."""
    made = Notification(
        key="",
        event=SOURCE,
        policy_name="storefront-failures",
        policy_namespace="ci",
        template_ref=TemplateRef("slack-retrying", {}),
        subscription=origin.get("subscription"),
        scheduled=origin.get("scheduled"),
    )
    run = taskruns.build_run(
        event=SOURCE,
        template=TEMPLATES["slack-retrying"],
        params={"message": "m"},
        policy_namespace="ci",
        policy="storefront-failures",
        key=made.expected_key(),
        origin=made.origin,
    )
    run = {**run, "kind": "TaskRun", "metadata": {**run["metadata"], "uid": "uid-origin"}}
    tracked = delivery.tracked(run)
    assert not isinstance(tracked, str)
    assert tracked.origin == origin

    sent: list[OutgoingEvent] = []
    stage, published = tracker(run, SOURCE_RUN, sent=sent)
    assert respond(stage, run, succeeded=False)[:2] == (202, "")
    assert published == [[notifications.DELIVERY_FAILED, notifications.MATCHED]]
    retry = parse_notification(sent[1].data)
    assert (retry.attempt, retry.subscription, retry.scheduled, retry.key) == (
        2,
        origin.get("subscription"),
        origin.get("scheduled"),
        made.expected_key(),
    )
