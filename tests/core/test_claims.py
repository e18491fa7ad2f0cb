"""A notification's claim about its policy is checked against the policies that exist.

Anyone who can post to the broker can post a ``matched`` or ``rendered`` event; the renderer
and the launcher only act on one that names a real policy, a template that policy uses, the
policy's own home namespace, and a run the policy can see.
"""

from __future__ import annotations

from typing import Any

import pytest

from tekton_notifications import taskruns
from tekton_notifications.claims import PolicyDirectory, refusal
from tekton_notifications.events import RunEvent, parse_event
from tekton_notifications.models import CLUSTER_POLICY_KIND, POLICY_KIND, TemplateRef
from tekton_notifications.notifications import Notification
from tests.conftest import policy_object


def run_in(namespace: str) -> RunEvent:
    return parse_event(
        {"id": "e", "source": "s", "type": "dev.tekton.event.pipelinerun.failed.v1"},
        {"pipelineRun": {"metadata": {"name": "build", "namespace": namespace, "uid": "u"}}},
    )


def claim(
    policy: str, namespace: str, template: str, *, run: str = "ci", kind: str = POLICY_KIND
) -> Notification:
    event = run_in(run)
    return Notification(
        key=taskruns.notification_key(
            event, policy_namespace=namespace, policy=policy, template=template, policy_kind=kind
        ),
        event=event,
        policy_name=policy,
        policy_namespace=namespace,
        template_ref=TemplateRef(template),
        policy_kind=kind,
    )


def cluster_policy(**spec: Any) -> dict[str, Any]:
    return {
        "kind": CLUSTER_POLICY_KIND,
        "metadata": {"name": "platform"},
        "spec": {
            "events": ["failed"],
            "templateNamespace": "platform",
            "templateRefs": [{"name": "platform-slack"}],
            **spec,
        },
    }


@pytest.fixture
def directory() -> PolicyDirectory:
    policies = PolicyDirectory()
    policies.reset([policy_object("notify", "ci", templates=["slack"])])
    policies.reset([cluster_policy(selector={"namespaces": ["team-*"]})], cluster=True)
    return policies


def check(directory: PolicyDirectory, notification: Notification) -> str | None:
    return refusal(notification, directory.claimed(notification))


def test_a_genuine_claim_passes(directory: PolicyDirectory) -> None:
    assert check(directory, claim("notify", "ci", "slack")) is None
    cluster = claim(
        "platform", "platform", "platform-slack", run="team-a", kind=CLUSTER_POLICY_KIND
    )
    assert check(directory, cluster) is None


@pytest.mark.parametrize(
    ("notification", "refused"),
    [
        (claim("nope", "ci", "slack"), "no valid NotificationPolicy 'nope' in ci"),
        (claim("notify", "ci", "email"), "NotificationPolicy 'notify' does not use template"),
        (
            claim("no-such", "team-b", "x", run="team-b", kind=CLUSTER_POLICY_KIND),
            "no valid ClusterNotificationPolicy 'no-such'",
        ),
        (
            claim("platform", "team-b", "platform-slack", run="team-b", kind=CLUSTER_POLICY_KIND),
            "keeps its templates and runs in 'platform', not 'team-b'",
        ),
        (
            claim("platform", "platform", "platform-slack", run="prod", kind=CLUSTER_POLICY_KIND),
            "does not see runs in 'prod' (it selects team-*)",
        ),
    ],
    ids=[
        "no such policy",
        "template the policy does not use",
        "no such cluster policy",
        "cluster policy, another home namespace",
        "cluster policy, a namespace it does not select",
    ],
)
def test_a_forged_claim_is_refused_with_the_reason(
    directory: PolicyDirectory, notification: Notification, refused: str
) -> None:
    reason = check(directory, notification)
    assert reason is not None and refused in reason


def test_a_deleted_or_invalid_policy_stops_backing_claims(directory: PolicyDirectory) -> None:
    directory.delete(policy_object("notify", "ci"))
    assert check(directory, claim("notify", "ci", "slack")) is not None
    directory.upsert(policy_object("notify", "ci", templates=["slack"]))
    assert check(directory, claim("notify", "ci", "slack")) is None
    directory.upsert({**policy_object("notify", "ci"), "spec": {"events": ["nope"]}})
    assert check(directory, claim("notify", "ci", "slack")) is not None
