"""Admission per namespace and the watchdog of workers (stages/fairness.py), in-process.

One namespace's events hold at most its share of the workers; what is over a share waits a
bounded time, then gets 429 (its share) or 503 (every worker); an event in flight past the
deadline makes liveness false and is named. Clocks are passed in: no sleeping on timers
except where waiting itself is the behaviour (bounds are generous).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from tekton_notifications import metrics
from tekton_notifications.stages import fairness
from tekton_notifications.stages.fairness import Admission, Limits, Refusal, Ticket

TEKTON_SOURCE = "/apis///namespaces/{ns}//build-42"
POLICY_SOURCE = "/apis/notifications.tekton.dev/v1alpha1/namespaces/{ns}/notificationpolicies/p"


def run_data(kind: str, namespace: Any) -> dict[str, Any]:
    return {kind: {"metadata": {"name": "build-42", "namespace": namespace}}}


@pytest.mark.parametrize(
    ("attributes", "data", "expected"),
    [
        pytest.param(
            {"source": TEKTON_SOURCE.format(ns="ci")},
            run_data("pipelineRun", "ci"),
            "ci",
            id="tekton-pipelinerun",
        ),
        pytest.param({}, run_data("taskRun", "web"), "web", id="tekton-taskrun-no-source"),
        pytest.param({}, run_data("customRun", "web"), "web", id="tekton-customrun"),
        pytest.param(
            {"source": TEKTON_SOURCE.format(ns="victim")},
            run_data("pipelineRun", "flood"),
            "flood",
            id="data-wins-over-a-forged-source",
        ),
        pytest.param(
            {"source": TEKTON_SOURCE.format(ns="ci")},
            {"pipelineRun": {"metadata": {"name": "x"}}},
            "ci",
            id="no-namespace-in-data-falls-back-to-source",
        ),
        pytest.param(
            {"source": TEKTON_SOURCE.format(ns="ci")},
            b'{"pipelineRun": {}}',
            "ci",
            id="undecoded-data-falls-back-to-source",
        ),
        pytest.param(
            {"source": POLICY_SOURCE.format(ns="web")},
            {"policy": {"name": "p", "namespace": "web"}, "runEvent": {}},
            "web",
            id="stage-event-policy-namespace",
        ),
        pytest.param(
            {"source": "/apis/notifications.tekton.dev/v1alpha1/clusternotificationpolicies/p"},
            {"policy": {"name": "p", "namespace": "platform", "kind": "Cluster"}},
            "platform",
            id="cluster-policy-counts-for-its-template-namespace",
        ),
        pytest.param(
            {"source": TEKTON_SOURCE.format(ns="ci")},
            run_data("pipelineRun", "Not_A_Namespace"),
            fairness.UNKNOWN,
            id="invalid-name-is-unknown-not-a-new-label",
        ),
        pytest.param({}, run_data("pipelineRun", "a" * 64), fairness.UNKNOWN, id="too-long"),
        pytest.param({}, run_data("pipelineRun", 7), fairness.UNKNOWN, id="not-a-string"),
        pytest.param({"source": "/somewhere"}, None, fairness.UNKNOWN, id="nothing-to-go-by"),
    ],
)
def test_the_namespace_an_event_works_for(
    attributes: dict[str, str], data: object, expected: str
) -> None:
    assert fairness.namespace_of(attributes, data) == expected


# Each step: ("admit", namespace) expecting "ok" or a status, or ("release", index of the
# n-th ticket handed out).
Step = tuple[str, Any, Any]


@pytest.mark.parametrize(
    ("limits", "steps"),
    [
        pytest.param(
            Limits(workers=3, per_namespace=2),
            [
                ("admit", "flood", "ok"),
                ("admit", "flood", "ok"),
                ("admit", "flood", 429),
                ("admit", "ci", "ok"),
                ("admit", "web", 503),
            ],
            id="a-namespace-holds-its-share-others-the-rest",
        ),
        pytest.param(
            Limits(workers=3, per_namespace=2),
            [
                ("admit", "flood", "ok"),
                ("admit", "flood", "ok"),
                ("admit", "flood", 429),
                ("release", 0, None),
                ("admit", "flood", "ok"),
            ],
            id="a-release-frees-the-share",
        ),
        pytest.param(
            Limits(workers=2, per_namespace=2),
            [
                ("admit", "a", "ok"),
                ("admit", "b", "ok"),
                ("admit", "c", 503),
                ("release", 1, None),
                ("admit", "c", "ok"),
            ],
            id="all-workers-busy-is-503-until-one-is-free",
        ),
        pytest.param(
            Limits(workers=4, per_namespace=1),
            [
                ("admit", fairness.UNKNOWN, "ok"),
                ("admit", fairness.UNKNOWN, 429),
                ("admit", "ci", "ok"),
            ],
            id="unknown-namespaces-share-one-share",
        ),
        pytest.param(
            Limits(workers=2, per_namespace=1),
            [
                ("admit", "a", "ok"),
                ("release", 0, None),
                ("release", 0, None),
                ("admit", "a", "ok"),
                ("admit", "b", "ok"),
                ("admit", "c", 503),
            ],
            id="releasing-twice-frees-one-worker",
        ),
    ],
)
def test_admission(limits: Limits, steps: list[Step]) -> None:
    admission = Admission(limits, stage="test-admission")
    tickets: list[Ticket] = []
    for action, arg, expected in steps:
        if action == "release":
            admission.release(tickets[arg])
            continue
        outcome = admission.try_admit(arg, f"event-{len(tickets)}", "t")
        if expected == "ok":
            assert isinstance(outcome, Ticket), outcome
            tickets.append(outcome)
        else:
            assert isinstance(outcome, Refusal) and outcome.status == expected, outcome


def test_a_refusal_says_whose_share_is_spent() -> None:
    admission = Admission(Limits(workers=4, per_namespace=1), stage="test-message")
    admission.try_admit("flood", "1")
    refusal = admission.try_admit("flood", "2")
    assert refusal == Refusal(
        429,
        "namespace",
        "flood",
        "namespace flood already has 1 events in flight, its share of 1; retry later",
    )


def gauge(stage: str, namespace: str) -> float | None:
    return metrics.REGISTRY.get_sample_value(
        "tekton_notifications_in_flight", {"stage": stage, "namespace": namespace}
    )


def test_in_flight_series_exist_only_while_events_are_in_flight() -> None:
    """The namespace label comes from events: series must not outlive them (bounded labels)."""
    admission = Admission(Limits(workers=4, per_namespace=2), stage="test-gauge")
    first, second = admission.try_admit("ci", "1"), admission.try_admit("ci", "2")
    assert isinstance(first, Ticket) and isinstance(second, Ticket)
    assert gauge("test-gauge", "ci") == 2
    admission.release(first)
    assert gauge("test-gauge", "ci") == 1
    admission.release(second)
    assert gauge("test-gauge", "ci") is None


@pytest.mark.parametrize(
    ("blocker", "wanted", "labels"),
    [
        pytest.param("flood", "flood", ("flood", "namespace"), id="share-labelled-namespace"),
        pytest.param("other", "any", ("", "workers"), id="workers-unlabelled"),
    ],
)
def test_final_refusals_are_counted(blocker: str, wanted: str, labels: tuple[str, str]) -> None:
    stage = f"test-refused-{labels[1]}"
    admission = Admission(Limits(workers=1, per_namespace=1), stage=stage)
    admission.try_admit(blocker, "1")
    refusal = admission.admit(wanted, "2", wait=0)
    assert isinstance(refusal, Refusal)
    sample = {"stage": stage, "namespace": labels[0], "reason": labels[1]}
    assert metrics.REGISTRY.get_sample_value(
        "tekton_notifications_admission_refused_total", sample
    ) == pytest.approx(1)


def test_waiting_ends_when_the_namespace_s_own_event_finishes() -> None:
    admission = Admission(Limits(workers=4, per_namespace=1, queue_wait=30), stage="test-wait")
    held = admission.try_admit("ci", "1")
    assert isinstance(held, Ticket)
    timer = threading.Timer(0.1, admission.release, [held])
    timer.start()
    started = time.monotonic()
    outcome = admission.admit("ci", "2")
    waited = time.monotonic() - started
    timer.join()
    assert isinstance(outcome, Ticket)
    assert 0.05 < waited < 10, waited


def test_waiting_is_bounded_by_queue_wait() -> None:
    admission = Admission(Limits(workers=4, per_namespace=1, queue_wait=0.2), stage="test-wait")
    admission.try_admit("ci", "1")
    started = time.monotonic()
    outcome = admission.admit("ci", "2")
    waited = time.monotonic() - started
    assert isinstance(outcome, Refusal) and outcome.status == 429
    assert 0.15 < waited < 5, waited


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("ages", "alive", "message"),
    [
        pytest.param([], True, "alive", id="idle"),
        pytest.param([1.0, 29.0], True, "alive", id="busy-within-the-deadline"),
        pytest.param([30.0], True, "alive", id="at-the-deadline"),
        pytest.param(
            [31.0, 5.0],
            False,
            "1 worker(s) stuck: event e0 (dev.tekton.event.pipelinerun.failed.v1) of namespace "
            "ns0 in flight for 31.0s, past the 30s deadline; only a restart frees its worker",
            id="one-stuck",
        ),
        pytest.param(
            [40.0, 95.0],
            False,
            "2 worker(s) stuck: event e1 (dev.tekton.event.pipelinerun.failed.v1) of namespace "
            "ns1 in flight for 95.0s, past the 30s deadline; only a restart frees its worker",
            id="names-the-oldest",
        ),
    ],
)
def test_liveness_fails_while_a_worker_is_stuck(
    ages: list[float], alive: bool, message: str
) -> None:
    clock = Clock()
    admission = Admission(Limits(stuck_after=30.0), stage="test-watchdog", clock=clock)
    started = clock.now
    for index, age in enumerate(ages):
        clock.now = started - age
        admission.try_admit(f"ns{index}", f"e{index}", "dev.tekton.event.pipelinerun.failed.v1")
    clock.now = started
    assert admission.health() == (alive, message)
    assert metrics.REGISTRY.get_sample_value(
        "tekton_notifications_stuck_workers", {"stage": "test-watchdog"}
    ) == sum(age > 30 for age in ages)


def test_liveness_recovers_when_the_stuck_event_ends() -> None:
    clock = Clock()
    admission = Admission(Limits(stuck_after=30.0), stage="test-recover", clock=clock)
    ticket = admission.try_admit("ci", "e")
    assert isinstance(ticket, Ticket)
    clock.now += 31
    assert admission.health()[0] is False
    admission.release(ticket)
    assert admission.health() == (True, "alive")


@pytest.mark.parametrize(
    ("cfg", "expected"),
    [
        pytest.param({}, Limits(10, 4, 1.0, 30.0), id="defaults"),
        pytest.param({"NOTIFICATIONS_WORKERS": " "}, Limits(), id="blank-is-default"),
        pytest.param(
            {
                "NOTIFICATIONS_WORKERS": "6",
                "NOTIFICATIONS_NAMESPACE_WORKERS": "2",
                "NOTIFICATIONS_QUEUE_WAIT": "0.5",
                "NOTIFICATIONS_STUCK_AFTER": "60",
            },
            Limits(6, 2, 0.5, 60.0),
            id="all-set",
        ),
    ],
)
def test_limits_from_config(cfg: dict[str, str], expected: Limits) -> None:
    assert Limits.from_config(cfg) == expected


@pytest.mark.parametrize(
    ("cfg", "error"),
    [
        pytest.param({"NOTIFICATIONS_WORKERS": "many"}, "is not a number", id="not-a-number"),
        pytest.param({"NOTIFICATIONS_NAMESPACE_WORKERS": "11"}, "per_namespace", id="share-big"),
        pytest.param({"NOTIFICATIONS_NAMESPACE_WORKERS": "0"}, "per_namespace", id="share-zero"),
        pytest.param({"NOTIFICATIONS_STUCK_AFTER": "0"}, "stuck_after", id="no-deadline"),
        pytest.param({"NOTIFICATIONS_QUEUE_WAIT": "-1"}, "queue_wait", id="negative-wait"),
    ],
)
def test_bad_limits_stop_the_start(cfg: dict[str, str], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        Limits.from_config(cfg)
