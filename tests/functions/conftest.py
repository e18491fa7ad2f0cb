"""Fixtures for testing the functions as served: API emulator, kubeconfig, sink, servers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tekton_notifications import signing
from tekton_notifications.devtools.kubeapi import KubeAPIServer
from tekton_notifications.devtools.serving import SERVERS, UNSIGNED, ServedFunction, serve_function
from tests.conftest import skip_unless_servable
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
        if signing.ENVIRONMENT not in env and signing.SWITCH not in env:
            env = {**UNSIGNED, **env}
        function = serve_function(name, env, tmp_path, server=server, wait_ready=wait_ready)
        started.append(function)
        return function

    yield start
    for function in started:
        function.stop()
