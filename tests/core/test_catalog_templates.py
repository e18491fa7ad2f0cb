"""The example NotificationTemplates against the Tekton catalog tasks they drive.

Checks each example's params against its catalog task, renders it against Tekton events,
and runs the catalog task's own step script (sh or Python, with curl/smtplib stubbed) on the
rendered params, the way Tekton would substitute them, to prove hostile run data (quotes,
backslashes, newlines, $(...), backticks, globs) arrives intact and harmless.

The events are the project's own (tests/data/events). The catalog tasks as published and a
run captured from a production Tekton are reference data in ../shared: the tests that read
them are marked ``reference``.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import yaml

from tekton_notifications.events import RunEvent, parse_event
from tekton_notifications.models import Template, parse_template
from tekton_notifications.rendering import (
    RenderSettings,
    compile_template,
    json_escape,
    k8s_env_escape,
    oneline,
    slack_escape,
)
from tests.conftest import CATALOG, EVENTS, REALWORLD

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "templates"

#: The catalog tasks as published (reference data in ../shared/catalog).
CATALOG_TASKS = pytest.mark.reference("catalog")
#: A PipelineRun captured from a production Tekton (reference data in ../shared).
CAPTURED = pytest.mark.reference("fixtures/tekton-events/realworld")

POLICY = {"name": "notify", "namespace": "ci"}
DASHBOARD = RenderSettings(dashboard_url="https://tekton.example.com")
EXAMPLE_NAMES = sorted(path.stem for path in EXAMPLES.glob("*.yaml"))
EXPECTED_EXAMPLES = {
    "slack-webhook": "send-to-webhook-slack",
    "slack-channel": "send-to-channel-slack",
    "email": "sendmail",
    "teams": "send-to-microsoft-teams",
    "telegram": "send-to-telegram",
    "discord": "send-to-webhook-discord",
    "github-status": "github-set-status",
    "webex": "send-to-webex-room",
    "gitlab-status": "gitlab-set-status",
    "gitea-status": "gitea-set-status",
    "github-pr-comment": "github-add-comment",
    "github-deployment-status": "github-create-deployment-status",
    "cloudevent": "cloudevent",
}
#: The param carrying the human-readable text, per example.
TEXT_PARAM = {"email": "body", "github-status": "DESCRIPTION"}


# ---------------------------------------------------------------------------------------------
# Loading


def load_example(name: str) -> tuple[dict[str, Any], Template]:
    obj = yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text())
    return obj, parse_template(obj)


def task_ref_name_and_version(template: Template) -> tuple[str, str | None]:
    ref = template.ref
    if ref.get("name"):
        return str(ref["name"]), None
    params = {p["name"]: p["value"] for p in ref.get("params", [])}
    return str(params["name"]), params.get("version")


def load_task(template: Template) -> dict[str, Any]:
    name, version = task_ref_name_and_version(template)
    candidates = sorted((CATALOG / name).glob("*.yaml"))
    if version is not None:
        candidates = [path for path in candidates if path.stem == version]
    assert candidates, f"no catalog task {name} {version or ''} in {CATALOG}"
    task: dict[str, Any] = yaml.safe_load(candidates[-1].read_text())
    return task


def load_event(path: Path, mutate: Any = None) -> RunEvent:
    """An event of tests/data/events (or, for ``reference`` tests, a captured one)."""
    cloudevent = json.loads(path.read_text())
    data = cloudevent.pop("data")
    if mutate is not None:
        data = copy.deepcopy(data)
        mutate(next(iter(data.values())))
    return parse_event(cloudevent, data)


def render_example(
    name: str,
    event: RunEvent,
    overrides: dict[str, str] | None = None,
    settings: RenderSettings = DASHBOARD,
) -> dict[str, str]:
    _, template = load_example(name)
    return compile_template(template).render(
        event=event, policy=POLICY, overrides=overrides or {}, settings=settings
    )


def decoded(value: str) -> str:
    """What a JSON parser (or Python literal) makes of a json_escape_strict value."""
    text: str = json.loads('"' + value + '"')
    return text


# ---------------------------------------------------------------------------------------------
# Shape


def test_every_catalog_example_exists() -> None:
    assert set(EXAMPLE_NAMES) >= set(EXPECTED_EXAMPLES)


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_example_is_a_notification_template_in_ci(name: str) -> None:
    obj, template = load_example(name)
    assert obj["apiVersion"] == "notifications.tekton.dev/v1alpha1"
    assert obj["kind"] == "NotificationTemplate"
    assert (template.namespace, template.name) == ("ci", name)
    assert template.target == "Task"
    compile_template(template)  # every param compiles


@CATALOG_TASKS
@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_example_params_match_the_catalog_task(name: str) -> None:
    _, template = load_example(name)
    task = load_task(template)
    assert task["metadata"]["name"] == EXPECTED_EXAMPLES.get(name, task["metadata"]["name"])
    declared = {param["name"]: param for param in task["spec"]["params"]}
    unknown = set(template.params) - set(declared)
    assert not unknown, f"{name}: params the task does not declare: {sorted(unknown)}"
    required = {key for key, param in declared.items() if "default" not in param}
    missing = required - set(template.params)
    assert not missing, f"{name}: required task params not set: {sorted(missing)}"


def test_at_least_one_example_uses_the_hub_resolver() -> None:
    resolvers = [load_example(name)[1].ref.get("resolver") for name in EXAMPLE_NAMES]
    assert "hub" in resolvers


# ---------------------------------------------------------------------------------------------
# Rendering Tekton events

RUNS = {
    "failed": EVENTS / "08-pipelinerun-failed.json",
    "realworld-failed": REALWORLD / "event-pipelinerun.failed.json",
    "older-failed": EVENTS / "15-pipelinerun-failed-older-taskruns.json",
    "cancelled": EVENTS / "10-pipelinerun-cancelled.json",
    "succeeded": EVENTS / "09-pipelinerun-successful.json",
}


def runs(names: list[str]) -> list[Any]:
    """Params for ``names`` of RUNS; the captured run is marked a ``reference`` case."""
    return [
        pytest.param(name, id=name, marks=[CAPTURED] if name.startswith("realworld") else [])
        for name in names
    ]


DASH = "https://tekton.example.com/#/namespaces"
IMAGE = "ghcr.io/pingcap-qe/cd/builders/tikv@sha256:" + (
    "a6cda05e45e34c8409c6c04b953e317a7ec5e63c1224dc5101d38293964e5463"
)
STEP_FAILED = f'"step-build" exited with code 1 (image: "{IMAGE}"); for logs run: kubectl -n ee-cd'
RW = "ee-cd/build-package-tikv-tikv-linux-9bn55"
RW_URL = f"{DASH}/ee-cd/pipelineruns/build-package-tikv-tikv-linux-9bn55"
F_URL = f"{DASH}/ci/pipelineruns/storefront-ci-run-p7v2k"
C_URL = f"{DASH}/ci/pipelineruns/storefront-ci-run-q5n8h"
S_URL = f"{DASH}/ci/pipelineruns/storefront-ci-run-w3x9d"
F_MSG = "Tasks Completed: 2 (Failed: 1, Cancelled 0), Skipped: 1"
OLD = "ci/docs-site-pr-1042-h8d5m"
OLD_URL = f"{DASH}/ci/pipelineruns/docs-site-pr-1042-h8d5m"
HUGO = "docker.io/klakegg/hugo@sha256:" + (
    "7c9e1b3d5f7a9c1e3b5d7f9a1c3e5b7d9f1a3c5e7b9d1f3a5c7e9b1d3f5a7c9e"
)
HUGO_FAILED = f'"step-hugo" exited with code 255 (image: "{HUGO}"); for logs run: kubectl -n ci'
RW_MSG = "Tasks Completed: 3 (Failed: 1, Cancelled 0), Skipped: 1"
C_MSG = 'PipelineRun "storefront-ci-run-q5n8h" was cancelled'
S_MSG = "Tasks Completed: 3 (Failed: 0, Cancelled 0), Skipped: 0"

#: The text each example sends, for the failed, realworld-failed, cancelled and succeeded runs.
EXPECTED_TEXT: dict[str, dict[str, str]] = {
    "slack-webhook": {
        "older-failed": f":x: PipelineRun *{OLD}* failed after 1m 55s\n> {F_MSG}\n"
        f"• `build` Failed: {HUGO_FAILED} logs...\n<{OLD_URL}|Open in Tekton Dashboard>",
        "failed": ":x: PipelineRun *ci/storefront-ci-run-p7v2k* failed after 1m 58s\n"
        f"> {F_MSG}\n<{F_URL}|Open in Tekton Dashboard>",
        "realworld-failed": f":x: PipelineRun *{RW}* failed after 4m 52s\n> {RW_MSG}\n"
        f"• `build-binaries` Failed: {STEP_FAILED} logs...\n<{RW_URL}|Open in Tekton Dashboard>",
        "cancelled": ":no_entry_sign: PipelineRun *ci/storefront-ci-run-q5n8h* cancelled "
        f"after 1m 29s\n> {C_MSG}\n<{C_URL}|Open in Tekton Dashboard>",
        "succeeded": ":white_check_mark: PipelineRun *ci/storefront-ci-run-w3x9d* succeeded "
        f"after 4m 43s\n> {S_MSG}\n<{S_URL}|Open in Tekton Dashboard>",
    },
    "slack-channel": {
        "older-failed": f"*PipelineRun {OLD}: failed* (1m 55s)\nReason: Failed\n{F_MSG}\n"
        f"• build (Failed): {HUGO_FAILED} logs...\n<{OLD_URL}|Open in Tekton Dashboard>",
        "failed": "*PipelineRun ci/storefront-ci-run-p7v2k: failed* (1m 58s)\nReason: Failed\n"
        f"{F_MSG}\n<{F_URL}|Open in Tekton Dashboard>",
        "realworld-failed": f"*PipelineRun {RW}: failed* (4m 52s)\nReason: Failed\n{RW_MSG}\n"
        f"• build-binaries (Failed): {STEP_FAILED} logs...\n<{RW_URL}|Open in Tekton Dashboard>",
        "cancelled": "*PipelineRun ci/storefront-ci-run-q5n8h: cancelled* (1m 29s)\n"
        f"Reason: Cancelled\n{C_MSG}\n<{C_URL}|Open in Tekton Dashboard>",
        "succeeded": "*PipelineRun ci/storefront-ci-run-w3x9d: succeeded* (4m 43s)\n"
        f"Reason: Succeeded\n{S_MSG}\n<{S_URL}|Open in Tekton Dashboard>",
    },
    "email": {
        "older-failed": f"PipelineRun {OLD} failed.\n\n"
        "Started:   2026-10-16T09:12:01Z\nCompleted: 2026-10-16T09:13:56Z\n"
        f"Duration:  1m 55s\nReason:    Failed\n\n{F_MSG}\n\nFailed tasks:\n"
        "  - build (docs-site-pr-1042-h8d5m-build): Failed\n"
        f"    {HUGO_FAILED} logs docs-site-pr-1042-h8d5m-build-pod -c step-hugo\n\n{OLD_URL}",
        "failed": "PipelineRun ci/storefront-ci-run-p7v2k failed.\n\n"
        "Started:   2026-10-14T13:41:22Z\nCompleted: 2026-10-14T13:43:20Z\n"
        f"Duration:  1m 58s\nReason:    Failed\n\n{F_MSG}\n\n{F_URL}",
        "realworld-failed": f"PipelineRun {RW} failed.\n\n"
        "Started:   2023-12-07T06:28:37Z\nCompleted: 2023-12-07T06:33:29Z\n"
        f"Duration:  4m 52s\nReason:    Failed\n\n{RW_MSG}\n\nFailed tasks:\n"
        "  - build-binaries (build-package-tikv-tikv-linux-9bn55-build-binaries): Failed\n"
        f"    {STEP_FAILED} logs build-package-tikv-tikv-linux-9bn55-build-binaries-pod "
        f"-c step-build\n\n{RW_URL}",
        "cancelled": "PipelineRun ci/storefront-ci-run-q5n8h cancelled.\n\n"
        "Started:   2026-10-14T16:07:45Z\nCompleted: 2026-10-14T16:09:14Z\n"
        f"Duration:  1m 29s\nReason:    Cancelled\n\n{C_MSG}\n\n{C_URL}",
        "succeeded": "PipelineRun ci/storefront-ci-run-w3x9d succeeded.\n\n"
        "Started:   2026-10-14T14:52:09Z\nCompleted: 2026-10-14T14:56:52Z\n"
        f"Duration:  4m 43s\nReason:    Succeeded\n\n{S_MSG}\n\n{S_URL}",
    },
    "teams": {
        "older-failed": f"**PipelineRun {OLD}: failed** after 1m 55s\n\n{F_MSG}\n\n"
        f"- build: Failed - {HUGO_FAILED} logs...\n\n[Open in Tekton Dashboard]({OLD_URL})",
        "failed": "**PipelineRun ci/storefront-ci-run-p7v2k: failed** after 1m 58s\n\n"
        f"{F_MSG}\n\n[Open in Tekton Dashboard]({F_URL})",
        "realworld-failed": f"**PipelineRun {RW}: failed** after 4m 52s\n\n{RW_MSG}\n\n"
        f"- build-binaries: Failed - {STEP_FAILED} logs...\n\n"
        f"[Open in Tekton Dashboard]({RW_URL})",
        "cancelled": "**PipelineRun ci/storefront-ci-run-q5n8h: cancelled** after 1m 29s\n\n"
        f"{C_MSG}\n\n[Open in Tekton Dashboard]({C_URL})",
        "succeeded": "**PipelineRun ci/storefront-ci-run-w3x9d: succeeded** after 4m 43s\n\n"
        f"{S_MSG}\n\n[Open in Tekton Dashboard]({S_URL})",
    },
    "telegram": {
        "older-failed": f"PipelineRun {OLD}: failed after 1m 55s\n{F_MSG}\n- build: Failed\n"
        f"{OLD_URL}",
        "failed": f"PipelineRun ci/storefront-ci-run-p7v2k: failed after 1m 58s\n{F_MSG}\n{F_URL}",
        "realworld-failed": f"PipelineRun {RW}: failed after 4m 52s\n{RW_MSG}\n"
        f"- build-binaries: Failed\n{RW_URL}",
        "cancelled": f"PipelineRun ci/storefront-ci-run-q5n8h: cancelled after 1m 29s\n{C_MSG}\n"
        f"{C_URL}",
        "succeeded": f"PipelineRun ci/storefront-ci-run-w3x9d: succeeded after 4m 43s\n{S_MSG}\n"
        f"{S_URL}",
    },
    "discord": {
        "older-failed": f"**PipelineRun {OLD}**: failed after 1m 55s\n> {F_MSG}\n"
        f"- `build` Failed: {HUGO_FAILED} logs...\n{OLD_URL}",
        "failed": f"**PipelineRun ci/storefront-ci-run-p7v2k**: failed after 1m 58s\n> {F_MSG}\n"
        f"{F_URL}",
        "realworld-failed": f"**PipelineRun {RW}**: failed after 4m 52s\n> {RW_MSG}\n"
        f"- `build-binaries` Failed: {STEP_FAILED} logs...\n{RW_URL}",
        "cancelled": f"**PipelineRun ci/storefront-ci-run-q5n8h**: cancelled after 1m 29s\n"
        f"> {C_MSG}\n{C_URL}",
        "succeeded": f"**PipelineRun ci/storefront-ci-run-w3x9d**: succeeded after 4m 43s\n"
        f"> {S_MSG}\n{S_URL}",
    },
    "github-status": {
        "older-failed": f"PipelineRun failed: {F_MSG}",
        "failed": f"PipelineRun failed: {F_MSG}",
        "realworld-failed": f"PipelineRun failed: {RW_MSG}",
        "cancelled": f"PipelineRun cancelled: {C_MSG}",
        "succeeded": f"PipelineRun succeeded: {S_MSG}",
    },
}


@pytest.mark.parametrize("event_name", runs(sorted(RUNS)))
@pytest.mark.parametrize("name", sorted(EXPECTED_TEXT))
def test_example_renders_the_expected_text(name: str, event_name: str) -> None:
    out = render_example(name, load_event(RUNS[event_name]))
    value = out[TEXT_PARAM.get(name, "message")]
    text = value if name == "github-status" else decoded(value)
    assert text == EXPECTED_TEXT[name][event_name]


def test_slack_webhook_without_a_dashboard_has_no_link() -> None:
    out = render_example("slack-webhook", load_event(RUNS["failed"]), settings=RenderSettings())
    assert out == {
        "webhook-secret": "slack-webhook",
        "bot-name": "Tekton",
        "icon-emoji": ":tekton:",
        "message": ":x: PipelineRun \\u002aci/storefront-ci-run-p7v2k\\u002a failed after "
        "1m 58s\\u000a> Tasks Completed: 2 (Failed: 1, Cancelled 0), Skipped: 1",
    }


def test_email_params() -> None:
    out = render_example("email", load_event(RUNS["failed"]))
    assert out["server"] == "smtp-server"
    assert out["sender"] == "tekton@example.com"
    assert out["recipients"] == "ci-team@example.com"
    assert decoded(out["subject"]) == "[Tekton] PipelineRun ci/storefront-ci-run-p7v2k failed"


def test_slack_channel_routes_by_label() -> None:
    def label(run: dict[str, Any]) -> None:
        run["metadata"]["labels"]["example.com/slack-channel"] = "C0TEAM"

    out = render_example("slack-channel", load_event(RUNS["failed"], label))
    assert out["channel"] == "C0TEAM"
    assert render_example("slack-channel", load_event(RUNS["failed"]))["channel"] == ("C0123456789")


@pytest.mark.parametrize(
    ("fixture", "state"),
    [
        ("01-pipelinerun-queued.json", "pending"),
        ("02-pipelinerun-started.json", "pending"),
        ("03-pipelinerun-running.json", "pending"),
        ("12-taskrun-unknown.json", "pending"),
        ("09-pipelinerun-successful.json", "success"),
        ("08-pipelinerun-failed.json", "failure"),
        ("10-pipelinerun-cancelled.json", "error"),
        ("14-pipelinerun-timedout.json", "error"),
    ],
)
def test_github_status_state_follows_the_outcome(fixture: str, state: str) -> None:
    assert render_example("github-status", load_event(EVENTS / fixture))["STATE"] == state


def test_github_status_timed_out_run_is_an_error() -> None:
    def timeout(run: dict[str, Any]) -> None:
        run["status"]["conditions"][0]["reason"] = "PipelineRunTimeout"

    assert render_example("github-status", load_event(RUNS["failed"], timeout))["STATE"] == (
        "error"
    )


def test_github_status_params_from_annotations_params_and_defaults() -> None:
    out = render_example("github-status", load_event(RUNS["failed"]))
    assert out == {
        "REPO_FULL_NAME": "example/storefront",
        "SHA": "9c41e7b2d05a8f36e1c4b7a90d2e5f8316ab4c07",
        "STATE": "failure",
        "TARGET_URL": F_URL,
        "DESCRIPTION": f"PipelineRun failed: {F_MSG}",
        "CONTEXT": "tekton/storefront-ci",
    }

    def from_params(run: dict[str, Any]) -> None:
        run["metadata"]["annotations"] = {}

    params = render_example("github-status", load_event(RUNS["failed"], from_params))
    assert (params["REPO_FULL_NAME"], params["SHA"]) == (
        "example/storefront",
        "9c41e7b2d05a8f36e1c4b7a90d2e5f8316ab4c07",
    )

    def bare(run: dict[str, Any]) -> None:
        run["metadata"]["annotations"] = {}
        run["spec"].pop("params")

    nothing = render_example(
        "github-status", load_event(RUNS["failed"], bare), settings=RenderSettings()
    )
    assert (nothing["REPO_FULL_NAME"], nothing["SHA"], nothing["TARGET_URL"]) == ("", "", "")


@CAPTURED
def test_github_status_params_of_a_captured_run_come_from_its_params() -> None:
    realworld = render_example("github-status", load_event(RUNS["realworld-failed"]))
    assert (realworld["REPO_FULL_NAME"], realworld["SHA"]) == ("tikv/tikv", "v6.5.6")
    assert realworld["CONTEXT"] == "tekton/pingcap-build-package"


def test_github_status_description_fits_githubs_140_characters() -> None:
    def long_message(run: dict[str, Any]) -> None:
        run["status"]["conditions"][0]["message"] = "x " * 200

    out = render_example("github-status", load_event(RUNS["failed"], long_message))
    assert len(out["DESCRIPTION"]) == 140
    assert out["DESCRIPTION"].endswith("...")


# ---------------------------------------------------------------------------------------------
# Hostile run data through the real task scripts

#: Everything that has broken a shell, JSON or Python splice at some point.
HOSTILE = (
    'Step "build" failed: it\'s broken \\ C:\\temp\\new \\\\" \\n\n'
    "second line\twith tab $(reboot) `reboot` ${URL} $(URL) $(TOKEN) $(BOT_TOKEN) "
    "$(WEBHOOK_URL) $(params.channel) * ? [ab] "
    '{__import__("os").system("touch PWNED")} -n  two  spaces '
    "<!channel> @everyone ünïcødé ✅ end"
)
SECRETS = {
    "URL": "https://hooks.example.com/SECRET-URL",
    "TOKEN": "xoxb-SECRET-TOKEN",
    "WEBHOOK_URL": "https://teams.example.com/SECRET-WEBHOOK",
    "BOT_TOKEN": "123456:SECRET-BOT-TOKEN",
    "USER": "mailer",
    "PASSWORD": "",
    "TLS": "False",
    "SERVER": "smtp.example.com",
    "PORT": "25",
    "WEBEX_TOKEN": "webex-SECRET-TOKEN",
    "GITLAB_TOKEN": "glpat-SECRET-TOKEN",
    "GITHUBTOKEN": "ghp_SECRET-TOKEN",
}
#: Files in the step's working directory that an unquoted * or ? would expand to.
GLOB_BAIT = ("GLOBBED-FILE-1", "a")

CURL_STUB = """
curl() {
  while [ "$#" -gt 0 ]; do
    case "$1" in
      -d|--data) printf '%s' "$2" > "$CAPTURE"; shift 2 ;;
      *) shift ;;
    esac
  done
}
"""


def hostile_condition(run: dict[str, Any]) -> None:
    run["status"]["conditions"][0]["message"] = HOSTILE


def hostile_child(run: dict[str, Any]) -> None:
    hostile_condition(run)
    for child in run["status"]["taskRuns"].values():
        child["status"]["conditions"][0]["message"] = HOSTILE


HOSTILE_EVENTS = {
    "failed": lambda: load_event(RUNS["failed"], hostile_condition),
    "older-failed": lambda: load_event(RUNS["older-failed"], hostile_child),
    "realworld-failed": lambda: load_event(RUNS["realworld-failed"], hostile_child),
}


PARAM_REFERENCE = re.compile(r"\$\(params\.([A-Za-z0-9_-]+)\)")


def kubernetes_expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' expansion of container env values: $(VAR) of an earlier var, $$ -> $."""
    out: list[str] = []
    index = 0
    while index < len(value):
        if value.startswith("$$", index):
            out.append("$")
            index += 2
        elif value.startswith("$(", index) and ")" in value[index:]:
            end = value.index(")", index)
            name = value[index + 2 : end]
            out.append(env[name] if name in env else value[index : end + 1])
            index = end + 1
        else:
            out.append(value[index])
            index += 1
    return "".join(out)


def tekton_substitute(text: str, params: dict[str, str]) -> str:
    """Tekton's $(params.x) substitution: one pass of plain string replacement."""
    return PARAM_REFERENCE.sub(lambda ref: params.get(ref[1], ref[0]), text)


def step_environment(
    task: dict[str, Any], params: dict[str, str], base: dict[str, str]
) -> dict[str, str]:
    env = dict(base)
    for variable in task["spec"]["steps"][0].get("env", []):
        if "value" in variable:
            env[variable["name"]] = kubernetes_expand(
                tekton_substitute(variable["value"], params), env
            )
        else:
            env[variable["name"]] = SECRETS[variable["name"]]
    return env


def task_params(task: dict[str, Any], rendered: dict[str, str]) -> dict[str, str]:
    values = {p["name"]: p["default"] for p in task["spec"]["params"] if "default" in p}
    values.update(rendered)
    return values


def shells() -> list[Any]:
    found = [pytest.param(("/bin/sh",), id="sh")]
    busybox = shutil.which("busybox")
    skip = pytest.mark.skip(reason="busybox (the curl image's sh, echo and sed) not installed")
    found.append(pytest.param(("busybox", "sh"), id="busybox", marks=() if busybox else skip))
    return found


def run_shell_task(
    task: dict[str, Any], rendered: dict[str, str], shell: tuple[str, ...], workdir: Path
) -> str:
    """Run the task's step script as Tekton would, with curl stubbed; return curl's --data."""
    params = task_params(task, rendered)
    path = os.environ["PATH"]
    if shell[0] == "busybox":
        applets = workdir / "applets"
        applets.mkdir()
        for applet in ("sed", "echo"):
            (applets / applet).symlink_to(shutil.which("busybox") or "busybox")
        path = f"{applets}{os.pathsep}{path}"
    capture = workdir / "captured-body"
    env = step_environment(task, params, {"PATH": path, "CAPTURE": str(capture)})
    script = tekton_substitute(task["spec"]["steps"][0]["script"], params)
    # send-to-channel-slack calls /usr/bin/curl: route it to the stub as well.
    shebang, rest = script.replace("/usr/bin/curl", "curl").split("\n", 1)
    (workdir / "script").write_text(f"{shebang}\n{CURL_STUB}\n{rest}")
    step_dir = workdir / "step"
    step_dir.mkdir()
    for bait in GLOB_BAIT:
        (step_dir / bait).write_text("")
    subprocess.run([*shell, str(workdir / "script")], env=env, cwd=step_dir, check=True, timeout=20)
    return capture.read_text()


