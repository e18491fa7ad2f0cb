"""A function in this process: func-python's own ASGI app around the function's own ``new()``,
driven over httpx's ASGI transport, answering with the same :class:`Reply` as over HTTP.

Everything between the request and the reply is the real thing: func-python decodes the
CloudEvent (binary or structured) and encodes the reply, the body limit wraps its app, the
adapter admits the event to a worker, the stage talks to the emulator over HTTP. What is not
here is the server: no port, no lifespan (``start`` is called as func-python's lifespan would
call it), no process to exit on a refused start, no SIGTERM. The served tests
(:mod:`tests.functions.serving`) keep those, on func-python's server and functions-framework.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Mapping
from types import ModuleType
from typing import Any, TypeVar

import httpx
from func_python.cloudevent import ASGIApplication

from tekton_notifications import signing
from tekton_notifications.adapters.funcpython import Function
from tekton_notifications.devtools.serving import FUNCTIONS
from tests.functions.serving import Reply

T = TypeVar("T")
#: Long enough for any stage on a loaded machine; a hang fails the test instead of blocking it.
TIMEOUT = 30.0


def function_module(name: str) -> ModuleType:
    """``functions/<name>/function/func.py``, what kn func builds: its ``new`` is the function.

    Loaded under a name of its own, since every function's package is called ``function``.
    """
    module_name = f"_inprocess_{name.replace('-', '_')}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    path = FUNCTIONS / name / "function" / "func.py"
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None, name
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def environment(env: Mapping[str, str]) -> dict[str, str]:
    """What func-python's lifespan hands ``start``: the process environment, as served.

    As :func:`tekton_notifications.devtools.serving.serve_function` does: signing is only what
    ``env`` says, and the metrics port is off unless asked for.
    """
    inherited = {
        k: v for k, v in os.environ.items() if k not in (signing.ENVIRONMENT, signing.SWITCH)
    }
    return {"METRICS_PORT": "0", **inherited, **env}


class InProcessFunction:
    """One function instance behind func-python's ASGI app, on an event loop of its own.

    The loop runs on a thread for the function's whole life, as a server's would, so events
    posted from several test threads at once are handled concurrently.
    """

    def __init__(self, name: str, env: Mapping[str, str]) -> None:
        self.name = name
        new: Callable[[], Function] = function_module(name).new
        self.function = new()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"inprocess-{name}", daemon=True
        )
        self._thread.start()
        self._stopped = False
        try:
            self.function.start(environment(env))
        except BaseException:  # SystemExit on a refused start, too: no loop left running
            self._close_loop()
            raise
        transport = httpx.ASGITransport(app=ASGIApplication(self.function))
        self._client = httpx.AsyncClient(transport=transport, base_url=f"http://{name}")

    def request(
        self,
        method: str,
        path: str = "/",
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
    ) -> Reply:
        response = self._run(
            self._client.request(method, path, headers=dict(headers or {}), content=body)
        )
        return Reply(response.status_code, response.headers, response.content)

    def wait_ready(self, timeout: float = TIMEOUT) -> None:
        """Until the readiness probe passes, as the served functions are waited for."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            probe = self.request("GET", "/health/readiness")
            if probe.status == 200:
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} not ready in {timeout}s: {probe.body!r}")

    def log(self) -> str:
        """Served functions have a log file; this one logs into the test's captured logging."""
        return "(in-process: see the test's captured log)"

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        try:
            self.function.stop()
            self._run(self._client.aclose())
        finally:
            self._close_loop()

    def _close_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=TIMEOUT)
        self._loop.close()

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=TIMEOUT)
