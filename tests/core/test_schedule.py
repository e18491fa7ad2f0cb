"""What the scheduler owes a policy at a given time (issue 17): reminders and digests.

Pure: a policy, its status and a clock in; what is due, its identity and the status once
sent out. The stage's exactly-once tests are in tests/functions/test_scheduler.py.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from tekton_notifications import celcheck, digests, ratelimits, recording, schedule, storm
from tekton_notifications.models import Policy, parse_policy
from tekton_notifications.rendering.context import render_context
from tekton_notifications.storm import PolicyState
from tekton_notifications.transitions import Outcome
from tests.conftest import policy_object
from tests.core.test_storm import T0, decide, finished

HOUR = 3600.0
SINCE = T0.timestamp()


def policy(**spec: Any) -> Policy:
    obj = policy_object(events=["failed", "fixed"])
    obj["spec"].update(spec)
    return parse_policy(obj)


REMINDING = policy(remind={"after": "4h", "every": "24h", "max": 3})


def red(reminded: int = 0, outcome: str = "failed") -> PolicyState:
    record = Outcome(
        kind="PipelineRun",
        pipeline="build",
        outcome=outcome,
        run="build-1",
        uid="u1",
        completion_time=T0.isoformat().replace("+00:00", "Z"),
        namespace="ci",
        reminded=reminded,
    )
    return PolicyState(outcomes=(record,))


@pytest.mark.parametrize(
    ("hours", "reminded", "expected"),
    [
        pytest.param(3.9, 0, [], id="not-yet"),
        pytest.param(4, 0, [1], id="first-after-4h"),
        pytest.param(27.9, 1, [], id="sent-up-to-1"),
        pytest.param(28, 1, [2], id="second-a-day-later"),
        pytest.param(80, 0, [3], id="overdue-collapse-into-the-last-due"),
        pytest.param(500, 3, [], id="max-reached"),
    ],
)
def test_reminders_are_due_after_then_every_up_to_max(
    hours: float, reminded: int, expected: list[int]
) -> None:
    due = schedule.due(REMINDING, red(reminded), SINCE + hours * HOUR)
    assert [r.count for r in due.reminders] == expected


def test_a_fixed_pipeline_is_owed_nothing() -> None:
    assert not schedule.due(REMINDING, red(outcome="succeeded"), SINCE + 100 * HOUR)


def test_a_reminder_is_identified_by_its_streak_and_number_not_the_clock() -> None:
    early = schedule.due(REMINDING, red(), SINCE + 4 * HOUR).reminders[0]
    late = schedule.due(REMINDING, red(), SINCE + 5 * HOUR).reminders[0]
    assert early.id == late.id == "reminder/PipelineRun/build/2026-11-25T12:00:00Z/1"
    assert late.view(SINCE + 5 * HOUR)["redFor"] == "5h 0m"


def test_sent_marks_the_streak_once_and_next_due_moves_on() -> None:
    state = red()
    due = schedule.due(REMINDING, state, SINCE + 4 * HOUR)
    after = schedule.sent(state, due)
    assert after is not None and after.outcomes[0].reminded == 1
    assert schedule.sent(after, due) is None, "sent twice changes nothing"
    assert schedule.next_due(REMINDING, after) == SINCE + 28 * HOUR
    assert schedule.next_due(REMINDING, red(reminded=3)) is None


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        pytest.param(59, "0m", id="under-a-minute"),
        pytest.param(4 * HOUR + 600, "4h 10m", id="hours"),
        pytest.param(2 * 86400 + 3 * HOUR + 60, "2d 3h", id="days"),
    ],
)
def test_how_long_it_has_been_red_reads_as_people_say_it(seconds: float, text: str) -> None:
    assert schedule.describe(seconds) == text


# Digests -----------------------------------------------------------------------------------

EVERY = HOUR


def hold(held: digests.Held, serial: int, *, pipeline: str = "build", at: float = SINCE) -> Any:
    event = finished("failed", pipeline=pipeline, at=T0 + timedelta(seconds=serial))
    return digests.record(held, event, occurrence=f"o{serial}", every=EVERY, now=at)


def test_suppressions_are_counted_per_pipeline_with_the_first_and_last_run() -> None:
    held = digests.Held()
    for serial in range(3):
        held = hold(held, serial)
    held = hold(held, 9, pipeline="deploy")
    (period,) = held.periods
    assert [(i.pipeline, i.count) for i in period.items] == [("build", 3), ("deploy", 1)]
    assert period.items[0].first.run != period.items[0].last.run


def test_a_redelivered_suppression_is_counted_once() -> None:
    once = hold(digests.Held(), 1)
    assert hold(once, 1) is None


@pytest.mark.parametrize(
    ("what", "count", "expected"),
    [
        pytest.param("pipelines", digests.MAX_ITEMS + 5, (digests.MAX_ITEMS, 5, 0), id="overflow"),
        pytest.param("periods", digests.MAX_PERIODS + 2, (1, 0, 2), id="oldest-periods-dropped"),
    ],
)
def test_past_each_bound_the_count_is_kept(
    what: str, count: int, expected: tuple[int, int, int]
) -> None:
    """Nothing is lost silently: past MAX_ITEMS pipelines in a period, past MAX_PERIODS
    unsent periods, what no longer fits is counted (overflow, dropped)."""
    held = digests.Held()
    for serial in range(count):
        if what == "pipelines":
            held = hold(held, serial, pipeline=f"p{serial}")
        else:
            held = hold(held, serial, at=SINCE + serial * EVERY)
    items = len(held.periods[-1].items)
    assert (items, held.periods[-1].overflow, held.dropped) == expected


def test_a_full_digest_says_so_in_the_decision_the_filter_logs() -> None:
    target = policy(
        rateLimit={"limit": 1, "window": "1h"},
        digest={"every": "1h", "templateRef": {"name": "digest"}},
    )
    held = digests.Held()
    for serial in range(digests.MAX_PERIODS):
        held = hold(held, serial, at=SINCE + serial * EVERY)
    sent = ratelimits.Sent("spent", SINCE + 30 * EVERY)
    state = PolicyState(sent=(sent,), held=held)
    decision = decide(target, finished("failed"), state, now=SINCE + 30 * EVERY + 1)
    assert decision.suppressed and decision.state is not None
    assert decision.state.held.dropped == 1
    assert any(note.startswith(storm.DIGEST_FULL) for note in decision.notes)


def test_a_digest_is_due_once_its_period_ended_and_removed_once_sent() -> None:
    target = policy(
        rateLimit={"limit": 1, "window": "1h"},
        digest={"every": "1h", "templateRef": {"name": "digest"}},
    )
    start = digests.period_start(SINCE, EVERY)
    state = PolicyState(held=hold(digests.Held(), 1, at=start + 60))
    assert not schedule.due(target, state, start + EVERY - 1)
    due = schedule.due(target, state, start + EVERY)
    assert [d.id for d in due.digests] == ["digest/2026-11-25T12:00:00Z"]
    assert due.digests[0].view()["total"] == 1
    assert schedule.next_due(target, state) == start + EVERY
    after = schedule.sent(state, due)
    assert after is not None and after.held.periods == ()
    round_trip = PolicyState.from_status(state.status())
    assert round_trip.held == state.held


def test_templates_see_what_the_schema_declares_for_a_reminder_and_a_digest() -> None:
    """``tkn-notify schema`` ($defs.templateOnly) lists exactly the fields the render
    context holds in a reminder (event.reminder) and a digest (digest)."""
    target = policy(
        remind={"after": "4h", "every": "24h"},
        rateLimit={"limit": 1, "window": "1h"},
        digest={"every": "1h", "templateRef": {"name": "digest"}},
    )
    start = digests.period_start(SINCE, EVERY)
    state = PolicyState(red().outcomes, held=hold(digests.Held(), 1, at=start + 60))
    due = schedule.due(target, state, SINCE + 5 * HOUR)
    scheduled = {
        "reminder": due.reminders[0].view(SINCE + 5 * HOUR),
        "digest": due.digests[0].view(),
    }
    context = render_context(finished("failed"), policy={}, template={}, scheduled=scheduled)
    fields = celcheck.TEMPLATE_ONLY
    assert set(context["event"]["reminder"]) == set(fields["event.reminder"]["properties"])
    assert set(context["digest"]) == set(fields["digest"]["properties"])
    (item,) = context["digest"]["items"]
    assert set(item) == set(fields["digest"]["properties"]["items"]["items"]["properties"])
    plain = render_context(finished("failed"), policy={}, template={})
    assert (plain["event"]["reminder"], plain["digest"]) == (None, None)


def test_a_policy_whose_digest_template_is_missing_is_not_ready() -> None:
    """The status recorder's Ready condition names the digest's template as it does the
    others: a digest that could never render is visible before it is due."""
    obj = policy_object(events=["failed"])
    obj["spec"].update(
        rateLimit={"limit": 1, "window": "1h"},
        digest={"every": "1h", "templateRef": {"name": "digest"}},
    )
    ready = recording.Readiness(True, "Ready", "")
    missing = recording.policy_readiness(obj, {"slack": ready})
    assert (missing.ready, missing.reason) == (False, "TemplateNotFound")
    assert missing.message.startswith("spec.digest.templateRef: NotificationTemplate ci/digest")
    assert recording.policy_readiness(obj, {"slack": ready, "digest": ready}).ready