#: How each example presents a run message (before truncation), by the filters it applies.
AS_SENT = {
    "slack-webhook": lambda text: slack_escape(oneline(text))[:250],
    "slack-channel": lambda text: slack_escape(text),
    "teams": lambda text: oneline(text),
    "telegram": lambda text: oneline(text),
    "discord": lambda text: oneline(text).replace("@everyone", "@\u200beveryone"),
    "webex": lambda text: oneline(text),
}
SHELL_TASKS = {
    "webex": "text",
    "slack-webhook": "text",
    "slack-channel": "text",
    "teams": "text",
    "telegram": "text",
    "discord": "content",
}


@CATALOG_TASKS
@pytest.mark.parametrize("shell", shells())
@pytest.mark.parametrize("event_name", runs(sorted(HOSTILE_EVENTS)))
@pytest.mark.parametrize("name", sorted(SHELL_TASKS))
def test_example_survives_the_task_script(
    name: str, event_name: str, shell: tuple[str, ...], tmp_path: Path
) -> None:
    _, template = load_example(name)
    task = load_task(template)
    rendered = render_example(name, HOSTILE_EVENTS[event_name]())
    body = run_shell_task(task, rendered, shell, tmp_path)

    payload = json.loads(body)  # valid JSON, whatever the run said
    text = payload[SHELL_TASKS[name]]
    assert text == decoded(rendered["message"])  # exactly what the template meant
    assert AS_SENT[name](HOSTILE) in text  # the run's message, as the template presents it
    for secret in SECRETS.values():
        assert not secret or secret not in body
    for bait in GLOB_BAIT[:1]:
        assert bait not in body
    assert not (tmp_path / "step" / "PWNED").exists()


