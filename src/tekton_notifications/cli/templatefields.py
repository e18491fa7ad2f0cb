"""The fields a template param reads that its variables never have, found statically.

Rendering against sample events stops at the first undefined name and only sees the branches
those events take. This walks the whole param and names every read of a field that the
variables' schema (:func:`variables`: ``event``, ``policy``, ``template`` closed, ``run``
closed at its top level) does not list, with its line and the closest existing field:
``line 3: 'event.durationn' is undefined; did you mean 'event.duration'?``. Loop variables
over a list of known items are checked too (``c.nmae`` in ``{% for c in event.children %}``).

Reads a template guards are left alone, as the sandbox leaves them: an expression tested with
``is defined`` / ``is undefined`` or given ``| default(...)`` anywhere in the param (and what
is below it) is optional by the author's word. Open maps (labels, annotations, results,
below run's top-level keys) are the render's to check, against the sample events.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

import jinja2
from jinja2 import nodes

from tekton_notifications import celcheck
from tekton_notifications.rendering import context

Schema = Mapping[str, Any]

#: Tests and filters that make a missing value safe to use.
_GUARD_TESTS: Final = frozenset({"defined", "undefined"})
_GUARD_FILTERS: Final = frozenset({"default", "d"})
#: Methods the sandbox lets a template call on a mapping (``event.labels.get("x")``).
_MAPPING_METHODS: Final = frozenset({"get", "items", "keys", "values"})


def _closed(fields: Mapping[str, Schema], description: str) -> dict[str, Any]:
    return {
        "type": "object",
        "description": description,
        "properties": {name: dict(field) for name, field in fields.items()},
        "additionalProperties": False,
    }


def variables() -> dict[str, Schema]:
    """The JSON Schema of each variable a template sees: every ``when`` variable
    (``celcheck.VARIABLES``), ``event`` with the fields the rendering adds, and ``template``.
    A variable only templates see is declared here."""
    event = dict(celcheck.VARIABLES["event"])
    event["properties"] = {**event["properties"], **context.RENDER_FIELDS}
    event["required"] = list(event["properties"])
    # What only the scheduler's notifications carry (null in any other): not required.
    event["properties"]["reminder"] = dict(celcheck.TEMPLATE_ONLY["event.reminder"])
    return {
        **celcheck.VARIABLES,
        "event": event,
        **celcheck.TEMPLATE_VARIABLES,
        "digest": dict(celcheck.TEMPLATE_ONLY["digest"]),
        "template": _closed(context.TEMPLATE_FIELDS, "the NotificationTemplate being rendered"),
    }


@dataclass(frozen=True)
class Undefined:
    """A read of a field that is never there."""

    line: int
    expression: str
    closest: str = ""
    #: What a loop variable iterates over: ``c is an item of event.children``.
    bound_to: str = ""

    @property
    def message(self) -> str:
        name = self.expression.split(".")[0].split("[")[0]
        bound = f" ({name} is {self.bound_to})" if self.bound_to else ""
        hint = f"; did you mean {self.closest!r}?" if self.closest else ""
        return f"line {self.line}: {self.expression!r} is undefined{bound}{hint}"


def undefined(source: str, schema: Mapping[str, Schema] | None = None) -> list[Undefined]:
    """Every unguarded read in ``source`` of a field its variable never has; [] when the
    source does not parse (the compile check reports that)."""
    try:
        tree = jinja2.Environment().parse(source)
    except jinja2.TemplateSyntaxError:
        return []
    walk = _Walk(schema if schema is not None else variables(), tree)
    walk.visit(tree, {})
    return list(dict.fromkeys(walk.found))


@dataclass(frozen=True)
class _Value:
    schema: Schema | None  # None: a local of unknown shape
    label: str
    bound_to: str = ""


class _Walk:
    def __init__(self, schema: Mapping[str, Schema], tree: nodes.Template) -> None:
        self.schema = schema
        self.found: list[Undefined] = []
        self.guarded = {text for node in _guarded(tree) if (text := _text(node)) is not None}
        #: Names the param assigns or binds as macro arguments: locals that shadow variables.
        self.locals = {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}

    def visit(self, node: nodes.Node, scope: Mapping[str, _Value]) -> _Value | None:
        if isinstance(node, nodes.For):
            source = self.visit(node.iter, scope)
            inner = dict(scope)
            for bound_name in node.target.find_all(nodes.Name):
                inner[bound_name.name] = _Value(None, bound_name.name)
            item = _item(source)
            if isinstance(node.target, nodes.Name) and source is not None and item is not None:
                bound = f"an item of {source.label}"
                inner[node.target.name] = _Value(item, node.target.name, bound)
            for child in [*node.body, *([node.test] if node.test is not None else [])]:
                self.visit(child, inner)
            for child in node.else_:
                self.visit(child, scope)
            return None
        if isinstance(node, nodes.Name):
            if node.name in scope:
                return scope[node.name]
            if node.name in self.locals or node.name not in self.schema:
                return None
            return _Value(self.schema[node.name], node.name)
        if isinstance(node, nodes.Getattr):
            return self._read(self.visit(node.node, scope), node.attr, node.lineno)
        if isinstance(node, nodes.Getitem):
            target = self.visit(node.node, scope)
            self.visit(node.arg, scope)
            if target is None or target.schema is None:
                return None
            if "array" in _types(target.schema):
                items = target.schema.get("items")
                index = node.arg.value if isinstance(node.arg, nodes.Const) else "..."
                label = f"{target.label}[{index}]"
                return _Value(items, label) if isinstance(items, Mapping) else None
            if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
                return self._read(target, node.arg.value, node.lineno)
            return None
        if isinstance(node, nodes.Call) and isinstance(node.node, nodes.Getattr):
            receiver = self.visit(node.node.node, scope)
            types = _types(receiver.schema) if receiver and receiver.schema else []
            if "object" not in types or node.node.attr not in _MAPPING_METHODS:
                self._read(receiver, node.node.attr, node.node.lineno)  # else a mapping method
            for child in _call_arguments(node):
                self.visit(child, scope)
            return None
        for child in node.iter_child_nodes():
            self.visit(child, scope)
        return None

    def _read(self, target: _Value | None, key: str, line: int) -> _Value | None:
        if target is None or target.schema is None:
            return None
        schema = target.schema
        label = f"{target.label}.{key}" if key.isidentifier() else f"{target.label}[{key!r}]"
        types = _types(schema)
        if types and "object" not in types:
            return None  # a method or attribute of a string, number or list: the sandbox's
        properties = schema.get("properties") or {}
        if key in properties:
            return _Value(properties[key], label)
        if schema.get("additionalProperties", True) is not False or _is_guarded(label, self):
            return None
        closest = difflib.get_close_matches(key, list(properties), n=1, cutoff=0.6)
        hint = f"{target.label}.{closest[0]}" if closest else ""
        self.found.append(Undefined(line, label, hint, target.bound_to))
        return None


def _is_guarded(label: str, walk: _Walk) -> bool:
    return any(label == g or label.startswith((f"{g}.", f"{g}[")) for g in walk.guarded)


def _guarded(tree: nodes.Template) -> Iterator[nodes.Node]:
    for test in tree.find_all(nodes.Test):
        if test.name in _GUARD_TESTS:
            yield test.node
    for used in tree.find_all(nodes.Filter):
        if used.name in _GUARD_FILTERS and used.node is not None:
            yield used.node


def _text(node: nodes.Node) -> str | None:
    """``event.x`` / ``event['x']`` for a plain read, as :meth:`_Walk._read` labels it."""
    if isinstance(node, nodes.Name):
        return node.name
    if isinstance(node, nodes.Getattr):
        base = _text(node.node)
        return f"{base}.{node.attr}" if base else None
    if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
        base = _text(node.node)
        key = node.arg.value
        if base is None or not isinstance(key, str):
            return None
        return f"{base}.{key}" if key.isidentifier() else f"{base}[{key!r}]"
    return None


def _item(value: _Value | None) -> Schema | None:
    if value is None or value.schema is None or "array" not in _types(value.schema):
        return None
    items = value.schema.get("items")
    return items if isinstance(items, Mapping) else None


def _call_arguments(node: nodes.Call) -> Iterator[nodes.Node]:
    yield from node.args
    for keyword in node.kwargs:
        yield keyword.value
    if node.dyn_args is not None:
        yield node.dyn_args
    if node.dyn_kwargs is not None:
        yield node.dyn_kwargs


def _types(schema: Schema) -> list[str]:
    kind = schema.get("type")
    return [kind] if isinstance(kind, str) else list(kind or [])
