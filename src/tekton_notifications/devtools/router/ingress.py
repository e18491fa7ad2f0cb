"""The broker's ingress: an HTTP server that hands each CloudEvent to the router."""

from __future__ import annotations

import logging
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from tekton_notifications.devtools.router.delivery import BadEventError, _decode_event

if TYPE_CHECKING:
    from tekton_notifications.devtools.router.delivery import EventRouter

log = logging.getLogger("tekton_notifications.devtools.router")

# --- ingress server ------------------------------------------------------------------------


class _IngressServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], router: EventRouter) -> None:
        self.router = router
        super().__init__(address, _IngressHandler)


class _IngressHandler(BaseHTTPRequestHandler):
    server: _IngressServer

    def do_POST(self) -> None:
        router = self.server.router
        if urlsplit(self.path).path.rstrip("/") != router.broker.ingress_path:
            self._answer(404, f"no broker at {self.path}; POST to {router.broker.ingress_path}")
            return
        try:
            body = self._read_body()
        except ValueError as exc:
            self._answer(400, f"unreadable body: {exc}")
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            event = _decode_event(headers, body)
        except BadEventError as exc:
            log.info("ingress rejected a request: %s", exc)
            self._answer(400, str(exc))
            return
        if router._accept(event):
            self._answer(202)
        else:
            self._answer(400, "event dropped: TTL exhausted or router stopping")

    def _refuse(self) -> None:
        self._answer(405, "only POST is allowed")

    do_GET = do_PUT = do_DELETE = do_PATCH = _refuse

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline().strip():  # trailers
                pass
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _answer(self, status: int, message: str = "") -> None:
        payload = message.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(payload)))
        if payload:
            self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        log.debug("ingress: " + format, *args)
