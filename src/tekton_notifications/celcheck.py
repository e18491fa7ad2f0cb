"""The variables a ``when`` expression reads, checked against what they hold, at load.

A typo in a ``when`` (``event.durationn > 10.0``) compiles, loads Ready and never matches:
the field is missing from every event, so each evaluation is a "no such member" error that
only a verdict shows. The variables are the project's own views, so their fields are known
(:data:`VARIABLES`, built from ``events.EVENT_FIELDS`` and ``models.POLICY_FIELDS``, the
tables next to the ``view()`` methods that produce them); this module refuses, when a policy
loads, what cannot be right:

- a field the variable does not have (``event.durationn``, ``policy.nmae``), named with the
  closest existing one; ``run`` is Tekton's object: only its top-level keys are known
  (``apiVersion``, ``kind``, ``metadata``, ``spec``, ``status``), below them anything goes,
  as in ``event.labels``, ``event.annotations`` and ``event.results``;
- a field read on a value that has none (``event.duration.seconds``);
- a comparison of a field with a literal of another type (``event.duration == "10"``), or
  with a string its enumeration never holds (``event.kind == "Taskrun"``);
- a whole expression that is a literal or a field and not a bool (``event.name``).

Fields of list items (``event.children[0].nmae``), keys read with ``[...]`` and fields of
comprehension variables (``c.nmae`` in a macro), and fields that only other run kinds carry
than those the policy selects, are :mod:`celscope`'s (whose values are compared with literals
here too: ``c.status == "false"``). Not checked: types beyond a field compared with a
literal. The walk is :mod:`celcost`'s: the data paths its estimate reads (comprehension
variables that shadow a variable excluded) and its parse tree. Pure: no I/O.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Iterable, Mapping
from typing import Any, Final

from tekton_notifications import celcost, celscope, events, models, subscriptions

#: The reason of the policy condition and of the lint message.
REASON: Final = "CELCheckFailed"

#: Tekton's run object: the top-level keys of a Kubernetes object; open below them.
RUN_FIELDS: Final[Mapping[str, Mapping[str, Any]]] = {
    "apiVersion": {"type": "string"},
    "kind": {"type": "string"},
    "metadata": {"type": "object"},
    "spec": {"type": "object"},
    "status": {"type": "object"},
}


def _object(fields: Mapping[str, Mapping[str, Any]], description: str) -> dict[str, Any]:
    return {
        "type": "object",
        "description": description,
        "properties": {name: dict(field) for name, field in fields.items()},
        "additionalProperties": False,
    }


#: Each variable's JSON Schema: the one table the check and ``tkn-notify schema`` read.
VARIABLES: Final[Mapping[str, Mapping[str, Any]]] = {
    "event": {
        **_object(events.EVENT_FIELDS, "the run event, as the project sees it"),
        "required": list(events.EVENT_FIELDS),
    },
    "policy": {
        **_object(models.POLICY_FIELDS, "the policy being evaluated"),
        "required": list(models.POLICY_FIELDS),
    },
    "run": _object(
        RUN_FIELDS,
        "the TaskRun, PipelineRun or CustomRun as Tekton sent it; open below its top-level keys",
    ),
}


_TIME: Final[Mapping[str, Any]] = {"type": "string", "format": "date-time"}
_RUN: Final[Mapping[str, Any]] = {
    "type": "object",
    "properties": {
        "run": {"type": "string", "description": "the run's name"},
        "namespace": {"type": "string", "description": "the run's namespace"},
        "time": {**_TIME, "description": "when its event was held back"},
    },
}

#: Variables only templates see, set in the notifications the scheduler sends (issue 17), as
#: JSON Schema: the ``event.reminder`` of a reminder and the ``digest`` of a digest (None in
#: any other notification; a ``when`` never sees them: a Tekton event has neither). Printed by
#: ``tkn-notify schema`` under ``$defs.templateOnly``; filled by ``rendering.context``.
TEMPLATE_ONLY: Final[Mapping[str, Mapping[str, Any]]] = {
    "event.reminder": {
        "type": ["object", "null"],
        "description": "set in a reminder: the pipeline is still failing",
        "properties": {
            "count": {"type": "integer", "description": "this reminder's number, from 1"},
            "max": {"type": "integer", "description": "spec.remind.max"},
            "since": {**_TIME, "description": "when the pipeline turned red"},
            "redFor": {"type": "string", "description": "how long, as people say it: 4h 10m"},
            "redForSeconds": {"type": "integer", "description": "how long, in seconds"},
        },
    },
    "digest": {
        "type": ["object", "null"],
        "description": "set in a digest: what the rate limit held back in one period",
        "properties": {
            "period": {
                "type": "object",
                "description": "the period summarised",
                "properties": {
                    "start": {**_TIME, "description": "its start"},
                    "end": {**_TIME, "description": "its end"},
                },
            },
            "items": {
                "type": "array",
                "description": "one per pipeline and outcome held back",
                "items": {
                    "type": "object",
                    "properties": {
                        "kind": {"type": "string", "description": "the runs' kind"},
                        "pipeline": {"type": "string", "description": "the series held back"},
                        "outcome": {"type": "string", "description": "failed, succeeded, ..."},
                        "count": {"type": "integer", "description": "how many were held back"},
                        "first": {**_RUN, "description": "the first run held back"},
                        "last": {**_RUN, "description": "the last run held back"},
                    },
                },
            },
            "total": {"type": "integer", "description": "suppressions in the period"},
            "overflow": {"type": "integer", "description": "of pipelines past the 50 listed"},
        },
    },
}

#: Variables only templates see (not a ``when``): listed by ``tkn-notify schema``.
TEMPLATE_VARIABLES: Final[Mapping[str, Mapping[str, Any]]] = {
    "subscription": {
        **_object(
            subscriptions.SUBSCRIPTION_FIELDS,
            "templates only: the subscription annotation that made the notification "
            "(empty for a policy's templateRefs)",
        ),
        "required": list(subscriptions.SUBSCRIPTION_FIELDS),
    },
}


class CheckError(ValueError):
    """The expression reads what the variables cannot hold; the message lists each problem."""

    reason: Final = REASON


def schema() -> dict[str, Any]:
    """The JSON Schema of the variables ``when`` expressions and templates see."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "tekton-notifications CEL and template variables",
        "type": "object",
        "properties": {
            name: dict(variable) for name, variable in {**VARIABLES, **TEMPLATE_VARIABLES}.items()
        },
        "$defs": {"templateOnly": {name: dict(field) for name, field in TEMPLATE_ONLY.items()}},
    }


