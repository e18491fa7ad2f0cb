"""End to end with delivery (issue 12 item 5): a Tekton event in at the broker, through the
real functions, to a notification TaskRun that LocalTekton runs against the demo's
stand-ins; its finish goes back through the router as Tekton's CloudEvent. The scene is the
demo's own (demo_delivery.py): the teams-webhook Secret is missing on purpose."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tekton_notifications.devtools import checktools
from tekton_notifications.devtools.chain import LocalChain
from tekton_notifications.devtools.demo_delivery import DeliveryScene
from tekton_notifications.devtools.standins import StandIns
from tests.conftest import EXAMPLES, load_cloudevent

TOOLS = checktools.check()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(not TOOLS.ok, reason=TOOLS.message())]


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DeliveryScene]:
    with StandIns(tmp_path_factory.mktemp("standins")) as standins:
        yield DeliveryScene(standins)


@pytest.fixture(scope="module")
def chain(scene: DeliveryScene, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalChain]:
    with LocalChain(
        tmp_path_factory.mktemp("chain"),
        manifests=(EXAMPLES / "policies", EXAMPLES / "templates"),
        time_scale=0.05,
        run_notifications=True,
        step_env=scene.standins.step_env,
        setup=scene.setup,
    ) as started:
        yield started


def finished_for(chain: LocalChain, event_name: str) -> list[dict[str, Any]]:
    """The notification runs of one source run, as the API has them once they finished."""
    (run,) = load_cloudevent(event_name)["data"].values()
    return [
        r
        for r in chain.notification_runs()
        if r["metadata"]["labels"]["notifications.tekton.dev/source-uid"] == run["metadata"]["uid"]
    ]


def test_a_failed_pipelinerun_reaches_the_slack_stand_in(
    chain: LocalChain, scene: DeliveryScene
) -> None:
    assert chain.send(load_cloudevent("08-pipelinerun-failed.json")) == 202
    assert chain.wait_idle()

    (run,) = finished_for(chain, "08-pipelinerun-failed.json")
    condition = run["status"]["conditions"][0]
    assert (condition["status"], condition["reason"]) == ("True", "Succeeded")
    (delivery,) = scene.standins.webhooks.received("slack")
    text = delivery.json()["text"]
    assert text.startswith(":x: PipelineRun *ci/storefront-ci-run-p7v2k* failed")
    params = {p["name"]: p["value"] for p in run["spec"]["params"]}
    assert text == json.loads(f'"{params["message"]}"')
    assert chain.tekton is not None
    (finished,) = [f for f in chain.tekton.finished if f.name == run["metadata"]["name"]]
    assert finished.event_status == 202  # the broker took Tekton's finish event
    assert chain.router.dead_letters == []


def test_a_missing_secret_fails_the_teams_run_and_the_email_fallback_arrives(
    chain: LocalChain, scene: DeliveryScene
) -> None:
    """run-timed-out-teams names ``fallback: {name: email}``: the Teams run fails as Tekton
    fails it (CreateContainerConfigError), the tracker falls back once, the mail arrives."""
    before = len(scene.standins.webhooks.deliveries)
    mails = len(scene.standins.smtp.mails)
    assert chain.send(load_cloudevent("13-taskrun-timedout.json")) == 202
    assert chain.wait_idle()

    runs = {r["metadata"]["labels"]["notifications.tekton.dev/template"]: r
            for r in finished_for(chain, "13-taskrun-timedout.json")}  # fmt: skip
    assert sorted(runs) == ["email", "teams"]
    condition = runs["teams"]["status"]["conditions"][0]
    assert (condition["status"], condition["reason"]) == ("False", "CreateContainerConfigError")
    assert condition["message"] == 'secret "teams-webhook" not found'
    assert len(scene.standins.webhooks.deliveries) == before
    fallback = runs["email"]
    assert fallback["metadata"]["labels"]["notifications.tekton.dev/fallback-of"] == "teams"
    assert fallback["status"]["conditions"][0]["reason"] == "Succeeded"
    (mail,) = scene.standins.smtp.mails[mails:]
    assert mail.subject == "[Tekton] TaskRun ci/db-migrate-run-t4k8s timedOut"
    assert mail.recipients == ("dba@example.com",)  # the run's example.com/notify-email
    assert chain.router.dead_letters == []


def test_a_500_from_github_is_retried_and_delivered_on_attempt_2(
    chain: LocalChain, scene: DeliveryScene
) -> None:
    """github-status has ``retries: 1``; the stand-in answers 500 once (the scene's setup)."""
    assert chain.send(load_cloudevent("02-pipelinerun-started.json")) == 202
    assert chain.wait_idle()

    runs = sorted(
        (r for r in finished_for(chain, "02-pipelinerun-started.json")
         if r["metadata"]["labels"]["notifications.tekton.dev/template"] == "github-status"),
        key=lambda r: r["metadata"]["name"],
    )  # fmt: skip
    first, retry = runs
    assert retry["metadata"]["name"] == first["metadata"]["name"] + "-r2"
    assert retry["metadata"]["labels"]["notifications.tekton.dev/attempt"] == "2"
    assert first["status"]["conditions"][0]["status"] == "False"
    assert retry["status"]["conditions"][0]["reason"] == "Succeeded"
    assert [d.answered for d in scene.standins.webhooks.received("github")] == [500, 201]
    assert chain.tekton is not None
    # Every failure so far was staged, and each ended delivered by its retry or fallback.
    line, as_staged = scene.summary(chain.tekton)
    assert as_staged, line
    assert "then delivered by 1 retry run(s) and 1 fallback run(s)" in line