@CATALOG_TASKS
@pytest.mark.parametrize("shell", shells())
@pytest.mark.parametrize("name", sorted(SHELL_TASKS))
def test_every_character_arrives_exactly(name: str, shell: tuple[str, ...], tmp_path: Path) -> None:
    """A policy override sending the raw message: newlines, tabs and runs of spaces too."""
    _, template = load_example(name)
    task = load_task(template)
    rendered = render_example(
        name,
        HOSTILE_EVENTS["failed"](),
        overrides={"message": "{{ event.message | json_escape_strict }}"},
    )
    body = run_shell_task(task, rendered, shell, tmp_path)
    assert json.loads(body)[SHELL_TASKS[name]] == HOSTILE


@CATALOG_TASKS
@pytest.mark.parametrize("shell", shells())
def test_why_json_escape_is_not_enough_for_the_env_and_sed_tasks(
    shell: tuple[str, ...], tmp_path: Path
) -> None:
    """send-to-webhook-slack with plain json_escape: the task's sed turns the escaped quote
    into an escaped backslash plus a bare quote, and Kubernetes expands $(URL) into the
    secret webhook URL. This is the hazard json_escape_strict exists for."""
    _, template = load_example("slack-webhook")
    task = load_task(template)
    text = 'say "hi" $(URL)'
    body = run_shell_task(
        task, {"webhook-secret": "s", "message": json_escape(text)}, shell, tmp_path
    )
    assert SECRETS["URL"] in body
    assert body.startswith('{"text": "say \\\\\\"hi\\\\\\"')  # text would read: say \"hi\"


