"""knative/overlays/failure-logs: reading logs is granted only there, only to the template
renderer, and only ``get`` on pods and pods/log; the base install reads no logs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tekton_notifications.devtools.router import load_objects
from tests.manifests.test_knative import KNATIVE, NAMESPACE

FAILURE_LOGS = KNATIVE / "overlays" / "failure-logs"
LOGS = {("", "pods", "get"), ("", "pods/log", "get")}


def grants(overlay: Path) -> dict[str, set[tuple[str, str, str]]]:
    """ServiceAccount name -> (group, resource, verb) its ClusterRoleBindings give it."""
    objects: list[dict[str, Any]] = [dict(obj) for _, obj in load_objects(overlay)]
    roles = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ClusterRole"}
    granted: dict[str, set[tuple[str, str, str]]] = {}
    for binding in (o for o in objects if o["kind"] == "ClusterRoleBinding"):
        for subject in binding["subjects"]:
            assert subject["namespace"] == NAMESPACE
            rules = roles[binding["roleRef"]["name"]]["rules"]
            granted.setdefault(subject["name"], set()).update(
                (group, resource, verb)
                for rule in rules
                for group in rule["apiGroups"]
                for resource in rule["resources"]
                for verb in rule["verbs"]
            )
    return granted


@pytest.mark.parametrize(
    ("overlay", "renderer_reads_logs"),
    [
        pytest.param(KNATIVE, False, id="base"),
        pytest.param(FAILURE_LOGS, True, id="failure-logs-overlay"),
    ],
)
def test_only_the_overlay_lets_the_renderer_read_logs(
    overlay: Any, renderer_reads_logs: bool
) -> None:
    granted = grants(overlay)
    assert (granted["template-renderer"] >= LOGS) is renderer_reads_logs
    for account, rules in granted.items():
        if account != "template-renderer":
            assert not {rule for rule in rules if rule[1].startswith("pods")}, account


def test_the_overlay_adds_nothing_but_the_log_read() -> None:
    base, overlay = grants(KNATIVE), grants(FAILURE_LOGS)
    assert overlay["template-renderer"] - base["template-renderer"] == LOGS
    assert {k: v for k, v in overlay.items() if k != "template-renderer"} == {
        k: v for k, v in base.items() if k != "template-renderer"
    }
