"""The failed step of a failed TaskRun: ``event.failedSteps``.

Owns reading Tekton's step states (``status.steps[]``: ``name``, ``container``,
``terminated {exitCode, reason, message, startedAt, finishedAt}``, ``terminationReason``;
the same in v1beta1 and v1) and picking the step that failed. Must not: do I/O (the template
renderer fetches the child TaskRuns of a PipelineRun and the log tails), or read logs.

A TaskRun stops at its first failing step; Tekton still ends the steps after it, with a
non-zero exit code and ``terminationReason: Skipped`` (older Tekton: the same exit code and
no reason), so the failed step is the first non-skipped one that exited non-zero.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

#: Child TaskRuns of a PipelineRun the renderer reads at most, for failed steps and logs.
MAX_CHILDREN: Final = 20


def _string(description: str) -> Mapping[str, Any]:
    return {"type": "string", "description": description}


def _time(description: str) -> Mapping[str, Any]:
    return {"type": ["string", "null"], "format": "date-time", "description": description}


#: The fields of one ``event.failedSteps`` item, as JSON Schema.
FAILED_STEP_FIELDS: Final[Mapping[str, Mapping[str, Any]]] = {
    "taskRun": _string("the failed TaskRun's name"),
    "pipelineTask": _string("its pipeline task; empty for a TaskRun outside a pipeline"),
    "name": _string("the step's name"),
    "container": _string("the step's container: step-<name>"),
    "pod": _string("the TaskRun's pod"),
    "exitCode": {"type": "integer", "description": "the step container's exit code"},
    "reason": _string("the container's termination reason, e.g. Error, OOMKilled"),
    "message": _string("the termination message, without Tekton's results JSON"),
    "startedAt": _time("when the step started, or null"),
    "finishedAt": _time("when the step ended, or null"),
    "log": _string(
        "the last lines of the step's log, ANSI codes stripped and credentials redacted; "
        "empty unless the template asks for logs (spec.context.logs)"
    ),
    "logUnavailable": _string(
        "why the log was asked for and not read (e.g. Forbidden: ...); else empty"
    ),
}


def failed_step(taskrun: Mapping[str, Any], *, pipeline_task: str = "") -> dict[str, Any] | None:
    """The failed step of one TaskRun object (v1 or v1beta1), or None when no step failed."""
    metadata = taskrun.get("metadata")
    status = taskrun.get("status")
    if not isinstance(status, Mapping):
        return None
    name = str(metadata.get("name") or "") if isinstance(metadata, Mapping) else ""
    labels = metadata.get("labels") if isinstance(metadata, Mapping) else None
    if not pipeline_task and isinstance(labels, Mapping):
        pipeline_task = str(labels.get("tekton.dev/pipelineTask") or "")
    steps = status.get("steps")
    for step in steps if isinstance(steps, list) else []:
        if not isinstance(step, Mapping):
            continue
        terminated = step.get("terminated")
        if not isinstance(terminated, Mapping) or step.get("terminationReason") == "Skipped":
            continue
        exit_code = _int(terminated.get("exitCode"))
        if exit_code == 0:
            continue
        step_name = str(step.get("name") or "")
        return {
            "taskRun": name,
            "pipelineTask": pipeline_task,
            "name": step_name,
            "container": str(step.get("container") or f"step-{step_name}"),
            "pod": str(status.get("podName") or ""),
            "exitCode": exit_code,
            "reason": str(terminated.get("reason") or ""),
            "message": _message(terminated.get("message")),
            "startedAt": _when(terminated.get("startedAt")),
            "finishedAt": _when(terminated.get("finishedAt")),
            "log": "",
            "logUnavailable": "",
        }
    return None


def embedded_failed_steps(status: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Failed steps of the child TaskRuns a PipelineRun's status embeds (Tekton before v0.45)."""
    embedded = status.get("taskRuns")
    found: list[dict[str, Any]] = []
    if not isinstance(embedded, Mapping):
        return found
    for child_name, child in list(embedded.items())[:MAX_CHILDREN]:
        if not isinstance(child, Mapping):
            continue
        taskrun = {"metadata": {"name": child_name}, "status": child.get("status")}
        step = failed_step(taskrun, pipeline_task=str(child.get("pipelineTaskName") or ""))
        if step is not None:
            found.append(step)
    return found


def _int(value: object) -> int:
    if isinstance(value, int):
        return value
    try:
        return int(str(value))
    except ValueError:
        return 0


def _when(value: object) -> str | None:
    return str(value) if value else None


def _message(value: object) -> str:
    """The termination message, unless it is only Tekton's results and StartedAt JSON."""
    text = str(value or "").strip()
    if text.startswith("["):
        try:
            parsed = json.loads(text)
        except ValueError:
            return text
        if isinstance(parsed, list) and all(isinstance(item, Mapping) for item in parsed):
            return ""
    return text
