"""Compile-time instrumentation: what the rewritten template calls while it runs.

Owns the rewriting of a parsed template (a :class:`jinja2.visitor.NodeTransformer`): every
output goes through ``__out`` (None and functions refused, text counted), every loop and
macro call ticks the step counter, every ``~`` and list, tuple or dict literal is accounted,
and ``include``/``import``/``extends`` are refused. The ``__``-named filters it inserts are
defined here; templates cannot name them.

Must not: decide limits (limits) or define user-facing filters (filters).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Final, cast

from jinja2 import Undefined, nodes, pass_context
from jinja2.runtime import Context
from jinja2.visitor import NodeTransformer

from tekton_notifications.rendering import limits
from tekton_notifications.rendering.errors import Problem

#: Tags that would load other templates: there is nothing to load.
FORBIDDEN_NODES: Final[Mapping[type[nodes.Node], str]] = {
    nodes.Extends: "extends",
    nodes.Include: "include",
    nodes.Import: "import",
    nodes.FromImport: "from ... import",
}


def _internal(name: str, node: nodes.Expr | None, *args: nodes.Expr, lineno: int) -> nodes.Filter:
    return nodes.Filter(node, name, list(args), [], None, None, lineno=lineno)


def _describe(node: nodes.Node) -> str | None:
    """The source form of simple expressions, for messages: ``event.url``."""
    if isinstance(node, nodes.Name):
        return node.name
    if isinstance(node, nodes.Getattr):
        base = _describe(node.node)
        return f"{base}.{node.attr}" if base else None
    if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
        base = _describe(node.node)
        return f"{base}[{node.arg.value!r}]" if base else None
    if isinstance(node, nodes.Filter) and node.node is not None:
        base = _describe(node.node)
        return f"{base} | {node.name}" if base else None
    return None


class Instrument(NodeTransformer):
    def visit_Output(self, node: nodes.Output) -> nodes.Node:
        self.generic_visit(node)
        wrapped: list[nodes.Expr] = []
        for child in node.nodes:
            if isinstance(child, nodes.TemplateData):
                child = cast(nodes.Expr, nodes.Const(child.data, lineno=child.lineno))
            description = _describe(child) or "an expression"
            wrapped.append(_internal("__out", child, nodes.Const(description), lineno=child.lineno))
        node.nodes = wrapped
        return node

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = _internal("__tick_iter", cast(nodes.Expr, node.iter), lineno=node.lineno)
        if node.recursive:
            node.body.insert(0, _tick_stmt(node.lineno))
        return node

    def visit_Macro(self, node: nodes.Macro) -> nodes.Node:
        self.generic_visit(node)
        node.body.insert(0, _tick_stmt(node.lineno))
        return node

    def visit_CallBlock(self, node: nodes.CallBlock) -> nodes.Node:
        self.generic_visit(node)
        node.body.insert(0, _tick_stmt(node.lineno))
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        node.nodes = [_internal("__str", part, lineno=part.lineno) for part in node.nodes]
        return _internal("__cap", node, lineno=node.lineno)

    def _literal(self, node: nodes.Expr) -> nodes.Node:
        """``[big, big, big]`` is as big as what it holds: account it like ``[big] * 3``.
        (Assignment targets are tuples too; they build nothing.)"""
        self.generic_visit(node)
        if getattr(node, "ctx", "load") != "load":
            return node
        return _internal("__literal", node, lineno=node.lineno)

    visit_List = _literal
    visit_Tuple = _literal
    visit_Dict = _literal


def _tick_stmt(lineno: int) -> nodes.ExprStmt:
    return nodes.ExprStmt(_internal("__tick", nodes.Const(None), lineno=lineno), lineno=lineno)


def none_problem(what: str, expression: str = "value") -> Problem:
    return Problem(
        "UndefinedVariable",
        f"{what} is None (null), which is never rendered as text; write "
        f"'{{{{ {expression} | default(\"\") }}}}' or test it with 'is none'",
    )


@pass_context
def _out(context: Context, value: Any, description: str = "an expression") -> str:
    """Every piece of output goes through here (instead of ``finalize``)."""
    if isinstance(value, str):
        text = value
    elif value is None:
        expression = description if description != "an expression" else "value"
        raise none_problem(description, expression)
    elif isinstance(value, Undefined):
        text = str(value)  # raises
    elif callable(value):
        raise Problem(
            "RenderFailed", f"{description} is a function or macro; call it with ( ) to use it"
        )
    else:
        limits.check_size(value, description)
        text = str(value)
    budget = limits.current()
    if budget is not None:
        budget.emit(len(text))
    return text


@pass_context
def _tick(context: Context, value: Any = None) -> Any:
    budget = limits.current()
    if budget is not None:
        budget.tick()
    return value


@pass_context
def _tick_iter(context: Context, iterable: Any) -> Any:
    budget = limits.current()
    if budget is None:
        return iterable
    return _ticking(budget, iter(iterable))


def _ticking(budget: limits.Budget, iterator: Iterator[Any]) -> Iterator[Any]:
    for item in iterator:
        budget.tick()
        yield item


@pass_context
def _concat_part(context: Context, value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        raise none_problem("an operand of '~'")
    if not isinstance(value, Undefined):
        limits.check_size(value, "an operand of '~'")
    return str(value)


@pass_context
def _cap(context: Context, value: Any) -> Any:
    if isinstance(value, str):
        limits.build(len(value), "the concatenated string")
    return value


@pass_context
def _literal(context: Context, value: Any) -> Any:
    limits.build_value(value, "a list or mapping literal")
    return value


#: The filters the instrumented template calls; their names start with ``__`` so no
#: template can name them (refused when compiling).
INTERNAL_FILTERS: Final = {
    "__out": _out,
    "__tick": _tick,
    "__tick_iter": _tick_iter,
    "__str": _concat_part,
    "__cap": _cap,
    "__literal": _literal,
}
