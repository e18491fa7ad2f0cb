"""Tekton's part for notification runs in the API emulator: run them, record, report back.

Watches the emulator for TaskRuns labelled ``app.kubernetes.io/managed-by:
tekton-notifications`` (the launcher's, and any retry or fallback run created later), runs
each once with the step runner, writes its Tekton v1 ``status`` (Running first, then the
final Succeeded condition, steps, results) and sends the CloudEvent Tekton's events
controller sends when a run finishes: ``dev.tekton.event.taskrun.successful.v1`` or
``...failed.v1`` in binary mode, ``source`` ``/apis///namespaces/<ns>//<name>``, data
``{"taskRun": <the run>}``, to the broker, where the Triggers route it.

Not sent: ``started``/``running`` (the policy filter ignores managed runs, and the delivery
tracker reads finishes only). A development tool: one process, in-memory bookkeeping.
"""

from __future__ import annotations

import copy
import logging
import shutil
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tekton_notifications import vocabulary, wire
from tekton_notifications.devtools import checktools
from tekton_notifications.devtools.kubeapi import KubeError, ObjectStore, Selector
from tekton_notifications.devtools.serving import ROOT
from tekton_notifications.devtools.steprunner import RunOutcome, StepRunner
from tekton_notifications.notifications import OutgoingEvent

log = logging.getLogger(__name__)

SUCCESSFUL = "dev.tekton.event.taskrun.successful.v1"
FAILED = "dev.tekton.event.taskrun.failed.v1"
MANAGED = f"{vocabulary.MANAGED_BY_LABEL}={vocabulary.MANAGED_BY_VALUE}"


@dataclass(frozen=True)
class Finished:
    """A notification run this controller ran: the run as stored after, and its logs."""

    run: dict[str, Any]
    outcome: RunOutcome
    event_status: int | None  # what the broker answered the finish event (None: no broker)

    @property
    def name(self) -> str:
        return str(self.run["metadata"]["name"])


def finish_event(run: Mapping[str, Any], *, now: datetime | None = None) -> OutgoingEvent:
    """The CloudEvent Tekton sends for a finished TaskRun (pkg/reconciler/events/cloudevent).

    Its data is the run as Tekton's v1beta1 API has it: ``status.taskResults`` (v1 calls
    them ``results``)."""
    metadata = run["metadata"]
    condition = next(c for c in run["status"]["conditions"] if c.get("type") == "Succeeded")
    kind = SUCCESSFUL if condition["status"] == "True" else FAILED
    stamp = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    attributes = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": f"/apis///namespaces/{metadata['namespace']}//{metadata['name']}",
        "type": kind,
        "subject": str(metadata["name"]),
        "time": stamp,
        "datacontenttype": "application/json",
    }
    return OutgoingEvent(attributes, {"taskRun": as_v1beta1(run)})


def as_v1beta1(run: Mapping[str, Any]) -> dict[str, Any]:
    shown = copy.deepcopy(dict(run))
    shown["apiVersion"] = "tekton.dev/v1beta1"
    status = shown.get("status") or {}
    if "results" in status:
        status["taskResults"] = status.pop("results")
    return shown


