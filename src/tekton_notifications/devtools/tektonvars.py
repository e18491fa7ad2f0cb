"""Tekton's variable substitution in a Task's steps, and Kubernetes' in container env values.

Pure text functions for the local step runner (steprunner.py): what a TaskRun's pod would see
once Tekton's controller has replaced ``$(params.x)``, ``$(context.*)``, ``$(workspaces.*)``
and ``$(results.*)`` in the Task spec, and the kubelet has expanded ``$(VAR)`` and ``$$`` in
env values, commands and args. It runs nothing and reads no files.

Like Tekton, each kind of variable is one pass of plain string replacement over the text the
previous pass left: params first, then context, workspaces, results. So a param value that
contains ``$(context.taskRun.name)`` is expanded by the context pass (the hazard the cloudevent
example template documents), while a reference nobody defines is left as written.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: ``$(params.x)``, ``$(params['x'])``, ``$(params["x"])`` (Tekton's three spellings).
_PARAM = re.compile(r"""\$\(params(?:\.([A-Za-z0-9_.-]+?)|\['([^']+)'\]|\["([^"]+)"\])\)""")
_CONTEXT = re.compile(r"\$\(context\.(taskRun|task)\.([A-Za-z-]+)\)")
_WORKSPACE = re.compile(r"\$\(workspaces\.([A-Za-z0-9_-]+)\.(path|bound|claim|volume)\)")
_RESULT = re.compile(r"""\$\(results(?:\.([A-Za-z0-9_-]+)|\['([^']+)'\]|\["([^"]+)"\])\.path\)""")


@dataclass(frozen=True)
class Variables:
    """What one TaskRun's substitution knows: its params (defaults applied), its identity,
    where its workspaces and results live on this machine."""

    params: Mapping[str, str]
    task_run: Mapping[str, str]  # name, namespace, uid
    task_name: str
    workspaces: Mapping[str, str]  # name -> local path
    results_dir: str
    retry_count: int = 0

    def context(self, scope: str, field: str) -> str | None:
        if scope == "taskRun":
            return self.task_run.get(field)
        if field == "name":
            return self.task_name
        if field == "retry-count":
            return str(self.retry_count)
        return None


def param_values(declared: Sequence[Mapping[str, Any]], given: Sequence[Any]) -> dict[str, str]:
    """The run's params over the Task's defaults. Array/object values are not substituted
    into text by Tekton as strings; the notification tasks declare strings only."""
    values = {
        str(p["name"]): _text(p["default"]) for p in declared if "name" in p and "default" in p
    }
    for param in given:
        if isinstance(param, Mapping) and "name" in param:
            values[str(param["name"])] = _text(param.get("value", ""))
    return values


def missing_params(declared: Sequence[Mapping[str, Any]], values: Mapping[str, str]) -> list[str]:
    """Params the Task requires (no default) that the run does not set: Tekton refuses the
    run with reason ``TaskRunValidationFailed`` before any pod exists."""
    return [str(p["name"]) for p in declared if "default" not in p and p.get("name") not in values]


def substitute(text: str, variables: Variables) -> str:
    """Tekton's replacement of ``$(...)`` in one string of the Task spec."""
    text = _replace(_PARAM, text, lambda m: variables.params.get(_first(m)))
    text = _replace(_CONTEXT, text, lambda m: variables.context(m[1], m[2]))
    text = _replace(_WORKSPACE, text, lambda m: _workspace(variables, m[1], m[2]))
    base = variables.results_dir.rstrip("/")
    return _replace(_RESULT, text, lambda m: f"{base}/{_first(m)}")


def substitute_tree(value: Any, variables: Variables) -> Any:
    """``substitute`` applied to every string in a spec fragment (a step, a volume)."""
    if isinstance(value, str):
        return substitute(value, variables)
    if isinstance(value, Mapping):
        return {key: substitute_tree(item, variables) for key, item in value.items()}
    if isinstance(value, list):
        return [substitute_tree(item, variables) for item in value]
    return value


def kubernetes_expand(value: str, env: Mapping[str, str]) -> str:
    """The kubelet's expansion of an env value, command or arg: ``$(VAR)`` of a variable
    defined earlier in the container's env, ``$$`` to ``$``; anything else is kept."""
    out: list[str] = []
    index = 0
    while index < len(value):
        if value.startswith("$$", index):
            out.append("$")
            index += 2
            continue
        if value.startswith("$(", index):
            end = value.find(")", index)
            name = value[index + 2 : end] if end > 0 else ""
            if name in env:
                out.append(env[name])
                index = end + 1
                continue
        out.append(value[index])
        index += 1
    return "".join(out)


def _replace(
    pattern: re.Pattern[str], text: str, value: Callable[[re.Match[str]], str | None]
) -> str:
    def one(match: re.Match[str]) -> str:
        found = value(match)
        return match[0] if found is None else found

    return pattern.sub(one, text)


def _first(match: re.Match[str]) -> str:
    return next(group for group in match.groups() if group is not None)


def _workspace(variables: Variables, name: str, field: str) -> str | None:
    path = variables.workspaces.get(name)
    if field == "bound":
        return "true" if path is not None else "false"
    if field == "path":
        return path
    return "" if path is not None else None  # no PVC or volume behind a local directory


def _text(value: object) -> str:
    return value if isinstance(value, str) else str(value)
