"""Storm control as a specification: transitions (``fixed``), rate limits, and their state."""

from __future__ import annotations

import functools
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tekton_notifications import ratelimits, storm, transitions
from tekton_notifications.events import RunEvent, parse_event
from tekton_notifications.matching import PolicyIndex
from tekton_notifications.models import Policy, RateLimit, SpecError, parse_policy
from tekton_notifications.policystate import MemoryStatus, PolicyGone, PolicyStates
from tekton_notifications.storm import PolicyState
from tests.conftest import policy_object

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
_serial = iter(range(1, 1_000_000))


def finished(
    outcome: str = "failed",
    *,
    pipeline: str = "build",
    at: datetime = T0,
    kind: str = "PipelineRun",
    reason: str | None = None,
    labels: dict[str, str] | None = None,
    name: str | None = None,
    uid: str | None = None,
    generate_name: str | None = None,
) -> RunEvent:
    """A finished run of ``pipeline`` (``outcome`` succeeded, failed, cancelled, timedOut)."""
    serial = next(_serial)
    name = name or f"{pipeline}-run-{serial}"
    event = "successful" if outcome == "succeeded" else "failed"
    status = "True" if outcome == "succeeded" else "False"
    reason = (
        reason
        or {
            "succeeded": "Succeeded",
            "failed": "Failed",
            "cancelled": "Cancelled",
            "timedOut": "PipelineRunTimeout",
        }[outcome]
    )
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": "ci",
        "uid": uid or f"uid-{serial}",
        "labels": labels if labels is not None else {"tekton.dev/pipeline": pipeline},
    }
    if generate_name:
        metadata["generateName"] = generate_name
    run = {
        "metadata": metadata,
        "status": {
            "startTime": (at - timedelta(minutes=2)).isoformat(),
            "completionTime": at.isoformat(),
            "conditions": [{"type": "Succeeded", "status": status, "reason": reason}],
        },
    }
    key = kind[0].lower() + kind[1:]
    return parse_event(
        {"id": f"e{serial}", "source": "s", "type": f"dev.tekton.event.{key.lower()}.{event}.v1"},
        {key: run},
    )


def policy(
    events: list[str] | None = None, rate_limit: dict[str, Any] | None = None, **more: Any
) -> Policy:
    return parse_policy(policy_object(events=events or ["failed"], rate_limit=rate_limit, **more))


# Which pipeline a run belongs to ------------------------------------------------------------


def test_a_pipelinerun_belongs_to_its_pipeline() -> None:
    assert finished(pipeline="build").pipeline == "build"


def test_a_taskrun_of_a_pipeline_belongs_to_that_pipeline_task() -> None:
    event = finished(
        kind="TaskRun",
        labels={"tekton.dev/pipeline": "build", "tekton.dev/pipelineTask": "unit-tests"},
    )
    assert event.pipeline == "build/unit-tests"


def test_a_standalone_taskrun_belongs_to_its_task() -> None:
    event = finished(kind="TaskRun", labels={"tekton.dev/task": "lint"})
    assert event.pipeline == "lint"


def test_runs_of_embedded_specs_are_grouped_by_their_generate_name() -> None:
    # Tekton labels a PipelineRun with an embedded pipelineSpec with its own name.
    event = finished(
        name="nightly-x7k2p",
        labels={"tekton.dev/pipeline": "nightly-x7k2p"},
        generate_name="nightly-",
    )
    assert event.pipeline == "nightly"


def test_a_run_with_nothing_to_group_by_is_its_own_pipeline() -> None:
    assert finished(name="one-off", labels={}).pipeline == "one-off"


# Transitions: fixed -------------------------------------------------------------------------


def test_a_success_after_a_failure_is_fixed_and_a_second_success_is_not() -> None:
    failed = transitions.observe((), finished("failed"))
    assert failed.transition == "broken" and failed.updated is not None

    fixed = transitions.observe(failed.updated, finished("succeeded", at=T0 + timedelta(hours=1)))
    assert fixed.transition == "fixed"
    assert fixed.previous is not None and fixed.previous.outcome == "failed"
    assert fixed.updated is not None

    again = transitions.observe(fixed.updated, finished("succeeded", at=T0 + timedelta(hours=2)))
    assert again.transition is None
    assert again.updated is None, "still succeeding: nothing to write"


