"""The demo's delivery check (demo_delivery.judge): the staged failures, their retry and
their fallback are expected; any other failure, a failure never delivered in the end, or a
staged failure that did not happen (so the demo would not show it) fails the demo."""

from __future__ import annotations

from typing import Any

import pytest

from tekton_notifications.devtools.demo_delivery import judge
from tekton_notifications.devtools.localtekton import Finished
from tekton_notifications.devtools.steprunner import RunOutcome

G = "notifications.tekton.dev"


def run(name: str, template: str, ok: bool, message: str = "", **labels: str) -> Finished:
    metadata: dict[str, Any] = {
        "name": name,
        "labels": {
            f"{G}/source-uid": "uid-1",
            f"{G}/policy": "p",
            f"{G}/template": template,
            f"{G}/event": "failed",
            **{f"{G}/{key.replace('_', '-')}": value for key, value in labels.items()},
        },
    }
    condition = {"type": "Succeeded", "status": "True" if ok else "False", "message": message}
    return Finished({"metadata": metadata}, RunOutcome({"conditions": [condition]}), 202)


GITHUB_500 = run("a", "github-status", False, '"step-set-status" exited with code 1')
GITHUB_RETRY = run("a-r2", "github-status", True, attempt="2")
TEAMS_REFUSED = run("b", "teams", False, 'secret "teams-webhook" not found')
EMAIL_FALLBACK = run("c", "email", True, fallback_of="teams")
SLACK_OK = run("d", "slack-webhook", True)
AS_STAGED = [GITHUB_500, GITHUB_RETRY, TEAMS_REFUSED, EMAIL_FALLBACK, SLACK_OK]


@pytest.mark.parametrize(
    ("finished", "answered_500", "staged_expected", "problems"),
    [
        pytest.param(AS_STAGED, 1, True, [], id="as-staged"),
        pytest.param(
            [*AS_STAGED, run("e", "discord", False, "exited with code 22")], 1, True,
            ["1 NOT staged", "1 never delivered: e"], id="an-unstaged-failure",
        ),
        pytest.param(
            [GITHUB_500, TEAMS_REFUSED, EMAIL_FALLBACK], 1, True,
            ["1 never delivered: a", "no retry delivered"], id="the-retry-lost",
        ),
        pytest.param(
            [GITHUB_500, GITHUB_RETRY, TEAMS_REFUSED], 1, True,
            ["1 never delivered: b", "no fallback delivered"], id="the-fallback-lost",
        ),
        pytest.param(
            [SLACK_OK], 0, True,
            ["no run failed for Secret teams-webhook", "the github stand-in never answered 500",
             "no retry delivered", "no fallback delivered"],
            id="staged-failures-that-did-not-happen",
        ),
        pytest.param([SLACK_OK], 0, False, [], id="other-events-need-not-stage-them"),
    ],
)  # fmt: skip
def test_judge(
    finished: list[Finished], answered_500: int, staged_expected: bool, problems: list[str]
) -> None:
    found, _ = judge(finished, answered_500=answered_500, staged_expected=staged_expected)
    assert found == problems


def test_judge_counts_what_retries_and_fallbacks_delivered() -> None:
    assert judge(AS_STAGED, answered_500=1, staged_expected=True)[1] == {"retry": 1, "fallback": 1}
