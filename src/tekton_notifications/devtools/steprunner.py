"""Runs a TaskRun's script steps on this machine, as Tekton's pod would, and says how it ended.

For the local demo (issue 12): a notification TaskRun in the API emulator is resolved to its
Task (``taskRef`` by name in the run's namespace, the hub resolver from a local catalog folder,
or an inline ``taskSpec``), its params/context/results/workspaces are substituted as Tekton does
(tektonvars.py), the step env is built with ``value`` (expanded as the kubelet does) and
``valueFrom`` Secrets/ConfigMaps read from the emulator and Secret volumes mounted where the
step expects them (podspec.py), and each step's script runs with its own shebang in a fresh
directory with a timeout. The outcome is a Tekton v1 ``status`` (conditions,
steps[].terminated, results).

What Tekton does that this does not: images (the step runs with this machine's sh, curl and
python3; ``checktools.py`` says which are missing), sidecars, steps without a script (an
image's own command cannot run here: the run fails and says so), resource limits, and
isolation (a step sees this machine's files and network; its env is only what the Task
declares plus PATH, HOME and LANG). A missing Secret fails the run the way the kubelet makes
Tekton fail it: reason ``CreateContainerConfigError``, before any step runs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from tekton_notifications.devtools import podspec, tektonvars
from tekton_notifications.devtools.kubeapi import KubeError, ObjectStore

#: Tekton's reasons (pipeline/pkg/apis/pipeline/v1 taskrun_types.go, pod status).
SUCCEEDED = "Succeeded"
FAILED = "Failed"
CONFIG_ERROR = "CreateContainerConfigError"
RESOLUTION_FAILED = "TaskRunResolutionFailed"
VALIDATION_FAILED = "TaskRunValidationFailed"
TIMEOUT = "TaskRunTimeout"
VERSION_LABEL = "app.kubernetes.io/version"
#: The most a step may run here, whatever the run's own timeout says.
LOCAL_TIMEOUT = 60.0
_LOG_LIMIT = 64 * 1024


class RunRefused(Exception):
    """The run fails before any step starts (no Task, a missing param or Secret)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason, self.message = reason, message


@dataclass(frozen=True)
class StepResult:
    name: str
    exit_code: int
    started: str
    finished: str
    log: str
    timed_out: bool = False

    def terminated(self, message: str | None = None) -> dict[str, Any]:
        state: dict[str, Any] = {
            "exitCode": self.exit_code,
            "reason": "Completed" if self.exit_code == 0 else "Error",
            "startedAt": self.started,
            "finishedAt": self.finished,
        }
        if message:
            state["message"] = message
        return state


@dataclass
class RunOutcome:
    """How a run ended: the Tekton ``status`` to write and each step's log."""

    status: dict[str, Any]
    logs: dict[str, str] = field(default_factory=dict)

    @property
    def condition(self) -> dict[str, Any]:
        conditions: list[dict[str, Any]] = self.status["conditions"]
        return conditions[0]

    @property
    def succeeded(self) -> bool:
        return bool(self.condition["status"] == "True")


@dataclass(frozen=True)
class Environment:
    """What this machine gives every step: a PATH where sh, curl, python and python3 are
    found (the images' tools), and extra variables (the demo's curl config)."""

    path: str
    extra: Mapping[str, str] = field(default_factory=dict)


