"""Which events the policy filter answers without a worker thread (``base.prepare``).

func-python runs the stage on its event loop when the stage says nothing will block: a thread
hop costs more than the filter's decision. Whatever may block (policy state, the run check,
a fan-out to the broker) must still go to a worker, or one slow API call would stall every
request of the process.
"""

from __future__ import annotations

from typing import Any

import pytest

from tekton_notifications.matching import PolicyIndex
from tekton_notifications.models import parse_policy
from tekton_notifications.stages import base
from tekton_notifications.stages.base import Response
from tekton_notifications.stages.policy_filter import LOOP_MAX_CEL, PolicyFilter
from tests.conftest import load_cloudevent, policy_object

FAILED_TASKRUN = "07-taskrun-failed.json"


def _filter(*policies: dict[str, Any]) -> PolicyFilter:
    return PolicyFilter(PolicyIndex(parse_policy(p) for p in policies))


def _prepared(stage: PolicyFilter) -> Response | base.Blocking:
    cloudevent = load_cloudevent(FAILED_TASKRUN)
    attributes = {k: str(v) for k, v in cloudevent.items() if k != "data"}
    return base.prepare(base.SignedStage(stage, None), attributes, cloudevent["data"])


@pytest.mark.parametrize(
    ("policies", "on_the_loop", "status"),
    [
        pytest.param([], True, 202, id="no policy: answered on the loop"),
        pytest.param([policy_object()], True, 200, id="one plain match: the reply, on the loop"),
        pytest.param(
            [policy_object(suspend=True)],
            True,
            200,
            id="suspended: the suppressed event, no state needed, on the loop",
        ),
        pytest.param(
            [policy_object(rate_limit={"limit": 2, "window": "1h"})],
            False,
            200,
            id="rate limit: state is read and written, worker",
        ),
        pytest.param(
            [policy_object(events=["failed", "fixed"])],
            False,
            200,
            id="transition: state, worker",
        ),
        pytest.param(
            [
                policy_object(f"p{i}", when=f'event.name == "other-{i}"')
                for i in range(LOOP_MAX_CEL + 1)
            ],
            False,
            202,
            id="more CEL to evaluate than the loop takes: worker",
        ),
        pytest.param(
            [
                policy_object(f"p{i}", when=f'event.name == "other-{i}"')
                for i in range(LOOP_MAX_CEL)
            ],
            True,
            202,
            id="as much CEL as the loop takes: on the loop",
        ),
        pytest.param(
            [policy_object("a"), policy_object("b")],
            False,
            503,
            id="two matches: a fan-out to the broker, worker (503 here: no K_SINK)",
        ),
    ],
)
def test_what_may_block_goes_to_a_worker(
    policies: list[dict[str, Any]], on_the_loop: bool, status: int
) -> None:
    prepared = _prepared(_filter(*policies))
    assert isinstance(prepared, Response) is on_the_loop
    answer = prepared if isinstance(prepared, Response) else prepared()
    assert answer.status == status


def test_a_stage_without_prepare_runs_all_on_a_worker() -> None:
    class Plain:
        name = "plain"

        def start(self) -> None: ...

        def stop(self) -> None: ...

        def ready(self) -> tuple[bool, str]:
            return True, "ready"

        def respond(self, attributes: object, data: object) -> Response:
            return Response(202, message="done")

    prepared = base.prepare(Plain(), {"type": "t", "id": "1"}, None)
    assert not isinstance(prepared, Response)
    assert prepared().status == 202
