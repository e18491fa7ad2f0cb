"""The local step runner runs the example templates' catalog Tasks (examples/tasks) as Tekton
would, against the demo's stand-ins: real subprocesses, real HTTP, real SMTP with STARTTLS.

Each case renders an example template for an event of tests/data, builds the TaskRun the
launcher would create, runs it, and checks what the stand-in received is exactly what the
template meant to send, and that the run's status is shaped as Tekton writes it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tekton_notifications import rendering, taskruns
from tekton_notifications.devtools import checktools
from tekton_notifications.devtools.kubeapi import ObjectStore
from tekton_notifications.devtools.standins import StandIns
from tekton_notifications.devtools.steprunner import RunOutcome, StepRunner
from tekton_notifications.models import parse_template
from tests.conftest import EXAMPLES, load_event

TOOLS = checktools.check()
NEEDS_TLS = pytest.mark.skipif("openssl" not in TOOLS.found, reason="openssl not installed")
NEEDS_MOUNTS = pytest.mark.skipif(
    "unshare" not in TOOLS.found, reason=TOOLS.missing.get("unshare", "")
)
pytestmark = pytest.mark.skipif(not TOOLS.ok, reason=TOOLS.message())


@pytest.fixture(scope="module")
def standins(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandIns]:
    with StandIns(tmp_path_factory.mktemp("standins")) as started:
        yield started


@pytest.fixture(scope="module")
def store(standins: StandIns) -> ObjectStore:
    store = ObjectStore()
    for path in sorted((EXAMPLES / "tasks").glob("*.yaml")):
        store.create_manifest(yaml.safe_load(path.read_text()), "ci")
    for secret in standins.secrets("ci"):
        store.create_manifest(secret)
    return store


@pytest.fixture(scope="module")
def runner(
    store: ObjectStore, standins: StandIns, tmp_path_factory: pytest.TempPathFactory
) -> StepRunner:
    workdir = tmp_path_factory.mktemp("runs")
    environment = checktools.environment(workdir / "tools", standins.step_env)
    return StepRunner(store, workdir, environment, catalog=EXAMPLES / "tasks")


def notification_run(
    template_name: str, event_name: str, overrides: dict[str, str] | None = None
) -> tuple[dict[str, Any], dict[str, str]]:
    """The TaskRun the launcher creates for an example template, and its rendered params."""
    obj = yaml.safe_load((EXAMPLES / "templates" / f"{template_name}.yaml").read_text())
    template = parse_template(obj)
    event = load_event(event_name)
    params = rendering.compile_template(template).render(
        event=event,
        policy={"name": "notify", "namespace": "ci"},
        overrides=overrides or {},
        settings=rendering.RenderSettings(dashboard_url="https://tekton.example.com"),
    )
    run = taskruns.build_run(
        event=event, template=template, params=params, policy_namespace="ci", policy="notify"
    )
    run["metadata"]["uid"] = "uid-" + run["metadata"]["name"]
    return run, params


def decoded(value: str) -> str:
    """What a JSON parser (or Python literal) makes of a json_escape_strict value."""
    text: str = json.loads(f'"{value}"')
    return text


def assert_succeeded(outcome: RunOutcome) -> None:
    assert outcome.condition["reason"] == "Succeeded", outcome.logs
    assert outcome.status["conditions"][0]["status"] == "True"
    (step,) = outcome.status["steps"]
    assert step["terminated"]["exitCode"] == 0
    assert step["terminated"]["reason"] == "Completed"


@pytest.mark.parametrize(
    ("template", "event", "service", "field"),
    [
        pytest.param("slack-webhook", "08-pipelinerun-failed.json", "slack", "text", id="slack"),
        pytest.param("discord", "07-taskrun-failed.json", "discord", "content", id="discord-hub"),
        pytest.param("teams", "13-taskrun-timedout.json", "teams", "text", id="teams"),
        pytest.param(
            "telegram", "08-pipelinerun-failed.json", "telegram", "text", id="telegram-https",
            marks=NEEDS_TLS,
        ),
    ],
)  # fmt: skip
def test_chat_task_posts_exactly_what_the_template_meant(
    runner: StepRunner,
    standins: StandIns,
    template: str,
    event: str,
    service: str,
    field: str,
) -> None:
    run, params = notification_run(template, event)
    receiver = standins.telegram if service == "telegram" else standins.webhooks
    assert receiver is not None
    before = len(receiver.received(service))

    outcome = runner.run(run)

    assert_succeeded(outcome)
    (delivery,) = receiver.received(service)[before:]
    assert delivery.json()[field] == decoded(params["message"])
    if service == "telegram":  # the token from the Secret, in the fixed api.telegram.org URL
        assert delivery.path == "/bot123456:demo-bot-token/sendMessage"


@NEEDS_TLS
def test_send_to_channel_slack_posts_to_the_web_api_stand_in_for_slack_com(
    runner: StepRunner, standins: StandIns
) -> None:
    """The task posts to the fixed https://slack.com/api/chat.postMessage with the bot token
    of its Secret; the demo's curl config sends slack.com to the TLS stand-in, which answers
    as Slack does."""
    run, params = notification_run("slack-channel", "08-pipelinerun-failed.json")
    assert standins.slack_api is not None
    before = len(standins.slack_api.deliveries)

    outcome = runner.run(run)

    assert_succeeded(outcome)
    (delivery,) = standins.slack_api.deliveries[before:]
    assert (delivery.service, delivery.path) == ("slack", "/api/chat.postMessage")
    assert delivery.authorization == "Bearer ***"
    assert delivery.json() == {
        "channel": decoded(params["channel"]),
        "text": decoded(params["message"]),
    }
    answer = json.loads(delivery.reply)
    assert (answer["ok"], answer["channel"]) == (True, decoded(params["channel"]))


@NEEDS_TLS
def test_sendmail_delivers_subject_and_body_over_starttls(
    runner: StepRunner, standins: StandIns
) -> None:
    run, params = notification_run("email", "09-pipelinerun-successful.json")
    before = len(standins.smtp.mails)

    outcome = runner.run(run)

    assert_succeeded(outcome)
    (mail,) = standins.smtp.mails[before:]
    assert mail.tls
    assert mail.recipients == (decoded(params["recipients"]),)
    assert mail.subject == decoded(params["subject"])
    assert mail.body.strip() == decoded(params["body"]).strip()


@NEEDS_MOUNTS
def test_github_set_status_reads_its_token_from_the_secret_volume(
    runner: StepRunner, standins: StandIns
) -> None:
    """The task reads /etc/github-set-status/token: the runner mounts the Secret there in
    a mount namespace of its own (this machine's /etc is not touched)."""
    run, params = notification_run(
        "github-status",
        "02-pipelinerun-started.json",
        overrides={"GITHUB_HOST_URL": standins.github_host},
    )
    before = len(standins.webhooks.received("github"))

    outcome = runner.run(run)

    assert_succeeded(outcome)
    (delivery,) = standins.webhooks.received("github")[before:]
    assert delivery.path == f"/repos/{params['REPO_FULL_NAME']}/statuses/{params['SHA']}"
    assert delivery.authorization == "Bearer ***"
    assert delivery.json()["state"] == "pending"
    assert not Path("/etc/github-set-status").exists()


@NEEDS_MOUNTS
def test_a_receiver_answering_500_fails_github_set_status(
    runner: StepRunner, standins: StandIns
) -> None:
    run, _ = notification_run(
        "github-status",
        "02-pipelinerun-started.json",
        overrides={"GITHUB_HOST_URL": standins.github_host},
    )
    standins.webhooks.fail("github", 500, times=1)

    outcome = runner.run(run)

    condition = outcome.condition
    assert (condition["status"], condition["reason"]) == ("False", "Failed")
    assert condition["message"] == '"step-set-status" exited with code 1: Error'
    (step,) = outcome.status["steps"]
    assert step["name"] == "set-status"
    assert step["container"] == "step-set-status"
    assert step["terminated"]["exitCode"] == 1
    assert step["terminated"]["reason"] == "Error"
    assert "Error: 500" in outcome.logs["set-status"]


def test_a_slack_webhook_answering_500_still_succeeds(
    runner: StepRunner, standins: StandIns
) -> None:
    """The catalog's chat tasks call curl without --fail: an error answer is not a failed
    run. Only a missing Secret or an unreachable host fails them (what a delivery tracker
    can see)."""
    run, _ = notification_run("slack-webhook", "08-pipelinerun-failed.json")
    standins.webhooks.fail("slack", 500, times=1)

    outcome = runner.run(run)

    assert_succeeded(outcome)
    assert standins.webhooks.received("slack")[-1].answered == 500


def test_a_message_that_breaks_the_tasks_json_is_refused_by_the_receiver(
    runner: StepRunner, standins: StandIns
) -> None:
    """Without json_escape_strict a quote in run data ends the task's JSON string: the
    stand-in refuses the body as Slack does (400 invalid_payload), and still the run
    succeeds. Why the example templates escape, and why a run's success is not delivery."""
    run, _ = notification_run("slack-webhook", "08-pipelinerun-failed.json")
    run["spec"]["params"] = [
        {"name": p["name"], "value": 'say "hi"' if p["name"] == "message" else p["value"]}
        for p in run["spec"]["params"]
    ]

    outcome = runner.run(run)

    assert_succeeded(outcome)
    delivery = standins.webhooks.received("slack")[-1]
    assert delivery.answered == 400
    assert b'"text": "say \\\\"hi\\\\""' in delivery.body


@pytest.mark.parametrize(
    ("secret", "params", "message"),
    [
        pytest.param(
            "teams-webhook",
            {"webhook-url-secret": "no-such-secret"},
            'secret "no-such-secret" not found',
            id="secret-missing",
        ),
        pytest.param(
            "teams-webhook",
            {"webhook-url-secret-key": "no-such-key"},
            "couldn't find key no-such-key in Secret ci/teams-webhook",
            id="key-missing",
        ),
    ],
)
def test_a_missing_secret_fails_the_run_before_any_step(
    runner: StepRunner, standins: StandIns, secret: str, params: dict[str, str], message: str
) -> None:
    run, _ = notification_run("teams", "13-taskrun-timedout.json")
    run["spec"]["params"] = [
        {"name": p["name"], "value": params.get(p["name"], p["value"])}
        for p in run["spec"]["params"]
    ]
    before = len(standins.webhooks.deliveries)

    outcome = runner.run(run)

    condition = outcome.condition
    assert condition["type"] == "Succeeded"
    assert (condition["status"], condition["reason"]) == ("False", "CreateContainerConfigError")
    assert condition["message"] == message
    assert outcome.status["steps"] == []
    assert {"startTime", "completionTime"} <= set(outcome.status)
    assert len(standins.webhooks.deliveries) == before  # nothing was sent


@pytest.mark.parametrize(
    ("spec", "reason", "message"),
    [
        pytest.param(
            {"taskRef": {"name": "no-such-task"}},
            "TaskRunResolutionFailed",
            'tasks.tekton.dev "no-such-task" not found',
            id="task-not-found",
        ),
        pytest.param(
            {"taskRef": {"name": "send-to-webhook-slack"}, "params": []},
            "TaskRunValidationFailed",
            "missing parameters: message, webhook-secret",
            id="required-params-unset",
        ),
        pytest.param(
            {"taskSpec": {"steps": [{"name": "x", "image": "busybox", "command": ["true"]}]}},
            "Failed",
            "step \"x\" runs its image's own command (['true']), which cannot run on this "
            "machine: only script steps do",
            id="no-script",
        ),
    ],
)
def test_runs_refused_before_any_step(
    runner: StepRunner, spec: dict[str, Any], reason: str, message: str
) -> None:
    outcome = runner.run(inline_run(spec))
    assert (outcome.condition["status"], outcome.condition["reason"]) == ("False", reason)
    assert outcome.condition["message"] == message


def inline_run(spec: dict[str, Any], name: str = "inline-1") -> dict[str, Any]:
    return {
        "apiVersion": "tekton.dev/v1",
        "kind": "TaskRun",
        "metadata": {"name": name, "namespace": "ci", "uid": "uid-1"},
        "spec": spec,
    }


def test_results_context_and_env_as_tekton_substitutes_them(runner: StepRunner) -> None:
    script = (
        "#!/bin/sh\n"
        'printf "%s" "$(context.taskRun.name)/$(params.who)/$GREETING" > $(results.said.path)\n'
    )
    task = {
        "params": [{"name": "who", "default": "world"}],
        "results": [{"name": "said"}],
        "steps": [
            {
                "name": "say",
                "image": "alpine",
                "script": script,
                "env": [
                    {"name": "HELLO", "value": "hello"},
                    {"name": "GREETING", "value": "$(HELLO) $$(HELLO)"},
                ],
            }
        ],
    }
    outcome = runner.run(inline_run({"taskSpec": task}, name="says-1"))

    assert_succeeded(outcome)
    assert outcome.status["results"] == [
        {"name": "said", "type": "string", "value": "says-1/world/hello $(HELLO)"}
    ]
    terminated = outcome.status["steps"][0]["terminated"]
    assert json.loads(terminated["message"]) == [
        {"key": "said", "value": "says-1/world/hello $(HELLO)", "type": 1}
    ]


@pytest.mark.parametrize(
    ("step", "log"),
    [
        pytest.param(
            {"script": "#!/no/such/interpreter\n"},
            "the step could not start on this machine: [Errno 2] No such file or directory",
            id="shebang-interpreter-missing",
        ),
        pytest.param(
            {"script": "#!/bin/sh\ntrue\n", "workingDir": "/no/such/folder"},
            "the step could not start on this machine: [Errno 2] No such file or directory",
            id="working-dir-missing",
        ),
        pytest.param(
            {"script": "echo about to fail\nfalse\necho never\n"},
            "about to fail",
            id="no-shebang-runs-under-sh-e",
        ),
    ],
)
def test_a_step_that_fails_says_why_in_its_log(
    runner: StepRunner, step: dict[str, str], log: str
) -> None:
    task = {"steps": [{"name": "go", "image": "alpine", **step}]}
    outcome = runner.run(inline_run({"taskSpec": task}, name="fails-1"))
    assert (outcome.condition["status"], outcome.condition["reason"]) == ("False", "Failed")
    assert outcome.logs["go"].startswith(log)
    assert "never" not in outcome.logs["go"]


def test_a_step_past_the_runs_timeout_is_killed(runner: StepRunner) -> None:
    task = {"steps": [{"name": "slow", "image": "alpine", "script": "#!/bin/sh\nsleep 30\n"}]}
    outcome = runner.run(inline_run({"taskSpec": task, "timeout": "0.5s"}, name="slow-1"))
    assert (outcome.condition["status"], outcome.condition["reason"]) == (
        "False",
        "TaskRunTimeout",
    )
    assert outcome.condition["message"] == 'TaskRun "slow-1" failed to finish within "0.5s"'


@pytest.mark.parametrize(
    ("mount_path", "message"),
    [
        pytest.param("relative/path", "mountPath 'relative/path' is not absolute", id="relative"),
        pytest.param(
            "/no-such-top-level-folder/x",
            "cannot mount at /no-such-top-level-folder/x here: it would be made under / itself",
            id="new-folder-under-root",
        ),
    ],
)
def test_a_mount_this_machine_cannot_make_fails_the_run(
    runner: StepRunner, mount_path: str, message: str
) -> None:
    step = {
        "name": "read",
        "image": "alpine",
        "script": "#!/bin/sh\ntrue\n",
        "volumeMounts": [{"name": "token", "mountPath": mount_path}],
    }
    task = {"volumes": [{"name": "token", "emptyDir": {}}], "steps": [step]}
    outcome = runner.run(inline_run({"taskSpec": task}, name="mounts-1"))
    assert (outcome.condition["status"], outcome.condition["reason"]) == (
        "False",
        "CreateContainerConfigError",
    )
    assert outcome.condition["message"] == message