class StepRunner:
    """Runs one TaskRun at a time: ``run(taskrun) -> RunOutcome``. Thread-safe (no state)."""

    def __init__(
        self,
        store: ObjectStore,
        workdir: Path,
        environment: Environment,
        *,
        catalog: Path | None = None,
        timeout: float = LOCAL_TIMEOUT,
    ) -> None:
        self.store, self.workdir, self.environment = store, workdir, environment
        self.catalog, self.timeout = catalog, timeout

    # -- resolution -------------------------------------------------------------------
    def resolve(self, run: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        """(task name, task spec) of a TaskRun, as Tekton's resolvers find it."""
        spec = run.get("spec") or {}
        namespace = run["metadata"]["namespace"]
        if isinstance(spec.get("taskSpec"), Mapping):
            return run["metadata"]["name"], dict(spec["taskSpec"])
        ref = spec.get("taskRef") or {}
        if ref.get("name"):
            try:
                task = self.store.get("tekton.dev", "tasks", namespace, str(ref["name"]))
            except KubeError as error:
                raise RunRefused(
                    RESOLUTION_FAILED, f'tasks.tekton.dev "{ref["name"]}" not found'
                ) from error
            return str(ref["name"]), dict(task.get("spec") or {})
        if ref.get("resolver") == "hub":
            params = {p["name"]: str(p["value"]) for p in ref.get("params") or []}
            return params.get("name", ""), self._from_catalog(params)
        raise RunRefused(RESOLUTION_FAILED, f"no local resolver for taskRef {dict(ref)!r}")

    def _from_catalog(self, params: Mapping[str, str]) -> dict[str, Any]:
        """The hub resolver's answer, from the local folder of catalog Tasks."""
        name, version = params.get("name", ""), params.get("version")
        for path in sorted(self.catalog.glob("*.yaml")) if self.catalog else ():
            task = yaml.safe_load(path.read_text(encoding="utf-8"))
            if not isinstance(task, dict) or task.get("kind") != "Task":
                continue
            metadata = task.get("metadata") or {}
            found = (metadata.get("labels") or {}).get(VERSION_LABEL)
            if metadata.get("name") == name and version in (None, found):
                return dict(task.get("spec") or {})
        raise RunRefused(
            RESOLUTION_FAILED, f"hub resolver: task {name} {version or ''} not in {self.catalog}"
        )

    # -- running ----------------------------------------------------------------------
    def run(self, run: Mapping[str, Any]) -> RunOutcome:
        started = _now()
        task_spec: dict[str, Any] = {}
        try:
            task_name, task_spec = self.resolve(run)
            return self._run(run, task_name, task_spec, started)
        except RunRefused as refused:
            status = _status(started, False, refused.reason, refused.message, [])
            if task_spec:
                status["taskSpec"] = task_spec
            return RunOutcome(status)

    def _run(
        self, run: Mapping[str, Any], task_name: str, task_spec: dict[str, Any], started: str
    ) -> RunOutcome:
        metadata, spec = run["metadata"], run.get("spec") or {}
        declared = [p for p in task_spec.get("params") or [] if isinstance(p, Mapping)]
        params = tektonvars.param_values(declared, spec.get("params") or [])
        missing = tektonvars.missing_params(declared, params)
        if missing:
            raise RunRefused(VALIDATION_FAILED, f"missing parameters: {', '.join(sorted(missing))}")
        home = Path(tempfile.mkdtemp(prefix=f"{metadata['name'][:40]}-", dir=self.workdir))
        variables = tektonvars.Variables(
            params=params,
            task_run={k: str(metadata.get(k) or "") for k in ("name", "namespace", "uid")},
            task_name=task_name,
            workspaces=_workspaces(home, spec.get("workspaces") or []),
            results_dir=str(home / "results"),
        )
        (home / "results").mkdir()
        steps = tektonvars.substitute_tree(task_spec.get("steps") or [], variables)
        volumes = tektonvars.substitute_tree(task_spec.get("volumes") or [], variables)
        namespace = str(metadata["namespace"])
        prepared = [
            self._prepare(step, namespace, volumes, home, i) for i, step in enumerate(steps)
        ]
        deadline = time.monotonic() + min(self.timeout, _seconds(spec.get("timeout")))
        results: list[StepResult] = []
        for step, (command, env, mounts) in zip(steps, prepared, strict=True):
            result = self._step(step, command, env, mounts, home, deadline)
            results.append(result)
            if result.exit_code != 0:
                break
        values = _results(home / "results", task_spec)
        last = results[-1]
        if last.timed_out:
            timeout = spec.get("timeout") or f"{self.timeout:g}s"
            reason, message = (
                TIMEOUT,
                f'TaskRun "{metadata["name"]}" failed to finish within "{timeout}"',
            )
        elif last.exit_code:
            reason, message = FAILED, f'"step-{last.name}" exited with code {last.exit_code}: Error'
        else:
            reason, message = SUCCEEDED, "All Steps have completed executing"
        step_states = [
            _step_state(r, _termination_message(values) if r is last else None) for r in results
        ]
        step_states += [
            {
                "name": s.get("name", ""),
                "container": f"step-{s.get('name', '')}",
                "terminated": {"exitCode": 1, "reason": "Skipped"},
            }
            for s in steps[len(results) :]
        ]
        status = _status(started, reason == SUCCEEDED, reason, message, step_states)
        status["podName"] = f"{metadata['name']}-pod"
        status["taskSpec"] = task_spec
        if values:
            status["results"] = [
                {"name": k, "type": "string", "value": v} for k, v in values.items()
            ]
        return RunOutcome(status, {r.name: r.log for r in results})

    def _prepare(
        self,
        step: Mapping[str, Any],
        namespace: str,
        volumes: Sequence[Mapping[str, Any]],
        home: Path,
        index: int,
    ) -> tuple[list[str], dict[str, str], list[tuple[Path, str]]]:
        """The step's command, env and mounts; a missing Secret refuses the whole run."""
        name = str(step.get("name") or f"unnamed-{index}")
        env = {
            "PATH": self.environment.path,
            "HOME": str(home / "home"),
            "LANG": "C.UTF-8",
            **self.environment.extra,
        }
        (home / "home").mkdir(exist_ok=True)
        pod = podspec.PodConfig(self.store, namespace)
        try:
            declared = pod.env(step)  # what the kubelet expands $(VAR) in args with
            mounts = [
                (pod.volume(volumes, str(m["name"]), home / "volumes"), str(m["mountPath"]))
                for m in step.get("volumeMounts") or []
            ]
            for _, target in mounts:
                podspec.check_mount_path(target)
        except podspec.ConfigError as error:
            raise RunRefused(CONFIG_ERROR, str(error)) from error
        env.update(declared)
        script = step.get("script")
        if not isinstance(script, str):
            raise RunRefused(
                FAILED,
                f'step "{name}" runs its image\'s own command '
                f"({step.get('command') or step.get('image')}), which cannot run on this machine:"
                " only script steps do",
            )
        path = home / f"script-{index}-{name}"
        if not script.startswith("#!"):
            script = "#!/bin/sh\nset -e\n" + script  # what Tekton prepends
        path.write_text(script, encoding="utf-8")
        path.chmod(0o700)
        args = [tektonvars.kubernetes_expand(str(a), declared) for a in step.get("args") or []]
        return [str(path), *args], env, mounts

    def _step(
        self,
        step: Mapping[str, Any],
        command: list[str],
        env: dict[str, str],
        mounts: list[tuple[Path, str]],
        home: Path,
        deadline: float,
    ) -> StepResult:
        name = str(step.get("name") or "unnamed")
        workdir = home / "step" / name
        workdir.mkdir(parents=True)
        if mounts:
            command = podspec.with_mounts(command, mounts, home / "overlay")
        started = _now()
        log_path = home / f"{name}.log"
        with log_path.open("wb") as log:
            try:
                process = subprocess.Popen(
                    command,
                    env=env,
                    cwd=step.get("workingDir") or workdir,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # a timeout ends the step's children too
                )
            except OSError as error:  # no interpreter for the shebang, no workingDir here
                text = f"the step could not start on this machine: {error}"
                return StepResult(name, 127, started, _now(), text)
            try:
                code = process.wait(timeout=max(0.1, deadline - time.monotonic()))
                timed_out = False
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                code, timed_out = process.wait(), True
        text = log_path.read_bytes()[-_LOG_LIMIT:].decode(errors="replace")
        return StepResult(name, 137 if timed_out else code, started, _now(), text, timed_out)


def _workspaces(home: Path, bound: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """Every workspace the run binds becomes an empty local folder (like an emptyDir)."""
    paths: dict[str, str] = {}
    for workspace in bound:
        if isinstance(workspace, Mapping) and workspace.get("name"):
            path = home / "workspace" / str(workspace["name"])
            path.mkdir(parents=True)
            paths[str(workspace["name"])] = str(path)
    return paths


def _results(folder: Path, task_spec: Mapping[str, Any]) -> dict[str, str]:
    declared = [str(r["name"]) for r in task_spec.get("results") or [] if r.get("name")]
    return {
        name: (folder / name).read_text(encoding="utf-8", errors="replace")
        for name in declared
        if (folder / name).is_file()
    }


def _termination_message(values: Mapping[str, str]) -> str | None:
    """Tekton's entrypoint reports results in the step's termination message."""
    if not values:
        return None
    return json.dumps([{"key": k, "value": v, "type": 1} for k, v in values.items()])


def _step_state(result: StepResult, message: str | None) -> dict[str, Any]:
    return {
        "name": result.name,
        "container": f"step-{result.name}",
        "terminated": result.terminated(message),
    }


def _status(
    started: str, succeeded: bool, reason: str, message: str, steps: list[dict[str, Any]]
) -> dict[str, Any]:
    now = _now()
    return {
        "conditions": [
            {
                "type": "Succeeded",
                "status": "True" if succeeded else "False",
                "reason": reason,
                "message": message,
                "lastTransitionTime": now,
            }
        ],
        "startTime": started,
        "completionTime": now,
        "steps": steps,
    }


def _seconds(timeout: object) -> float:
    """A Kubernetes duration ("5m", "1h0m0s", "90s"); none or unreadable: no limit."""
    if not isinstance(timeout, str) or not timeout:
        return float("inf")
    total, number = 0.0, ""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0}
    for char in timeout:
        if char.isdigit() or char == ".":
            number += char
        elif char in units and number:
            total, number = total + float(number) * units[char], ""
        else:
            return float("inf")
    return total if total > 0 else float("inf")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