def test_the_first_success_ever_seen_is_not_a_fix_and_writes_nothing() -> None:
    observed = transitions.observe((), finished("succeeded"))
    assert (observed.transition, observed.updated) == (None, None)


def test_repeated_failures_write_once_and_only_the_first_breaks_the_pipeline() -> None:
    first = transitions.observe((), finished("failed"))
    assert first.updated is not None and first.transition == "broken"
    second = transitions.observe(first.updated, finished("failed", at=T0 + timedelta(minutes=5)))
    assert second.updated is None and second.transition is None


def test_a_failure_after_a_success_breaks_the_pipeline_again() -> None:
    failed = transitions.observe((), finished("failed"))
    assert failed.updated is not None
    fixed = transitions.observe(failed.updated, finished("succeeded", at=T0 + timedelta(1)))
    assert fixed.updated is not None
    again = transitions.observe(fixed.updated, finished("failed", at=T0 + timedelta(2)))
    assert again.transition == "broken"
    assert again.previous is not None and again.previous.outcome == "succeeded"


def test_a_timeout_is_a_failure_that_a_success_fixes() -> None:
    timed_out = transitions.observe((), finished("timedOut"))
    assert timed_out.updated is not None
    fixed = transitions.observe(timed_out.updated, finished("succeeded", at=T0 + timedelta(1)))
    assert fixed.transition == "fixed"


def test_cancelled_runs_neither_break_nor_fix_a_pipeline() -> None:
    failed = transitions.observe((), finished("failed"))
    assert failed.updated is not None
    cancelled = transitions.observe(failed.updated, finished("cancelled", at=T0 + timedelta(1)))
    assert (cancelled.transition, cancelled.updated) == (None, None)
    fixed = transitions.observe(failed.updated, finished("succeeded", at=T0 + timedelta(2)))
    assert fixed.transition == "fixed"


def test_unfinished_runs_are_not_outcomes() -> None:
    running = parse_event(
        {"id": "r", "source": "s", "type": "dev.tekton.event.pipelinerun.running.v1"},
        {"pipelineRun": {"metadata": {"name": "x", "namespace": "ci"}, "status": {}}},
    )
    assert transitions.observe((), running).updated is None


def test_each_pipeline_has_its_own_outcome() -> None:
    failed = transitions.observe((), finished("failed", pipeline="build"))
    assert failed.updated is not None
    other = transitions.observe(failed.updated, finished("succeeded", pipeline="deploy"))
    assert other.transition is None
    fixed = transitions.observe(failed.updated, finished("succeeded", pipeline="build"))
    assert fixed.transition == "fixed"


def test_a_redelivered_fix_is_fixed_again_without_a_write() -> None:
    failed = transitions.observe((), finished("failed"))
    assert failed.updated is not None
    success = finished("succeeded", at=T0 + timedelta(hours=1))
    fixed = transitions.observe(failed.updated, success)
    assert fixed.updated is not None

    replay = transitions.observe(fixed.updated, success)
    assert replay.transition == "fixed"
    assert replay.updated is None
    assert replay.previous is not None and replay.previous.outcome == "failed"


def test_an_event_older_than_the_recorded_outcome_changes_nothing() -> None:
    later_failure = transitions.observe((), finished("failed", at=T0 + timedelta(hours=2)))
    assert later_failure.updated is not None
    # Delivered late: this success finished before the failure already recorded.
    stale = transitions.observe(later_failure.updated, finished("succeeded", at=T0))
    assert (stale.transition, stale.updated) == (None, None)
    assert "stale" in stale.note


def test_records_are_bounded_and_failures_outlive_successes() -> None:
    records: tuple[transitions.Outcome, ...] = ()
    for index in range(transitions.MAX_OUTCOMES):
        at = T0 + timedelta(minutes=index)
        observed = transitions.observe(records, finished("failed", pipeline=f"p{index}", at=at))
        assert observed.updated is not None
        records = observed.updated
    fixed = transitions.observe(records, finished("succeeded", pipeline="p0", at=T0 + timedelta(1)))
    assert fixed.updated is not None
    newcomer = transitions.observe(
        fixed.updated, finished("failed", pipeline="new", at=T0 + timedelta(2))
    )
    assert newcomer.updated is not None
    kept = {record.pipeline for record in newcomer.updated}
    assert len(kept) == transitions.MAX_OUTCOMES
    assert "new" in kept and "p0" not in kept, "the oldest success went first"
    assert all(record.outcome == "failed" for record in newcomer.updated)