@CATALOG_TASKS
@pytest.mark.parametrize("shell", shells())
def test_why_telegram_needs_escaping_of_globs_and_spaces(
    shell: tuple[str, ...], tmp_path: Path
) -> None:
    _, template = load_example("telegram")
    task = load_task(template)
    params = {"bot-token-secret": "s", "chat-id": "1", "message": "files: *  end"}
    body = run_shell_task(task, params, shell, tmp_path)
    assert json.loads(body)["text"] == "files: GLOBBED-FILE-1 a end"


# ---------------------------------------------------------------------------------------------
# sendmail: a Python script

FAKE_SMTPLIB = """
import json, os

class SMTP:
    def __init__(self, *args, **kwargs):
        pass
    def ehlo(self):
        pass
    def starttls(self, *args, **kwargs):
        pass
    def login(self, user, password):
        pass
    def sendmail(self, sender, receiver, message):
        with open(os.environ["CAPTURE"], "a") as capture:
            capture.write(json.dumps([sender, receiver, message.decode("utf-8")]) + "\\n")
    def quit(self):
        pass

SMTP_SSL = SMTP
"""


def run_python_step(
    script: str, workdir: Path, env: dict[str, str], capture: Path
) -> list[dict[str, Any]]:
    """Run a task's substituted Python step script in ``workdir`` (where the stubs are) and
    return what its stubbed client captured, one JSON object per line."""
    (workdir / "step.py").write_text(script)
    subprocess.run(
        [sys.executable, str(workdir / "step.py")],
        env=env,
        cwd=workdir,
        check=True,
        timeout=20,
        capture_output=True,
    )
    return [json.loads(line) for line in capture.read_text().splitlines()]


