"""Fixtures for the tkn-notify tests: a CliRunner, files to point it at, and the API emulator.

Commands run in-process through click's CliRunner; the cluster is the Kubernetes API
emulator served over HTTP and reached through a written kubeconfig, never a patched client.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from tekton_notifications.cli import cli
from tekton_notifications.devtools.kubeapi import KubeAPIServer
from tests.conftest import EXAMPLES, load_cloudevent

Invoke = Callable[..., Result]

#: The PipelineRun failure most tests explain (tests/data/events): ci/storefront-ci-run-p7v2k.
FAILED_PIPELINERUN = "08-pipelinerun-failed.json"
RUN_NAME = "storefront-ci-run-p7v2k"


@pytest.fixture
def invoke() -> Invoke:
    """Run ``tkn-notify ARGS...``; the result has ``exit_code``, ``stdout`` and ``stderr``."""

    def run(*args: str | Path, input: str | None = None) -> Result:
        return CliRunner().invoke(cli, [str(arg) for arg in args], input=input)

    return run


def write_yaml(path: Path, *documents: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False), encoding="utf-8")
    return path


def write_event(path: Path, cloudevent: dict[str, Any]) -> Path:
    path.write_text(json.dumps(cloudevent), encoding="utf-8")
    return path


@pytest.fixture
def failed_pipelinerun(tmp_path: Path) -> Path:
    """The failed PipelineRun event of tests/data/events, as a file."""
    return write_event(tmp_path / "event.json", load_cloudevent(FAILED_PIPELINERUN))


def run_object(cloudevent: dict[str, Any]) -> dict[str, Any]:
    """The run a fixture event carries, as the API serves it (with apiVersion and kind)."""
    key, run = next(iter(cloudevent["data"].items()))
    kind = key[0].upper() + key[1:]
    return {"apiVersion": "tekton.dev/v1", "kind": kind, **copy.deepcopy(run)}


def template_object(
    name: str = "slack",
    namespace: str = "ci",
    *,
    params: dict[str, str] | None = None,
    task: str = "send-to-webhook-slack",
) -> dict[str, Any]:
    return {
        "apiVersion": "notifications.tekton.dev/v1alpha1",
        "kind": "NotificationTemplate",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "taskRef": {"name": task},
            "params": params
            if params is not None
            else {"webhook-secret": "slack", "message": "{{ event.name }} {{ event.outcome }}"},
        },
    }


EXAMPLE_POLICIES = EXAMPLES / "policies"
EXAMPLE_TEMPLATES = EXAMPLES / "templates"


@pytest.fixture
def kubeconfig(kubeapi: KubeAPIServer, tmp_path: Path) -> Path:
    """A kubeconfig for the emulator whose context namespace is ``ci``."""
    path = tmp_path / "kubeconfig"
    kubeapi.write_kubeconfig(path, namespace="ci")
    return path