def test_records_survive_a_round_trip_through_status_and_junk_is_dropped() -> None:
    failed = transitions.observe((), finished("failed"))
    assert failed.updated is not None
    status = PolicyState(outcomes=failed.updated).status()
    status["outcomes"] += [{"kind": "PipelineRun"}, "junk", {"pipeline": "x", "outcome": "odd"}]
    assert transitions.parse_records(status) == failed.updated
    assert PolicyState.from_status("not a mapping") == PolicyState()


# Rate limits --------------------------------------------------------------------------------

FIVE_PER_HOUR = RateLimit(limit=5, window=3600, window_text="1h")
NOW = T0.timestamp()


def spend(
    log: tuple[ratelimits.Sent, ...],
    count: int,
    limit: RateLimit = FIVE_PER_HOUR,
    *,
    start: float = NOW,
    pipeline: str = "build",
    prefix: str = "o",
) -> tuple[tuple[ratelimits.Sent, ...], list[bool]]:
    admitted = []
    for index in range(count):
        admission = ratelimits.admit(
            log, limit, occurrence=f"{prefix}{index}", pipeline=pipeline, now=start + index
        )
        admitted.append(admission.admitted)
        if admission.updated is not None:
            log = admission.updated
    return log, admitted


def test_at_most_limit_notifications_are_admitted_in_a_window() -> None:
    log, admitted = spend((), 8)
    assert admitted == [True] * 5 + [False] * 3
    assert len(log) == 5


def test_a_suppression_says_when_the_next_one_can_go_and_writes_nothing() -> None:
    log, _ = spend((), 5)
    admission = ratelimits.admit(log, FIVE_PER_HOUR, occurrence="x", pipeline="", now=NOW + 60)
    assert not admission.admitted and admission.updated is None
    assert admission.frees_at == NOW + 3600
    assert admission.describe(FIVE_PER_HOUR) == (
        "rate limit reached: 5 sent, at most 5 per 1h; the next one can go at 2026-11-25T13:00:00Z"
    )


def test_the_window_slides() -> None:
    log, _ = spend((), 5)
    assert spend(log, 1, start=NOW + 3599, prefix="late")[1] == [False]
    log, admitted = spend(log, 1, start=NOW + 3600.5, prefix="later")
    assert admitted == [True]
    assert len(log) == 5, "expired entries are dropped when writing"


def test_a_redelivered_notification_is_admitted_again_without_spending_the_budget() -> None:
    log, _ = spend((), 5)
    again = ratelimits.admit(log, FIVE_PER_HOUR, occurrence="o2", pipeline="", now=NOW + 10)
    assert again.admitted and again.updated is None
    assert again.describe(FIVE_PER_HOUR) == "5 of 5 per 1h"


def test_a_per_pipeline_limit_gives_each_pipeline_its_own_budget() -> None:
    per_pipeline = RateLimit(limit=2, window=600, window_text="10m", per="pipeline")
    log, build = spend((), 3, per_pipeline, pipeline="build", prefix="b")
    log, deploy = spend(log, 3, per_pipeline, pipeline="deploy", prefix="d")
    assert build == deploy == [True, True, False]


def test_a_per_policy_limit_is_shared_by_all_pipelines() -> None:
    log, build = spend((), 3, pipeline="build", prefix="b")
    _, deploy = spend(log, 3, pipeline="deploy", prefix="d")
    assert build + deploy == [True] * 5 + [False]


def test_the_log_survives_a_round_trip_through_status() -> None:
    log, _ = spend((), 3)
    status = PolicyState(sent=log).status()
    assert status["rateLimit"]["sent"][0] == {"occurrence": "o0", "time": "2026-11-25T12:00:00Z"}
    assert ratelimits.parse_log(status) == log


# Parsing spec.rateLimit ------------------------------------------------------------------------


def test_a_rate_limit_is_parsed_with_its_window_in_seconds() -> None:
    parsed = policy(rate_limit={"limit": 3, "window": "1h30m", "per": "pipeline"})
    assert parsed.rate_limit == RateLimit(3, 5400.0, "1h30m", "pipeline")
    assert parsed.rate_limit.describe() == "3 per 1h30m per pipeline"
    assert policy(rate_limit={"limit": 1, "window": "10m"}).rate_limit == RateLimit(
        1, 600.0, "10m", "policy"
    )


