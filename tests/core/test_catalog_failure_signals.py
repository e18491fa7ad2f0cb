"""Which service failures turn into a failed TaskRun, per catalog notification task.

The delivery tracker reads a notification TaskRun's finish: Succeeded means delivered, Failed
means failed. That is only true where the task's step exits non-zero when the service refuses
the message. Here each catalog task's own step script runs (params substituted as Tekton does,
its Secret values in the env or in a file where it mounts them) against a local service that
answers success, 500, 400, or is unreachable (a closed local port), and the table records the
exit status the script gives today. It is a specification of the catalog as published: a
catalog change (say ``curl --fail``) makes a row fail here, and docs/delivery-failures.md, which
pastes this table, must follow.

The services: one local HTTP server answering every request with the status chosen per test,
and the same over TLS for the tasks with a fixed ``https://`` URL (slack.com, webexapis.com,
api.telegram.org), reached through curl's ``connect-to`` in ``$CURL_HOME/.curlrc``, as the demo
does (standins.py); the SMTP sink (smtpsink.py) refusing recipients for sendmail. The scripts
are not changed: only Tekton's substitutions and the Secret mount path are applied.
"""

from __future__ import annotations

import functools
import json
import re
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from tekton_notifications.devtools import checktools, democerts
from tekton_notifications.devtools.smtpsink import SMTPSink
from tests.conftest import CATALOG
from tests.core.test_catalog_templates import kubernetes_expand, task_params, tekton_substitute

CATALOG_TASKS = pytest.mark.reference("catalog")
#: The hosts the chat tasks post to whatever their params say.
FIXED_HOSTS = ("slack.com", "webexapis.com", "api.telegram.org")
#: curl without a timeout of its own: bound each request so a hang fails fast here.
CURL_MAX_TIME = 5
STEP_TIMEOUT = 20


class AnsweringServer:
    """Answers every request (any method, any path) with ``status`` and ``body``; counts them."""

    def __init__(self, certificate: democerts.Certificate | None = None) -> None:
        self.status, self.body = 200, SUCCESS_BODY
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                server.requests.append(f"{self.command} {self.path}")
                payload = json.dumps(server.body).encode()
                self.send_response(server.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PATCH = _answer

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        if certificate is not None:
            context = certificate.server_context()
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def answer(self, status: int, body: Any) -> None:
        self.status, self.body, self.requests = status, body, []

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


#: What GitHub, GitLab and Gitea answer a created status/comment with, as far as tasks read it.
SUCCESS_BODY = {"ok": True, "id": 1, "environment": "production", "state": "failure"}


def closed_port() -> int:
    """A local port nobody listens on: connecting is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@dataclass
class Services:
    http: AnsweringServer
    https: AnsweringServer
    smtp: SMTPSink
    certificate: democerts.Certificate
    tools: Path
    closed: int = field(default_factory=closed_port)


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    folder = tmp_path_factory.mktemp("failure-signals")
    try:
        certificate = democerts.make(folder / "tls", hosts=("localhost", *FIXED_HOSTS))
    except democerts.NoOpenSSL as error:
        pytest.skip(str(error))
    http, https = AnsweringServer(), AnsweringServer(certificate)
    smtp = SMTPSink(ssl_context=certificate.server_context())  # sendmail always STARTTLSes
    smtp.start()
    yield Services(http, https, smtp, certificate, folder / "tools")
    for server in (http, https, smtp):
        server.stop()


# ---------------------------------------------------------------------------------------------
# How each task is pointed at the local service


@dataclass(frozen=True)
class Target:
    """Where a task's requests go: a reachable service, or a closed port."""

    host: str  # 127.0.0.1:<port> of the HTTP service
    smtp_port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}"


@dataclass(frozen=True)
class Setup:
    params: dict[str, str]
    secrets: dict[str, str] = field(default_factory=dict)  # env var from a secretKeyRef
    token_file: str = ""  # the mount path of a Secret volume holding a "token" key