class LocalTekton:
    """``start()`` watches and runs; ``wait_idle()`` until nothing is queued or running."""

    def __init__(
        self,
        store: ObjectStore,
        runner: StepRunner,
        *,
        broker: str | None = None,
        selector: str = MANAGED,
        workers: int = 2,
    ) -> None:
        self.store, self.runner, self.broker = store, runner, broker
        self._selector = Selector.parse(selector)
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="local-tekton")
        self._stopping = threading.Event()
        self._idle = threading.Condition()
        self._busy = 0
        self._seen: set[tuple[str, str, str]] = set()  # (namespace, name, uid)
        self.finished: list[Finished] = []
        self._watcher = threading.Thread(target=self._watch, name="local-tekton-watch", daemon=True)
        self._ready = threading.Event()

    def start(self) -> None:
        self._watcher.start()
        self._ready.wait(10)

    def stop(self) -> None:
        self._stopping.set()
        self.store._wake()  # the watch waits on the store's condition: end it now
        self._watcher.join(5)
        self._pool.shutdown(wait=True, cancel_futures=True)

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Wait until every run seen so far is finished and reported; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._busy == 0, timeout)

    def _watch(self) -> None:
        while not self._stopping.is_set():
            stream = self.store.watch(
                "tekton.dev", "taskruns", None, self._selector, None, float("inf"), self._stopping
            )
            self._ready.set()  # the stream replays what exists on its first step: none is missed
            for change in stream:
                if change["type"] == "ERROR":  # history compacted past us: list and watch again
                    log.info("local tekton: watch expired, watching again")
                    break
                self._consider(change)

    def _consider(self, change: dict[str, Any]) -> None:
        run = change["object"]
        if change["type"] == "DELETED" or _conditions(run) or _pending(run):
            return  # a pending run starts once spec.status is cleared (a MODIFIED)
        metadata = run["metadata"]
        key = (metadata["namespace"], metadata["name"], str(metadata.get("uid")))
        with self._idle:
            if key in self._seen:
                return
            self._seen.add(key)
            self._busy += 1
        self._pool.submit(self._execute, run)

    def unfinished(self) -> int:
        """Notification TaskRuns in the store not finished yet (pending ones wait for someone
        else: they are not counted)."""
        return sum(
            1
            for run in self.store.list("tekton.dev", "taskruns", None, self._selector)
            if not _pending(run)
            and not any(c.get("status") in ("True", "False") for c in _conditions(run))
        )

    def _execute(self, run: dict[str, Any]) -> None:
        try:
            self._run(run)
        except Exception as error:  # a bug here must not leave the run hanging unseen
            log.exception("local tekton: running %s failed", run["metadata"]["name"])
            now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            self._write_status(run["metadata"]["namespace"], run["metadata"]["name"], {
                "conditions": [{
                    "type": "Succeeded", "status": "False", "reason": "LocalRunnerError",
                    "message": f"the local step runner failed: {error}", "lastTransitionTime": now,
                }],
            })  # fmt: skip
        finally:
            with self._idle:
                self._busy -= 1
                self._idle.notify_all()

    def _run(self, run: dict[str, Any]) -> None:
        namespace, name = run["metadata"]["namespace"], run["metadata"]["name"]
        started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if (run.get("spec") or {}).get("status") == "TaskRunCancelled":
            outcome = RunOutcome(cancelled_status(name, started))
            stored = self._write_status(namespace, name, outcome.status)
            if stored is not None:
                self._report(stored, outcome)
            return
        self._write_status(namespace, name, {
            "podName": f"{name}-pod",
            "startTime": started,
            "conditions": [{
                "type": "Succeeded", "status": "Unknown", "reason": "Running",
                "message": "Not all Steps in the Task have finished executing",
                "lastTransitionTime": started,
            }],
        })  # fmt: skip
        outcome = self.runner.run(run)
        outcome.status["startTime"] = started
        stored = self._write_status(namespace, name, outcome.status)
        if stored is not None:
            self._report(stored, outcome)

    def _report(self, stored: dict[str, Any], outcome: RunOutcome) -> None:
        """Send the finish event; keep the run for the demo to show."""
        namespace, name = stored["metadata"]["namespace"], stored["metadata"]["name"]
        status = None
        if self.broker is not None:
            headers, body = wire.binary_message(finish_event(stored))
            try:
                status = _post(self.broker, headers, body)
            except OSError as error:
                log.warning("local tekton: finish event of %s not sent: %s", name, error)
        condition = outcome.condition
        log.info(
            "local tekton: TaskRun %s/%s %s (%s: %s); finish event answered %s",
            namespace, name, "succeeded" if outcome.succeeded else "failed",
            condition["reason"], condition["message"], status,
        )  # fmt: skip
        with self._idle:
            self.finished.append(Finished(stored, outcome, status))

    def _write_status(
        self, namespace: str, name: str, status: dict[str, Any]
    ) -> dict[str, Any] | None:
        for _ in range(5):
            try:
                current = self.store.get("tekton.dev", "taskruns", namespace, name)
                updated = {**current, "status": status}
                return self.store.replace(
                    "tekton.dev", "taskruns", namespace, name, updated, subresource="status"
                )
            except KubeError as error:
                if error.code == 404:
                    log.warning("local tekton: %s/%s deleted while running", namespace, name)
                    return None
                time.sleep(0.01)  # a conflicting write: read again
        return None


def cancelled_status(name: str, now: str) -> dict[str, Any]:
    """What Tekton writes for a run created with ``spec.status: TaskRunCancelled``."""
    return {
        "startTime": now,
        "completionTime": now,
        "conditions": [
            {
                "type": "Succeeded",
                "status": "False",
                "reason": "TaskRunCancelled",
                "message": f'TaskRun "{name}" was cancelled. ',
                "lastTransitionTime": now,
            }
        ],
    }


def _post(url: str, headers: Mapping[str, str], body: bytes) -> int:
    """POST on a connection of its own, closed after (the worker threads do not live long
    enough for sink.post's per-thread keep-alive pool)."""
    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        error.close()
        return int(error.code)


def _pending(run: Mapping[str, Any]) -> bool:
    return (run.get("spec") or {}).get("status") == "TaskRunPending"


def _conditions(run: Mapping[str, Any]) -> list[Any]:
    return list((run.get("status") or {}).get("conditions") or [])


def start_local(
    store: ObjectStore, workdir: Path, broker: str | None, extra_env: Mapping[str, str]
) -> LocalTekton:
    """A running LocalTekton for the chain: steps see this machine's tools (checked first:
    a missing one is logged by name, and the steps needing it fail saying so) and the
    catalog Tasks in examples/tasks answer the hub resolver."""
    shutil.rmtree(workdir, ignore_errors=True)  # the runs of an earlier demo
    workdir.mkdir(parents=True)
    report = checktools.check()
    (log.info if report.ok else log.warning)("local tekton: %s", report.message())
    environment = checktools.environment(workdir / "tools", dict(extra_env))
    runner = StepRunner(store, workdir, environment, catalog=ROOT / "examples" / "tasks")
    tekton = LocalTekton(store, runner, broker=broker)
    tekton.start()
    return tekton


def settle(router_idle: Callable[[float], bool], tekton: LocalTekton, timeout: float) -> bool:
    """Wait until the router is idle, no run is running, and every notification run in the
    store is finished, all at once (each can give the other work); False on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not router_idle(max(deadline - time.monotonic(), 0.0)):
            return False
        if not tekton.wait_idle(max(deadline - time.monotonic(), 0.0)):
            return False
        if tekton.unfinished() == 0 and router_idle(0.0) and tekton.wait_idle(0.0):
            return True
        time.sleep(0.02)  # a run created but not yet picked up by the watch
    return False
