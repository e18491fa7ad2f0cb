"""Failure context for the template renderer: the failed steps of a failed run and, when the
template opts in (``spec.context.logs``), the end of each failed step's log.

Owns what is read, when and how much: nothing unless the run failed and the template reads
``failedSteps`` or asks for logs; at most ``failures.MAX_CHILDREN`` child TaskRuns of a
PipelineRun (cached: finished TaskRuns do not change) and ``MAX_LOGS`` logs per render, each
bounded by the template's lines and bytes. A read that fails never fails the notification:
the step says why in ``logUnavailable``, with a log line and
``tekton_notifications_failure_context_total``. Must not: render, or read anything the
template did not ask for.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

from tekton_notifications import failures, kube, metrics, models, redaction
from tekton_notifications.events import RunEvent

logger = logging.getLogger(__name__)

#: Failed steps whose log one render reads at most.
MAX_LOGS: Final = 5
#: The API is asked for up to this many times the bytes a template quotes: ``limitBytes``
#: keeps the start of the tail, so a smaller limit would lose the last lines.
FETCH_FACTOR: Final = 4
#: Finished child TaskRuns kept.
CACHE_SIZE: Final = 256

GetTaskRun = Callable[[str, str], Mapping[str, Any]]
ReadLog = Callable[..., bytes]


@dataclass(frozen=True)
class Reader:
    """The two reads, so tests can pass the real ones over the emulator."""

    get_taskrun: GetTaskRun
    read_log: ReadLog

    @classmethod
    def over(cls, api: Any) -> Reader:
        return cls(
            get_taskrun=lambda namespace, name: kube.get_run(api, "TaskRun", namespace, name),
            read_log=lambda namespace, pod, container, **limits: kube.read_pod_log(
                api, namespace, pod, container, **limits
            ),
        )


def wants_steps(template: models.Template, overrides: Mapping[str, str]) -> bool:
    """Whether a render needs ``failedSteps``: the template asks for logs or names them."""
    if template.logs is not None:
        return True
    sources = (*template.params.values(), *overrides.values())
    return any("failedSteps" in source for source in sources if isinstance(source, str))


class FailureContext:
    """Fills ``RunEvent.failed_steps`` (and their logs) for one render at a time."""

    def __init__(self, reader: Reader) -> None:
        self._reader = reader
        self._lock = threading.Lock()
        self._taskruns: OrderedDict[tuple[str, str], Mapping[str, Any]] = OrderedDict()

    def enrich(
        self, event: RunEvent, template: models.Template, overrides: Mapping[str, str]
    ) -> RunEvent:
        if event.tekton_event != "failed" or not wants_steps(template, overrides):
            return event
        steps = [dict(step) for step in self._steps(event)]
        if template.logs is not None:
            for step in steps[:MAX_LOGS]:
                self._read_log(event, step, template.logs)
            for step in steps[MAX_LOGS:]:
                step["logUnavailable"] = f"only the first {MAX_LOGS} failed steps' logs are read"
        return replace(event, failed_steps=tuple(steps))

    def _steps(self, event: RunEvent) -> tuple[Mapping[str, Any], ...]:
        own = event.steps_failed()
        if event.kind != "PipelineRun" or own:
            return own
        found: list[Mapping[str, Any]] = []
        candidates = [
            child
            for child in event.children
            if child.kind == "TaskRun" and child.status in ("False", "")
        ]
        for child in candidates[: failures.MAX_CHILDREN]:
            taskrun = self._taskrun(event.namespace, child.name)
            if taskrun is None:
                continue
            step = failures.failed_step(taskrun, pipeline_task=child.pipeline_task_name)
            if step is not None:
                found.append(step)
        if len(candidates) > failures.MAX_CHILDREN:
            logger.warning(
                "%s %s/%s: %d child TaskRuns may have failed; read the first %d",
                event.kind,
                event.namespace,
                event.name,
                len(candidates),
                failures.MAX_CHILDREN,
            )
        return tuple(found)

    def _taskrun(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        key = (namespace, name)
        with self._lock:
            cached = self._taskruns.get(key)
            if cached is not None:
                self._taskruns.move_to_end(key)
                return cached
        try:
            taskrun = self._reader.get_taskrun(namespace, name)
        except kube.ApiError as error:
            metrics.FAILURE_CONTEXT.labels("taskrun", _result(error)).inc()
            logger.warning("TaskRun %s/%s not read for failedSteps: %s", namespace, name, error)
            return None
        metrics.FAILURE_CONTEXT.labels("taskrun", "read").inc()
        if _finished(taskrun):
            with self._lock:
                self._taskruns[key] = taskrun
                while len(self._taskruns) > CACHE_SIZE:
                    self._taskruns.popitem(last=False)
        return taskrun

    def _read_log(self, event: RunEvent, step: dict[str, Any], logs: models.LogTail) -> None:
        if not step["pod"]:
            step["logUnavailable"] = "NoPod: the TaskRun names no pod"
            metrics.FAILURE_CONTEXT.labels("log", "no_pod").inc()
            return
        limit = logs.max_bytes * FETCH_FACTOR
        try:
            raw = self._reader.read_log(
                event.namespace,
                step["pod"],
                step["container"],
                tail_lines=logs.lines,
                limit_bytes=limit,
            )
        except kube.ApiError as error:
            step["logUnavailable"] = f"{error.reason or error.status}: {error.message}"[:300]
            metrics.FAILURE_CONTEXT.labels("log", _result(error)).inc()
            logger.warning(
                "log of %s/%s container %s not read: %s",
                event.namespace,
                step["pod"],
                step["container"],
                error,
            )
            return
        metrics.FAILURE_CONTEXT.labels("log", "read").inc()
        step["log"] = redaction.log_tail(
            raw, lines=logs.lines, max_bytes=logs.max_bytes, cut_short=len(raw) >= limit
        )


def _finished(taskrun: Mapping[str, Any]) -> bool:
    status = taskrun.get("status")
    conditions = status.get("conditions") if isinstance(status, Mapping) else None
    for condition in conditions if isinstance(conditions, list) else []:
        if isinstance(condition, Mapping) and condition.get("type") == "Succeeded":
            return condition.get("status") in ("True", "False")
    return False


def _result(error: kube.ApiError) -> str:
    if not error.answered or error.retryable:
        return "unavailable"
    return {403: "forbidden", 404: "not_found"}.get(error.status, "error")