MESSAGE = {"message": 'Pipeline "storefront" failed'}
STATUS = {"REPO_FULL_NAME": "example/docs-site", "SHA": "2b6d0f4a", "DESCRIPTION": "failed"}
STATUS |= {"TARGET_URL": "https://tekton.example.com/#/runs/1"}
SETUPS: dict[str, Callable[[Target], Setup]] = {
    "send-to-webhook-slack": lambda t: Setup(
        {"webhook-secret": "slack-webhook", **MESSAGE}, {"URL": f"{t.url}/services/T0/B0/x"}
    ),
    "send-to-webhook-discord": lambda t: Setup(
        {"webhook-secret": "discord-webhook", **MESSAGE}, {"URL": f"{t.url}/api/webhooks/1/x"}
    ),
    "send-to-microsoft-teams": lambda t: Setup(
        {"webhook-url-secret": "teams-webhook", "webhook-url-secret-key": "url", **MESSAGE},
        {"WEBHOOK_URL": f"{t.url}/webhookb2/x"},
    ),
    "send-to-channel-slack": lambda t: Setup(
        {"token-secret": "slack-token", "channel": "C0123", **MESSAGE}, {"TOKEN": "xoxb-1"}
    ),
    "send-to-telegram": lambda t: Setup(
        {"bot-token-secret": "telegram-bot", "chat-id": "42", **MESSAGE}, {"BOT_TOKEN": "1:abc"}
    ),
    "send-to-webex-room": lambda t: Setup({"room-id": "Y2lz", **MESSAGE}, {"WEBEX_TOKEN": "w"}),
    "github-set-status": lambda t: Setup(
        {"GITHUB_HOST_URL": t.url, "STATE": "failure", **STATUS},
        token_file="/etc/github-set-status/",
    ),
    "gitea-set-status": lambda t: Setup(
        {"GITEA_HOST_URL": t.host, "GITEA_HTTPS_OR_HTTP": "http", "STATE": "failure", **STATUS},
        token_file="/etc/gitea-set-status/",
    ),
    "gitlab-set-status": lambda t: Setup(
        {"GITLAB_HOST_URL": t.url, "STATE": "failed", **STATUS}, {"GITLAB_TOKEN": "glpat-1"}
    ),
    "github-add-comment": lambda t: Setup(
        {
            "GITHUB_HOST_URL": t.url,
            "REQUEST_URL": "https://github.com/example/docs-site/pull/7",
            "COMMENT_OR_FILE": "The docs build failed",
        },
        {"GITHUBTOKEN": "ghp_1"},
    ),
    "github-create-deployment-status": lambda t: Setup(
        {
            "GITHUB_HOST_URL": t.url,
            "REPO_FULL_NAME": "example/docs-site",
            "DEPLOYMENT_ID": "1",
            "STATE": "failure",
        },
        {"GITHUBTOKEN": "ghp_1"},
    ),
    "sendmail": lambda t: Setup(
        {
            "server": "smtp-server",
            "subject": "storefront failed",
            "body": "see the dashboard",
            "sender": "tekton@example.com",
            "recipients": "team@example.com",
        },
        {
            "USER": "tekton",
            "PASSWORD": "",
            "TLS": "False",
            "SERVER": "127.0.0.1",
            "PORT": str(t.smtp_port),
        },
    ),
}
#: What the real service answers a successful request with (GitHub's create APIs answer 201,
#: and github-create-deployment-status accepts nothing else).
SUCCESS_STATUS = {
    name: 201 if name.startswith(("github-", "gitlab-", "gitea-")) else 200 for name in SETUPS
}


@functools.cache  # read-only here: parsed once per module run
def load_task(name: str) -> dict[str, Any]:
    paths = sorted((CATALOG / name).glob("*.yaml"))
    assert paths, f"no catalog task {name} in {CATALOG}"
    task: dict[str, Any] = yaml.safe_load(paths[-1].read_text())
    return task


