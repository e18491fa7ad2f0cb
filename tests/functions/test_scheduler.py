"""The scheduler stage (issue 17): reminders and digests, exactly once per due item.

In this process for the logic (the stage's ``respond``, a clock the test moves), against the
API emulator through the official client, with the policy filter recording the failures as
it does in a cluster: what the scheduler reads is what the filter wrote. One served test
shows the function answers a PingSource's ping over HTTP, in binary and structured mode.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tekton_notifications import kube, notifications, taskruns, vocabulary
from tekton_notifications.devtools.kubeapi import KubeAPIServer
from tekton_notifications.devtools.serving import ServedFunction
from tekton_notifications.matching import PolicyIndex
from tekton_notifications.notifications import OutgoingEvent
from tekton_notifications.policystate import PolicyStates
from tekton_notifications.runcheck import RunCheck
from tekton_notifications.stages.policy_filter import PolicyFilter
from tekton_notifications.stages.scheduler import PING, Scheduler
from tests.conftest import load_cloudevent
from tests.functions.serving import CaptureServer, post_event

HOUR = 3600.0
FAILED = load_cloudevent("08-pipelinerun-failed.json")
SUCCEEDED = load_cloudevent("09-pipelinerun-successful.json")
#: When 08's run finished: the pipeline turned red then.
RED_SINCE = datetime.fromisoformat("2026-10-14T13:43:20+00:00").timestamp()
PING_EVENT = {
    "specversion": "1.0",
    "id": "ping-2026-10-14T18:00:00Z",
    "type": PING,
    "source": "/apis/v1/namespaces/tekton-notifications/pingsources/scheduler",
}


def a_policy(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{vocabulary.GROUP}/{vocabulary.VERSION}",
        "kind": "NotificationPolicy",
        "metadata": {"name": name, "namespace": "ci"},
        "spec": {"events": ["failed"], "templateRefs": [{"name": "slack"}], **spec},
    }


REMINDING = a_policy("still-red", remind={"after": "4h", "every": "24h", "max": 2})
DIGESTING = a_policy(
    "digest",
    rateLimit={"limit": 1, "window": "1h"},
    digest={"every": "1h", "templateRef": {"name": "digest"}},
)


def run_of(cloudevent: Mapping[str, Any], serial: int = 0) -> dict[str, Any]:
    """08/09 as another run of the same pipeline when ``serial`` is set (new name and uid)."""
    event = copy.deepcopy(dict(cloudevent))
    if serial:
        metadata = event["data"]["pipelineRun"]["metadata"]
        metadata["name"] = f"{metadata['name']}-{serial}"
        metadata["uid"] = f"{metadata['uid'][:-4]}{serial:04d}"
    return event


@dataclass
class Cluster:
    """The emulator, the policy filter feeding it, and a scheduler the test can restart."""

    kubeapi: KubeAPIServer
    kubeconfig: Path
    now: list[float] = field(default_factory=lambda: [RED_SINCE])
    published: list[OutgoingEvent] = field(default_factory=list)
    started: list[Any] = field(default_factory=list)

    def clock(self) -> float:
        return self.now[0]

    def api(self) -> Any:
        return kube.api_client({"KUBECONFIG": str(self.kubeconfig)})

    def tekton(self, cloudevent: Mapping[str, Any]) -> int:
        """A Tekton event through the policy filter (which confirms the run: stored first)."""
        run = cloudevent["data"]["pipelineRun"]
        self.kubeapi.store.create(
            "tekton.dev",
            "v1",
            "pipelineruns",
            "ci",
            {**run, "apiVersion": "tekton.dev/v1", "kind": "PipelineRun"},
            keep_uid=True,
        )
        attributes = {k: str(v) for k, v in cloudevent.items() if k != "data"}
        return self.policy_filter().respond(attributes, cloudevent["data"]).status

    def policy_filter(self) -> PolicyFilter:
        if not hasattr(self, "_filter"):
            api = self.api()
            stage = PolicyFilter(
                PolicyIndex(),
                publish=lambda events: None,
                states=PolicyStates.on_api(api),
                runs=RunCheck.on_api(api),
                clock=self.clock,
            )
            stage.informers = kube.policy_informers(api, stage)
            self._start(stage)
            self._filter = stage
        return self._filter

    def scheduler(
        self, publish: Callable[[Sequence[OutgoingEvent]], None] | None = None
    ) -> Scheduler:
        """A new scheduler process, as after a restart: nothing in memory but the status."""
        stage = Scheduler.from_environ(
            {"KUBECONFIG": str(self.kubeconfig)},
            clock=self.clock,
            publish=publish or self.published.extend,
        )
        self._start(stage)
        return stage

    def _start(self, stage: Any) -> None:
        stage.start()
        self.started.append(stage)
        assert all(informer.wait_synced(10) for informer in stage.informers)

    def status(self, name: str) -> dict[str, Any]:
        obj = self.kubeapi.store.get(vocabulary.GROUP, vocabulary.POLICY_PLURAL, "ci", name)
        return dict(obj.get("status") or {})

    def stop(self) -> None:
        for stage in self.started:
            stage.stop()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with KubeAPIServer() as kubeapi:
        for policy in (REMINDING, DIGESTING):
            kubeapi.store.create_manifest(policy)
        kubeconfig = tmp_path / "kubeconfig"
        kubeapi.write_kubeconfig(kubeconfig)
        cluster = Cluster(kubeapi, kubeconfig)
        yield cluster
        cluster.stop()


def ping(stage: Scheduler) -> tuple[int, str]:
    response = stage.respond(PING_EVENT, {"wake": "scheduler"})
    return response.status, response.message


def scheduled(events: Sequence[OutgoingEvent], what: str) -> list[Mapping[str, Any]]:
    return [e.data for e in events if what in (e.data.get("scheduled") or {})]


def wait_for(stage: Scheduler, name: str, check: Callable[[Mapping[str, Any]], bool]) -> None:
    """Until the stage's informer saw the filter's write (a watch event away)."""
    policy = stage.policies.namespaced.get("ci", name)
    assert policy is not None
    assert kube.poll(lambda: check(stage.states.state(policy).status()), timeout=10)


def test_the_same_ping_three_times_and_after_a_restart_sends_each_reminder_once(
    cluster: Cluster,
) -> None:
    """The exactly-once test of issue 17: one reminder per due number, however often the
    ping comes and whichever process answers it."""
    assert cluster.tekton(FAILED) == 202  # two policies match: published, 202
    scheduler = cluster.scheduler()
    wait_for(scheduler, "still-red", lambda status: bool(status["outcomes"]))
    assert cluster.status("still-red")["nextDue"] == "2026-10-14T17:43:20Z"

    cluster.now[0] = RED_SINCE + 4 * HOUR + 60
    answers = [ping(scheduler) for _ in range(3)]
    restarted = cluster.scheduler()
    answers.append(ping(restarted))
    assert answers == [
        (202, "sent 1 reminder(s), 0 digest(s) as 1 notification(s)"),
        (202, "nothing due"),
        (202, "nothing due"),
        (202, "nothing due"),
    ]
    (reminder,) = scheduled(cluster.published, "reminder")
    assert reminder["scheduled"]["reminder"] == {
        "count": 1,
        "max": 2,
        "since": "2026-10-14T13:43:20Z",
        "redFor": "4h 1m",
        "redForSeconds": 4 * 3600 + 60,
    }
    assert (reminder["policy"]["name"], reminder["templateRef"]["name"]) == ("still-red", "slack")
    assert cluster.status("still-red")["outcomes"][0]["reminded"] == 1
    assert cluster.status("still-red")["nextDue"] == "2026-10-15T17:43:20Z"

    cluster.now[0] = RED_SINCE + 100 * HOUR  # two more periods: one reminder, the last (max 2)
    assert ping(restarted)[1].startswith("sent 1 reminder(s)")
    assert ping(scheduler)[1] == "nothing due"
    counts = [r["scheduled"]["reminder"]["count"] for r in scheduled(cluster.published, "reminder")]
    assert counts == [1, 2]
    assert "nextDue" not in cluster.status("still-red"), "nothing more is due: removed"


def test_published_but_not_recorded_sends_the_same_keys_and_run_names_again(
    cluster: Cluster,
) -> None:
    """A crash or an API failure between publishing and recording: the broker redelivers
    the ping (503), the same notifications go out again, and the launcher's deterministic
    run names make the repeat a 409, not a second message."""
    cluster.tekton(FAILED)
    scheduler = cluster.scheduler()
    wait_for(scheduler, "still-red", lambda status: bool(status["outcomes"]))
    cluster.now[0] = RED_SINCE + 5 * HOUR
    cluster.kubeapi.faults.add(503, method="PATCH", path="/status$")
    first = ping(scheduler)
    assert first[0] == 503 and first[1].startswith("recording what was sent")
    assert ping(scheduler)[0] == 202  # redelivered: published again, recorded this time
    assert ping(scheduler) == (202, "nothing due")
    once, again = scheduled(cluster.published, "reminder")
    assert once["key"] == again["key"]
    names = {
        taskruns.run_name(notifications.parse_notification(data).event, data["key"])
        for data in (once, again)
    }
    assert len(names) == 1


def test_a_fix_ends_the_reminders(cluster: Cluster) -> None:
    cluster.tekton(FAILED)
    assert cluster.tekton(SUCCEEDED) == 202  # no policy notifies successes: recorded only
    scheduler = cluster.scheduler()
    wait_for(scheduler, "still-red", lambda s: s["outcomes"][0]["outcome"] == "succeeded")
    cluster.now[0] = RED_SINCE + 50 * HOUR
    assert ping(scheduler) == (202, "nothing due")
    assert cluster.published == []


def test_what_the_rate_limit_held_back_comes_once_as_a_digest(cluster: Cluster) -> None:
    """Three failures in one hour under a limit of one: two suppressed, recorded as they
    are suppressed, and sent as one digest once the hour is over, once."""
    cluster.now[0] = start = 1_790_000_000.0 - 1_790_000_000.0 % HOUR  # an hour's start
    for serial, minute in ((1, 1), (2, 5), (3, 9)):
        cluster.now[0] = start + minute * 60
        cluster.tekton(run_of(FAILED, serial))
    held = cluster.status("digest")["digest"]["periods"]
    assert [item["count"] for item in held[0]["items"]] == [2]
    scheduler = cluster.scheduler()
    wait_for(scheduler, "digest", lambda status: bool(status.get("digest")))
    cluster.now[0] = start + 30 * 60
    assert ping(scheduler) == (202, "nothing due"), "the hour is not over"
    cluster.now[0] = start + HOUR + 60
    answers = [ping(scheduler), ping(scheduler), ping(cluster.scheduler())]
    assert [a[1] for a in answers] == [
        "sent 0 reminder(s), 1 digest(s) as 1 notification(s)",
        "nothing due",
        "nothing due",
    ]
    (digest,) = scheduled(cluster.published, "digest")
    assert digest["templateRef"]["name"] == "digest"
    view = digest["scheduled"]["digest"]
    assert (view["total"], view["overflow"]) == (2, 0)
    (item,) = view["items"]
    assert (item["pipeline"], item["outcome"], item["count"]) == ("storefront-ci", "failed", 2)
    assert (item["first"]["run"], item["last"]["run"]) == (
        "storefront-ci-run-p7v2k-2",
        "storefront-ci-run-p7v2k-3",
    )
    assert "digest" not in cluster.status("digest"), "sent: removed from the status"


def test_another_event_type_is_acknowledged_and_ignored(cluster: Cluster) -> None:
    response = cluster.scheduler().respond({**PING_EVENT, "type": "dev.example.other"}, {})
    assert (response.status, response.message) == (
        202,
        "ignored: unsupported event type 'dev.example.other'",
    )


# Served: the function as kn func runs it, a ping over HTTP -----------------------------------


def test_the_served_function_answers_a_ping_with_what_is_due(
    served: Callable[..., ServedFunction],
    kubeapi: KubeAPIServer,
    kubeconfig: Path,
    broker_sink: CaptureServer,
    tmp_path: Path,
) -> None:
    """As kn func serves it: a ping in binary mode publishes the reminder to K_SINK and
    answers 202; the same ping again, structured, finds it sent."""
    kubeapi.store.create_manifest(copy.deepcopy(REMINDING))
    run = FAILED["data"]["pipelineRun"]
    kubeapi.store.create(
        "tekton.dev", "v1", "pipelineruns", "ci", {**run, "kind": "PipelineRun"}, keep_uid=True
    )
    red = {
        "kind": "PipelineRun",
        "pipeline": "storefront-ci",
        "outcome": "failed",
        "run": run["metadata"]["name"],
        "uid": run["metadata"]["uid"],
        "namespace": "ci",
        "completionTime": "2026-10-14T13:43:20Z",
    }
    kubeapi.store.patch(  # what the policy filter writes
        vocabulary.GROUP,
        vocabulary.POLICY_PLURAL,
        "ci",
        "still-red",
        {"status": {"outcomes": [red]}},
        subresource="status",
    )
    clock = tmp_path / "clock"
    clock.write_text(str(RED_SINCE + 5 * HOUR))
    function = served(
        "scheduler",
        KUBECONFIG=str(kubeconfig),
        K_SINK=f"http://127.0.0.1:{broker_sink._server.server_address[1]}",
        SCHEDULER_CLOCK_FILE=str(clock),
    )
    data = {"wake": "scheduler"}
    answers = [
        post_event(function, PING_EVENT, data, encoding=encoding).status
        for encoding in ("binary", "structured")
    ]
    assert answers == [202, 202]
    assert broker_sink.types == [notifications.MATCHED]
    payload = json.loads(broker_sink.received[0][1])
    assert payload["scheduled"]["reminder"]["count"] == 1
