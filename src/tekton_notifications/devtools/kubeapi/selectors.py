"""Label and field selectors, parsed once and matched against objects."""

from __future__ import annotations

import re
from dataclasses import dataclass

from tekton_notifications.devtools.kubeapi.errors import KubeError
from tekton_notifications.devtools.kubeapi.kinds import Obj

_LABEL_REQ = re.compile(
    r"^(?:!(?P<absent>[^\s=!,()]+)"
    r"|(?P<key>[^\s=!,()]+)(?:\s*(?P<op>==|=|!=)\s*(?P<val>[^\s=!,()]*)"
    r"|\s+(?P<setop>in|notin)\s*\((?P<set>[^()]*)\))?)$"
)
_FIELDS = {"metadata.name": "name", "metadata.namespace": "namespace"}


def _split_top_level(expr: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(expr):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            parts.append(expr[start:i])
            start = i + 1
    parts.append(expr[start:])
    return [p.strip() for p in parts]


@dataclass(frozen=True)
class Selector:
    """Parsed ``labelSelector`` + ``fieldSelector`` (AND of all requirements)."""

    labels: tuple[tuple[str, str, frozenset[str]], ...] = ()  # (key, in|notin|exists|absent, vals)
    fields: tuple[tuple[str, bool, str], ...] = ()  # (metadata key, equal?, value)

    @classmethod
    def parse(
        cls, label_selector: str | None = None, field_selector: str | None = None
    ) -> Selector:
        labels: list[tuple[str, str, frozenset[str]]] = []
        for part in _split_top_level(label_selector) if label_selector else []:
            m = _LABEL_REQ.match(part)
            if m is None:
                raise KubeError(400, f"unable to parse requirement: {part!r}")
            if m["absent"]:
                labels.append((m["absent"], "absent", frozenset()))
            elif m["op"]:
                labels.append(
                    (m["key"], "notin" if m["op"] == "!=" else "in", frozenset([m["val"]]))
                )
            elif m["setop"]:
                values = frozenset(v.strip() for v in m["set"].split(",") if v.strip())
                labels.append((m["key"], m["setop"], values))
            else:
                labels.append((m["key"], "exists", frozenset()))
        fields: list[tuple[str, bool, str]] = []
        for part in _split_top_level(field_selector) if field_selector else []:
            m = re.match(r"^([^=!]+?)\s*(==|=|!=)\s*(.*)$", part)
            if m is None:
                raise KubeError(400, f"invalid field selector: {part!r}")
            if m[1] not in _FIELDS:
                raise KubeError(400, f'field label not supported: "{m[1]}"')
            fields.append((_FIELDS[m[1]], m[2] != "!=", m[3]))
        return cls(tuple(labels), tuple(fields))

    def matches(self, obj: Obj) -> bool:
        meta = obj.get("metadata") or {}
        labels = meta.get("labels") or {}
        for key, op, values in self.labels:
            present = key in labels
            if op == "in" and not (present and labels[key] in values):
                return False
            if op == "notin" and present and labels[key] in values:
                return False
            if (op == "exists" and not present) or (op == "absent" and present):
                return False
        return all((meta.get(k, "") == v) == eq for k, eq, v in self.fields)
