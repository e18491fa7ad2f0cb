"""The cost of a CEL ``when`` expression, estimated before it runs.

Policies are code that every namespace's events pass through, so a ``when`` must have a bounded
cost: seven nested ``[0..9].exists(...)`` (250 characters) otherwise run for minutes, and a
600 KB list literal takes seconds to compile. The model is Kubernetes' CEL cost budget:

- Units are Kubernetes': reading a variable or a field costs 1, an operator or function call 1
  plus a tenth of the sizes it traverses (strings compared, searched or concatenated), a list
  literal 10 plus its elements, a map literal 30, each comprehension iteration 2 plus its
  body. Constants are free.
- Sizes are bounds on lengths: :func:`measure` of a value is at least the length of every
  string, list and map in it (and no more than its compact JSON size).
- Event data is bounded by the 1 MiB request limit (``stages/base.py`` ``MAX_EVENT_BYTES``),
  as Kubernetes derives sizes from its request limit: any ``run``/``event`` path measures at
  most :data:`DATA_BOUND`.

Three checks use one walk of the parse tree (cel-python's Lark parser: the same tree whichever
engine evaluates):

- **Length** (:data:`MAX_LENGTH`, the CRD's ``maxLength``) before parsing: parsing itself
  costs time in the expression's size.
- **At load** (:func:`static`): the worst case over every event of at most 1 MiB must stay
  under :data:`STATIC_LIMIT` (Kubernetes' per-expression static limit), and the cost on an
  empty event (what the expression costs by itself: literals, comprehensions over literals)
  under the per-evaluation budget, else every evaluation would be refused.
- **Per evaluation** (:func:`estimate` with the event's actual sizes): refused before it starts
  when over the engine's budget.

A comprehension over a list of measure ``s`` is charged the larger of its two extreme shapes,
many small elements or one big one: costs here are convex in sizes, so every list in between
costs less. Pure: no I/O (but :mod:`celparse` reading the parser's tables once), no engine; the
caller passes the sizes of the data it reads.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

#: Longest ``when`` accepted, in characters; also the CRDs' ``spec.when`` ``maxLength``.
MAX_LENGTH: Final = 4096
#: The largest event a function accepts (``stages.base.MAX_EVENT_BYTES``, checked by a test).
DATA_BOUND: Final = 1024 * 1024
#: Kubernetes' ``StaticEstimatedCostLimit`` for one expression of a CRD validation rule.
STATIC_LIMIT: Final = 10_000_000
#: Cost units allowed per evaluation, per engine: about 0.2 s of CPU in the worst case.
#: Measured on 2 cores: two nested ``exists`` over 10-item literals (561 units) take 47 ms
#: on cel-python's InterpretedRunner unloaded (80-300 µs per unit, depending on load), three
#: (5,661 units) 0.45 s; five on the Rust engine (566,661 units) 0.1 s (~0.2 µs per unit).
RUNTIME_BUDGET: Final = {"python": 2_000, "rust": 1_000_000}
#: Comprehensions nested deeper than this are refused (estimating them doubles per level).
MAX_NESTING: Final = 10

#: The reason of the policy condition, the lint message and the metric.
REASON: Final = "CELCostExceeded"

_TRAVERSE: Final = 0.1  # per unit of size a string operation reads (Kubernetes' factor)
_ITERATION: Final = 2  # loop condition and step of one comprehension iteration
_LIST_CREATE: Final = 10
_MAP_CREATE: Final = 30
_VARIABLES: Final = ("run", "event", "policy")
_MACROS: Final = frozenset({"map", "filter", "all", "exists", "exists_one"})
_PREDICATES: Final = frozenset({"contains", "startsWith", "endsWith", "matches"})

#: The :func:`shape` of the value at ``(variable, path)``; called only for data paths.
Sizes = Callable[[str, tuple[str, ...]], "Shape"]


class CostError(ValueError):
    """The expression may cost more than allowed; the message says which limit and why."""


@dataclass(frozen=True)
class Shape:
    """A value's :func:`measure`, and its number of elements when known (None: any)."""

    size: float
    count: float | None = None


#: What any event path may be, statically: up to 1 MiB, any number of elements.
WORST: Final = Shape(DATA_BOUND)
#: An absent or empty value.
EMPTY: Final = Shape(1, 0)
_MARGIN: Final = Shape(2 * DATA_BOUND)


@dataclass(frozen=True)
class Static:
    """The load-time estimate: ``worst`` over events up to 1 MiB, ``floor`` on an empty one;
    ``fits`` when no event can take it over the per-evaluation budget, so there is nothing to
    check per event (costs only grow with sizes; the margin covers the ``event`` variable,
    whose child list carries a few more fields than the run it comes from)."""

    worst: float
    floor: float
    fits: bool = False
    #: Every data path the cost depends on, and the largest measure they may all have with
    #: the estimate still within budget: an event whose paths all measure less needs no walk.
    paths: tuple[tuple[str, tuple[str, ...]], ...] = ()
    fits_up_to: float = 0.0


@dataclass(frozen=True)
class Plan:
    """A parsed expression, ready to be estimated for any sizes."""

    source: str
    tree: Any

    def __post_init__(self) -> None:
        # The grammar wraps every leaf in ~9 single-child rules: drop them once, so each
        # per-event estimate walks only the nodes that cost something (5-10x fewer).
        object.__setattr__(self, "tree", _compact(self.tree))

    def estimate(self, sizes: Sizes) -> float:
        """The cost bound for data of these sizes."""
        return _Walk(sizes).cost(self.tree)


#: Rules that only pass their one child on (``(x)`` included).
_WRAPPERS: Final = frozenset(
    {
        "expr",
        "conditionalor",
        "conditionaland",
        "relation",
        "addition",
        "multiplication",
        "unary",
        "member",
        "primary",
        "paren_expr",
    }
)


def _compact(tree: Any) -> Any:
    """A copy of ``tree`` without single-child wrapper rules (iterative: deep trees are the
    hostile case)."""
    from lark import Tree  # celpy's dependency

    def skip(node: Any) -> Any:
        while hasattr(node, "data") and node.data in _WRAPPERS and len(node.children) == 1:
            node = node.children[0]
        return node

    root = skip(tree)
    if not hasattr(root, "data"):
        return root
    top = Tree(str(root.data), list(root.children))
    stack = [top]
    while stack:
        node = stack.pop()
        children = []
        for child in node.children:
            child = skip(child)
            if hasattr(child, "data"):
                child = Tree(str(child.data), list(child.children))
                stack.append(child)
            children.append(child)
        node.children = children
    return top


def plan(source: str) -> Plan:
    """Parse ``source`` for estimating; refuses what is too long before parsing it."""
    if len(source) > MAX_LENGTH:
        raise CostError(
            f"expression of {len(source)} characters is longer than the limit of {MAX_LENGTH}"
        )
    from tekton_notifications import celparse  # celpy: ~0.1 s to import, only when compiling

    return Plan(source, celparse.parser().parse(source))


