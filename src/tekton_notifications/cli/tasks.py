"""The Tasks and Pipelines ``tkn-notify lint --tasks`` checks template params against.

A template's ``taskRef``/``pipelineRef`` names its task directly or through a resolver (hub
and bundles: ``name`` and ``version`` params; git: the file in ``pathInRepo``). The params a
task declares, and which have defaults, are the contract a template must meet.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

VERSION_LABEL: Final = "app.kubernetes.io/version"


@dataclass(frozen=True)
class TaskDefinition:
    """A Task or Pipeline given with ``--tasks``: its params and whether each has a default."""

    kind: str
    name: str
    version: str
    #: name -> (type, has a default)
    params: Mapping[str, tuple[str, bool]]

    @property
    def label(self) -> str:
        return f"{self.kind} {self.name}" + (f" {self.version}" if self.version else "")


def task_definitions(objects: Iterable[Mapping[str, Any]]) -> list[TaskDefinition]:
    found: list[TaskDefinition] = []
    for obj in objects:
        if obj.get("kind") not in ("Task", "ClusterTask", "Pipeline"):
            continue
        metadata = obj.get("metadata") or {}
        params: dict[str, tuple[str, bool]] = {}
        for param in (obj.get("spec") or {}).get("params") or []:
            if isinstance(param, Mapping) and param.get("name"):
                params[str(param["name"])] = (
                    str(param.get("type") or "string"),
                    "default" in param,
                )
        found.append(
            TaskDefinition(
                kind=str(obj["kind"]),
                name=str(metadata.get("name") or ""),
                version=str((metadata.get("labels") or {}).get(VERSION_LABEL) or ""),
                params=params,
            )
        )
    return found


def referenced(ref: Mapping[str, Any]) -> tuple[str, str]:
    """(name, version) of the task a taskRef/pipelineRef points at, when it says."""
    if ref.get("name"):
        return str(ref["name"]), ""
    params = {
        str(p.get("name")): p.get("value")
        for p in ref.get("params") or []
        if isinstance(p, Mapping)
    }
    name = params.get("name")
    if not name and isinstance(params.get("pathInRepo"), str):
        name = re.sub(r"\.ya?ml$", "", str(params["pathInRepo"]).rsplit("/", 1)[-1])
    version = params.get("version")
    return (str(name) if name else "", str(version) if version else "")


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version)) or (-1,)
