"""The demo prints `kubectl get notificationtemplates -A -o wide` from the CRD's own printer
columns: the columns come from crds/, the values from evaluating each jsonPath."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from tekton_notifications.devtools import printercolumns
from tests.conftest import ROOT

NOW = datetime(2026, 12, 2, 2, 0, 0, tzinfo=UTC)
TEMPLATE: dict[str, Any] = {
    "metadata": {"name": "teams", "namespace": "ci", "creationTimestamp": "2026-12-02T01:55:00Z"},
    "spec": {"taskRef": {"name": "send-to-microsoft-teams"}},
    "status": {
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "Ready"},
            {"type": "Delivering", "status": "False", "reason": "DeliveryFailing"},
        ],
        "deliveryFailedCount": 3,
    },
}


@pytest.mark.parametrize(
    ("path", "values"),
    [
        pytest.param(".spec.taskRef.name", ["send-to-microsoft-teams"], id="fields"),
        pytest.param(".spec.pipelineRef.name", [], id="missing"),
        pytest.param('.status.conditions[?(@.type=="Delivering")].status', ["False"], id="filter"),
        pytest.param(".status.conditions[1].reason", ["DeliveryFailing"], id="index"),
        pytest.param(".status.conditions[5].reason", [], id="index-out-of-range"),
    ],
)
def test_json_path(path: str, values: list[str]) -> None:
    assert printercolumns.evaluate(path, TEMPLATE) == values


def test_an_unsupported_json_path_is_refused_not_shown_empty() -> None:
    with pytest.raises(ValueError, match="unsupported jsonPath"):
        printercolumns.evaluate(".spec..name", TEMPLATE)


@pytest.mark.parametrize(
    ("wide", "lines"),
    [
        pytest.param(
            False,
            ["NAMESPACE   NAME    TASK                      RESOLVER   READY   DELIVERING   AGE",
             "ci          teams   send-to-microsoft-teams              True    False        5m"],
            id="default",
        ),
        pytest.param(
            True,
            ["NAMESPACE   NAME    TASK                      PIPELINE   RESOLVER   READY   REASON"
             "   DELIVERING   DELIVERED   FAILED   AGE",
             "ci          teams   send-to-microsoft-teams                         True    Ready "
             "   False                    3        5m"],
            id="wide",
        ),
    ],
)  # fmt: skip
def test_the_templates_table_follows_the_crd(wide: bool, lines: list[str]) -> None:
    columns = printercolumns.columns(ROOT / "crds" / "notificationtemplate.yaml")
    assert printercolumns.table([TEMPLATE], columns, wide=wide, now=NOW) == lines


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        pytest.param(-5, "<invalid>", id="future"),
        pytest.param(0, "0s", id="now"),
        pytest.param(119, "119s", id="seconds-below-2m"),
        pytest.param(330, "5m30s", id="minutes-and-seconds-below-10m"),
        pytest.param(600, "10m", id="minutes-below-3h"),
        pytest.param(3 * 3600 + 600, "3h10m", id="hours-and-minutes-below-8h"),
        pytest.param(30 * 3600, "30h", id="hours-below-2d"),
        pytest.param(3 * 86400 + 7200, "3d2h", id="days-and-hours-below-8d"),
        pytest.param(40 * 86400, "40d", id="days-below-2y"),
        pytest.param(3 * 365 * 86400 + 86400, "3y1d", id="years-and-days"),
    ],
)
def test_age_as_kubectl_shows_it(seconds: int, shown: str) -> None:
    then = datetime.fromtimestamp(NOW.timestamp() - seconds, UTC).isoformat()
    assert printercolumns.age(then, NOW) == shown
