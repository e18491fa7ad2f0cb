"""Each function's fairness limits agree with what Knative lets into its pod (func.yaml).

A request Knative admits (``containerConcurrency``, func.yaml's
``deploy.options.resources.limits.concurrency``) must find a worker, or it waits inside the
pod for nothing; one namespace's share must leave workers for the others.
"""

from __future__ import annotations

from typing import Any

import pytest

from tekton_notifications.stages.fairness import Limits
from tests.manifests.test_knative import func_yamls

FUNCTIONS = ("policy-filter", "template-renderer", "task-launcher", "status-recorder")


def limits(spec: dict[str, Any]) -> Limits:
    envs = {str(e["name"]): str(e.get("value", "")) for e in spec["run"]["envs"]}
    return Limits.from_config(envs)


@pytest.mark.parametrize("function", FUNCTIONS)
def test_workers_match_container_concurrency(function: str) -> None:
    spec = func_yamls()[function]
    concurrency = spec["deploy"]["options"]["resources"]["limits"]["concurrency"]
    assert limits(spec).workers == concurrency


@pytest.mark.parametrize("function", FUNCTIONS)
def test_one_namespace_leaves_most_workers_to_the_others(function: str) -> None:
    found = limits(func_yamls()[function])
    assert found.per_namespace * 2 <= found.workers
    assert found.stuck_after == 30.0
