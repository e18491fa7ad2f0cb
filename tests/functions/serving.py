"""Run a function the way ``kn func`` does, and talk CloudEvents to it over real HTTP."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = ROOT / "functions"

#: What func's Python scaffolding (service/main.py) does, minus its ulimit tweak.
FUNC_PYTHON_MAIN = (
    "import logging\n"
    "from func_python.cloudevent import serve\n"
    "logging.basicConfig(level=logging.INFO)\n"
    "from function import new as handler\n"
    "serve(handler)\n"
)


def write_kubeconfig(path: Path, server: str) -> None:
    """A kubeconfig for a plain-HTTP API server without auth (the emulator, or nothing)."""
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "test", "cluster": {"server": server}}],
        "users": [{"name": "test", "user": {}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
    }
    path.write_text(json.dumps(config))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServedFunction:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def serve_function(
    name: str,
    env: Mapping[str, str],
    log_dir: Path,
    *,
    python: str = sys.executable,
    source: Path | None = None,
    wait_ready: bool = True,
) -> ServedFunction:
    """Start ``functions/<name>`` with func-python in a subprocess on a free loopback port."""
    port = free_port()
    log_path = log_dir / f"{name}.log"
    environ = {**os.environ, **env, "LISTEN_ADDRESS": f"127.0.0.1:{port}",
               "PYTHONUNBUFFERED": "1"}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [python, "-c", FUNC_PYTHON_MAIN], cwd=source or FUNCTIONS / name, env=environ,
            stdout=log, stderr=subprocess.STDOUT,
        )
    served = ServedFunction(name, f"http://127.0.0.1:{port}", process, log_path)
    wait_until_listening(served, ready=wait_ready)
    return served


def wait_until_listening(served: ServedFunction, *, ready: bool, timeout: float = 30.0) -> None:
    path = "/health/readiness" if ready else "/health/liveness"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if served.process.poll() is not None:
            raise RuntimeError(f"{served.name} exited:\n{served.log()}")
        try:
            if httpx.get(served.url + path, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    served.stop()
    raise RuntimeError(f"{served.name} not {'ready' if ready else 'up'} in {timeout}s:\n{served.log()}")


def binary_request(attributes: Mapping[str, Any], data: Any) -> tuple[dict[str, str], bytes]:
    """Headers and body as Tekton sends them: binary content mode."""
    headers = {f"ce-{k}": str(v) for k, v in attributes.items()
               if k not in ("data", "datacontenttype")}
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


def post_event(url: str, attributes: Mapping[str, Any], data: Any, *,
               encoding: str = "binary") -> Reply:
    headers, body = ENCODINGS[encoding](attributes, data)
    response = httpx.post(url, headers=headers, content=body, timeout=30)
    return Reply(response.status_code, response.headers, response.content)


def post_cloudevent(url: str, cloudevent: Mapping[str, Any], *, encoding: str = "binary") -> Reply:
    """Post a structured-view event (like the fixtures) in the given content mode."""
    attributes = {k: v for k, v in cloudevent.items() if k != "data"}
    return post_event(url, attributes, cloudevent.get("data"), encoding=encoding)


@dataclass
class CaptureServer:
    """A stand-in broker ingress (K_SINK): records events, answers a scripted status."""

    status: int = 202
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    def start(self) -> str:
        capture = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
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
