"""Thresholds (issue 17): failed/broken notify on the Nth consecutive failure of a pipeline only.

The outcome records count the streak (``status.outcomes[].streak``); a redelivered Nth failure
notifies again with the same key, a success ends the streak, and a ``fixed`` after a streak
that never reached the threshold is held back (nobody was told it broke).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from tekton_notifications import storm
from tekton_notifications.models import Policy, SpecError, parse_policy
from tekton_notifications.storm import PolicyState
from tests.conftest import policy_object
from tests.core.test_storm import T0, decide, finished


def policy(events: list[str], **spec: Any) -> Policy:
    obj = policy_object(events=events)
    obj["spec"].update(spec)
    return parse_policy(obj)


def run_sequence(target: Policy, outcomes: str) -> list[tuple[str, bool, str | None, str]]:
    """Feed ``outcomes`` (f = failed, s = succeeded) one per minute; what each decided."""
    state, seen = PolicyState(), []
    for minute, letter in enumerate(outcomes):
        outcome = "failed" if letter == "f" else "succeeded"
        decision = decide(target, finished(outcome, at=T0 + timedelta(minutes=minute)), state)
        state = decision.state or state
        seen.append((letter, decision.notify, decision.transition, decision.reason))
    return seen


def notified(seen: list[tuple[str, bool, str | None, str]]) -> list[tuple[int, str | None]]:
    return [(i, transition) for i, (_, notify, transition, _) in enumerate(seen) if notify]


@pytest.mark.parametrize(
    ("events", "outcomes", "expected"),
    [
        pytest.param(["failed"], "fffff", [(2, None)], id="failed-only-the-third"),
        pytest.param(["broken"], "fffff", [(2, "broken")], id="broken-at-the-third"),
        pytest.param(["failed"], "ffsfff", [(5, None)], id="a-success-restarts-the-count"),
        pytest.param(
            ["broken", "fixed"], "fffsff", [(2, "broken"), (3, "fixed")], id="fixed-after-reached"
        ),
        pytest.param(["broken", "fixed"], "ffsff", [], id="no-fixed-after-a-short-streak"),
    ],
)
def test_only_the_nth_failure_in_a_row_notifies(
    events: list[str], outcomes: str, expected: list[tuple[int, str | None]]
) -> None:
    target = policy(events, threshold={"failures": 3})
    assert notified(run_sequence(target, outcomes)) == expected


def test_held_back_failures_are_suppressed_visibly_with_the_threshold_reason() -> None:
    target = policy(["failed"], threshold={"failures": 3})
    seen = run_sequence(target, "ff")
    assert [(notify, reason) for _, notify, _, reason in seen] == [
        (False, "threshold"),
        (False, "threshold"),
    ]
    first = decide(target, finished("failed"), PolicyState())
    assert first.suppressed == "threshold: failure 1 of 3 in a row"


def test_a_redelivered_nth_failure_notifies_again_with_the_same_state() -> None:
    target = policy(["failed"], threshold={"failures": 2})
    state = PolicyState()
    first = decide(target, finished("failed", at=T0), state)
    nth_run = finished("failed", at=T0 + timedelta(minutes=1))
    second = decide(target, nth_run, first.state or state)
    assert second.notify and second.state is not None
    again = decide(target, nth_run, second.state)
    assert again.notify and again.state is None, "a redelivery writes nothing"


def test_the_streak_and_when_it_turned_red_survive_the_status() -> None:
    target = policy(["failed"], threshold={"failures": 5})
    state = PolicyState()
    for minute in range(3):
        decision = decide(target, finished("failed", at=T0 + timedelta(minutes=minute)), state)
        state = decision.state or state
    (record,) = PolicyState.from_status(state.status()).outcomes
    assert (record.streak, record.since) == (3, T0.isoformat().replace("+00:00", "Z"))


@pytest.mark.parametrize(
    ("spec", "path"),
    [
        pytest.param({"threshold": {"failures": 0}}, "spec.threshold.failures", id="zero"),
        pytest.param({"threshold": {"failures": "3"}}, "spec.threshold.failures", id="string"),
        pytest.param({"threshold": {}}, "spec.threshold.failures", id="missing"),
    ],
)
def test_an_invalid_threshold_names_its_field(spec: dict[str, Any], path: str) -> None:
    with pytest.raises(SpecError) as raised:
        policy(["failed"], **spec)
    assert raised.value.path == path


def test_a_threshold_needs_failures_to_count() -> None:
    with pytest.raises(SpecError) as raised:
        policy(["succeeded"], threshold={"failures": 2})
    assert raised.value.path == "spec.threshold"


@pytest.mark.parametrize(
    ("spec", "writes"),
    [
        pytest.param({}, 1, id="neither-writes-a-failing-pipeline-once"),
        pytest.param({"threshold": {"failures": 9}}, 4, id="a-threshold-counts-every-failure"),
        pytest.param(
            {"remind": {"after": "1h", "every": "1h"}}, 4, id="reminders-follow-the-last-run"
        ),
    ],
)
def test_only_policies_that_need_the_streak_write_every_failure(
    spec: dict[str, Any], writes: int
) -> None:
    target = policy(["failed", "fixed"], **spec)
    written, state = 0, PolicyState()
    for minute in range(4):
        decision: storm.Decision = decide(
            target, finished("failed", at=T0 + timedelta(minutes=minute)), state
        )
        written += decision.state is not None
        state = decision.state or state
    assert written == writes
    (record,) = state.outcomes
    assert record.since == T0.isoformat().replace("+00:00", "Z"), "red since the first"