def run_step(
    name: str, target: Target, services: Services, workdir: Path, *, key: str = "token"
) -> int:
    """Run the task's only step script as Tekton would and return its exit status.

    ``key`` is the key the mounted Secret holds (the tasks read ``token``)."""
    task = load_task(name)
    setup = SETUPS[name](target)
    (step,) = task["spec"]["steps"]
    params = task_params(task, setup.params)
    environment = checktools.environment(services.tools)
    curl_home = workdir / "curl"
    curl_home.mkdir()
    https_port = services.https.port if target.host.endswith(f":{services.http.port}") else None
    connect = [
        f"connect-to = {h}:443:127.0.0.1:{https_port or services.closed}\n" for h in FIXED_HOSTS
    ]
    (curl_home / ".curlrc").write_text(
        "".join(connect) + f'cacert = "{services.certificate.cert}"\nmax-time = {CURL_MAX_TIME}\n'
    )
    env = {"PATH": environment.path, "HOME": str(workdir), "CURL_HOME": str(curl_home)}
    env["PYTHONIOENCODING"] = "utf-8"
    for variable in step.get("env", []):
        if "value" in variable:
            value = tekton_substitute(variable["value"], params)
            env[variable["name"]] = kubernetes_expand(value, env)
        else:
            env[variable["name"]] = setup.secrets[variable["name"]]
    script = tekton_substitute(step["script"], params)
    script = script.replace("$(workspaces.comment-file.bound)", "false")
    script = re.sub(r"\$\(results\.([A-Z_]+)\.path\)", str(workdir / r"result-\1"), script)
    if setup.token_file:  # the Secret volume, mounted where the script reads it
        (workdir / "secret").mkdir()
        (workdir / "secret" / key).write_text("token-1")
        script = script.replace(setup.token_file, f"{workdir}/secret/")
    path = workdir / "script"
    path.write_text(script)
    shebang = script.split("\n", 1)[0]
    # The scripts import only the standard library: -S skips this machine's site-packages,
    # a third of each start's CPU, and changes nothing they can see.
    interpreter = [checktools.python(), "-S"] if "python" in shebang else ["/bin/sh"]
    done = subprocess.run(
        [*interpreter, str(path)],
        env=env,
        cwd=workdir,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=STEP_TIMEOUT,
        check=False,
    )
    return done.returncode


# ---------------------------------------------------------------------------------------------
# The table: task x service answer -> the step's exit status today

OK, E500, E400, DOWN = "success", "500", "400", "unreachable"
#: The step's exit status per answer. 0 on an error answer is a silent failure: the TaskRun
#: Succeeds and the tracker counts the message as delivered. sendmail's "500"/"400" are the SMTP
#: sink refusing the recipient with 550 (permanent) and 451 (transient).
EXIT_STATUS: dict[str, dict[str, int]] = {
    "send-to-webhook-slack": {OK: 0, E500: 0, E400: 0, DOWN: 7},
    "send-to-webhook-discord": {OK: 0, E500: 0, E400: 0, DOWN: 7},
    "send-to-microsoft-teams": {OK: 0, E500: 0, E400: 0, DOWN: 7},
    "send-to-channel-slack": {OK: 0, E500: 0, E400: 0, DOWN: 7},
    "send-to-telegram": {OK: 0, E500: 0, E400: 0, DOWN: 7},
    "send-to-webex-room": {OK: 0, E500: 0, E400: 0, DOWN: 7},
    "github-set-status": {OK: 0, E500: 1, E400: 1, DOWN: 1},
    "gitea-set-status": {OK: 0, E500: 1, E400: 1, DOWN: 1},
    "gitlab-set-status": {OK: 0, E500: 1, E400: 1, DOWN: 1},
    "github-add-comment": {OK: 0, E500: 1, E400: 1, DOWN: 1},
    "github-create-deployment-status": {OK: 0, E500: 1, E400: 1, DOWN: 1},
    "sendmail": {OK: 0, E500: 1, E400: 1, DOWN: 1},
}
CASES = [
    pytest.param(task, answer, code, id=f"{task}-{answer}")
    for task, answers in EXIT_STATUS.items()
    for answer, code in answers.items()
]


def fixed_host(task: dict[str, Any]) -> bool:
    return any(host in task["spec"]["steps"][0].get("script", "") for host in FIXED_HOSTS)


@CATALOG_TASKS
@pytest.mark.parametrize(("name", "answer", "expected"), CASES)
def test_exit_status_of_the_step_when_the_service_answers(
    name: str, answer: str, expected: int, services: Services, tmp_path: Path
) -> None:
    """The exit status is what Tekton turns into the TaskRun's finish (non-zero: Failed)."""
    server = services.https if fixed_host(load_task(name)) else services.http
    server.answer(int(answer) if answer in (E500, E400) else SUCCESS_STATUS[name], SUCCESS_BODY)
    if name == "sendmail" and answer in (E500, E400):
        services.smtp.fail(550 if answer == E500 else 451)
    target = Target(
        host=f"127.0.0.1:{services.closed if answer == DOWN else services.http.port}",
        smtp_port=services.closed if answer == DOWN else services.smtp.port,
    )
    mails = len(services.smtp.mails)
    code = run_step(name, target, services, tmp_path)
    services.smtp.fail(550, times=0)
    assert code == expected
    if name == "sendmail":  # the step reached the sink (or the port was closed)
        assert len(services.smtp.mails) - mails == (1 if answer == OK else 0)
    else:  # the step reached the service, or nothing did
        assert bool(server.requests) == (answer != DOWN), server.requests


@CATALOG_TASKS
def test_slack_web_api_errors_answered_with_200_pass_as_delivered(
    services: Services, tmp_path: Path
) -> None:
    """Slack's Web API (chat.postMessage) reports most errors (channel_not_found, invalid_auth)
    as HTTP 200 with ``"ok": false``: even ``curl --fail`` would not see them."""
    services.https.answer(200, {"ok": False, "error": "channel_not_found"})
    target = Target(host=f"127.0.0.1:{services.http.port}", smtp_port=services.smtp.port)
    assert run_step("send-to-channel-slack", target, services, tmp_path) == 0
    assert services.https.requests == ["POST /api/chat.postMessage"]


@CATALOG_TASKS
@pytest.mark.parametrize("name", ["github-set-status", "gitea-set-status"])
def test_a_mounted_secret_without_the_token_key_fails_the_step(
    name: str, services: Services, tmp_path: Path
) -> None:
    """A Secret that exists but under another key mounts fine; the script's open() fails."""
    services.http.answer(SUCCESS_STATUS[name], SUCCESS_BODY)
    target = Target(host=f"127.0.0.1:{services.http.port}", smtp_port=services.smtp.port)
    assert run_step(name, target, services, tmp_path, key="github-token") == 1
    assert services.http.requests == []


# ---------------------------------------------------------------------------------------------
# Missing Secret: decided by Kubernetes and Tekton before the script runs


def credential_source(task: dict[str, Any]) -> str:
    """How the step gets its Secret: ``env`` (secretKeyRef), ``volume``, or ``none``."""
    step = task["spec"]["steps"][0]
    if any("secretKeyRef" in (v.get("valueFrom") or {}) for v in step.get("env", [])):
        return "env"
    if any("secret" in v for v in task["spec"].get("volumes") or []):
        return "volume"
    return "none"


#: env: the kubelet cannot build the container (CreateContainerConfigError), which Tekton turns
#: into a Failed TaskRun at once. volume: the pod waits in ContainerCreating (FailedMount) and
#: the TaskRun stays Running until its timeout (tektoncd/pipeline#5116), then fails.
CREDENTIALS = {
    **dict.fromkeys(
        [
            "send-to-webhook-slack",
            "send-to-webhook-discord",
            "send-to-microsoft-teams",
            "send-to-channel-slack",
            "send-to-telegram",
            "send-to-webex-room",
            "gitlab-set-status",
            "github-add-comment",
            "github-create-deployment-status",
            "sendmail",
        ],
        "env",
    ),
    "github-set-status": "volume",
    "gitea-set-status": "volume",
    "cloudevent": "none",
}


@CATALOG_TASKS
@pytest.mark.parametrize(
    ("name", "source"), [pytest.param(*c, id=c[0]) for c in CREDENTIALS.items()]
)
def test_how_each_task_reads_its_credential(name: str, source: str) -> None:
    assert credential_source(load_task(name)) == source


@CATALOG_TASKS
def test_every_catalog_task_is_in_the_tables() -> None:
    """A new catalog task must get a row (and a line in docs/delivery-failures.md)."""
    published = {path.name for path in CATALOG.iterdir() if path.is_dir()}
    assert published == set(CREDENTIALS)
    assert published - set(EXIT_STATUS) == {"cloudevent"}


@CATALOG_TASKS
def test_cloudevent_runs_its_images_own_program() -> None:
    """cloudevent has no script: its ``sendevent`` binary decides the exit status, and it cannot
    run on this machine, so its row is not established here (see docs/delivery-failures.md)."""
    (step,) = load_task("cloudevent")["spec"]["steps"]
    assert "script" not in step
    assert step["command"] == ["sendevent"]
