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


def test_a_missing_secret_fails_the_teams_run_as_tekton_would(
    chain: LocalChain, scene: DeliveryScene
) -> None:
    before = len(scene.standins.webhooks.deliveries)
    assert chain.send(load_cloudevent("13-taskrun-timedout.json")) == 202
    assert chain.wait_idle()

    (run,) = finished_for(chain, "13-taskrun-timedout.json")
    condition = run["status"]["conditions"][0]
    assert (condition["status"], condition["reason"]) == ("False", "CreateContainerConfigError")
    assert condition["message"] == 'secret "teams-webhook" not found'
    assert len(scene.standins.webhooks.deliveries) == before
    assert chain.tekton is not None
    line, as_staged = scene.summary(chain.tekton)
    assert as_staged, line
