"""End to end: Tekton events in at the broker, TaskRuns out in the API, through the real
functions (as kn func serves them) and the router following the Triggers in knative/."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tekton_notifications import kube, subscribing
from tekton_notifications.devtools.chain import LocalChain
from tekton_notifications.devtools.serving import ROOT
from tests.conftest import EXAMPLES, event_files, load_cloudevent

pytestmark = pytest.mark.slow

#: What the example policies must do with each of tests/data/events: (policy, template) pairs.
EXPECTED: dict[str, set[tuple[str, str]]] = {
    "02-pipelinerun-started.json": {("triggers-started-github", "github-status")},
    "07-taskrun-failed.json": {("taskrun-failed-discord", "discord")},
    "08-pipelinerun-failed.json": {("pipelinerun-failed-slack", "slack-webhook")},
    # storefront-ci succeeds after 08's failure: the policy's `fixed` (see SENT_BEFORE).
    "09-pipelinerun-successful.json": {("pipelinerun-failed-slack", "slack-webhook")},
    "10-pipelinerun-cancelled.json": {
        ("pipelinerun-failed-slack", "slack-webhook"),
        ("pipelinerun-cancelled-slack", "slack-webhook"),
    },
    # The cancelled run's unit-tests TaskRun: "failed" covers cancelled.
    "11-taskrun-cancelled.json": {("taskrun-failed-discord", "discord")},
    "13-taskrun-timedout.json": {("run-timed-out-teams", "teams")},
    "14-pipelinerun-timedout.json": {
        ("pipelinerun-failed-slack", "slack-webhook"),
        ("run-timed-out-teams", "teams"),
    },
    "15-pipelinerun-failed-older-taskruns.json": {("pipelinerun-failed-slack", "slack-webhook")},
    "17-customrun-timedout.json": {("run-timed-out-teams", "teams")},
}
#: Events a case depends on, sent first (again, harmlessly, when the run order already did).
SENT_BEFORE = {"09-pipelinerun-successful.json": "08-pipelinerun-failed.json"}
MANIFESTS = (EXAMPLES / "policies", EXAMPLES / "templates")


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalChain]:
    with LocalChain(tmp_path_factory.mktemp("chain"), manifests=MANIFESTS, time_scale=0.05) as c:
        yield c


def runs_for(chain: LocalChain, cloudevent: dict[str, Any]) -> list[dict[str, Any]]:
    (run,) = cloudevent["data"].values()
    uid = run["metadata"]["uid"]
    return [
        r
        for r in chain.notification_runs()
        if r["metadata"]["labels"]["notifications.tekton.dev/source-uid"] == uid
        and r["metadata"]["labels"]["notifications.tekton.dev/event"] in _outcomes(cloudevent)
    ]


def _outcomes(cloudevent: dict[str, Any]) -> set[str]:
    name = cloudevent["type"].split(".")[-2]
    return {"succeeded"} if name == "successful" else {name, "cancelled", "timedOut"}


def pairs(runs: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {
        (
            r["metadata"]["labels"]["notifications.tekton.dev/policy"],
            r["metadata"]["labels"]["notifications.tekton.dev/template"],
        )
        for r in runs
    }


@pytest.mark.parametrize("path", event_files(), ids=lambda p: p.name)
def test_each_tekton_event_creates_exactly_the_expected_taskruns(
    chain: LocalChain, path: Path
) -> None:
    name = path.name
    cloudevent = load_cloudevent(name)
    if name in SENT_BEFORE:
        assert chain.send(load_cloudevent(SENT_BEFORE[name])) == 202
        assert chain.wait_idle()
    before = {r["metadata"]["name"] for r in chain.notification_runs()}

    assert chain.send(cloudevent) == 202
    assert chain.wait_idle()

    created = [r for r in chain.notification_runs() if r["metadata"]["name"] not in before]
    assert pairs(created) == EXPECTED.get(name, set()), chain.failures.events
    assert chain.failures.events == []
    assert chain.router.dead_letters == []


def test_a_created_taskrun_is_what_the_template_asked_for(chain: LocalChain) -> None:
    cloudevent = load_cloudevent("08-pipelinerun-failed.json")
    chain.send(cloudevent)
    chain.wait_idle()
    (run,) = runs_for(chain, cloudevent)
    assert run["spec"]["taskRef"] == {"name": "send-to-webhook-slack"}
    params = {p["name"]: p["value"] for p in run["spec"]["params"]}
    assert params["webhook-secret"] == "slack-webhook"
    assert "storefront-ci-run-p7v2k" in params["message"]
    assert (
        run["metadata"]["annotations"]["notifications.tekton.dev/source-event-id"]
        == (cloudevent["id"])
    )


def test_redelivered_and_repeated_events_create_nothing_new(chain: LocalChain) -> None:
    cloudevent = load_cloudevent("10-pipelinerun-cancelled.json")
    chain.send(cloudevent)
    chain.wait_idle()
    count = len(chain.notification_runs())
    for retry in range(3):  # Tekton retries with new ids; the broker redelivers with the same
        chain.send({**cloudevent, "id": f"retry-{retry}"})
        chain.send(cloudevent)
    chain.wait_idle()
    assert len(chain.notification_runs()) == count
    assert len(runs_for(chain, cloudevent)) == 2


def test_a_notification_runs_own_events_never_notify(chain: LocalChain) -> None:
    cloudevent = load_cloudevent("08-pipelinerun-failed.json")
    chain.send(cloudevent)
    chain.wait_idle()
    (ours,) = runs_for(chain, cloudevent)
    count = len(chain.notification_runs())
    # Tekton reports on the notification TaskRun like on any other run: it fails, too.
    notification_failed = {
        "specversion": "1.0",
        "id": "ours-1",
        "type": "dev.tekton.event.taskrun.failed.v1",
        "source": f"/apis///namespaces/ci//{ours['metadata']['name']}",
        "data": {
            "taskRun": {
                **ours,
                "status": {
                    "conditions": [{"type": "Succeeded", "status": "False", "reason": "Failed"}]
                },
            }
        },
    }
    assert chain.send(notification_failed) == 202
    chain.wait_idle()
    assert len(chain.notification_runs()) == count


def test_a_malformed_tekton_event_is_dead_lettered_at_once(chain: LocalChain) -> None:
    letters = len(chain.router.dead_letters)
    chain.send(
        {
            "specversion": "1.0",
            "id": "broken-1",
            "source": "/apis///namespaces/ci//x",
            "type": "dev.tekton.event.taskrun.failed.v1",
            "data": "{not json",
        }
    )
    chain.wait_idle()
    (letter,) = chain.router.dead_letters[letters:]
    assert letter["id"] == "broken-1"
    assert str(letter["knativeerrorcode"]) == "400"
    delivery = [d for d in chain.router.deliveries if d.event_id == "broken-1"]
    # The policy filter refuses it (4xx is never retried); the delivery tracker, which hears
    # every finished run too, leaves it to the filter: one dead letter, not two.
    assert sorted((d.trigger, d.attempts, d.status) for d in delivery) == [
        ("delivery-tracker-taskrun-failed", 1, 202),
        ("policy-filter", 1, 400),
    ]


def test_a_wrong_trigger_in_knative_breaks_the_chain(tmp_path: Path) -> None:
    """The router really reads knative/: a typo in the launcher's Trigger stops launches."""
    knative = tmp_path / "knative"
    shutil.copytree(ROOT / "knative", knative)
    triggers = knative / "base" / "triggers.yaml"
    triggers.write_text(
        triggers.read_text().replace("notification.rendered.v1", "notification.rendred.v1")
    )
    with LocalChain(
        tmp_path / "run", knative=knative, manifests=MANIFESTS, time_scale=0.05
    ) as chain:
        chain.send(load_cloudevent("08-pipelinerun-failed.json"))
        chain.wait_idle()
        assert chain.notification_runs() == []
        rendered = [
            d for d in chain.router.deliveries if d.reply_type and "rendered" in d.reply_type
        ]
        assert rendered, "the renderer still ran: the break is in the launcher's Trigger"


