"""All the demo's stand-ins at once, and the Secrets and curl config that point the tasks at them.

``StandIns`` starts the webhook receiver (Slack, Discord, Teams, GitHub), TLS ones serving
``api.telegram.org`` and ``slack.com`` (the send-to-telegram and send-to-channel-slack tasks
post to those fixed URLs), and the SMTP sink. ``secrets(namespace)`` are the Secrets the
example templates name (slack-webhook, discord-webhook, teams-webhook, telegram-bot,
slack-bot-token, smtp-server, github, platform-slack-webhook), with URLs of the stand-ins; load
them into the emulator and the catalog tasks reach the stand-ins without a change to their
scripts. ``step_env`` is the curl config that plays DNS for those fixed hosts: curl reads
``$CURL_HOME/.curlrc``, which sends them (only) to their stand-ins and trusts the demo's
certificate. Without openssl there is no TLS: the sink offers no STARTTLS (so sendmail fails,
visibly) and Telegram and Slack's Web API have no stand-in.
"""

from __future__ import annotations

import base64
import logging
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType
from typing import Any

from tekton_notifications.devtools import democerts
from tekton_notifications.devtools.receivers import WebhookReceiver
from tekton_notifications.devtools.smtpsink import SMTPSink

log = logging.getLogger(__name__)

#: Secret name -> (key, path on the webhook receiver); the names the example templates use.
WEBHOOK_SECRETS = {
    "slack-webhook": ("url", "/slack/services/T0000/B0000/demo"),
    "platform-slack-webhook": ("url", "/slack/services/T0000/B0001/platform"),
    "discord-webhook": ("url", "/discord/api/webhooks/1/demo"),
    "teams-webhook": ("url", "/teams/webhookb2/demo"),
}
TELEGRAM_TOKEN = "123456:demo-bot-token"
SLACK_BOT_TOKEN = "xoxb-0000-demo-bot-token"
#: The fixed https hosts the catalog tasks post to, each served by a TLS stand-in.
TLS_HOSTS = ("api.telegram.org", "slack.com")


class StandIns:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._stack = ExitStack()
        self.telegram: WebhookReceiver | None = None
        #: slack.com's Web API (chat.postMessage, for send-to-channel-slack).
        self.slack_api: WebhookReceiver | None = None
        self.step_env: dict[str, str] = {}

    def __enter__(self) -> StandIns:
        try:
            certificate: democerts.Certificate | None = democerts.make(
                self.workdir / "tls", ("localhost", *TLS_HOSTS)
            )
        except (democerts.NoOpenSSL, OSError) as error:
            log.warning("stand-ins without TLS: %s", error)
            certificate = None
        context = certificate.server_context() if certificate else None
        self.webhooks = WebhookReceiver()
        self.smtp = SMTPSink(ssl_context=context)
        servers: list[WebhookReceiver | SMTPSink] = [self.webhooks, self.smtp]
        if certificate is not None and context is not None:
            self.telegram = WebhookReceiver(ssl_context=certificate.server_context())
            self.slack_api = WebhookReceiver(ssl_context=certificate.server_context())
            servers += [self.telegram, self.slack_api]
            curl_home = self.workdir / "curl"
            curl_home.mkdir(parents=True, exist_ok=True)
            (curl_home / ".curlrc").write_text(
                "".join(
                    f"connect-to = {host}:443:127.0.0.1:{receiver.port}\n"
                    for host, receiver in zip(
                        TLS_HOSTS, (self.telegram, self.slack_api), strict=True
                    )
                )
                + f'cacert = "{certificate.cert}"\n'
            )
            self.step_env["CURL_HOME"] = str(curl_home)
        for server in servers:
            server.start()
            self._stack.callback(server.stop)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stack.close()

    def secrets(self, namespace: str) -> list[dict[str, Any]]:
        """The example templates' Secrets, pointing at these stand-ins."""
        found = [
            _secret(namespace, name, {key: f"{self.webhooks.url}{path}"})
            for name, (key, path) in WEBHOOK_SECRETS.items()
        ]
        found.append(_secret(namespace, "telegram-bot", {"token": TELEGRAM_TOKEN}))
        found.append(_secret(namespace, "slack-bot-token", {"token": SLACK_BOT_TOKEN}))
        found.append(
            _secret(
                namespace,
                "smtp-server",
                {
                    "url": "127.0.0.1",
                    "port": str(self.smtp.port),
                    "user": "tekton",
                    "password": "",
                    "tls": "False",
                },
            )
        )
        found.append(_secret(namespace, "github", {"token": "ghp_demo-token"}))
        return found

    def receivers(self) -> list[WebhookReceiver]:
        """Every HTTP stand-in started, in a fixed order (the demo reports what each got)."""
        return [r for r in (self.webhooks, self.telegram, self.slack_api) if r is not None]

    @property
    def github_host(self) -> str:
        """The value for github-set-status's GITHUB_HOST_URL param (its "fake github" path)."""
        return self.webhooks.url


def _secret(namespace: str, name: str, data: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "Opaque",
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }
