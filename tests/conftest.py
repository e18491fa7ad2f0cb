"""Shared test fixtures: the project's own Tekton events (tests/data/events), the reference
data in ../shared for the `reference` tests only, and builders for policies."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tekton_notifications.devtools.kubeapi import KubeAPIServer
from tekton_notifications.devtools.serving import FF_VENV
from tekton_notifications.events import RunEvent, parse_event

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
#: Tekton CloudEvents written for these tests (see tests/data/events/README.md).
EVENTS = ROOT / "tests" / "data" / "events"

#: Third-party reference data beside the project: Tekton catalog tasks, events captured from
#: a production Tekton, Knative and func schemas. Only tests marked ``reference`` read it.
SHARED = ROOT.parent / "shared"
CATALOG = SHARED / "catalog"
REALWORLD = SHARED / "fixtures" / "tekton-events" / "realworld"
SCHEMAS = SHARED / "schemas"


@pytest.hookimpl(tryfirst=True)  # before skip marks: in CI, missing data outranks them
def pytest_runtest_setup(item: pytest.Item) -> None:
    """A ``reference`` test without its data skips locally, and fails in CI (``CI=true``).

    ``@pytest.mark.reference(path, ...)`` names what it reads, each path under ../shared.
    CI must prove the examples against the real catalog, captured events and schemas: there a
    missing ../shared is a broken set-up, not a reason to pass.
    """
    for marker in item.iter_markers("reference"):
        wanted = [SHARED / str(arg) for arg in marker.args] or [SHARED]
        missing = [str(path) for path in wanted if not path.exists()]
        if not missing:
            continue
        message = (
            f"reference data missing: {', '.join(missing)} (a checkout of the shared "
            "reference data belongs beside the project, at ../shared)"
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message}; CI=true requires it", pytrace=False)
        pytest.skip(message)


@pytest.fixture
def kubeapi() -> Iterator[KubeAPIServer]:
    """A Kubernetes API emulator of the test's own, served over HTTP."""
    with KubeAPIServer() as server:
        yield server


def skip_unless_servable(server: str) -> None:
    """functions-framework runs from its own venv (`make install-ff`): skip when it's missing."""
    if server == "functions-framework" and not (FF_VENV / "bin" / "functions-framework").exists():
        pytest.skip(f"functions-framework venv missing at {FF_VENV}: run `make install-ff`")


def event_files() -> list[Path]:
    """Every event in tests/data/events, in the order a run's story unfolds."""
    return sorted(EVENTS.glob("*.json"))


def realworld_files() -> list[Path]:
    """Events captured from a production Tekton (reference data: may be absent)."""
    return sorted(REALWORLD.glob("*.json"))


def read_cloudevent(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def load_cloudevent(name: str) -> dict[str, Any]:
    """One of tests/data/events in structured form, e.g. ``08-pipelinerun-failed.json``."""
    return read_cloudevent(EVENTS / name)


def load_event(name: str) -> RunEvent:
    cloudevent = load_cloudevent(name)
    return parse_event(cloudevent, cloudevent["data"])


def load_realworld(name: str) -> RunEvent:
    """A captured event from ../shared (only for tests marked ``reference``)."""
    cloudevent = read_cloudevent(REALWORLD / name)
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