def test_one_trace_follows_a_notification_from_tekton_to_the_created_run(
    chain: LocalChain,
) -> None:
    cloudevent = load_cloudevent("07-taskrun-failed.json")
    cloudevent["traceparent"] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    cloudevent["data"]["taskRun"]["metadata"]["uid"] = "a-run-not-seen-before"
    chain.send(cloudevent)
    chain.wait_idle()
    (run,) = runs_for(chain, cloudevent)
    annotation = run["metadata"]["annotations"]["notifications.tekton.dev/traceparent"]
    assert annotation.split("-")[1] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert annotation != cloudevent["traceparent"]  # a child span, not a copy


def test_policies_show_their_matches_and_readiness(chain: LocalChain) -> None:

    time.sleep(0.5)  # the recorder flushes every 0.2 s in the local chain
    status = {p["metadata"]["name"]: p.get("status") or {} for p in chain.policies()}
    assert status["pipelinerun-failed-slack"]["matchCount"] >= 1
    assert all(
        next(c for c in s["conditions"] if c["type"] == "Ready")["status"] == "True"
        for s in status.values()
    )


def test_kubectl_describe_of_the_source_run_shows_the_notification(chain: LocalChain) -> None:
    events = [
        e
        for e in chain.kubernetes_events("ci")
        if e["involvedObject"]["name"] == "storefront-ci-run-p7v2k"
    ]
    assert any(
        e["reason"] == "NotificationSent" and "pipelinerun-failed-slack" in e["message"]
        for e in events
    )