def run_sendmail(task: dict[str, Any], rendered: dict[str, str], workdir: Path) -> list[Any]:
    params = task_params(task, rendered)
    capture = workdir / "sent"
    env = step_environment(
        task,
        params,
        {"PATH": os.environ["PATH"], "CAPTURE": str(capture), "PYTHONIOENCODING": "utf-8"},
    )
    (workdir / "smtplib.py").write_text(FAKE_SMTPLIB)
    script = tekton_substitute(task["spec"]["steps"][0]["script"], params)
    return run_python_step(script, workdir, env, capture)


@CATALOG_TASKS
@pytest.mark.parametrize("event_name", runs(sorted(HOSTILE_EVENTS)))
def test_email_survives_the_sendmail_script(event_name: str, tmp_path: Path) -> None:
    _, template = load_example("email")
    task = load_task(template)

    def hostile_recipients(run: dict[str, Any]) -> None:
        (hostile_child if "taskRuns" in run["status"] else hostile_condition)(run)
        run["metadata"].setdefault("annotations", {})["example.com/notify-email"] = (
            "dev@example.com\nBcc: spy@example.com"
        )

    event = load_event(RUNS[event_name], hostile_recipients)
    # A subject made of run data, to show a newline in it cannot add a mail header.
    subject_override = (
        "{{ ('Re: ' ~ event.message) | oneline | truncate(150) | json_escape_strict }}"
    )
    rendered = render_example("email", event, overrides={"subject": subject_override})
    sent = run_sendmail(task, rendered, tmp_path)

    subject = decoded(rendered["subject"])
    body = decoded(rendered["body"])
    assert subject.startswith('Re: Step "build" failed: it\'s broken \\ C:\\temp')
    assert "\n" not in subject
    # The task splits recipients on spaces: an annotation may list recipients, not add headers.
    assert [receiver for _, receiver, _ in sent] == ["dev@example.com", "Bcc:", "spy@example.com"]
    for sender, _, message in sent:
        assert sender == "tekton@example.com"
        assert message == (
            f"Subject: {subject}\nTo: dev@example.com Bcc: spy@example.com\n"
            f"From: tekton@example.com\n\n{body}"
        )
    assert HOSTILE in body  # the raw message, every character, inside the mail
    assert not (tmp_path / "PWNED").exists()


# ---------------------------------------------------------------------------------------------
# github-set-status: params go through env vars to os.getenv


@CATALOG_TASKS
def test_github_status_values_survive_kubernetes_env_expansion() -> None:
    _, template = load_example("github-status")
    task = load_task(template)
    event = HOSTILE_EVENTS["failed"]()
    rendered = render_example("github-status", event)
    env = step_environment(task, task_params(task, rendered), {})
    assert env["DESCRIPTION"] == oneline(f"PipelineRun failed: {HOSTILE}")[:137] + "..."
    assert env["STATE"] == "failure"
    assert env["SHA"] == "9c41e7b2d05a8f36e1c4b7a90d2e5f8316ab4c07"
    # Without k8s_env_escape, Kubernetes replaces $(VAR) by an earlier env var and $$ by $.
    text = "see $(REPO_FULL_NAME), pay $$5"
    raw = step_environment(task, {"REPO_FULL_NAME": "x/y", "DESCRIPTION": text}, {})
    assert raw["DESCRIPTION"] == "see x/y, pay $5"
    escaped = {"REPO_FULL_NAME": "x/y", "DESCRIPTION": k8s_env_escape(text)}
    assert step_environment(task, escaped, {})["DESCRIPTION"] == text


# ---------------------------------------------------------------------------------------------
# Pipelines-as-Code runs: forge commit statuses, pull-request comments, deployment statuses


def pac_run(provider: str, repo_url: str, hostile: bool = False) -> Any:
    """A mutation making the PaC pull-request run (fixture 15) come from ``provider``."""

    def mutate(run: dict[str, Any]) -> None:
        if hostile:
            hostile_child(run)
        run["metadata"]["labels"]["pipelinesascode.tekton.dev/git-provider"] = provider
        run["metadata"]["annotations"]["pipelinesascode.tekton.dev/repo-url"] = repo_url
        run["metadata"]["annotations"]["example.com/git-repo"] = "example/docs-site"
        run["metadata"]["annotations"]["example.com/github-deployment-id"] = "4242"
        run["metadata"]["annotations"]["example.com/environment"] = HOSTILE if hostile else "prod"

    return mutate


GITLAB = "https://gitlab.example.com/platform/web/docs-site.git"
GITEA = "http://git.example.com:3000/example/docs-site"
GITHUB = "https://github.com/example/docs-site"
PAC_SHA = "2b6d0f4a8c1e3a5c7e9b1d3f5a7c9e0b2d4f6a8c"
OLD_MSG = f"PipelineRun failed: {F_MSG}"


