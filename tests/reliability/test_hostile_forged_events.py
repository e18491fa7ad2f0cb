"""Forged Tekton events must not spend a real pipeline's storm budget (issue 11, item 5).

Tekton's events are unsigned and, without Knative's sender identity, anything in the cluster
can POST "pipeline X failed" to the Broker. Two forged failures used to spend a rate limit of
2 and the real failure was suppressed. Now the policy filter confirms the run with the API
(cached GET, :mod:`tekton_notifications.runcheck`) before a match of a policy with storm state
is decided: a run that does not exist as the event says is refused with 422 and spends
nothing. Shown in-process (the stage against the API emulator over HTTP) and served (the
Broker emulator, the Triggers in knative/ and the four functions).
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3

from tekton_notifications import kube, metrics, notifications, runcheck
from tekton_notifications.devtools.chain import LocalChain
from tekton_notifications.devtools.kubeapi import KubeAPIServer
from tekton_notifications.events import RunEvent, parse_event
from tekton_notifications.matching import PolicyIndex
from tekton_notifications.notifications import OutgoingEvent
from tekton_notifications.policystate import MemoryStatus
from tekton_notifications.stages.base import Response
from tekton_notifications.stages.policy_filter import PolicyFilter
from tekton_notifications.wire import binary_message
from tests.conftest import EXAMPLES, policy_object

STARTED = EXAMPLES / "events" / "01-pipelinerun-started.json"
FAILED = EXAMPLES / "events" / "03-pipelinerun-failed.json"
SUCCEEDED = EXAMPLES / "events" / "05-pipelinerun-succeeded.json"
Event = dict[str, Any]


def tekton_event(path: Path, serial: int, *, uid: str | None = None) -> Event:
    """The example event as another run of the same pipeline (``web-build``)."""
    cloudevent: Event = json.loads(path.read_text())
    (run,) = cloudevent["data"].values()
    metadata = run["metadata"]
    metadata["name"] = f"web-build-{serial:03d}"
    metadata["uid"] = uid if uid is not None else f"uid-{serial}"
    metadata["labels"]["tekton.dev/pipeline"] = "web-build"
    cloudevent["id"] = f"event-{serial}-{path.stem}"
    cloudevent["source"] = f"/apis///namespaces/ci//{metadata['name']}"
    return cloudevent


def store_run(kubeapi: KubeAPIServer, cloudevent: Event, **metadata: Any) -> None:
    """The run as Tekton created it, with ``metadata`` overriding what the event says."""
    ((key, run),) = copy.deepcopy(cloudevent["data"]).items()
    run["metadata"].update(metadata)
    stored = {**run, "apiVersion": "tekton.dev/v1", "kind": key[0].upper() + key[1:]}
    kubeapi.store.create("tekton.dev", "v1", f"{key.lower()}s", "ci", stored, keep_uid=True)


def with_status(cloudevent: Event, status: str, reason: str) -> Event:
    forged = copy.deepcopy(cloudevent)
    (run,) = forged["data"].values()
    run["status"]["conditions"] = [{"type": "Succeeded", "status": status, "reason": reason}]
    return forged


def respond(stage: PolicyFilter, cloudevent: Event) -> Response:
    attributes = {k: str(v) for k, v in cloudevent.items() if k != "data"}
    return stage.respond(attributes, cloudevent["data"])


@pytest.fixture
def api(kubeapi: KubeAPIServer, tmp_path: Path) -> Any:
    kubeconfig = tmp_path / "kubeconfig"
    kubeapi.write_kubeconfig(kubeconfig)
    return kube.api_client({"KUBECONFIG": str(kubeconfig)})


@pytest.fixture
def stage(api: Any) -> PolicyFilter:
    """The filter with a budget of 2 failures per pipeline, confirming runs with the API."""
    stage = PolicyFilter(
        PolicyIndex(), states=MemoryStatus().states(), runs=runcheck.RunCheck.on_api(api)
    )
    stage.reset([policy_object("storm", rate_limit={"limit": 2, "window": "1h"})])
    return stage


def spent(stage: PolicyFilter) -> int:
    """Notifications counted against the policy's rate limit."""
    compiled = stage.index.get("ci", "storm")
    assert compiled is not None
    return len(stage.states.state(compiled.policy).sent)