@pytest.mark.parametrize(
    ("rate_limit", "path"),
    [
        ({"limit": 0, "window": "1m"}, "spec.rateLimit.limit"),
        ({"limit": 101, "window": "1m"}, "spec.rateLimit.limit"),
        ({"limit": True, "window": "1m"}, "spec.rateLimit.limit"),
        ({"limit": "5", "window": "1m"}, "spec.rateLimit.limit"),
        ({"limit": 5}, "spec.rateLimit.window"),
        ({"limit": 5, "window": "soon"}, "spec.rateLimit.window"),
        ({"limit": 5, "window": "100ms"}, "spec.rateLimit.window"),
        ({"limit": 5, "window": "169h"}, "spec.rateLimit.window"),
        ({"limit": 5, "window": "1m", "per": "team"}, "spec.rateLimit.per"),
        ("5 per minute", "spec.rateLimit"),
    ],
)
def test_an_invalid_rate_limit_names_its_field(rate_limit: Any, path: str) -> None:
    with pytest.raises(SpecError) as raised:
        policy(rate_limit=rate_limit)
    assert raised.value.path == path


# Deciding -------------------------------------------------------------------------------------


def decide(
    target: Policy, event: RunEvent, state: PolicyState, *, now: float = NOW
) -> storm.Decision:
    (match, *_), _ = PolicyIndex([target]).match(event)
    return storm.decide(
        target, event, direct=match.direct, suspended=match.suspended, state=state, now=now
    )


def test_failed_and_fixed_notifies_each_failure_and_once_when_fixed() -> None:
    target = policy(["failed", "fixed"])
    state = PolicyState()
    sent = []
    for outcome, hour in [("failed", 0), ("failed", 1), ("succeeded", 2), ("succeeded", 3)]:
        decision = decide(target, finished(outcome, at=T0 + timedelta(hours=hour)), state)
        sent.append((outcome, decision.notify, decision.transition))
        state = decision.state or state
    assert sent == [
        ("failed", True, "broken"),  # the template may say so: event.transition
        ("failed", True, None),
        ("succeeded", True, "fixed"),
        ("succeeded", False, None),
    ]


def test_broken_and_fixed_send_one_message_per_change_of_a_flapping_pipeline() -> None:
    target = policy(["broken", "fixed"])
    state, sent = PolicyState(), []
    outcomes = ["failed", "failed", "failed", "succeeded", "succeeded", "failed", "succeeded"]
    for minute, outcome in enumerate(outcomes):
        decision = decide(target, finished(outcome, at=T0 + timedelta(minutes=minute)), state)
        state = decision.state or state
        if decision.notify:
            sent.append((minute, decision.transition))
    assert sent == [(0, "broken"), (3, "fixed"), (5, "broken"), (6, "fixed")]


def test_a_fixed_only_policy_watches_failures_without_notifying_them() -> None:
    target = policy(["fixed"])
    failure = decide(target, finished("failed"), PolicyState())
    assert (failure.notify, failure.suppressed) == (False, None)
    assert failure.state is not None, "the failure is remembered"
    fixed = decide(target, finished("succeeded", at=T0 + timedelta(1)), failure.state)
    assert fixed.notify and fixed.transition == "fixed"


def test_a_fixed_policy_is_a_candidate_for_every_finished_run_only() -> None:
    index = PolicyIndex([policy(["fixed"])])
    assert index.candidates(finished("failed"))
    assert index.candidates(finished("succeeded"))
    started = parse_event(
        {"id": "s", "source": "s", "type": "dev.tekton.event.pipelinerun.started.v1"},
        {"pipelineRun": {"metadata": {"name": "x", "namespace": "ci"}, "status": {}}},
    )
    assert not index.candidates(started)


def test_a_storm_of_failures_sends_the_limit_and_suppresses_the_rest() -> None:
    target = policy(rate_limit={"limit": 3, "window": "10m"})
    state, outcomes = PolicyState(), []
    for second in range(10):
        decision = decide(target, finished("failed"), state, now=NOW + second)
        outcomes.append("sent" if decision.notify else decision.suppressed)
        state = decision.state or state
    assert outcomes[:3] == ["sent"] * 3
    assert all(o and o.startswith("rate limit reached: 3 sent") for o in outcomes[3:])


def test_a_suspended_policy_suppresses_without_touching_state() -> None:
    target = policy(suspend=True)
    decision = decide(target, finished("failed"), PolicyState())
    assert (decision.notify, decision.suppressed, decision.state) == (
        False,
        "policy is suspended",
        None,
    )


