"""Storm control: whether a match notifies, given the policy's state.

A match notifies unless its policy is suspended, its rate limit is spent, or it matched only
because a transition depends on it (``broken``, ``fixed``) and there was none. A notification
for a listed transition is never rate-limited: it comes at most once per streak. Rate limits
and transitions need memory across events, replicas and restarts; it lives in the policy's
own ``status``:

- ``status.outcomes``: the last outcome of each pipeline the policy selects
  (:mod:`tekton_notifications.transitions`);
- ``status.rateLimit.sent``: the notifications sent in the current window
  (:mod:`tekton_notifications.ratelimits`);
- ``status.digest``: what the rate limit held back, per period, until the scheduler sends
  it (:mod:`tekton_notifications.digests`).

A threshold (``spec.threshold.failures``) holds ``failed``/``broken`` back until the Nth
consecutive failure of a pipeline: the outcome records count the streak; a ``fixed`` after a
streak that never reached it is held back too (nobody was told it broke).

Why there and not in a ConfigMap or in the notification runs: it is deleted with the policy,
stays in the policy's namespace (a tenant's state never sits in another tenant's namespace),
is read for free by the filter's policy informer, needs no RBAC beyond ``<policies>/status``,
and ``kubectl get -o yaml`` shows it. Writes carry the ``resourceVersion`` they were computed
from, so replicas deciding at once serialize on the API server (409, re-read, decide again).
Notification runs can't hold it: they are pruned, and a suppressed notification has none.

This module decides; the policy filter reads and writes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tekton_notifications import digests, ratelimits, transitions
from tekton_notifications.digests import Held
from tekton_notifications.events import RunEvent
from tekton_notifications.models import Policy
from tekton_notifications.ratelimits import Sent
from tekton_notifications.transitions import Outcome

#: How a decision's note starts when the digest's bound dropped what was held back.
DIGEST_FULL = "digest full"


@dataclass(frozen=True)
class PolicyState:
    outcomes: tuple[Outcome, ...] = ()
    sent: tuple[Sent, ...] = ()
    held: Held = field(default_factory=Held)

    @classmethod
    def from_status(cls, status: object) -> PolicyState:
        """The state in a policy's status; a missing or mangled status is an empty state."""
        if not isinstance(status, Mapping):
            return cls()
        return cls(
            transitions.parse_records(status), ratelimits.parse_log(status), digests.parse(status)
        )

    def status(self) -> dict[str, Any]:
        """The ``status`` fields to merge-patch (lists are replaced whole)."""
        return {
            "outcomes": [record.as_status() for record in self.outcomes],
            "rateLimit": {"sent": [sent.as_status() for sent in self.sent]},
            # null (removed by the merge patch) when nothing is held back
            "digest": self.held.as_status() if self.held != Held() else None,
        }


@dataclass(frozen=True)
class Decision:
    notify: bool
    #: ``broken`` or ``fixed`` when this event changed its pipeline's outcome.
    transition: str | None = None
    previous: Outcome | None = None
    #: Why a match is held back (rate limit, suspended); None when it notifies or when it was
    #: never meant to (a run observed only for a transition that did not happen).
    suppressed: str | None = None
    #: The state to write, or None when it is unchanged.
    state: PolicyState | None = None
    #: Why it is held back, for the ``suppressed`` event: ``ratelimit`` or ``threshold``.
    reason: str = "ratelimit"
    #: What was decided and why, for logs and ``tkn-notify explain``.
    notes: tuple[str, ...] = field(default=())


def occurrence(event: RunEvent) -> str:
    """One run's one Tekton event: what a rate limit counts once, however often it arrives."""
    run = event.uid or f"{event.namespace}/{event.kind}/{event.name}"
    return hashlib.sha256(f"{run}\x00{event.tekton_event}".encode()).hexdigest()[:16]