def checks(result: str) -> float:
    value = metrics.REGISTRY.get_sample_value(
        "tekton_notifications_run_checks_total", {"result": result, "cached": "no"}
    )
    return value or 0.0


Forge = Callable[[KubeAPIServer, int], Event]


def no_run(kubeapi: KubeAPIServer, serial: int) -> Event:
    return tekton_event(FAILED, serial)


def other_uid(kubeapi: KubeAPIServer, serial: int) -> Event:
    forged = tekton_event(FAILED, serial, uid=f"forged-{serial}")
    store_run(kubeapi, forged, uid=f"real-{serial}")
    return forged


def still_running(kubeapi: KubeAPIServer, serial: int) -> Event:
    forged = tekton_event(FAILED, serial)
    store_run(kubeapi, with_status(forged, "Unknown", "Running"))
    return forged


def succeeded(kubeapi: KubeAPIServer, serial: int) -> Event:
    forged = tekton_event(FAILED, serial)
    store_run(kubeapi, with_status(forged, "True", "Succeeded"))
    return forged


def other_pipeline(kubeapi: KubeAPIServer, serial: int) -> Event:
    """A real failure of the tenant's own pipeline, relabelled to spend web-build's budget."""
    forged = tekton_event(FAILED, serial)
    (run,) = forged["data"].values()
    store_run(kubeapi, forged, labels={**run["metadata"]["labels"], "tekton.dev/pipeline": "own"})
    return forged


def without_uid(kubeapi: KubeAPIServer, serial: int) -> Event:
    forged = tekton_event(FAILED, serial)
    (run,) = forged["data"].values()
    del run["metadata"]["uid"]
    return forged


#: 422: refused, dead-lettered at once. 503: the run is still running as far as the API
#: knows; Tekton's controller may send a terminal event before its status update lands, so
#: the broker retries (and dead-letters a forgery when its retries run out).
FORGERIES = [
    pytest.param(no_run, "NotFound", 422, id="run-does-not-exist"),
    pytest.param(other_uid, "UIDMismatch", 422, id="run-has-another-uid"),
    pytest.param(still_running, "NotFinished", 503, id="run-has-not-finished"),
    pytest.param(succeeded, "OutcomeMismatch", 422, id="run-succeeded"),
    pytest.param(other_pipeline, "LabelMismatch", 422, id="run-of-another-pipeline"),
    pytest.param(without_uid, "NoUID", 422, id="event-without-uid"),
]


@pytest.mark.parametrize(("forge", "reason", "status"), FORGERIES)
def test_forged_failures_spend_no_budget_and_the_real_failure_notifies(
    kubeapi: KubeAPIServer, stage: PolicyFilter, forge: Forge, reason: str, status: int
) -> None:
    before = checks(reason)
    for serial in (1, 2):
        response = respond(stage, forge(kubeapi, serial))
        assert (response.status, response.event) == (status, None)
        assert f"({reason})" in response.message
        assert "no storm budget spent" in response.message
    assert checks(reason) - before == 2
    assert spent(stage) == 0

    real = tekton_event(FAILED, 3)
    store_run(kubeapi, real)
    response = respond(stage, real)
    assert response.status == 200 and response.event is not None
    assert response.event.type == notifications.MATCHED
    assert spent(stage) == 1


def test_a_forged_copy_of_a_real_failure_is_that_failure_counted_once(
    kubeapi: KubeAPIServer, stage: PolicyFilter
) -> None:
    """What confirming leaves a forger: repeating a real run's event, which the rate limit
    counts once per run and event (storm.occurrence), as it does Tekton's own retries."""
    real = tekton_event(FAILED, 1)
    store_run(kubeapi, real)
    copies = [real] + [{**real, "id": f"forged-{n}"} for n in range(3)]
    replies = [respond(stage, event) for event in copies]
    assert [r.status for r in replies] == [200] * 4
    # One notification: the same deterministic id, so the launcher creates one run.
    assert len({r.event.attributes["id"] for r in replies if r.event is not None}) == 1
    assert spent(stage) == 1