def test_a_fix_is_never_suppressed_by_the_rate_limit_after_a_storm() -> None:
    target = policy(["failed", "fixed"], rate_limit={"limit": 2, "window": "1h"})
    state = PolicyState()
    for minute in range(5):
        at = T0 + timedelta(minutes=minute)
        state = decide(target, finished("failed", at=at), state).state or state
    fixed = decide(target, finished("succeeded", at=T0 + timedelta(hours=1)), state)
    assert (fixed.notify, fixed.transition, fixed.suppressed) == (True, "fixed", None)
    assert fixed.state is not None and len(fixed.state.sent) == 2, "and it spends nothing"


def test_a_transition_that_is_not_notified_spends_no_budget() -> None:
    target = policy(["fixed"], rate_limit={"limit": 1, "window": "1h"})
    failure = decide(target, finished("failed"), PolicyState())
    assert failure.state is not None and failure.state.sent == ()


# State kept in the policy's status, with optimistic concurrency --------------------------------


def test_replicas_deciding_at_once_never_exceed_the_limit() -> None:
    target = policy(rate_limit={"limit": 5, "window": "1h"})
    api = MemoryStatus()
    replicas = [api.states(), api.states()]
    admitted: list[bool] = []
    lock = threading.Lock()

    def run(replica: PolicyStates, first: int) -> None:
        for index in range(first, first + 20):
            event = finished("failed", uid=f"run-{index}")
            decision = replica.decide(
                target,
                functools.partial(_decide_for, target, event),
            )
            with lock:
                admitted.append(decision.notify)

    threads = [threading.Thread(target=run, args=(replicas[n % 2], n * 20)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert admitted.count(True) == 5 and len(admitted) == 80


def test_a_replica_deciding_on_a_stale_copy_meets_a_conflict_and_decides_again() -> None:
    target = policy(rate_limit={"limit": 1, "window": "1h"})
    api = MemoryStatus()
    first, second = api.states(), api.states()
    initial = api.read("notificationpolicies", "ci", "notify")
    first.observe(initial, cluster=False)
    second.observe(initial, cluster=False)  # its informer has not seen the first's write yet

    def decider(uid: str) -> Any:
        event = finished("failed", uid=uid)
        return lambda state: storm.decide(target, event, direct=True, state=state, now=NOW)

    assert first.decide(target, decider("a")).notify
    late = second.decide(target, decider("b"))
    assert not late.notify and late.suppressed
    assert second.conflicts == 1


def test_a_deleted_policy_is_reported_not_retried() -> None:
    target = policy(rate_limit={"limit": 5, "window": "1h"})

    def gone(*_: Any) -> Any:
        from tekton_notifications.kube import ApiError

        raise ApiError(
            verb="get",
            what="notificationpolicies ci/p",
            status=404,
            reason="NotFound",
            message="gone",
            retryable=False,
        )

    states = PolicyStates(read=gone, write=gone)
    with pytest.raises(PolicyGone):
        states.decide(
            target, lambda state: storm.decide(target, finished(), direct=True, state=state, now=0)
        )


# What templates see ----------------------------------------------------------------------------


def test_the_example_slack_template_says_which_pipeline_was_fixed_and_what_failed_before() -> None:
    import yaml

    from tekton_notifications import rendering
    from tekton_notifications.models import parse_template
    from tests.conftest import EXAMPLES

    template = rendering.compile_template(
        parse_template(yaml.safe_load((EXAMPLES / "templates" / "slack-webhook.yaml").read_text()))
    )
    success = finished("succeeded", pipeline="web-<!channel>")
    params = template.render(
        event=success,
        policy={"name": "notify", "namespace": "ci"},
        transition={
            "name": "fixed",
            "previous": {"outcome": "failed", "run": "web-run-1", "completionTime": ""},
        },
    )
    message = params["message"].encode().decode("unicode_escape")
    assert "web-&lt;!channel&gt; is fixed" in message
    assert "It had failed since web-run-1." in message
    plain = template.render(event=success, policy={"name": "notify", "namespace": "ci"})
    assert "fixed" not in plain["message"] and "previous" not in plain["message"]


def _decide_for(target: Policy, event: RunEvent, state: PolicyState) -> storm.Decision:
    return storm.decide(target, event, direct=True, state=state, now=NOW)
