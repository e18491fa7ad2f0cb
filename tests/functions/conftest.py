"""Fixtures for testing the functions: API emulator, kubeconfig, sink, and the functions
themselves, in this process (``inprocess``, for their logic) or served (``served``, for what
only a server shows), or each way in turn (``started``, for the wire)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tekton_notifications import signing
from tekton_notifications.devtools.kubeapi import KubeAPIServer
from tekton_notifications.devtools.serving import SERVERS, UNSIGNED, ServedFunction, serve_function
from tests.conftest import skip_unless_servable
from tests.functions.inprocess import InProcessFunction
from tests.functions.serving import CaptureServer


@pytest.fixture
def kubeconfig(kubeapi: KubeAPIServer, tmp_path: Path) -> Path:
    path = tmp_path / "kubeconfig"
    kubeapi.write_kubeconfig(path)
    return path


@pytest.fixture
def broker_sink() -> Iterator[CaptureServer]:
    capture = CaptureServer()
    capture.start()
    yield capture
    capture.stop()


@pytest.fixture(params=SERVERS)
def server(request: pytest.FixtureRequest) -> str:
    """Every function test runs on both servers: func-python and functions-framework."""
    name = str(request.param)
    skip_unless_servable(name)
    return name


@pytest.fixture
def served(tmp_path: Path, server: str) -> Iterator[Callable[..., ServedFunction]]:
    """Start functions for one test; all are stopped at its end.

    Unsigned (the tests post stage events of their own) unless ``env`` says otherwise.
    """
    started: list[ServedFunction] = []

    def start(name: str, *, wait_ready: bool = True, **env: str) -> ServedFunction:
        function = serve_function(
            name, _signing_said(env), tmp_path, server=server, wait_ready=wait_ready
        )
        started.append(function)
        return function

    yield start
    for function in started:
        function.stop()


def _signing_said(env: dict[str, str]) -> dict[str, str]:
    """Unsigned (the tests post stage events of their own) unless ``env`` says otherwise."""
    if signing.ENVIRONMENT not in env and signing.SWITCH not in env:
        return {**UNSIGNED, **env}
    return env


@pytest.fixture
def inprocess() -> Iterator[Callable[..., InProcessFunction]]:
    """Start functions in this process (func-python's ASGI app); all stopped at the test's end.

    ``start`` sets the root logger's level from the environment, as in a pod: put it back.
    """
    started: list[InProcessFunction] = []
    root = logging.getLogger()
    level = root.level

    def start(name: str, *, wait_ready: bool = True, **env: str) -> InProcessFunction:
        function = InProcessFunction(name, _signing_said(env))
        started.append(function)
        if wait_ready:
            function.wait_ready()
        return function

    yield start
    for function in started:
        function.stop()
    root.setLevel(level)


#: How a function can be run: in this process, or served by either server.
MODES = ("in-process", *SERVERS)


@pytest.fixture(params=MODES)
def started(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[..., InProcessFunction | ServedFunction]]:
    """Start functions one way per test: in-process, on func-python's server, on
    functions-framework. For the wire: the same test, with the same assertions, every way."""
    mode = str(request.param)
    if mode == "in-process":
        yield request.getfixturevalue("inprocess")
        return
    skip_unless_servable(mode)
    served_functions: list[ServedFunction] = []

    def start(name: str, *, wait_ready: bool = True, **env: str) -> ServedFunction:
        function = serve_function(
            name, _signing_said(env), tmp_path, server=mode, wait_ready=wait_ready
        )
        served_functions.append(function)
        return function

    yield start
    for function in served_functions:
        function.stop()