def test_an_api_outage_while_confirming_is_retried_and_spends_nothing(
    kubeapi: KubeAPIServer, stage: PolicyFilter
) -> None:
    real = tekton_event(FAILED, 1)
    store_run(kubeapi, real)
    kubeapi.faults.add(503, method="GET", path="/pipelineruns/", count=100)

    before = checks("Unavailable")
    response = respond(stage, real)

    assert response.status == 503
    assert "(Unavailable): confirming PipelineRun ci/web-build-001" in response.message
    assert checks("Unavailable") - before == 1
    assert spent(stage) == 0
    kubeapi.faults.clear()
    matched = respond(stage, real)
    assert matched.event is not None and matched.event.type == notifications.MATCHED


def test_policies_without_storm_state_make_no_request(kubeapi: KubeAPIServer, api: Any) -> None:
    """The hot path: a policy that spends no budget never waits for the API. (Its match of a
    forged event is sent: nothing to spend, and the launcher's names make repeats idempotent.)"""
    stage = PolicyFilter(
        PolicyIndex(), states=MemoryStatus().states(), runs=runcheck.RunCheck.on_api(api)
    )
    stage.reset([policy_object("plain")])
    kubeapi.requests.clear()

    response = respond(stage, tekton_event(FAILED, 1))

    assert response.event is not None and response.event.type == notifications.MATCHED
    assert [r for r in kubeapi.requests if "pipelineruns" in r.path] == []
    assert stage.runs is not None and stage.runs.reads == 0


# --- the cache -----------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def event_of(path: Path, serial: int, **overrides: Any) -> RunEvent:
    cloudevent = tekton_event(path, serial, **overrides)
    return parse_event(cloudevent, cloudevent["data"])


#: Steps: ("run", serial, status) stores or updates a run; ("wait", seconds); ("check", path,
#: serial, uid or None) confirms an event and records (reason, cached).
Step = tuple[Any, ...]
CACHE_CASES = [
    pytest.param(
        [("run", 1, "False"), ("check", FAILED, 1), ("check", FAILED, 1)],
        [("Confirmed", False), ("Confirmed", True)],
        1,
        id="second-event-of-a-run-is-a-hit",
    ),
    pytest.param(
        [("run", 1, "False"), ("check", FAILED, 1), ("wait", 31), ("check", FAILED, 1)],
        [("Confirmed", False), ("Confirmed", False)],
        2,
        id="expired-after-the-ttl",
    ),
    pytest.param(
        [("check", FAILED, 1), ("check", FAILED, 1), ("wait", 29), ("check", FAILED, 1)],
        [("NotFound", False), ("NotFound", True), ("NotFound", True)],
        1,
        id="a-refusal-is-cached-too",
    ),
    pytest.param(
        [
            ("run", 1, "Unknown"),
            ("check", STARTED, 1),
            ("run", 1, "False"),
            ("check", FAILED, 1),
            ("check", FAILED, 1),
        ],
        [("Confirmed", False), ("Confirmed", False), ("Confirmed", True)],
        2,
        id="a-run-cached-while-running-is-read-again-when-it-fails",
    ),
    pytest.param(
        [("run", 1, "False"), ("check", FAILED, 1), ("check", FAILED, 1, "other")],
        [("Confirmed", False), ("UIDMismatch", False)],
        2,
        id="another-uid-is-another-entry",
    ),
    pytest.param(
        [("run", n, "False") for n in (1, 2, 3)]
        + [("check", FAILED, n) for n in (1, 2, 3)]
        + [("check", FAILED, 3), ("check", FAILED, 1)],
        [("Confirmed", False)] * 3 + [("Confirmed", True), ("Confirmed", False)],
        4,
        id="bounded-least-recently-used-first-out",
    ),
]


