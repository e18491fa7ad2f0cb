"""Who may subscribe to what (issue 13): a policy's spec.subscriptions allows a subscription
annotation's template and event, its selector and when still apply, anything no policy
allows is refused with a reason; the notification's key, claim and template context."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tekton_notifications import claims, matching, models, notifications, rendering, subscribing
from tekton_notifications.models import SpecError, TemplateRef
from tekton_notifications.notifications import Notification
from tekton_notifications.subscriptions import Subscription, find
from tests.core.test_subscriptions import SUB, run


def policy(
    name: str = "teams",
    namespace: str = "ci",
    *,
    templates: list[str] | None = None,
    events: list[str] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    return {
        "kind": spec.pop("kind", "NotificationPolicy"),
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "subscriptions": {
                "templates": templates or ["slack-*"],
                "events": events or ["failed"],
            },
            **spec,
        },
    }


def compiled(*objects: dict[str, Any]) -> list[matching.CompiledPolicy]:
    return [matching.compile_policy(models.parse_policy(obj)) for obj in objects]


@pytest.mark.parametrize(
    ("annotation", "policies", "status", "message"),
    [
        pytest.param(
            f"{SUB}failed.slack-team",
            [policy()],
            "allowed",
            "NotificationPolicy ci/teams",
            id="allowed-by-a-glob",
        ),
        pytest.param(
            f"{SUB}failed.pagerduty",
            [policy()],
            "refused",
            "no policy allows template 'pagerduty'",
            id="template-not-allowed",
        ),
        pytest.param(
            f"{SUB}failed.slack-team",
            [policy(events=["succeeded"])],
            "refused",
            "no policy allows event 'failed'",
            id="event-not-allowed",
        ),
        pytest.param(
            f"{SUB}failed.slack-team",
            [],
            "refused",
            "enables subscriptions",
            id="no-policy-enables-subscriptions",
        ),
        pytest.param(
            f"{SUB}failed.slack-team",
            [policy(namespace="other")],
            "refused",
            "enables subscriptions",
            id="a-policy-of-another-namespace-does-not-count",
        ),
        pytest.param(
            f"{SUB}failed.slack-team",
            [policy(selector={"kinds": ["TaskRun"]})],
            "not selected",
            "kind wanted TaskRun got PipelineRun",
            id="its-selector-still-applies",
        ),
        pytest.param(
            f"{SUB}failed.slack-team",
            [policy(when='event.name == "other"')],
            "not selected",
            "when wanted true got false",
            id="its-when-still-applies",
        ),
        pytest.param(
            f"{SUB}succeeded.slack-team",
            [policy()],
            "other event",
            "not failed",
            id="another-event-is-not-refused",
        ),
        pytest.param(
            f"{SUB}failed.slack-team",
            [
                policy("platform", "", kind="ClusterNotificationPolicy", templateNamespace="ops"),
                policy("zz-team"),
            ],
            "allowed",
            "NotificationPolicy ci/zz-team",
            id="a-namespaced-policy-before-a-cluster-one",
        ),
        pytest.param(
            f"{SUB}failed.slack-team",
            [policy("platform", "", kind="ClusterNotificationPolicy", templateNamespace="ops")],
            "allowed",
            "ClusterNotificationPolicy platform",
            id="a-cluster-policy-covering-the-namespace",
        ),
    ],
)
def test_a_subscription_is_allowed_refused_or_not_selected(
    annotation: str, policies: list[dict[str, Any]], status: str, message: str
) -> None:
    event = run(annotations={annotation: "#team"})
    (resolution,) = subscribing.resolve(find(event), event, compiled(*policies))
    assert resolution.status == status
    assert message in resolution.message
    assert (resolution.match is not None) == (status == "allowed")


def test_a_refused_subscription_is_a_warning_event_on_its_run_named_once_per_event() -> None:
    event = run(annotations={f"{SUB}failed.pagerduty": "oncall"})
    (resolution,) = subscribing.resolve(find(event), event, compiled(policy()))
    body = subscribing.refused_event(event, resolution, timestamp="2026-12-02T00:00:00Z")
    again = subscribing.refused_event(event, resolution, timestamp="2026-12-02T00:00:09Z")
    assert body["reason"] == "NotificationSubscriptionRefused"
    assert body["type"] == "Warning"
    assert body["involvedObject"]["kind"] == "PipelineRun"
    assert body["metadata"]["name"] == again["metadata"]["name"]  # 409 on a redelivery
    assert "pagerduty" in body["message"]


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        pytest.param(
            {"subscriptions": {"templates": ["slack"], "events": ["failed"]}},
            None,
            id="subscriptions-only",
        ),
        pytest.param(
            {
                "events": ["failed"],
                "templateRefs": [{"name": "slack"}],
                "subscriptions": {"templates": ["*"], "events": ["fixed"]},
            },
            None,
            id="both",
        ),
        pytest.param(
            {"events": ["failed"], "subscriptions": {"templates": ["x"], "events": ["failed"]}},
            "spec.templateRefs: must be a non-empty list: events and templateRefs go together",
            id="events-without-templaterefs",
        ),
        pytest.param(
            {"subscriptions": {"templates": ["x"], "events": ["failled"]}},
            "spec.subscriptions.events[0]: unknown event 'failled'",
            id="unknown-event",
        ),
        pytest.param(
            {"subscriptions": {"templates": [], "events": ["failed"]}},
            "spec.subscriptions.templates: must be a non-empty list",
            id="no-templates",
        ),
        pytest.param({}, "spec.events: must be a non-empty list", id="neither"),
    ],
)
def test_a_policy_may_have_subscriptions_and_no_templaterefs(
    spec: dict[str, Any], problem: str | None
) -> None:
    obj = {"metadata": {"name": "p", "namespace": "ci"}, "spec": spec}
    if problem is None:
        assert models.parse_policy(obj).subscriptions is not None
    else:
        with pytest.raises(SpecError, match=re.escape(problem)):
            models.parse_policy(obj)


def subscription(*recipients: str, event: str = "failed", source: str = "run") -> Subscription:
    key = f"{SUB}{event}.slack-team"
    return Subscription(key, event, "slack-team", recipients, source, "PipelineRun ci/build-1")  # type: ignore[arg-type]


def key(sub: Subscription | None) -> str:
    return notifications.notification_key(
        run(),
        policy_namespace="ci",
        policy="teams",
        template="slack-team",
        subscription=None if sub is None else sub.view(),
    )


@pytest.mark.parametrize(
    ("one", "other", "same"),
    [
        pytest.param(subscription("#a", "#b"), subscription("#b", "#a"), True, id="order"),
        pytest.param(
            subscription("#a", source="run"),
            subscription("#a", source="namespace"),
            True,
            id="source-does-not-count",
        ),
        pytest.param(subscription("#a"), subscription("#b"), False, id="other-recipients"),
        pytest.param(subscription("#a"), subscription("#a", event="timedOut"), False, id="event"),
        pytest.param(subscription(), None, False, id="not-the-policys-own-notification"),
    ],
)
def test_each_run_event_template_and_recipients_notify_once(
    one: Subscription, other: Subscription | None, same: bool
) -> None:
    assert (key(one) == key(other)) == same


def notification(sub: Subscription) -> Notification:
    return Notification(
        key=key(sub),
        event=run(),
        policy_name="teams",
        policy_namespace="ci",
        template_ref=TemplateRef("slack-team"),
        subscription=sub.view(),
    )


@pytest.mark.parametrize(
    ("obj", "refused"),
    [
        pytest.param(policy(), None, id="allowed"),
        pytest.param(policy(templates=["email"]), "allows no subscription", id="template"),
        pytest.param(policy(events=["succeeded"]), "allows no subscription", id="event"),
    ],
)
def test_later_stages_check_a_subscription_claim_against_the_policy(
    obj: dict[str, Any], refused: str | None
) -> None:
    found = claims.refusal(notification(subscription("#a")), models.parse_policy(obj))
    assert (found is None) if refused is None else (refused in (found or ""))


def test_a_notification_carries_its_subscription_through_the_payload() -> None:
    sent = notification(subscription("#a", "#b"))
    data = sent.to_event(notifications.MATCHED).data
    read = notifications.parse_notification(data)
    assert read.subscription == sent.subscription
    assert read.key == read.expected_key() == sent.key


@pytest.mark.parametrize(
    ("sub", "rendered"),
    [
        pytest.param(subscription("#a", "#b"), "#a,#b|run|failed", id="a-subscription"),
        pytest.param(None, "default||", id="a-policys-own-templateref"),
    ],
)
def test_templates_see_the_subscription(sub: Subscription | None, rendered: str) -> None:
    template = models.parse_template(
        {
            "metadata": {"name": "slack-team", "namespace": "ci"},
            "spec": {
                "taskRef": {"name": "t"},
                "params": {
                    "to": "{{ subscription.recipients | join(',') or 'default' }}"
                    "|{{ subscription.source }}|{{ subscription.event }}"
                },
            },
        }
    )
    params = rendering.compile_template(template).render(
        event=run(),
        policy={"name": "teams", "namespace": "ci"},
        subscription=None if sub is None else sub.view(),
    )
    assert params["to"] == rendered
