"""Which variables a Jinja2 param or a CEL ``when`` reads, found statically.

Rendering against sample events only sees the branches those events take; these walk the
whole expression, so ``{% if false %}{{ pipeline.name }}{% endif %}`` is still reported.
"""

from __future__ import annotations

from typing import Any, Final

import celpy
import jinja2
import jinja2.meta

from tekton_notifications import cel, rendering

#: Names a template may read: the context variables and the globals.
JINJA_NAMES: Final = frozenset((*rendering.CONTEXT_NAMES, *rendering.GLOBAL_NAMES))
_CEL_MACROS: Final = frozenset({"all", "exists", "exists_one", "map", "filter"})
_CEL_TYPE_NAMES: Final = frozenset(
    {"int", "uint", "double", "bool", "string", "bytes", "list", "map", "null_type", "type"}
)


def jinja_free_variables(source: str) -> set[str]:
    try:
        return set(jinja2.meta.find_undeclared_variables(jinja2.Environment().parse(source)))
    except jinja2.TemplateSyntaxError:
        return set()


def cel_free_variables(source: str) -> set[str]:
    """Top-level names a CEL expression reads that are neither variables nor macro-bound."""
    try:
        tree = celpy.Environment().compile(source)
    except Exception:
        return set()
    names: set[str] = set()
    bound: set[str] = set()
    for node in tree.iter_subtrees():
        if node.data == "primary" and node.children and _is_tree(node.children[0], "ident"):
            names.add(str(node.children[0].children[0]))
        if node.data == "member_dot_arg" and len(node.children) >= 3:
            method, arguments = node.children[1], node.children[2]
            if str(method) in _CEL_MACROS and _is_tree(arguments, "exprlist"):
                first = arguments.children[0] if arguments.children else None
                bound.update(_idents(first))
    return names - bound - set(cel.VARIABLES) - _CEL_TYPE_NAMES


def _is_tree(node: Any, data: str) -> bool:
    return getattr(node, "data", None) == data


def _idents(node: Any) -> set[str]:
    if node is None:
        return set()
    return {
        str(sub.children[0]) for sub in node.iter_subtrees() if sub.data == "ident" and sub.children
    }