def check(
    plan: celcost.Plan,
    paths: Iterable[tuple[str, tuple[str, ...]]],
    kinds: Collection[str] = (),
) -> None:
    """Raise :class:`CheckError` naming every problem :func:`problems` finds."""
    found = problems(plan, paths, kinds)
    if found:
        raise CheckError("; ".join(found))


def problems(
    plan: celcost.Plan,
    paths: Iterable[tuple[str, tuple[str, ...]]],
    kinds: Collection[str] = (),
) -> list[str]:
    """What is wrong in ``plan``, given the data ``paths`` it reads (``celcost.Static.paths``:
    the variables' fields, those of comprehension variables left out), for a policy that
    selects the run ``kinds`` (empty: every kind)."""
    read = set(paths)
    found: list[str] = []
    for variable, path in sorted(read):
        problem = _field_problem(variable, path)
        if problem is not None:
            message, depth = problem
            found.append(f"{message}{_where(plan, variable, path[: depth + 1])}")
    scope = celscope.walk(plan.tree, VARIABLES, kinds)
    found.extend(scope.problems)
    found.extend(_comparisons(plan, read, scope.values))
    top = _not_bool(plan.tree, read)
    if top is not None:
        found.append(top)
    return found


def field(variable: str, path: tuple[str, ...]) -> Mapping[str, Any] | None:
    """The schema of what ``path`` reaches in ``variable``; None where it is not known."""
    node: Mapping[str, Any] | None = VARIABLES.get(variable)
    for key in path:
        if node is None:
            return None
        properties = node.get("properties") or {}
        node = properties.get(key)
    return node


def _types(node: Mapping[str, Any]) -> list[str]:
    kind = node.get("type")
    return [kind] if isinstance(kind, str) else list(kind or [])


def _field_problem(variable: str, path: tuple[str, ...]) -> tuple[str, int] | None:
    """The problem with the first name on ``path`` that cannot be there, and its index."""
    node: Mapping[str, Any] | None = VARIABLES.get(variable)
    for depth, key in enumerate(path):
        if node is None:
            return None
        where = ".".join((variable, *path[:depth]))
        types = _types(node)
        if types and "object" not in types:
            return f"{where} is {_a(types)}: it has no field {key!r}", depth
        properties = node.get("properties") or {}
        if key in properties:
            node = properties[key]
            continue
        if node.get("additionalProperties", True) is not False:
            return None  # an open map: labels, results, run.metadata...
        closest = difflib.get_close_matches(key, list(properties), n=1, cutoff=0.6)
        hint = (
            f"did you mean {where}.{closest[0]}?"
            if closest
            else f"its fields are {', '.join(properties)}"
        )
        return f"{where} has no field {key!r}: {hint}", depth
    return None


