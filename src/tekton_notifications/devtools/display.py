"""A local stand-in for Knative's event-display Service: records the events it receives.

Accepts binary and structured CloudEvents, answers 202, keeps them in memory for the demo
and the tests to read. A development tool.
"""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tekton_notifications import wire

logger = logging.getLogger(__name__)


class EventDisplay:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        display = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                display.record({k.lower(): v for k, v in self.headers.items()}, body)
                self.send_response(202)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> str:
        threading.Thread(
            target=self._server.serve_forever, name="event-display", daemon=True
        ).start()
        return self.url

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def record(self, headers: dict[str, str], body: bytes) -> None:
        """Store the event in structured form: attributes plus decoded ``data``."""
        try:
            message = wire.decode(headers, body)
        except wire.BadEventError as error:
            logger.warning("event display: not a CloudEvent (%s); kept as text", error)
            message = wire.Message({}, body)
        event: dict[str, Any] = dict(message.attributes)
        try:
            event["data"] = message.json()
        except ValueError:
            event["data"] = body.decode(errors="replace")
        with self._lock:
            self.events.append(event)
