"""Local stand-ins for the services the notification tasks post to, recording what arrives.

``WebhookReceiver`` is one HTTP server for the chat webhooks (Slack, Discord and Teams at
``/slack/...``, ``/discord/...``, ``/teams/...``; Telegram's Bot API at ``/bot<token>/sendMessage``)
GitHub's commit status API (``/repos/<owner>/<repo>/statuses/<sha>``) and Slack's Web API
``/api/chat.postMessage`` (served for slack.com over TLS, standins.py). It answers as those
services do (200, or 201 with the status for GitHub; Slack's Web API answers 200 with
``{"ok": false, "error": "not_authed"}`` to a request without a bearer token, as Slack does),
or with a chosen error for a service
(``fail``), to show a delivery failing; a body that is not JSON gets 400, as Slack's
``invalid_payload``. ``SMTPSink`` (smtpsink.py) stands in for a mail server.

Development tools: they keep everything in memory and trust every caller.
"""

from __future__ import annotations

import json
import re
import ssl
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_GITHUB_STATUS = re.compile(r"^/repos/([^/]+/[^/]+)/statuses/([0-9A-Za-z]+)$")
_TELEGRAM = re.compile(r"^/bot([^/]+)/sendMessage$")
SLACK_POST_MESSAGE = "/api/chat.postMessage"
SERVICES = ("slack", "discord", "teams", "telegram", "github")


@dataclass(frozen=True)
class Delivery:
    """One request a stand-in received, and what it answered."""

    service: str
    path: str
    body: bytes
    answered: int
    authorization: str = ""
    #: The JSON body it answered.
    reply: str = ""

    def json(self) -> Any:
        return json.loads(self.body)


def service_of(path: str) -> str | None:
    if _GITHUB_STATUS.match(path):
        return "github"
    if _TELEGRAM.match(path):
        return "telegram"
    if path == SLACK_POST_MESSAGE:
        return "slack"
    head = path.strip("/").split("/", 1)[0]
    return head if head in ("slack", "discord", "teams") else None


class WebhookReceiver:
    """Start with ``start()``; ``deliveries`` lists what arrived, in order."""

    def __init__(self, host: str = "127.0.0.1", ssl_context: ssl.SSLContext | None = None) -> None:
        self.deliveries: list[Delivery] = []
        self._failing: dict[str, tuple[int, int]] = {}  # service -> (status, times left)
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                status, reply = receiver._receive(
                    self.path, body, self.headers.get("authorization") or ""
                )
                payload = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer((host, 0), Handler)
        self._server.daemon_threads = True
        if ssl_context is not None:
            self._server.socket = ssl_context.wrap_socket(self._server.socket, server_side=True)
        self.scheme = "https" if ssl_context is not None else "http"

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def start(self) -> str:
        threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="receiver", daemon=True
        ).start()
        return self.url

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def fail(self, service: str, status: int = 500, times: int = 1) -> None:
        """Answer ``status`` to the next ``times`` requests for ``service``."""
        with self._lock:
            self._failing[service] = (status, times)

    def received(self, service: str) -> list[Delivery]:
        with self._lock:
            return [d for d in self.deliveries if d.service == service]

    def _receive(self, path: str, body: bytes, authorization: str) -> tuple[int, Any]:
        service = service_of(path)
        with self._lock:
            status, left = self._failing.get(service or "", (0, 0))
            if left:
                self._failing[service or ""] = (status, left - 1)
            else:
                status = 0
            if service is None:
                status = 404
            elif not status and not _is_json(body):
                status = 400  # as Slack's invalid_payload: the body is not the JSON it expects
            answer = status or (201 if service == "github" else 200)
            if status == 400:
                reply: Any = {"ok": False, "error": "invalid_payload"}
            elif status:
                reply = {"message": "stand-in answering an error on purpose", "status": status}
            else:
                reply = _reply(service or "", path, body, authorization)
            shown = authorization.split(" ", 1)[0] + " ***" if authorization else ""
            self.deliveries.append(
                Delivery(service or "unknown", path, body, answer, shown, json.dumps(reply))
            )
        return answer, reply


def _is_json(body: bytes) -> bool:
    try:
        json.loads(body)
    except ValueError:
        return False
    return True


def _reply(service: str, path: str, body: bytes, authorization: str = "") -> Any:
    """What the real service answers, as far as the tasks read it."""
    if service == "github":
        match = _GITHUB_STATUS.match(path)
        assert match is not None
        try:
            sent = json.loads(body)
        except ValueError:
            sent = {}
        return {"id": 1, "url": f"https://api.github.com{path}", **sent}
    if service == "telegram":
        return {"ok": True, "result": {"message_id": 1}}
    if path == SLACK_POST_MESSAGE:
        return _slack_post_message(json.loads(body), authorization)
    return {"ok": True}


def _slack_post_message(sent: Any, authorization: str) -> Any:
    """chat.postMessage's answer (https://api.slack.com/methods/chat.postMessage): always
    HTTP 200, the outcome in ``ok``/``error``."""
    if not authorization.startswith("Bearer ") or not authorization.removeprefix("Bearer ").strip():
        return {"ok": False, "error": "not_authed"}
    if not isinstance(sent, dict) or not sent.get("channel"):
        return {"ok": False, "error": "channel_not_found"}
    if not sent.get("text"):
        return {"ok": False, "error": "no_text"}
    ts = f"{time.time():.6f}"
    return {
        "ok": True,
        "channel": sent["channel"],
        "ts": ts,
        "message": {"type": "message", "text": sent["text"], "bot_id": "B0DEMO", "ts": ts},
    }
