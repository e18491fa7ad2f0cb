"""End to end: a notification run's finish, as Tekton reports it, through the delivery tracker.

The five functions as kn func serves them, the router following knative/ (the tracker's
Triggers, the recorder's), the API emulator; this test plays Tekton: it finishes the
notification runs the launcher created by sending Tekton's ``successful``/``failed`` events,
each twice with one id (a broker redelivery) and once more with a new id (a Tekton retry).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tekton_notifications import deliverystatus, kube, taskruns, vocabulary
from tekton_notifications.devtools.chain import LocalChain
from tests.conftest import load_cloudevent
from tests.e2e.tekton_finish import finish_event

pytestmark = pytest.mark.slow

DATA = Path(__file__).resolve().parents[1] / "data" / "delivery"


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalChain]:
    with LocalChain(tmp_path_factory.mktemp("chain"), manifests=(DATA,), time_scale=0.05) as c:
        yield c


def runs_of(chain: LocalChain, policy: str) -> list[dict[str, Any]]:
    """The policy's notification runs: attempts in order, then the fallback."""
    runs = [
        r
        for r in chain.notification_runs()
        if r["metadata"]["labels"][taskruns.POLICY_LABEL] == policy
    ]

    def order(run: dict[str, Any]) -> tuple[bool, int]:
        labels = run["metadata"]["labels"]
        return taskruns.FALLBACK_OF_LABEL in labels, int(labels.get(taskruns.ATTEMPT_LABEL, 1))

    return sorted(runs, key=order)


def finish(chain: LocalChain, run: dict[str, Any], **how: Any) -> set[str]:
    """Tekton's finish event for ``run``, redelivered once, and sent again with a new id."""
    event = finish_event(run, **how)
    again = finish_event(run, **how)
    for sent in (event, event, again):
        assert chain.send(sent) == 202
    assert chain.wait_idle()
    return {event["id"], again["id"]}


def status_of(chain: LocalChain, plural: str, name: str) -> dict[str, Any]:
    obj = kube.get_object(chain.api, plural, "ci", name)
    return dict(obj.get("status") or {})


def eventually(check: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def delivery_events(chain: LocalChain, source: str) -> list[dict[str, Any]]:
    return [
        e
        for e in chain.kubernetes_events("ci")
        if e["involvedObject"]["name"] == source and e["reason"].startswith("NotificationDeliver")
    ]


def test_a_failing_notification_is_retried_as_configured_then_falls_back_once(
    chain: LocalChain,
) -> None:
    """slack-retrying has retries: 2 and the fallback email-fallback: three Slack runs, one
    email run, and nothing more however often their finish events come, nothing of which
    reaches policy matching (the loop guard: failing notifications and a failing fallback)."""
    source = load_cloudevent("08-pipelinerun-failed.json")
    assert chain.send(source) == 202
    assert chain.wait_idle()
    finish_ids: set[str] = set()
    for attempt in (1, 2, 3):
        runs = runs_of(chain, "storefront-failures")
        assert len(runs) == attempt, [r["metadata"]["name"] for r in runs]
        latest = runs[-1]["metadata"]
        assert latest["labels"].get(taskruns.ATTEMPT_LABEL, "1") == str(attempt)
        assert latest["labels"][taskruns.TEMPLATE_LABEL] == "slack-retrying"
        finish_ids |= finish(chain, runs[-1], succeeded=False)
    runs = runs_of(chain, "storefront-failures")
    assert len(runs) == 4
    fallback = runs[-1]["metadata"]
    assert fallback["labels"][taskruns.TEMPLATE_LABEL] == "email-fallback"
    assert fallback["labels"][taskruns.FALLBACK_OF_LABEL] == "slack-retrying"
    assert {p["name"] for p in runs[-1]["spec"]["params"]} >= {"subject", "body"}  # re-rendered
    first = runs[0]["metadata"]["name"]
    assert [r["metadata"]["name"] for r in runs[1:3]] == [f"{first}-r2", f"{first}-r3"]

    finish_ids |= finish(chain, runs[-1], succeeded=False, step="send", message="SMTP refused")
    assert len(runs_of(chain, "storefront-failures")) == 4, "a fallback never has a fallback"

    # The loop guard: the policy filter answered every finish of ours with 202 and no reply,
    # and the renderer got exactly the first match, two retries and the fallback.
    to_filter = [
        d
        for d in chain.router.deliveries
        if d.event_id in finish_ids and d.trigger == "policy-filter"
    ]
    assert len(to_filter) == 3 * 4 and all(
        d.status == 202 and d.reply_type is None for d in to_filter
    )
    rendered = {d.event_id for d in chain.router.deliveries if d.trigger == "template-renderer"}
    assert len(rendered) == 4, rendered

    # Where people look: Events on the source run, policy and template status.
    name = source["data"]["pipelineRun"]["metadata"]["name"]
    events = eventually(
        lambda: len(delivery_events(chain, name)) == 4 and delivery_events(chain, name)
    )
    assert events and {e["reason"] for e in events} == {"NotificationDeliveryFailed"}
    assert all(e["type"] == "Warning" for e in events)
    messages = " | ".join(sorted(e["message"] for e in events))
    assert (
        "step post" in messages
        and "404" in messages
        and "falling back to template email-fallback" in messages
    )
    policy = eventually(
        lambda: (
            (s := status_of(chain, vocabulary.POLICY_PLURAL, "storefront-failures")).get(
                "deliveryFailedCount"
            )
            == 4
            and s
        )
    )
    assert policy and policy["lastDeliveryFailure"]["run"] == f"ci/{fallback['name']}"
    assert "SMTP refused" in policy["lastDeliveryFailure"]["message"]
    slack = eventually(
        lambda: (
            (s := status_of(chain, vocabulary.TEMPLATE_PLURAL, "slack-retrying")).get(
                "deliveryFailedCount"
            )
            == 3
            and s
        )
    )
    (delivering,) = [c for c in slack["conditions"] if c["type"] == deliverystatus.DELIVERING]
    assert (delivering["status"], delivering["reason"]) == ("False", "DeliveryFailing")
    assert slack["consecutiveDeliveryFailures"] == 3


def test_a_delivered_notification_is_recorded_on_the_run_and_counted(chain: LocalChain) -> None:
    source = load_cloudevent("06-taskrun-successful.json")
    assert chain.send(source) == 202
    assert chain.wait_idle()
    (run,) = runs_of(chain, "fetched")
    finish(chain, run, succeeded=True)
    assert len(runs_of(chain, "fetched")) == 1
    name = source["data"]["taskRun"]["metadata"]["name"]
    (event,) = eventually(lambda: delivery_events(chain, name))
    assert (event["reason"], event["type"]) == ("NotificationDelivered", "Normal")
    assert eventually(
        lambda: status_of(chain, vocabulary.POLICY_PLURAL, "fetched").get("deliveredCount") == 1
    )
    template = eventually(
        lambda: (
            (s := status_of(chain, vocabulary.TEMPLATE_PLURAL, "slack-once")).get("conditions")
            and s
        )
    )
    (delivering,) = [c for c in template["conditions"] if c["type"] == deliverystatus.DELIVERING]
    assert delivering["status"] == "True"


def test_a_delayed_retry_waits_for_the_sweep_after_its_delay(chain: LocalChain) -> None:
    """slack-delayed: retries 1 after 2s. The finish event finds it not due; the PingSource's
    event after the delay creates it, once however often the sweep runs."""
    assert chain.send(load_cloudevent("07-taskrun-failed.json")) == 202
    assert chain.wait_idle()
    (run,) = runs_of(chain, "unit-test-failures")
    assert run["metadata"]["labels"][taskruns.RETRY_PENDING_LABEL] == "true"
    finished = datetime.now(UTC)
    finish(chain, run, succeeded=False, finished=finished)
    assert len(runs_of(chain, "unit-test-failures")) == 1, "not due yet"
    ping = {
        "specversion": "1.0",
        "type": "dev.knative.sources.ping",
        "source": "/apis/v1/namespaces/tekton-notifications/pingsources/delivery-retries",
        "data": {"sweep": "delivery-retries"},
    }
    assert chain.send({**ping, "id": "ping-early"}) == 202
    assert chain.wait_idle()
    assert len(runs_of(chain, "unit-test-failures")) == 1, "the sweep waits for the delay"
    time.sleep(max(0.0, (finished + timedelta(seconds=3) - datetime.now(UTC)).total_seconds()))
    for number in range(2):
        assert chain.send({**ping, "id": f"ping-{number}"}) == 202
        assert chain.wait_idle()
    runs = runs_of(chain, "unit-test-failures")
    assert [r["metadata"]["labels"].get(taskruns.ATTEMPT_LABEL) for r in runs] == [None, "2"]
    assert taskruns.RETRY_PENDING_LABEL not in runs[1]["metadata"]["labels"], "the last attempt"