@pytest.mark.parametrize(
    ("name", "repo_url", "expected"),
    [
        pytest.param(
            "gitlab-status",
            GITLAB,
            {
                "GITLAB_HOST_URL": "gitlab.example.com",
                "REPO_FULL_NAME": "platform/web/docs-site",
                "SHA": PAC_SHA,
                "STATE": "failed",
                "TARGET_URL": OLD_URL,
                "DESCRIPTION": OLD_MSG,
                "CONTEXT": "tekton/docs-site-pr",
            },
            id="gitlab-nested-group",
        ),
        pytest.param(
            "gitea-status",
            GITEA,
            {
                "GITEA_HOST_URL": "git.example.com:3000",
                "GITEA_HTTPS_OR_HTTP": "http",
                "REPO_FULL_NAME": "example/docs-site",
                "SHA": PAC_SHA,
                "STATE": "failure",
                "TARGET_URL": OLD_URL,
                "DESCRIPTION": OLD_MSG,
                "CONTEXT": "tekton/docs-site-pr",
            },
            id="gitea-http-port",
        ),
        pytest.param(
            "github-pr-comment",
            GITHUB,
            {
                "REQUEST_URL": f"{GITHUB}/pull/1042",
                "COMMENT_TAG": "tekton-docs-site-pr",
                "REPLACE": "true",
                "COMMENT_OR_FILE": f":x: **docs-site-pr** failed after 1m 55s for 2b6d0f4\n\n"
                f"> {F_MSG}\n- `build` Failed: "
                + HUGO_FAILED.replace("@", "@\u200b")
                + f" logs docs-site-pr-1042-h8d5m-build-pod -c step-hugo\n\n"
                f"[{OLD} in Tekton Dashboard]({OLD_URL})",
            },
            id="github-pull-request",
        ),
        pytest.param(
            "github-deployment-status",
            GITHUB,
            {
                "REPO_FULL_NAME": "example/docs-site",
                "DEPLOYMENT_ID": "4242",
                "STATE": "failure",
                "LOG_URL": OLD_URL,
                "DESCRIPTION": OLD_MSG,
                "ENVIRONMENT": "prod",
                "ENVIRONMENT_URL": "",
            },
            id="github-deployment",
        ),
    ],
)
def test_pac_run_params(name: str, repo_url: str, expected: dict[str, str]) -> None:
    """The forge, repository, commit and pull request come from the PaC labels/annotations."""
    out = render_example(name, load_event(RUNS["older-failed"], pac_run("x", repo_url)))
    assert {key: decoded(value) for key, value in out.items()} == expected


@pytest.mark.parametrize(
    ("fixture", "gitlab", "gitea", "deployment"),
    [
        pytest.param("01-pipelinerun-queued.json", "pending", "pending", "queued", id="queued"),
        pytest.param(
            "02-pipelinerun-started.json", "running", "pending", "in_progress", id="started"
        ),
        pytest.param(
            "03-pipelinerun-running.json", "running", "pending", "in_progress", id="running"
        ),
        pytest.param("12-taskrun-unknown.json", "running", "pending", "in_progress", id="unknown"),
        pytest.param(
            "09-pipelinerun-successful.json", "success", "success", "success", id="succeeded"
        ),
        pytest.param("08-pipelinerun-failed.json", "failed", "failure", "failure", id="failed"),
        pytest.param(
            "10-pipelinerun-cancelled.json", "canceled", "warning", "error", id="cancelled"
        ),
        pytest.param("14-pipelinerun-timedout.json", "failed", "error", "error", id="timedOut"),
    ],
)
def test_forge_state_follows_the_outcome(
    fixture: str, gitlab: str, gitea: str, deployment: str
) -> None:
    """Each forge's own state names (GitLab: canceled, failed; Gitea: warning; deployments:
    queued, in_progress), all from the run outcome."""
    event = load_event(EVENTS / fixture)
    assert render_example("gitlab-status", event)["STATE"] == gitlab
    assert render_example("gitea-status", event)["STATE"] == gitea
    assert render_example("github-deployment-status", event)["STATE"] == deployment


FAKE_HTTP_CLIENT = """
import json, os


class HTTPSConnection:
    def __init__(self, host, *args, **kwargs):
        self.host = host
        self.method = ""

    def request(self, method, url, body=None, headers=None):
        self.method = method
        record = {"connection": type(self).__name__, "host": self.host, "method": method,
                  "url": url, "body": body, "headers": headers}
        with open(os.environ["CAPTURE"], "a") as capture:
            capture.write(json.dumps(record) + "\\n")

    def getresponse(self):
        return Response(self.method)

    def close(self):
        pass


class HTTPConnection(HTTPSConnection):
    pass


class Response:
    def __init__(self, method):
        self.status = 200 if method == "GET" else 201
        self.method = method

    def read(self):
        if self.method == "GET":
            return b"[]"
        return json.dumps({"id": 1, "environment": "prod", "state": "failure"}).encode()
"""


def run_python_task(
    task: dict[str, Any], rendered: dict[str, str], workdir: Path
) -> list[dict[str, Any]]:
    """Run a Python step script as Tekton would, with http.client stubbed; return requests.

    Tekton substitutes params, then workspaces and results; the Gitea token Secret is
    mounted as a file."""
    params = task_params(task, rendered)
    capture = workdir / "requests"
    env = step_environment(
        task,
        params,
        {"PATH": os.environ["PATH"], "CAPTURE": str(capture), "PYTHONIOENCODING": "utf-8"},
    )
    (workdir / "http").mkdir()
    (workdir / "http" / "__init__.py").write_text("")
    (workdir / "http" / "client.py").write_text(FAKE_HTTP_CLIENT)
    (workdir / "gitea-token").mkdir()
    (workdir / "gitea-token" / "token").write_text(SECRETS["GITHUBTOKEN"])
    script = tekton_substitute(task["spec"]["steps"][0]["script"], params)
    script = script.replace("$(workspaces.comment-file.bound)", "false")
    script = re.sub(r"\$\(results\.([A-Z_]+)\.path\)", str(workdir / r"result-\1"), script)
    script = script.replace("/etc/gitea-set-status/", f"{workdir}/gitea-token/")
    return run_python_step(script, workdir, env, capture)


def gitlab_description(requests: list[dict[str, Any]]) -> str:
    query = urllib.parse.urlparse(str(requests[-1]["url"])).query
    return urllib.parse.parse_qs(query)["description"][0]


def json_field(field: str) -> Any:
    def read(requests: list[dict[str, Any]]) -> str:
        value: str = json.loads(requests[-1]["body"])[field]
        return value

    return read


def comment_text(requests: list[dict[str, Any]]) -> str:
    body: str = json.loads(requests[-1]["body"])["body"]
    return body.removesuffix("<!-- tekton-docs-site-pr -->")