def static(expression: Plan, *, budget: float) -> Static:
    """Refuse (:class:`CostError`) what is over the limits at load; else the estimates."""
    worst = _checked(expression, _uniform(WORST))
    floor = _checked(expression, _uniform(EMPTY))
    if worst > STATIC_LIMIT:
        raise CostError(
            f"estimated cost {_figure(worst)} for an event of up to 1 MiB is over the limit "
            f"of {_figure(STATIC_LIMIT)}: nested comprehensions multiply their list sizes"
        )
    if floor > budget:
        raise CostError(
            f"estimated cost {_figure(floor)} of every evaluation is over the per-evaluation "
            f"budget of {_figure(budget)}"
        )
    paths: dict[tuple[str, tuple[str, ...]], None] = {}

    def record(variable: str, path: tuple[str, ...]) -> Shape:
        paths[(variable, path)] = None
        return _MARGIN

    fits = _checked(expression, record) <= budget
    low, high = 1.0, float(_MARGIN.size)  # costs grow with sizes: bisect the largest that fits
    while not fits and high - low > 1:
        middle = Shape((low + high) // 2)
        if _checked(expression, _uniform(middle)) <= budget:
            low = middle.size
        else:
            high = middle.size
    return Static(worst, floor, fits, tuple(paths), low)


def fits(estimate: Static, sizes: Sizes) -> bool:
    """Whether this event's data is small enough for the load-time estimate to vouch for it
    (no walk needed): a cheap test per event, each path's size being measured once."""
    return estimate.fits or all(
        sizes(variable, path).size <= estimate.fits_up_to for variable, path in estimate.paths
    )


def check(expression: Plan, sizes: Sizes, *, budget: float) -> float:
    """The estimate for one event's sizes; :class:`CostError` when over ``budget``."""
    cost = _checked(expression, sizes)
    if cost > budget:
        raise CostError(
            f"estimated cost {_figure(cost)} for this event is over the per-evaluation "
            f"budget of {_figure(budget)}"
        )
    return cost


def measure(value: Any) -> int:
    """A bound on every length inside ``value`` and on its count of elements, recursively:
    1 for a scalar, a string's length (+1), a list's or map's elements each plus one."""
    if isinstance(value, str | bytes):
        return len(value) + 1
    if isinstance(value, Mapping):
        return 1 + sum(measure(k) + measure(v) + 1 for k, v in value.items())
    if isinstance(value, list | tuple):
        return 1 + sum(measure(item) + 1 for item in value)
    return 1


def shape(value: Any) -> Shape:
    """The measure of ``value``, with its length when it is a list, map or string."""
    count = len(value) if isinstance(value, str | bytes | list | tuple | Mapping) else 0
    return Shape(measure(value), count)


def lookup(value: Any, path: tuple[str, ...]) -> Any:
    """The value at ``path`` in nested maps; None where a key is missing (measures 1)."""
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return value


def _uniform(shape: Shape) -> Sizes:
    return lambda _variable, _path: shape


def _checked(expression: Plan, sizes: Sizes) -> float:
    try:
        return expression.estimate(sizes)
    except RecursionError:
        raise CostError("expression is nested too deeply to estimate its cost") from None


def _figure(cost: float) -> str:
    return f"{cost:,.0f}" if cost < 1e15 else f"{cost:.1e}"


def data_path(children: list[Any]) -> tuple[str, tuple[str, ...]] | None:
    """``run.a.b`` (a ``member_dot``'s children) as ("run", ("a", "b")) when it names a
    variable's field (the caller rules out names a comprehension binds), else None."""
    names = [str(children[1])]
    tree = children[0]
    while hasattr(tree, "data") and len(tree.children) in (1, 2):
        if tree.data == "member_dot":
            names.append(str(tree.children[1]))
            tree = tree.children[0]
        elif tree.data in ("member", "primary") and len(tree.children) == 1:
            tree = tree.children[0]
        elif tree.data == "ident":
            name = str(tree.children[0])
            return (name, tuple(reversed(names))) if name in _VARIABLES else None
        else:
            return None
    return None


@dataclass(frozen=True)
class _Value:
    cost: float
    size: float
    #: Elements, when known exactly (a list read from the event); else bounded by ``size``.
    count: float | None = None


_ONE: Final = _Value(0.0, 1.0)


class _Walk:
    """One estimate: the cost and result size of each node, children first."""

    def __init__(self, sizes: Sizes) -> None:
        self._sizes = sizes
        self._bound: dict[str, float] = {}  # comprehension variables in scope
        self._depth = 0

    def cost(self, tree: Any) -> float:
        return self.visit(tree).cost

    def visit(self, tree: Any) -> _Value:
        handler = getattr(self, f"_{tree.data}", None)
        if handler is not None:
            result: _Value = handler(tree.children)
            return result
        return self._all(tree.children)  # pass-through nodes (member, primary, ...)

    def _all(self, children: list[Any]) -> _Value:
        values = [self.visit(child) for child in children if hasattr(child, "data")]
        if len(values) == 1:
            return values[0]
        return _Value(sum(v.cost for v in values), sum(v.size for v in values))

    # -- operators --------------------------------------------------------------------------
    def _expr(self, children: list[Any]) -> _Value:
        if len(children) == 1:
            return self.visit(children[0])
        condition, yes, no = (self.visit(child) for child in children)
        return _Value(condition.cost + max(yes.cost, no.cost), max(yes.size, no.size))

    def _logical(self, children: list[Any]) -> _Value:
        values = [self.visit(child) for child in children if child is not None]
        return values[0] if len(values) == 1 else _Value(sum(v.cost for v in values), 1)

    _conditionalor = _logical
    _conditionaland = _logical

    def _binary(self, children: list[Any]) -> tuple[str, _Value, _Value] | _Value:
        if len(children) == 1 or children[0] is None:
            return self.visit(children[-1])
        operator = children[0]
        return operator.data, self.visit(operator.children[0]), self.visit(children[1])

    def _relation(self, children: list[Any]) -> _Value:
        found = self._binary(children)
        if isinstance(found, _Value):
            return found
        operator, left, right = found
        # A comparison stops at the shorter side; ``in`` searches the container.
        size = right.size if operator == "relation_in" else min(left.size, right.size)
        return _Value(left.cost + right.cost + 1 + _TRAVERSE * size, 1)

    def _addition(self, children: list[Any]) -> _Value:
        found = self._binary(children)
        if isinstance(found, _Value):
            return found
        operator, left, right = found
        if operator == "addition_sub":
            return _Value(left.cost + right.cost + 1, 1)
        # String or list concatenation: a new value as long as both, copied once.
        size = left.size + right.size
        return _Value(left.cost + right.cost + 1 + _TRAVERSE * size, size)

    def _multiplication(self, children: list[Any]) -> _Value:
        found = self._binary(children)
        if isinstance(found, _Value):
            return found
        _, left, right = found
        return _Value(left.cost + right.cost + 1, 1)

    def _unary(self, children: list[Any]) -> _Value:
        if len(children) == 1:
            return self.visit(children[0])
        operand = self.visit(children[1])
        return _Value(operand.cost + (children[0].data == "unary_neg"), operand.size)

    # -- names and fields -------------------------------------------------------------------
    def _path(self, children: list[Any]) -> tuple[str, tuple[str, ...]] | None:
        found = data_path(children)
        return None if found is None or found[0] in self._bound else found

    def _member_dot(self, children: list[Any]) -> _Value:
        found = self._path(children)
        if found is not None:
            data = self._sizes(*found)
            return _Value(1 + len(found[1]), data.size, data.count)
        target = self.visit(children[0])
        return _Value(target.cost + 1, target.size)

    def _ident(self, children: list[Any]) -> _Value:
        name = str(children[0])
        if name in self._bound:
            return _Value(1, self._bound[name])
        if name in _VARIABLES:
            data = self._sizes(name, ())
            return _Value(1, data.size, data.count)
        return _Value(1, 1)

    _dot_ident = _ident

    def _member_index(self, children: list[Any]) -> _Value:
        target, index = self.visit(children[0]), self.visit(children[1])
        return _Value(target.cost + index.cost + 1, target.size)

    def _member_object(self, children: list[Any]) -> _Value:
        fields = self._all(children[1].children) if len(children) > 1 and children[1] else _ONE
        return _Value(_MAP_CREATE + fields.cost, 1 + fields.size)

    # -- literals ---------------------------------------------------------------------------
    def _literal(self, children: list[Any]) -> _Value:
        token = children[0]
        if token.type in ("STRING_LIT", "MLSTRING_LIT", "BYTES_LIT"):
            return _Value(0, len(str(token)))
        return _ONE

    def _list_lit(self, children: list[Any]) -> _Value:
        items = self._items(children)
        return _Value(_LIST_CREATE + sum(i.cost for i in items), 1 + sum(i.size + 1 for i in items))

    def _map_lit(self, children: list[Any]) -> _Value:
        items = self._items(children)
        return _Value(_MAP_CREATE + sum(i.cost for i in items), 1 + sum(i.size + 1 for i in items))

    def _items(self, children: list[Any]) -> list[_Value]:
        if not children or children[0] is None:
            return []
        return [self.visit(child) for child in children[0].children if hasattr(child, "data")]

    # -- calls ------------------------------------------------------------------------------
    def _ident_arg(self, children: list[Any]) -> _Value:
        name = str(children[0])
        args = self._items(children[1:])
        cost = sum(a.cost for a in args)
        size = sum(a.size for a in args) or 1
        if name == "has":
            return _Value(cost, 1)
        if name == "dyn":
            return _Value(cost, size)
        if name == "size":
            return _Value(cost + 1, 1)
        if name == "string":
            return _Value(cost + 1 + _TRAVERSE * size, max(size, 32))
        return _Value(cost + 1 + _TRAVERSE * size, size)

    _dot_ident_arg = _ident_arg

    def _member_dot_arg(self, children: list[Any]) -> _Value:
        method = str(children[1])
        if method in _MACROS:
            return self._comprehension(method, children)
        if method == "reduce":
            raise CostError("reduce() is not allowed: its accumulator can grow without bound")
        target = self.visit(children[0])
        args = self._items(children[2:])
        cost = target.cost + sum(a.cost for a in args) + 1
        sizes = target.size + sum(a.size for a in args)
        if method == "size" or method.startswith("get"):
            return _Value(cost, 1)
        if method in ("startsWith", "endsWith"):
            return _Value(cost + _TRAVERSE * min([target.size, *(a.size for a in args)]), 1)
        if method in _PREDICATES:
            return _Value(cost + _TRAVERSE * sizes, 1)
        if method == "replace" and len(args) >= 2:
            # Every character may become the replacement.
            size = target.size * (1 + args[1].size)
            return _Value(cost + _TRAVERSE * size, size)
        if method == "join" and args:
            size = target.size * (1 + args[0].size)
            return _Value(cost + _TRAVERSE * size, size)
        if method == "split":
            return _Value(cost + _TRAVERSE * sizes, 2 * target.size + 2)
        return _Value(cost + _TRAVERSE * sizes, sizes)

    def _comprehension(self, method: str, children: list[Any]) -> _Value:
        arguments = [c for c in children[2].children if hasattr(c, "data")] if children[2:] else []
        # Leading bare names are the loop variables (one, or two where an engine allows
        # ``exists(i, v, ...)``); the rest are bodies, all run per element (``map(x, filter,
        # transform)`` has two).
        names: list[str] = []
        for argument in arguments[:2]:
            if argument.data != "ident" or len(arguments) - len(names) < 2:
                break
            names.append(str(argument.children[0]))
        bodies = arguments[len(names) :]
        if not names or not bodies:
            return self._all(arguments)  # not a comprehension any engine runs
        source = self.visit(children[0])
        self._depth += 1
        if self._depth > MAX_NESTING:
            raise CostError(f"comprehensions are nested more than {MAX_NESTING} deep")
        # Elements measure at least 1 and take one more each in their list: at most
        # (s-1)/2 of them. Costs are convex in sizes, so they peak at an extreme shape: all
        # elements small, or all small but one, which has the rest of the measure.
        small = self._body(names, 1, bodies)
        if source.count is not None:
            count = source.count
            big = self._body(names, max(1.0, source.size - 2 * count), bodies)
            iterations = count * _ITERATION + max(0, count - 1) * small.cost + big.cost
            iterations = iterations if count else 0
        else:
            count = max(0.0, math.floor((source.size - 1) / 2))
            big = self._body(names, max(1.0, source.size - 2), bodies)
            iterations = max(count * (_ITERATION + small.cost), _ITERATION + big.cost)
        self._depth -= 1
        cost = source.cost + iterations
        if method == "map":
            size = 1 + max(count * (small.size + 1), big.size + 1)
            return _Value(cost + count, size)
        if method == "filter":
            return _Value(cost + count, source.size)
        return _Value(cost, 1)

    def _body(self, names: list[str], size: float, bodies: list[Any]) -> _Value:
        """The bodies' cost with the loop variables bound to an element of ``size``; the
        result's size is the last body's (a map's transform)."""
        previous = {name: self._bound.get(name) for name in names}
        self._bound.update(dict.fromkeys(names, size))
        try:
            values = [self.visit(body) for body in bodies]
            return _Value(sum(v.cost for v in values), values[-1].size)
        finally:
            for name, value in previous.items():
                if value is None:
                    del self._bound[name]
                else:
                    self._bound[name] = value
