"""Delivery outcomes in policy and template status: counts, the last failure, ``Delivering``.

Pure: the status recorder tallies the ``delivered``/``deliveryfailed`` events it records
(first time only) and, at each flush, turns each tally into status fields:
``deliveredCount``, ``deliveryFailedCount``, ``lastDeliveryFailure {time, run, message}``, and
on templates ``consecutiveDeliveryFailures`` and the ``Delivering`` condition, False after
:data:`FAILURE_THRESHOLD` failed notification runs of the template in a row (a broken
webhook Secret shows in ``kubectl get notificationtemplates``), True again at the next
delivered one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

DELIVERING: Final = "Delivering"
#: Failed runs of one template in a row that turn its Delivering condition False.
FAILURE_THRESHOLD: Final = 3


@dataclass
class Tally:
    """Outcomes of one policy's or template's notification runs since the last flush."""

    delivered: int = 0
    failed: int = 0
    last_failure: dict[str, str] | None = None
    #: A delivered run came after the failures counted before it: the streak starts over.
    reset: bool = False
    #: Failures since the last delivered run of this tally (or since the last flush).
    streak: int = 0

    def add_delivered(self) -> None:
        self.delivered += 1
        self.reset, self.streak = True, 0

    def add_failed(self, failure: dict[str, str]) -> None:
        self.failed += 1
        self.streak += 1
        self.last_failure = failure

    def merge(self, later: Tally) -> Tally:
        """This tally followed by ``later`` (put back after a failed status write)."""
        return Tally(
            delivered=self.delivered + later.delivered,
            failed=self.failed + later.failed,
            last_failure=later.last_failure or self.last_failure,
            reset=self.reset or later.reset,
            streak=later.streak if later.reset else self.streak + later.streak,
        )


def fields(
    status: Mapping[str, Any], tally: Tally, *, template: bool, generation: int, timestamp: str
) -> dict[str, Any]:
    """The status fields ``tally`` changes, over ``status`` as it is (conditions included)."""
    patch: dict[str, Any] = {}
    if tally.delivered:
        patch["deliveredCount"] = int(status.get("deliveredCount") or 0) + tally.delivered
    if tally.failed:
        patch["deliveryFailedCount"] = int(status.get("deliveryFailedCount") or 0) + tally.failed
    if tally.last_failure is not None:
        patch["lastDeliveryFailure"] = tally.last_failure
    if not template:
        return patch
    before = int(status.get("consecutiveDeliveryFailures") or 0)
    streak = tally.streak if tally.reset else before + tally.streak
    if streak != before:
        patch["consecutiveDeliveryFailures"] = streak
    failing = streak >= FAILURE_THRESHOLD
    last = tally.last_failure or status.get("lastDeliveryFailure") or {}
    condition = {
        "type": DELIVERING,
        "status": "False" if failing else "True",
        "reason": "DeliveryFailing" if failing else "Delivered",
        "message": (
            f"{streak} notification runs in a row failed; last: {last.get('run')}: "
            f"{last.get('message')}"
            if failing
            else "notification runs are delivered"
            if not streak
            else f"{streak} of {FAILURE_THRESHOLD} failed runs in a row before not Delivering"
        )[:1024],
        "lastTransitionTime": timestamp,
        "observedGeneration": generation,
    }
    conditions = [c for c in status.get("conditions") or [] if isinstance(c, Mapping)]
    previous = next((c for c in conditions if c.get("type") == DELIVERING), None)
    if previous is not None and previous.get("status") == condition["status"]:
        condition["lastTransitionTime"] = previous.get("lastTransitionTime", timestamp)
    if previous != condition:
        patch["conditions"] = [c for c in conditions if c.get("type") != DELIVERING] + [condition]
    return patch
