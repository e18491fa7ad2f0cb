"""`tkn-notify explain` shows what the scheduler owes a policy (issue 17): the reminders of
each failing pipeline (due now, next, or done) and the next digest, from the policy's status."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.cli.conftest import Invoke, write_yaml
from tests.conftest import policy_object

RED = {
    "kind": "PipelineRun",
    "pipeline": "storefront-ci",
    "outcome": "failed",
    "run": "storefront-ci-run-p7v2k",
    "uid": "u1",
    "completionTime": "2026-01-05T18:00:00Z",
}
HELD = {
    "periods": [
        {
            "start": "2026-01-05T18:00:00Z",
            "items": [
                {
                    "kind": "PipelineRun",
                    "pipeline": "storefront-ci",
                    "outcome": "failed",
                    "count": 4,
                    "first": {
                        "run": "a",
                        "namespace": "ci",
                        "uid": "1",
                        "time": "2026-01-05T18:01:00Z",
                    },
                    "last": {
                        "run": "b",
                        "namespace": "ci",
                        "uid": "2",
                        "time": "2026-01-05T18:09:00Z",
                    },
                }
            ],
            "seen": [],
        }
    ]
}


def scheduled_policy(spec: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
    obj = policy_object(events=["failed"])
    obj["spec"].update(spec)
    obj["status"] = status
    return obj


@pytest.mark.parametrize(
    ("spec", "status", "line"),
    [
        pytest.param(
            {"remind": {"after": "4h", "every": "24h", "max": 3}},
            {"outcomes": [RED]},
            "scheduler: reminder 3 of 3 due now: storefront-ci red since 2026-01-05T18:00:00Z",
            id="reminder-due",
        ),
        pytest.param(
            {"remind": {"after": "4h", "every": "24h", "max": 3}},
            {"outcomes": [{**RED, "reminded": 3}]},
            "scheduler: reminders done (3 sent): storefront-ci red since",
            id="reminders-done",
        ),
        pytest.param(
            {"remind": {"after": "4h", "every": "24h"}},
            {"outcomes": [{**RED, "outcome": "succeeded"}]},
            "scheduler: no reminder pending: no pipeline of this policy is failing",
            id="nothing-red",
        ),
        pytest.param(
            {
                "rateLimit": {"limit": 1, "window": "1h"},
                "digest": {"every": "1h", "templateRef": {"name": "digest"}},
            },
            {"digest": HELD},
            "scheduler: digest of 4 held back since 2026-01-05T18:00:00Z due now",
            id="digest-due",
        ),
        pytest.param(
            {
                "rateLimit": {"limit": 1, "window": "1h"},
                "digest": {"every": "1h", "templateRef": {"name": "digest"}},
            },
            {},
            "scheduler: next digest: none, nothing held back",
            id="no-digest",
        ),
    ],
)
def test_explain_shows_what_the_scheduler_owes_the_policy(
    invoke: Invoke,
    failed_pipelinerun: Path,
    tmp_path: Path,
    spec: dict[str, Any],
    status: dict[str, Any],
    line: str,
) -> None:
    policies = write_yaml(tmp_path / "policies.yaml", scheduled_policy(spec, status))
    text = invoke("explain", failed_pipelinerun, "--policies", policies).stdout
    assert line in text
    report = json.loads(
        invoke("explain", failed_pipelinerun, "--policies", policies, "-o", "json").stdout
    )
    (explained,) = report["policies"]
    assert any(line.removeprefix("scheduler: ") in entry for entry in explained["scheduled"])
