"""`tkn-notify lint` knows the scheduler's templates (issue 17): a policy's digest template
renders with a digest, must exist, and a typo in it is named, as for any other template.
The manifests are the demo scene's (devtools/demo_scheduler.py)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from tekton_notifications.devtools import demo_scheduler as scene
from tests.cli.conftest import Invoke, write_yaml


def lint(invoke: Invoke, tmp_path: Path, *objects: dict[str, Any]) -> list[dict[str, str]]:
    path = write_yaml(tmp_path / "manifests.yaml", *objects)
    result = invoke("lint", path, "-o", "json")
    assert result.exit_code in (0, 1), result.output
    found: list[dict[str, str]] = json.loads(result.stdout)["problems"]
    return found


def test_the_demo_scenes_policies_and_templates_lint_clean(invoke: Invoke, tmp_path: Path) -> None:
    objects = (scene.REMINDER_TEMPLATE, scene.DIGEST_TEMPLATE, scene.REMINDING, scene.DIGESTING)
    assert lint(invoke, tmp_path, *objects) == []


def typo(template: dict[str, Any]) -> dict[str, Any]:
    broken = copy.deepcopy(template)
    broken["spec"]["params"]["message"] = "{{ digest.totl }}"
    return broken


@pytest.mark.parametrize(
    ("objects", "path", "says"),
    [
        pytest.param(
            (scene.REMINDER_TEMPLATE, typo(scene.DIGEST_TEMPLATE), scene.DIGESTING),
            "spec.params.message",
            "totl",
            id="typo-in-the-digest-template",
        ),
        pytest.param(
            (scene.REMINDER_TEMPLATE, scene.DIGESTING),
            "spec.digest.templateRef.name",
            "NotificationTemplate nightly/held-back-digest is not among the linted files",
            id="digest-template-missing",
        ),
    ],
)
def test_what_is_wrong_with_a_digest_is_named(
    invoke: Invoke, tmp_path: Path, objects: tuple[dict[str, Any], ...], path: str, says: str
) -> None:
    (problem,) = lint(invoke, tmp_path, *objects)
    assert problem["field"] == path
    assert says in problem["message"]
