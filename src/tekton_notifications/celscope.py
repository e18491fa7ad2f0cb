"""What a ``when`` reads through list items and comprehension variables, and for which run kinds.

:mod:`celcheck` checks the fields read straight off a variable (``event.durationn``). This
walk follows the names a field path does not reach: an item read by index
(``event.children[0].nmae``), a key read with brackets (``event["durationn"]``) and a
comprehension variable (``t`` in ``event.children.exists(t, t.nam == "x")``, bound to an item
of the list, or to a key of a map). An unknown field of such a value is refused with the
closest existing one, as celcheck refuses ``event.durationn``.

It also refuses reading a field that only some run kinds carry (``"x-run-kinds"`` in its
schema, e.g. ``event.children``: only a PipelineRun has child runs) in a policy whose
``spec.selector.kinds`` selects none of them: such a ``when`` reads an empty value on every
event it can see, and never means what it says.

Direct paths are celcheck's: this walk does not report them again. Pure: no I/O.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Final

#: The schema keyword listing the run kinds whose events carry a field; absent: every kind.
RUN_KINDS_KEYWORD: Final = "x-run-kinds"
_MACROS: Final = frozenset({"all", "exists", "exists_one", "map", "filter"})

Schema = Mapping[str, Any]


@dataclass(frozen=True)
class _Value:
    """What an expression reaches: its schema, how a message names it, and whether it is a
    plain field path off a variable (those are celcheck's to report)."""

    schema: Schema
    label: str
    direct: bool
    #: For a comprehension variable: what it is bound to (``an item of event.children``).
    bound_to: str = ""

    @property
    def named(self) -> str:
        return f"{self.label} ({self.bound_to})" if self.bound_to else self.label


@dataclass(frozen=True)
class Scope:
    """What :func:`walk` found."""

    problems: list[str]
    #: The values it resolved that are not plain field paths, by ``id()`` of their parse
    #: node: ``{id(node): ("c.status", schema)}``, for celcheck's comparisons with literals.
    values: dict[int, tuple[str, Schema]]


def walk(tree: Any, variables: Mapping[str, Schema], kinds: Collection[str] = ()) -> Scope:
    """Walk the parse ``tree`` (cel-python's) of a ``when``: unknown fields of list items, of
    bracketed keys and of comprehension variables, and fields of run kinds that ``kinds``
    (the policy's ``spec.selector.kinds``; empty: all) leaves out, are problems."""
    walker = _Walk(variables, frozenset(kinds))
    walker.visit(tree, {})
    return Scope(list(dict.fromkeys(walker.found)), walker.values)


class _Walk:
    def __init__(self, variables: Mapping[str, Schema], kinds: frozenset[str]) -> None:
        self.variables = variables
        self.kinds = kinds
        self.found: list[str] = []
        self.values: dict[int, tuple[str, Schema]] = {}

    def visit(self, node: Any, scope: Mapping[str, _Value]) -> _Value | None:
        """Report what is wrong below ``node``; the value it reaches, when known."""
        value = self._visit(node, scope)
        if value is not None and not value.direct:
            self.values[id(node)] = (value.label, value.schema)
        return value

    def _visit(self, node: Any, scope: Mapping[str, _Value]) -> _Value | None:
        data = getattr(node, "data", None)
        if data is None:
            return None
        children = node.children
        if data == "ident":
            name = str(children[0])
            if name in scope:
                return scope[name]
            schema = self.variables.get(name)
            return _Value(schema, name, True) if schema is not None else None
        if data in ("member", "primary") and len(children) == 1:
            return self.visit(children[0], scope)
        if data == "member_dot" and len(children) == 2:
            target = self.visit(children[0], scope)
            return self._field(target, str(children[1]), children[1], direct=True)
        if data == "member_index" and len(children) == 2:
            target = self.visit(children[0], scope)
            self.visit(children[1], scope)
            return self._index(target, children[1])
        if data == "member_dot_arg" and len(children) >= 2 and str(children[1]) in _MACROS:
            self._macro(children, scope)
            return None
        for child in children:
            self.visit(child, scope)
        return None

    def _macro(self, children: list[Any], scope: Mapping[str, _Value]) -> None:
        target = self.visit(children[0], scope)
        arguments = children[2].children if len(children) > 2 else []
        if len(arguments) < 2 or getattr(arguments[0], "data", None) != "ident":
            for argument in arguments:
                self.visit(argument, scope)
            return
        name = str(arguments[0].children[0])
        element = _element(target)
        inner = dict(scope)
        if element is not None:
            inner[name] = _Value(element.schema, name, False, element.bound_to)
        else:
            inner.pop(name, None)
            if name in self.variables:  # shadowed by an element of unknown shape
                inner[name] = _Value({}, name, False)
        for argument in arguments[1:]:
            self.visit(argument, inner)

    def _field(self, target: _Value | None, key: str, token: Any, *, direct: bool) -> _Value | None:
        if target is None:
            return None
        schema = target.schema
        label = f"{target.label}.{key}"
        is_direct = direct and target.direct
        types = _types(schema)
        at = _at(token)
        if types and "object" not in types:
            if not is_direct:
                self.found.append(f"{target.named} is {_a(types)}: it has no field {key!r}{at}")
            return None
        properties = schema.get("properties") or {}
        if key not in properties:
            if schema.get("additionalProperties", True) is not False:
                return None  # an open map
            if not is_direct:
                closest = difflib.get_close_matches(key, list(properties), n=1, cutoff=0.6)
                hint = (
                    f"did you mean {target.label}.{closest[0]}?"
                    if closest
                    else f"its fields are {', '.join(properties)}"
                )
                self.found.append(f"{target.named} has no field {key!r}{at}: {hint}")
            return None
        field = properties[key]
        self._kinds(label, field, at)
        return _Value(field, label, is_direct)

    def _index(self, target: _Value | None, index: Any) -> _Value | None:
        if target is None:
            return None
        literal = index.children[0] if getattr(index, "data", None) == "literal" else None
        if "array" in _types(target.schema):
            items = target.schema.get("items")
            label = f"{target.label}[{literal if literal is not None else '...'}]"
            return _Value(items, label, False) if isinstance(items, Mapping) else None
        if literal is not None and literal.type == "STRING_LIT":
            key = str(literal)[1:-1]
            if key.isidentifier():
                return self._field(target, key, literal, direct=False)
        return None

    def _kinds(self, label: str, field: Schema, at: str) -> None:
        carried = field.get(RUN_KINDS_KEYWORD)
        if not self.kinds or not carried or self.kinds & set(carried):
            return
        self.found.append(
            f"{label}{at} is only set for {' and '.join(carried)} events, but the policy "
            f"selects only {' and '.join(sorted(self.kinds))} (spec.selector.kinds): "
            "it is empty on every event this policy sees"
        )


def _element(target: _Value | None) -> _Value | None:
    """The value a comprehension variable takes: an item of a list, a key of a map."""
    if target is None:
        return None
    types = _types(target.schema)
    if "array" in types:
        items = target.schema.get("items")
        if isinstance(items, Mapping):
            return _Value(items, "", False, f"an item of {target.label}")
        return None
    if "object" in types:
        return _Value({"type": "string"}, "", False, f"a key of {target.label}")
    return None


def _types(schema: Schema) -> list[str]:
    kind = schema.get("type")
    return [kind] if isinstance(kind, str) else list(kind or [])


def _at(token: Any) -> str:
    line = getattr(token, "line", None)
    return f" (line {line}, column {token.column})" if line is not None else ""


def _a(types: list[str]) -> str:
    words = " or ".join(types)
    return f"{'an' if words[:1] in 'aeiou' else 'a'} {words}"