@pytest.mark.parametrize(("steps", "expected", "reads"), CACHE_CASES)
def test_the_cache(
    kubeapi: KubeAPIServer, api: Any, steps: list[Step], expected: list[Any], reads: int
) -> None:
    clock = Clock()
    check = runcheck.RunCheck(
        lambda kind, ns, name: kube.get_run(api, kind, ns, name), size=2, clock=clock
    )
    seen: list[tuple[str, bool]] = []
    for step in steps:
        if step[0] == "run":
            _, serial, status = step
            event = with_status(tekton_event(FAILED, serial), status, "Whatever")
            plural, name = "pipelineruns", f"web-build-{serial:03d}"
            if any(o["metadata"]["name"] == name for o in kubeapi.store.list("tekton.dev", plural)):
                current = kubeapi.store.get("tekton.dev", plural, "ci", name)
                current["status"] = event["data"]["pipelineRun"]["status"]
                kubeapi.store.replace(
                    "tekton.dev", plural, "ci", name, current, subresource="status"
                )
            else:
                store_run(kubeapi, event)
        elif step[0] == "wait":
            clock.now += step[1]
        else:
            path, serial, *uid = step[1:]
            verdict = check.confirm(event_of(path, serial, uid=uid[0] if uid else None))
            seen.append((verdict.reason, verdict.cached))
    assert seen == expected
    assert check.reads == reads
    assert len(check) <= 2


# --- served: the Broker emulator, knative/'s Triggers, the four functions -------------------


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalChain]:
    manifests = (EXAMPLES / "policies", EXAMPLES / "templates")
    with LocalChain(tmp_path_factory.mktemp("forged"), manifests=manifests, time_scale=0.05) as c:
        yield c


def forge(chain: LocalChain, cloudevent: Event) -> int:
    """POST to the Broker without creating the run: what a forger in the cluster can do."""
    attributes = {k: str(v) for k, v in cloudevent.items() if k != "data"}
    headers, body = binary_message(OutgoingEvent(attributes, cloudevent["data"]))
    return int(urllib3.request("POST", chain.broker, body=body, headers=headers, timeout=10).status)


def slack_runs(chain: LocalChain) -> list[str]:
    return sorted(
        r["metadata"]["labels"]["notifications.tekton.dev/source-name"]
        for r in chain.notification_runs()
        if r["metadata"]["labels"]["notifications.tekton.dev/policy"] == "pipelinerun-failed-slack"
    )


@pytest.mark.slow
def test_served_forged_failures_are_dead_lettered_and_the_real_one_notifies(
    chain: LocalChain,
) -> None:
    """examples/policies/pipelinerun-failed-slack.yaml allows 5 failures per 10 minutes per
    pipeline; 6 forged ones used to silence the real failure that followed."""
    for serial in range(6):
        assert forge(chain, tekton_event(FAILED, 100 + serial)) == 202  # the Broker accepts
    forged_fix = tekton_event(SUCCEEDED, 200)
    assert forge(chain, forged_fix) == 202
    assert chain.wait_idle()
    assert sorted(
        (letter["knativeerrorcode"], letter["id"]) for letter in chain.router.dead_letters
    ) == sorted(
        (422, e)
        for e in [f"event-{100 + n}-03-pipelinerun-failed" for n in range(6)]
        + ["event-200-05-pipelinerun-succeeded"]
    )
    assert slack_runs(chain) == []

    assert chain.send(tekton_event(FAILED, 1)) == 202
    assert chain.wait_idle()
    deadline = time.monotonic() + 10
    while slack_runs(chain) != ["web-build-001"]:
        assert time.monotonic() < deadline, slack_runs(chain)
        time.sleep(0.1)
    (policy,) = [p for p in chain.policies() if p["metadata"]["name"] == "pipelinerun-failed-slack"]
    assert len(policy["status"]["rateLimit"]["sent"]) == 1
    (outcome,) = policy["status"]["outcomes"]
    assert (outcome["pipeline"], outcome["outcome"]) == ("web-build", "failed")
