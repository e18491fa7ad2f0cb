"""JSON merge patches (RFC 7386) and JSON patches (RFC 6902)."""

from __future__ import annotations

import copy
from typing import Any

from tekton_notifications.devtools.kubeapi.errors import KubeError


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise KubeError(422, f"invalid JSON pointer: {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _walk(doc: Any, tokens: list[str]) -> Any:
    for tok in tokens:
        if isinstance(doc, list) and tok.isdigit() and int(tok) < len(doc):
            doc = doc[int(tok)]
        elif isinstance(doc, dict) and tok in doc:
            doc = doc[tok]
        else:
            raise KubeError(422, f"JSON patch: path element {tok!r} not found")
    return doc


def json_patch(doc: Any, ops: list[Any]) -> Any:
    """RFC 6902 JSON patch (add, remove, replace, move, copy, test)."""
    doc = copy.deepcopy(doc)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise KubeError(400, f"invalid JSON patch operation: {op!r}")
        kind, tokens = op["op"], _pointer(op["path"])
        if kind in ("move", "copy"):
            src = _pointer(op.get("from", ""))
            value = copy.deepcopy(_walk(doc, src))
            if kind == "move":
                doc = json_patch(doc, [{"op": "remove", "path": op["from"]}])
            doc = json_patch(doc, [{"op": "add", "path": op["path"], "value": value}])
            continue
        if kind == "test":
            if _walk(doc, tokens) != op.get("value"):
                raise KubeError(422, f"JSON patch test failed at {op['path']}")
            continue
        if not tokens:
            if kind == "remove":
                raise KubeError(422, "JSON patch: cannot remove the whole document")
            doc = copy.deepcopy(op.get("value"))
            continue
        parent, last = _walk(doc, tokens[:-1]), tokens[-1]
        if kind not in ("add", "remove", "replace"):
            raise KubeError(400, f"unknown JSON patch operation {kind!r}")
        if kind != "add":
            _walk(parent, [last])  # must exist
        if isinstance(parent, list):
            idx = len(parent) if last == "-" else int(last) if last.isdigit() else -1
            if not 0 <= idx <= len(parent):
                raise KubeError(422, f"JSON patch: bad array index {last!r}")
            if kind != "add":
                del parent[idx]
            if kind != "remove":
                parent.insert(idx, copy.deepcopy(op.get("value")))
        elif isinstance(parent, dict):
            if kind == "remove":
                del parent[last]
            else:
                parent[last] = copy.deepcopy(op.get("value"))
        else:
            raise KubeError(422, f"JSON patch: cannot address into {op['path']!r}")
    return doc
