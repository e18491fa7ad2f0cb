"""Shared test fixtures: real Tekton events from ../shared and builders for policies."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tekton_notifications.devtools.kubeapi import KubeAPIServer
from tekton_notifications.devtools.serving import FF_VENV
from tekton_notifications.events import RunEvent, parse_event

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
FIXTURES = SHARED / "fixtures" / "tekton-events"
EXAMPLES = ROOT / "examples"

needs_shared = pytest.mark.skipif(
    not FIXTURES.is_dir(), reason=f"shared reference data not found at {SHARED}"
)


@pytest.fixture
def kubeapi() -> Iterator[KubeAPIServer]:
    """A Kubernetes API emulator of the test's own, served over HTTP."""
    with KubeAPIServer() as server:
        yield server


def skip_unless_servable(server: str) -> None:
    """functions-framework runs from its own venv (`make install-ff`): skip when it's missing."""
    if server == "functions-framework" and not (FF_VENV / "bin" / "functions-framework").exists():
        pytest.skip(f"functions-framework venv missing at {FF_VENV}: run `make install-ff`")


def fixture_files() -> list[Path]:
    return sorted(FIXTURES.glob("*/*.json")) if FIXTURES.is_dir() else []


def load_cloudevent(name: str) -> dict[str, Any]:
    """A fixture in structured form; ``name`` is ``current/08-pipelinerun-failed.json``."""
    path = FIXTURES / name
    if not path.is_file():
        pytest.skip(f"fixture {path} not found (shared reference data absent)")
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def load_event(name: str) -> RunEvent:
    cloudevent = load_cloudevent(name)
    return parse_event(cloudevent, cloudevent["data"])


@pytest.fixture
def fixture_event() -> Callable[[str], RunEvent]:
    return load_event


def policy_object(
    name: str = "notify",
    namespace: str = "ci",
    *,
    events: list[str] | None = None,
    selector: dict[str, Any] | None = None,
    when: str | None = None,
    templates: list[str] | None = None,
    suspend: bool | None = None,
    rate_limit: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A NotificationPolicy object as the API would return it."""
    spec: dict[str, Any] = {
        "events": events or ["failed"],
        "templateRefs": [{"name": t} for t in (templates or ["slack"])],
    }
    if selector is not None:
        spec["selector"] = selector
    if when is not None:
        spec["when"] = when
    if suspend is not None:
        spec["suspend"] = suspend
    if rate_limit is not None:
        spec["rateLimit"] = rate_limit
    return {
        "apiVersion": "notifications.tekton.dev/v1alpha1",
        "kind": "NotificationPolicy",
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}", "generation": 1},
        "spec": spec,
    }
