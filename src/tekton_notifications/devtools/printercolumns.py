"""A ``kubectl get <custom resource> -A`` table, printed from a CRD's additionalPrinterColumns.

The demo shows the templates' delivery status the way a user sees it on a cluster: the
columns, their order and their values come from ``crds/*.yaml`` (``name``, ``type``,
``jsonPath``, ``priority``), not from code that knows the fields. The jsonPath evaluation
covers what CRDs use: ``.a.b``, ``.a[0]`` and the filter ``.a[?(@.k=="v")]``; a path that finds
nothing gives an empty cell, as the API server's table does; ``date`` columns show an age
("42s", "5m30s", "3h10m", "2d"), as kubectl does. Development tool: it never talks to a cluster.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

#: One step of a jsonPath: ``.key``, ``[index]`` or ``[?(@.field=="value")]``.
_STEP = re.compile(
    r"""\.([A-Za-z0-9_-]+)|\[(\d+)\]|\[\?\(@\.([A-Za-z0-9_-]+)\s*==\s*["']([^"']*)["']\)\]"""
)


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    json_path: str
    priority: int = 0


def columns(crd: Path) -> list[Column]:
    """The printer columns of the served version of the CRD in ``crd``."""
    document = yaml.safe_load(crd.read_text())
    version = next(v for v in document["spec"]["versions"] if v.get("served", True))
    return [
        Column(c["name"], c["type"], c["jsonPath"], int(c.get("priority", 0)))
        for c in version.get("additionalPrinterColumns") or []
    ]


def evaluate(path: str, obj: Any) -> list[Any]:
    """Every value ``path`` selects in ``obj`` (empty when it finds none)."""
    found: list[Any] = [obj]
    position = 0
    while position < len(path):
        step = _STEP.match(path, position)
        if step is None:
            raise ValueError(f"unsupported jsonPath {path!r} at {path[position:]!r}")
        position = step.end()
        key, index, field, value = step.groups()
        selected: list[Any] = []
        for item in found:
            if key is not None and isinstance(item, Mapping) and key in item:
                selected.append(item[key])
            elif index is not None and isinstance(item, list) and int(index) < len(item):
                selected.append(item[int(index)])
            elif field is not None and isinstance(item, list):
                selected.extend(
                    e for e in item if isinstance(e, Mapping) and str(e.get(field)) == value
                )
        found = selected
    return found


def cell(column: Column, obj: Mapping[str, Any], now: datetime) -> str:
    values = [v for v in evaluate(column.json_path, obj) if v is not None]
    if not values:
        return ""
    if column.type == "date":
        return age(str(values[0]), now)
    return ",".join(str(v) for v in values)


def age(timestamp: str, now: datetime) -> str:
    """kubectl's age of an RFC 3339 time (apimachinery's duration.HumanDuration)."""
    try:
        then = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return "<invalid>"
    return human_duration(int((now - then).total_seconds()))


def human_duration(seconds: int) -> str:
    if seconds < -1:
        return "<invalid>"
    if seconds < 120:
        return f"{max(seconds, 0)}s"
    minutes, hours = seconds // 60, seconds // 3600
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y{days}d" if days else f"{hours // 24 // 365}y"
    return f"{hours // 24 // 365}y"


def table(
    items: Sequence[Mapping[str, Any]],
    cols: Sequence[Column],
    *,
    wide: bool = False,
    now: datetime | None = None,
) -> list[str]:
    """The lines ``kubectl get -A`` (``-o wide`` with ``wide``) prints for ``items``."""
    now = now or datetime.now(UTC)
    shown = [c for c in cols if wide or c.priority == 0]
    header = ["NAMESPACE", "NAME", *(c.name.upper() for c in shown)]
    rows = [
        [
            str(item["metadata"].get("namespace") or ""),
            str(item["metadata"]["name"]),
            *(cell(c, item, now) for c in shown),
        ]
        for item in sorted(
            items, key=lambda i: (i["metadata"].get("namespace") or "", i["metadata"]["name"])
        )
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return [
        "   ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