#: name: (forge URL, text param, how the text reaches the forge, the requests made).
PYTHON_TASKS = {
    "gitlab-status": (
        GITLAB,
        "DESCRIPTION",
        gitlab_description,
        [
            (
                "HTTPSConnection",
                "gitlab.example.com",
                "POST",
                "/api/v4/projects/platform%2Fweb%2Fdocs-site/statuses/" + PAC_SHA,
            )
        ],
    ),
    "gitea-status": (
        GITEA,
        "DESCRIPTION",
        json_field("description"),
        [
            (
                "HTTPConnection",
                "git.example.com:3000",
                "POST",
                f"/api/v1/repos/example/docs-site/statuses/{PAC_SHA}",
            )
        ],
    ),
    "github-pr-comment": (
        GITHUB,
        "COMMENT_OR_FILE",
        comment_text,
        [
            (
                "HTTPSConnection",
                "api.github.com",
                "GET",
                "/repos/example/docs-site/issues/1042/comments",
            ),
            (
                "HTTPSConnection",
                "api.github.com",
                "POST",
                "/repos/example/docs-site/issues/1042/comments",
            ),
        ],
    ),
    "github-deployment-status": (
        GITHUB,
        "DESCRIPTION",
        json_field("description"),
        [
            (
                "HTTPSConnection",
                "api.github.com",
                "POST",
                "/repos/example/docs-site/deployments/4242/statuses",
            )
        ],
    ),
}


@CATALOG_TASKS
@pytest.mark.parametrize("name", sorted(PYTHON_TASKS))
def test_example_survives_the_python_task_script(name: str, tmp_path: Path) -> None:
    """Hostile run data (and, for the deployment, a hostile annotation) through the task's
    own Python script: the script still runs, sends exactly the rendered text, and runs none
    of the data as code."""
    repo_url, param, sent_text, expected_requests = PYTHON_TASKS[name]
    _, template = load_example(name)
    task = load_task(template)
    rendered = render_example(
        name, load_event(RUNS["older-failed"], pac_run("x", repo_url, hostile=True))
    )
    requests = run_python_task(task, rendered, tmp_path)

    made = [(r["connection"], r["host"], r["method"], r["url"].split("?")[0]) for r in requests]
    assert made == expected_requests
    text = sent_text(requests)
    assert text == decoded(rendered[param])
    assert oneline(HOSTILE)[:40] in text.replace("@\u200b", "@")
    if name == "github-deployment-status":
        assert json.loads(requests[-1]["body"])["environment"] == HOSTILE
    for request in requests:
        for secret in ("ghp_SECRET-TOKEN", "glpat-SECRET-TOKEN"):
            assert secret not in json.dumps(request["body"]) + request["url"]
    assert not (tmp_path / "PWNED").exists()


@CATALOG_TASKS
@pytest.mark.parametrize("name", sorted(PYTHON_TASKS))
def test_every_character_arrives_exactly_through_python(name: str, tmp_path: Path) -> None:
    """A policy override sending the raw message: quotes, backslashes, newlines, braces."""
    repo_url, param, sent_text, _ = PYTHON_TASKS[name]
    _, template = load_example(name)
    task = load_task(template)
    rendered = render_example(
        name,
        load_event(RUNS["older-failed"], pac_run("x", repo_url, hostile=True)),
        overrides={param: "{{ event.message | json_escape_strict }}"},
    )
    assert sent_text(run_python_task(task, rendered, tmp_path)) == HOSTILE
    assert not (tmp_path / "PWNED").exists()


@CATALOG_TASKS
def test_why_a_python_literal_needs_json_escape_strict(tmp_path: Path) -> None:
    """github-add-comment with the raw text: a `\"\"\"` ends the literal and the rest of the
    message is Python code, run by the task."""
    _, template = load_example("github-pr-comment")
    task = load_task(template)
    raw = '""" + __import__("os").system("touch PWNED") + """'
    rendered = {"REQUEST_URL": f"{GITHUB}/pull/1", "COMMENT_OR_FILE": raw}
    with pytest.raises(subprocess.CalledProcessError):
        run_python_task(task, rendered, tmp_path)  # str + int: after the command ran
    assert (tmp_path / "PWNED").exists()


# ---------------------------------------------------------------------------------------------
# cloudevent: params become container args (no shell), expanded by Tekton and Kubernetes


def container_args(task: dict[str, Any], rendered: dict[str, str]) -> list[str]:
    """The step's args as the container gets them: Tekton's substitution, then Kubernetes'
    $(VAR) expansion (the step has no env, so only $$ -> $ changes anything)."""
    params = task_params(task, rendered)
    return [
        kubernetes_expand(tekton_substitute(arg, params), {})
        for arg in task["spec"]["steps"][0]["args"]
    ]


@CATALOG_TASKS
@pytest.mark.parametrize("event_name", runs(sorted(HOSTILE_EVENTS)))
def test_cloudevent_data_survives_the_container_args(event_name: str) -> None:
    _, template = load_example("cloudevent")
    task = load_task(template)
    event = HOSTILE_EVENTS[event_name]()
    args = container_args(task, render_example("cloudevent", event))
    flags = dict(arg.removeprefix("--").split("=", 1) for arg in args if arg.startswith("--"))
    data = json.loads(flags["data"])
    assert data["message"] == event.message
    assert HOSTILE in data["message"]
    assert (data["name"], data["outcome"], data["kind"]) == (event.name, "failed", "PipelineRun")
    assert flags["event-id"] == event.id
    assert flags["event-type"] == "com.example.ci.run.failed"
    assert args[-1] == "http://broker-ingress.knative-eventing.svc.cluster.local/ci/default"
    # Nothing left for Tekton's $(context.*) substitution or Kubernetes to change.
    assert "$" not in flags["data"]


@CATALOG_TASKS
def test_why_cloudevent_data_is_not_plain_tojson() -> None:
    """tojson keeps `$`: Kubernetes turns `$$` into `$` in the args (and Tekton would
    substitute a `$(context.taskRun.name)` in them)."""
    _, template = load_example("cloudevent")
    task = load_task(template)
    text = "pay $$5 $(context.taskRun.name)"
    args = container_args(task, {"sink": "http://sink", "eventID": "1", "data": json.dumps(text)})
    assert json.loads(args[3].removeprefix("--data=")) == "pay $5 $(context.taskRun.name)"