def _where(plan: celcost.Plan, variable: str, path: tuple[str, ...]) -> str:
    """`` (line L, column C)`` of the first ``variable.path``'s last name, when known."""
    for node in plan.tree.iter_subtrees_topdown():
        if node.data == "member_dot" and celcost.data_path(node.children) == (variable, path):
            token = node.children[1]
            if getattr(token, "line", None) is not None:
                return f" (line {token.line}, column {token.column})"
    return ""


_RELATIONS: Final = {
    "relation_eq": "==",
    "relation_ne": "!=",
    "relation_lt": "<",
    "relation_le": "<=",
    "relation_gt": ">",
    "relation_ge": ">=",
}
_LITERAL_TYPES: Final = {
    "STRING_LIT": "string",
    "MLSTRING_LIT": "string",
    "BYTES_LIT": "bytes",
    "INT_LIT": "number",
    "UINT_LIT": "number",
    "FLOAT_LIT": "number",
    "BOOL_LIT": "boolean",
    "NULL_LIT": "null",
}
_SIMPLE_STRING: Final = re.compile(r"""^(["'])([^"'\\]*)\1$""")


def _typed(
    node: Any,
    read: set[tuple[str, tuple[str, ...]]],
    values: Mapping[int, tuple[str, Mapping[str, Any]]] | None = None,
) -> tuple[str, Mapping[str, Any]]:
    """``("event.duration", its schema)`` when ``node`` reads a known field (or is one of the
    ``values`` celscope resolved: ``c.status``), else ("", {})."""
    if values and id(node) in values:
        return values[id(node)]
    if getattr(node, "data", None) != "member_dot":
        return "", {}
    found = celcost.data_path(node.children)
    if found is None or found not in read:
        return "", {}
    schema = field(*found)
    return (".".join((found[0], *found[1])), schema) if schema else ("", {})


def _literal(node: Any) -> Any:
    if getattr(node, "data", None) != "literal":
        return None
    return node.children[0]


def _comparisons(
    plan: celcost.Plan,
    read: set[tuple[str, tuple[str, ...]]],
    values: Mapping[int, tuple[str, Mapping[str, Any]]],
) -> list[str]:
    found: list[str] = []
    for node in plan.tree.iter_subtrees_topdown():
        if node.data != "relation" or len(node.children) != 2:
            continue
        operator = getattr(node.children[0], "data", None)
        if operator not in _RELATIONS or not node.children[0].children:
            continue
        left, right = node.children[0].children[0], node.children[1]
        name, schema = _typed(left, read, values)
        token = _literal(right)
        if not name:
            name, schema = _typed(right, read, values)
            token = _literal(left)
        types = _types(schema)
        if not name or token is None or not types:
            continue
        kind = _LITERAL_TYPES.get(token.type)
        at = f" (line {token.line}, column {token.column})" if token.line else ""
        numeric = kind == "number" and "integer" in types  # CEL compares int and double
        if kind is not None and kind not in types and not numeric:
            found.append(
                f"{name} is {_a(types)}, compared with {_a([kind])} {token}{at}: "
                f"never {'different' if operator == 'relation_ne' else 'true'}"
            )
            continue
        simple = _SIMPLE_STRING.match(str(token))
        enum = schema.get("enum")
        if enum and simple and operator in ("relation_eq", "relation_ne"):
            value = simple.group(2)
            if value not in enum:
                closest = difflib.get_close_matches(value, [str(e) for e in enum], n=1)
                hint = f"did you mean {closest[0]!r}?" if closest else ""
                found.append(
                    f"{name} is one of {', '.join(repr(e) for e in enum)}, never "
                    f"{value!r}{at}" + (f": {hint}" if hint else "")
                )
    return found


def _not_bool(tree: Any, read: set[tuple[str, tuple[str, ...]]]) -> str | None:
    """A whole expression that is a literal or a field, and not a bool."""
    token = _literal(tree)
    if token is not None:
        kind = _LITERAL_TYPES.get(token.type, "value")
        return None if kind == "boolean" else f"must evaluate to bool, not {_a([kind])} {token}"
    name, schema = _typed(tree, read)
    if getattr(tree, "data", None) == "ident" and str(tree.children[0]) in VARIABLES:
        name, schema = str(tree.children[0]), VARIABLES[str(tree.children[0])]
    types = _types(schema)
    if name and types and "boolean" not in types:
        return f"must evaluate to bool, but {name} is {_a(types)}"
    return None


def _a(types: list[str]) -> str:
    """``a string``, ``a number or null``, ``an object``."""
    words = " or ".join(types)
    return f"{'an' if words[:1] in 'aeiou' else 'a'} {words}"
