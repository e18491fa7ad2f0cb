"""Talk CloudEvents to a function: over real HTTP to a served one (a URL), or to one in this
process (:mod:`tests.functions.inprocess`); either way the answer is a :class:`Reply`."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

import httpx

from tekton_notifications.devtools.serving import ServedFunction


def binary_request(attributes: Mapping[str, Any], data: Any) -> tuple[dict[str, str], bytes]:
    """Headers and body as Tekton sends them: binary content mode."""
    headers = {
        f"ce-{k}": str(v) for k, v in attributes.items() if k not in ("data", "datacontenttype")
    }
    headers["content-type"] = str(attributes.get("datacontenttype") or "application/json")
    body = data if isinstance(data, bytes) else json.dumps(data).encode()
    return headers, body


def structured_request(attributes: Mapping[str, Any], data: Any) -> tuple[dict[str, str], bytes]:
    envelope = {k: v for k, v in attributes.items() if k != "data"}
    envelope.setdefault("datacontenttype", "application/json")
    envelope["data"] = data
    return {"content-type": "application/cloudevents+json"}, json.dumps(envelope).encode()


ENCODINGS = {"binary": binary_request, "structured": structured_request}


@dataclass
class Reply:
    status: int
    headers: httpx.Headers
    body: bytes

    @property
    def type(self) -> str | None:
        """The reply event's type, in binary or structured mode; None when no event."""
        if "ce-type" in self.headers:
            return self.headers["ce-type"]
        if self.headers.get("content-type", "").startswith("application/cloudevents+json"):
            return str(json.loads(self.body)["type"])
        return None

    @property
    def data(self) -> Any:
        if "ce-type" in self.headers:
            return json.loads(self.body)
        return json.loads(self.body)["data"]

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def detail(self) -> str:
        """What the function says it did; 2xx answers without an event have an empty body."""
        if 200 <= self.status < 300 and self.type is None:
            assert self.body == b"", "a 2xx body that is not an event is a bad reply to Knative"
        return str(self.headers.get("x-notifications-detail", ""))


class Endpoint(Protocol):
    """A function that is not behind a URL: one in this process."""

    name: str

    def request(
        self,
        method: str,
        path: str = "/",
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
    ) -> Reply: ...


#: A served function (or its URL), or a function in this process.
Target = str | ServedFunction | Endpoint


def request(
    target: Target,
    method: str,
    path: str = "/",
    *,
    headers: Mapping[str, str] | None = None,
    body: bytes = b"",
) -> Reply:
    if isinstance(target, ServedFunction):
        target = target.url
    if not isinstance(target, str):
        return target.request(method, path, headers=headers, body=body)
    url = target if path == "/" else target.rstrip("/") + path  # a URL's own path is kept
    response = httpx.request(method, url, headers=dict(headers or {}), content=body, timeout=30)
    return Reply(response.status_code, response.headers, response.content)


def post_event(
    target: Target, attributes: Mapping[str, Any], data: Any, *, encoding: str = "binary"
) -> Reply:
    headers, body = ENCODINGS[encoding](attributes, data)
    return request(target, "POST", headers=headers, body=body)


def post_cloudevent(
    target: Target, cloudevent: Mapping[str, Any], *, encoding: str = "binary"
) -> Reply:
    """Post a structured-view event (like the fixtures) in the given content mode."""
    attributes = {k: v for k, v in cloudevent.items() if k != "data"}
    return post_event(target, attributes, cloudevent.get("data"), encoding=encoding)


def probe(target: Target, path: str = "/health/readiness") -> Reply:
    """A health probe, as Knative's kubelet sends it."""
    return request(target, "GET", path)


@dataclass
class CaptureServer:
    """A stand-in broker ingress (K_SINK): records events, answers a scripted status."""

    status: int = 202
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    def start(self) -> str:
        capture = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                capture.received.append(
                    ({k.lower(): v for k, v in self.headers.items()}, self.rfile.read(length))
                )
                self.send_response(capture.status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def types(self) -> list[str]:
        return [headers.get("ce-type", "") for headers, _ in self.received]
