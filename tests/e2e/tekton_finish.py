"""What Tekton sends when a notification run finishes, for tests that play Tekton's part.

The shape is Tekton's (``dev.tekton.event.taskrun.{successful,failed}.v1``, binary mode,
``data: {"taskRun": <run>}`` with ``status.conditions`` and ``status.steps``), as the demo's
step runner sends it: the delivery tracker consumes exactly that.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any


def finish_event(
    run: Mapping[str, Any],
    *,
    succeeded: bool,
    step: str = "post",
    exit_code: int = 22,
    message: str = "curl: (22) The requested URL returned error: 404",
    reason: str | None = None,
    finished: datetime | None = None,
) -> dict[str, Any]:
    """The CloudEvent (structured view) Tekton sends when ``run`` (as the API has it) ends."""
    finished = finished or datetime.now(UTC)
    body = copy.deepcopy(dict(run))
    kind = str(body.get("kind") or "TaskRun")
    if succeeded:
        condition = {"type": "Succeeded", "status": "True", "reason": "Succeeded"}
        terminated = {"exitCode": 0, "reason": "Completed"}
    else:
        condition = {
            "type": "Succeeded",
            "status": "False",
            "reason": reason or "Failed",
            "message": f'"step-{step}" exited with code {exit_code}',
        }
        terminated = {"exitCode": exit_code, "reason": "Error", "message": message}
    body["status"] = {
        "conditions": [{**condition, "lastTransitionTime": _time(finished)}],
        "startTime": _time(finished - timedelta(seconds=2)),
        "completionTime": _time(finished),
        "steps": [{"name": step, "container": f"step-{step}", "terminated": terminated}],
    }
    metadata = body["metadata"]
    event = "successful" if succeeded else "failed"
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "type": f"dev.tekton.event.{kind.lower()}.{event}.v1",
        "source": f"/apis///namespaces/{metadata['namespace']}//{metadata['name']}",
        "datacontenttype": "application/json",
        "data": {kind[0].lower() + kind[1:]: body},
    }


def _time(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")