def decide(
    policy: Policy,
    event: RunEvent,
    *,
    direct: bool,
    suspended: bool = False,
    state: PolicyState,
    now: float,
) -> Decision:
    """Whether a matched ``policy`` notifies for ``event``, and the state to write.

    ``direct``: the event is listed in ``spec.events`` (otherwise it matched only because a
    transition may follow from it). ``now``: seconds since the epoch.
    """
    notes: list[str] = []
    transition: str | None = None
    previous: Outcome | None = None
    outcomes: tuple[Outcome, ...] | None = None
    if suspended:
        return Decision(False, suppressed="policy is suspended", notes=("suspended",))
    current: Outcome | None = None
    if policy.tracks_outcomes:
        # A threshold needs the streak; a reminder names the last failing run.
        counted = policy.threshold is not None or policy.remind is not None
        observed = transitions.observe(state.outcomes, event, count=counted)
        transition, previous, outcomes = observed.transition, observed.previous, observed.updated
        current = observed.current
        notes.append(f"previous outcome: {observed.note}")
    held_back = _threshold(policy, event, current, previous)
    nth = held_back is None and policy.threshold is not None and event.final_outcome == "failed"
    if nth and transition is None and "broken" in policy.events:
        # The Nth failure in a row is when the pipeline counts as broken.
        transition, previous = "broken", None
    notified_transition = transition is not None and transition in policy.events
    notify = direct or notified_transition
    sent: tuple[Sent, ...] | None = None
    suppressed: str | None = None
    reason = "ratelimit"
    held: Held | None = None
    if held_back is not None:
        notes.append(held_back)
        if notify:  # it would have notified: held back visibly
            suppressed, reason = held_back, "threshold"
        notify, transition = False, None
    elif not notify:
        notes.append("no transition to notify")
    elif notified_transition:
        # Never rate-limited: it comes at most once per failure streak, and after a storm of
        # failures "it works again" is the one message that matters.
        notes.append(f"{transition}: not subject to the rate limit")
    elif policy.rate_limit is not None:
        admission = ratelimits.admit(
            state.sent,
            policy.rate_limit,
            occurrence=occurrence(event),
            pipeline=event.pipeline,
            now=now,
        )
        notes.append(admission.describe(policy.rate_limit))
        sent = admission.updated
        if not admission.admitted:
            notify, suppressed = False, admission.describe(policy.rate_limit)
            if policy.digest is not None:
                held = digests.record(
                    state.held,
                    event,
                    occurrence=occurrence(event),
                    every=policy.digest.every,
                    now=now,
                )
                notes.append("kept for the digest" if held else "in the digest already")
                if held is not None and held.dropped > state.held.dropped:
                    notes.append(
                        f"{DIGEST_FULL}: {held.dropped - state.held.dropped} held back dropped, "
                        f"{digests.MAX_PERIODS} periods left unsent (is the scheduler running?)"
                    )
    changed = outcomes is not None or sent is not None or held is not None
    new_state = (
        PolicyState(
            outcomes if outcomes is not None else state.outcomes,
            sent if sent is not None else state.sent,
            held if held is not None else state.held,
        )
        if changed
        else None
    )
    return Decision(
        notify, transition, previous, suppressed, new_state, reason=reason, notes=tuple(notes)
    )


def _threshold(
    policy: Policy, event: RunEvent, current: Outcome | None, previous: Outcome | None
) -> str | None:
    """Why a threshold holds this event back, or None when it does not."""
    threshold = policy.threshold
    if threshold is None or event.final_outcome is None:
        return None
    wanted = threshold.failures
    if event.final_outcome == "succeeded":
        if previous is not None and previous.outcome == "failed" and previous.streak < wanted:
            return f"threshold: the streak ended at {previous.streak} of {wanted} failures"
        return None
    if current is None or current.outcome != "failed":
        return "threshold: an older run than the one recorded for this pipeline"
    streak = current.streak
    if streak == wanted:
        return None
    if streak < wanted:
        return f"threshold: failure {streak} of {wanted} in a row"
    return f"threshold: failure {streak} in a row, notified at {wanted}"