# --------------------------------------------------------------------------------------------
# Subscription annotations (issue 13, docs/subscriptions.md), on this module's chain: the
# Pipeline and the Namespace of examples/subscriptions are loaded for these tests only.
SUBSCRIPTIONS = EXAMPLES / "subscriptions"


@pytest.fixture
def subscribed(chain: LocalChain) -> Iterator[LocalChain]:
    """examples/subscriptions loaded; the Namespace default removed after, so it never
    reaches another test's runs (the filter's Namespace watch sees the deletion)."""
    assert chain.emulator is not None
    chain.emulator.load_manifests(SUBSCRIPTIONS / "pipeline-shop-deploy.yaml")
    chain.emulator.load_manifests(SUBSCRIPTIONS / "namespace-ci.yaml")
    _wait_for(lambda: kube.namespace_annotations(chain.api, "ci") is not None)
    time.sleep(0.3)  # the watch event reaches the filter in milliseconds
    try:
        yield chain
    finally:
        chain.emulator.store.delete("", "namespaces", None, "ci")
        chain.emulator.store.delete("tekton.dev", "pipelines", "ci", "shop-deploy")
        time.sleep(0.3)


def _wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _subscribed_runs(chain: LocalChain, name: str) -> list[dict[str, Any]]:
    cloudevent = json.loads((SUBSCRIPTIONS / "events" / name).read_text())
    assert chain.send(cloudevent) in (200, 202)
    chain.wait_idle()
    uid = cloudevent["data"]["pipelineRun"]["metadata"]["uid"]
    return [
        r
        for r in chain.notification_runs()
        if r["metadata"]["labels"]["notifications.tekton.dev/source-uid"] == uid
        and r["metadata"]["labels"]["notifications.tekton.dev/policy"] == "team-subscriptions"
    ]


def _refused_on(chain: LocalChain, run: str) -> list[dict[str, Any]]:
    return [
        e
        for e in chain.kubernetes_events("ci")
        if e["reason"] == subscribing.REFUSED_REASON and e["involvedObject"]["name"] == run
    ]


def _params(run: dict[str, Any]) -> dict[str, str]:
    return {p["name"]: p["value"] for p in run["spec"]["params"]}


def test_subscriptions_by_a_pipeline_and_by_a_namespace_notify_once_and_refusals_show(
    subscribed: LocalChain,
) -> None:
    chain = subscribed
    first = "01-pipelinerun-failed-pipeline-subscribed.json"
    (run,) = _subscribed_runs(chain, first)
    assert run["metadata"]["labels"]["notifications.tekton.dev/template"] == "slack-channel"
    assert _params(run)["channel"] == "C0SHOPTEAM"
    (refused,) = _refused_on(chain, "shop-deploy-x7k2m")
    assert refused["type"] == "Warning"
    assert "subscribe.failed.pagerduty" in refused["message"]
    assert "no policy allows template 'pagerduty'" in refused["message"]
    # Redelivered: the same notification (409 = done) and the same Event, once each.
    assert [r["metadata"]["name"] for r in _subscribed_runs(chain, first)] == [
        run["metadata"]["name"]
    ]
    assert len(_refused_on(chain, "shop-deploy-x7k2m")) == 1

    # A run with no annotation at all, subscribed by its Namespace's default.
    (mail,) = _subscribed_runs(chain, "02-pipelinerun-timedout-namespace-default.json")
    assert mail["metadata"]["labels"]["notifications.tekton.dev/template"] == "email"
    assert _params(mail)["recipients"] == "ci-leads@example.com qa@example.com"
