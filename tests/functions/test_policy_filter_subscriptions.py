"""The policy filter with subscription annotations, in process (the stage's logic; the served
chain is tests/e2e/test_chain.py): allowed ones become matched events that carry the
subscription, refused ones an Event on the run, a Namespace's defaults come from its watch,
and storm control decides once per policy for its template refs and subscriptions."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from tekton_notifications import notifications, subscribing
from tekton_notifications.matching import PolicyIndex
from tekton_notifications.notifications import OutgoingEvent
from tekton_notifications.stages.policy_filter import PolicyFilter
from tests.conftest import load_cloudevent

SUB = "notifications.tekton.dev/subscribe."
FAILED, SUCCEEDED = "08-pipelinerun-failed.json", "09-pipelinerun-successful.json"


class Filter:
    """A PolicyFilter fed like its informers feed it, with what it sends and records kept."""

    def __init__(self, *policies: dict[str, Any], definition: Mapping[str, str] | None = None):
        self.sent: list[OutgoingEvent] = []
        self.recorded: list[Mapping[str, Any]] = []
        self.namespaces = subscribing.NamespaceDefaults()
        self.stage = PolicyFilter(
            PolicyIndex(),
            publish=self.sent.extend,
            namespaces=self.namespaces,
            definitions=lambda event: definition,
            record=self.recorded.append,
        )
        self.stage.reset(list(policies))

    def post(self, cloudevent: dict[str, Any]) -> list[dict[str, Any]]:
        """The matched events' payloads for one Tekton event (replied or published)."""
        before = len(self.sent)
        attributes = {k: str(v) for k, v in cloudevent.items() if k != "data"}
        response = self.stage.respond(attributes, cloudevent["data"])
        assert response.status < 300, response.message
        out: Sequence[OutgoingEvent] = self.sent[before:]
        if response.event is not None:
            out = [response.event]
        return [dict(e.data) for e in out if e.type == notifications.MATCHED]


def policy(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "teams", "namespace": "ci", "generation": 1}, "spec": spec}


ALLOW = {"subscriptions": {"templates": ["slack-*"], "events": ["failed", "fixed"]}}


def annotated(fixture: str, annotations: dict[str, str], serial: int = 1) -> dict[str, Any]:
    cloudevent = copy.deepcopy(load_cloudevent(fixture))
    (run,) = cloudevent["data"].values()
    run["metadata"]["annotations"] = annotations
    run["metadata"]["uid"] = f"uid-{serial}"
    run["metadata"]["name"] = f"{run['metadata']['name']}-{serial}"
    run["metadata"].setdefault("labels", {})["tekton.dev/pipeline"] = "storefront-ci"
    cloudevent["source"] = f"/apis///namespaces/ci//{run['metadata']['name']}"
    return cloudevent


@pytest.mark.parametrize(
    ("annotations", "definition", "source", "refused"),
    [
        pytest.param({f"{SUB}failed.slack-team": "#team"}, {}, "run", 0, id="run"),
        pytest.param(
            {f"{SUB}failed.slack-team": "#team"},
            {f"{SUB}failed.slack-team": "#team"},
            "pipeline",
            0,
            id="copied-from-its-pipeline",
        ),
        pytest.param(
            {f"{SUB}failed.slack-team": "#team", f"{SUB}failed.pagerduty": "oncall"},
            {},
            "run",
            1,
            id="one-allowed-one-refused",
        ),
    ],
)
def test_an_allowed_subscription_is_matched_with_its_recipients(
    annotations: dict[str, str], definition: dict[str, str], source: str, refused: int
) -> None:
    stage = Filter(policy(**ALLOW), definition=definition)
    (matched,) = stage.post(annotated(FAILED, annotations))
    assert matched["templateRef"] == {"name": "slack-team", "params": {}}
    assert matched["subscription"]["recipients"] == ["#team"]
    assert matched["subscription"]["source"] == source
    assert len(stage.recorded) == refused
    for event in stage.recorded:
        assert event["reason"] == "NotificationSubscriptionRefused"
        assert event["involvedObject"]["kind"] == "PipelineRun"


def test_namespace_defaults_follow_the_namespace_watch() -> None:
    stage = Filter(policy(**ALLOW))
    namespace = {
        "metadata": {"name": "ci", "annotations": {f"{SUB}failed.slack-ops": "#ops; #all"}}
    }
    stage.namespaces.reset([namespace])
    (matched,) = stage.post(annotated(FAILED, {}))
    assert matched["subscription"]["source"] == "namespace"
    assert matched["subscription"]["recipients"] == ["#ops", "#all"]

    opted_out = annotated(FAILED, {"notifications.tekton.dev/unsubscribe": "true"}, serial=2)
    assert stage.post(opted_out) == []

    stage.namespaces.delete(namespace)
    assert stage.post(annotated(FAILED, {}, serial=3)) == []


def test_one_storm_decision_serves_template_refs_and_subscriptions_each_for_its_events() -> None:
    stage = Filter(policy(events=["failed"], templateRefs=[{"name": "slack-webhook"}], **ALLOW))
    fixed = {f"{SUB}fixed.slack-team": "#team"}
    failing = stage.post(annotated(FAILED, fixed, serial=1))
    assert [m["templateRef"]["name"] for m in failing] == ["slack-webhook"]

    back = stage.post(annotated(SUCCEEDED, fixed, serial=2))
    (matched,) = back
    assert matched["templateRef"]["name"] == "slack-team"
    assert matched["transition"]["name"] == "fixed"
    assert matched["subscription"]["event"] == "fixed"
