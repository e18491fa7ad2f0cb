"""examples/tasks holds the catalog Tasks the demo runs, as the Tekton catalog publishes them:
the copies must not drift from the published versions (reference data in ../shared/catalog)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import CATALOG, EXAMPLES

COPIES = sorted((EXAMPLES / "tasks").glob("*.yaml"))


@pytest.mark.reference("catalog")
@pytest.mark.parametrize("copy", [pytest.param(path, id=path.stem) for path in COPIES])
def test_copy_is_the_published_task(copy: Path) -> None:
    ours = yaml.safe_load(copy.read_text())
    version = ours["metadata"]["labels"]["app.kubernetes.io/version"]
    published = yaml.safe_load((CATALOG / copy.stem / f"{version}.yaml").read_text())
    assert ours == published


def test_every_task_the_demo_runs_is_here() -> None:
    """The tasks of the example templates the demo's events match (the chain's e2e cases)."""
    names = {yaml.safe_load(path.read_text())["metadata"]["name"] for path in COPIES}
    assert names == {
        "send-to-webhook-slack",
        "send-to-channel-slack",
        "send-to-webhook-discord",
        "send-to-microsoft-teams",
        "send-to-telegram",
        "sendmail",
        "github-set-status",
    }
    assert all(path.stem == yaml.safe_load(path.read_text())["metadata"]["name"] for path in COPIES)
