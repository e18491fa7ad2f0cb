"""CEL ``when`` expressions: compiled once per policy generation, evaluated per candidate.

Two engines behind one interface, chosen with ``NOTIFICATIONS_CEL_ENGINE=rust|python``:

- ``rust`` (default): the ``common-expression-language`` package (a dependency), 25-60x faster
  per evaluation than cel-python and closer to the CEL specification on the project's
  conformance cases (bench/README.md, "CEL engines"; docs/policies.md lists the departures).
  If it cannot be imported, the python engine is used and a warning logged.
- ``python``: cel-python's InterpretedRunner. Its CompiledRunner is ~5x faster but was
  measured to get CEL's error-absorbing ``&&``/``||`` wrong (``has(x.y) && x.y.z`` raises
  instead of returning false), and ``has()`` guards are the idiom users write.

The engines agree on the tables in tests/core/test_cel_engines.py, which also pin down where
they differ: cel-python has no heterogeneous equality (``1 == 1.0``, ``event.duration != null``
on a number are errors), and the Rust engine's ``size()`` counts a string's UTF-8 bytes.
Error messages are normalised to the same wording for the same kind of error.

Every expression's cost is bounded (:mod:`tekton_notifications.celcost`): refused when it
compiles if its worst case is over the static limit, refused before each evaluation if the
estimate with the event's actual sizes is over the engine's budget, and, on cel-python, stopped
by a step counter if it runs past that budget anyway (:class:`CelCostError` each time).

Converting Tekton data to CEL values costs more than most evaluations, so an
:class:`Activation` keeps the plain values and converts each variable lazily, once per event
and engine, and only when a compiled expression refers to it.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import logging
import re
import sys
import threading
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

from tekton_notifications import celcheck, celcost, celparse

logger = logging.getLogger(__name__)

#: Variables a ``when`` expression may use; documented in docs/policies.md.
VARIABLES: Final = ("run", "event", "policy")
#: The environment variable that picks the engine.
ENGINE_VARIABLE: Final = "NOTIFICATIONS_CEL_ENGINE"
ENGINES: Final = ("python", "rust")
DEFAULT_ENGINE: Final = "rust"


class CelError(ValueError):
    """A CEL expression that does not compile, fails at run time, or is not boolean."""


class CelCostError(CelError):
    """An expression over its cost limits: at load, before an evaluation, or during one."""

    reason: Final = celcost.REASON


class CelCheckError(CelError):
    """An expression that reads a field its variable does not have, compares a field with a
    literal of another type, or is not a bool (:mod:`celcheck`): it could never match."""

    reason: Final = celcheck.REASON


#: cel-python's step counter allows this many parse-tree nodes visited per unit of the
#: per-evaluation budget: above what the estimate allows (measured: 1-7 steps per unit on the
#: expressions of tests/core/test_cel_cost.py), so it stops what the estimate missed.
STEPS_PER_UNIT: Final = 10


#: Field paths under a variable that an expression may read; ``()`` means all of it.
Paths = frozenset[tuple[str, ...]]
WHOLE: Final[Paths] = frozenset({()})


class Lazy:
    """A variable's value made on first use: the event's view, which most expressions (those
    reading only ``run``) never need."""

    __slots__ = ("make",)

    def __init__(self, make: Callable[[], Any]) -> None:
        self.make = make


class Activation(dict[str, Any]):
    """The variables' plain values, plus each engine's conversion of them, made on demand.

    :func:`activation` builds one per event; :func:`with_policy` derives a child that shares
    its parent's conversions of ``run`` and ``event`` and adds its own ``policy``. What is
    converted is only the part of a variable that the expressions evaluated so far read.
    """

    def __init__(self, values: Mapping[str, Any], parent: Activation | None = None) -> None:
        super().__init__(values)
        self._parent = parent
        self._own = frozenset(values) if parent is None else frozenset({"policy"})
        self._converted: dict[tuple[str, str], tuple[Paths, Any]] = {}
        #: The Rust engine's per-event context (mutated under the lock: policy swaps in).
        self.lock = threading.Lock()
        self.context: Any = None
        #: Which activation's value of each variable the context holds, and how much of it.
        self.context_sources: dict[str, tuple[Activation, Paths]] = {}
        self._shapes: dict[tuple[str, tuple[str, ...]], celcost.Shape] = {}

    def __getitem__(self, name: str) -> Any:
        value = super().__getitem__(name)
        if isinstance(value, Lazy):
            value = value.make()
            super().__setitem__(name, value)
        return value

    @property
    def root(self) -> Activation:
        return self if self._parent is None else self._parent

    def holder(self, name: str) -> Activation:
        """The activation whose value of ``name`` this one uses (itself, or its parent)."""
        return self if self._parent is None or name in self._own else self._parent

    def converted(self, engine: str, name: str, paths: Paths, convert: Callable[[Any], Any]) -> Any:
        """``convert`` applied to the plain form of what ``paths`` reach in variable ``name``,
        cached where the variable lives; widened when an expression reads more of it."""
        holder = self.holder(name)
        key = (engine, name)
        cached = holder._converted.get(key)
        if cached is not None and covers(cached[0], paths):
            return cached[1]
        wanted = paths if cached is None else union(cached[0], paths)
        value = convert(_plain(prune(holder[name], wanted)))
        holder._converted[key] = (wanted, value)
        return value

    def shape(self, name: str, path: tuple[str, ...]) -> celcost.Shape:
        """The size of what ``path`` reaches in variable ``name``, measured once per event."""
        holder = self.holder(name)
        key = (name, path)
        found = holder._shapes.get(key)
        if found is None:
            found = holder._shapes[key] = celcost.shape(celcost.lookup(holder[name], path))
        return found


@dataclass(frozen=True)
class Expression:
    source: str
    _program: Any
    #: The engine that compiled it: evaluation uses the same one.
    engine: str = DEFAULT_ENGINE
    #: The variables the expression refers to, with the field paths it reads in each.
    paths: Mapping[str, Paths] = field(default_factory=lambda: dict.fromkeys(VARIABLES, WHOLE))
    #: The parsed expression the cost is estimated on, and its load-time estimate.
    plan: celcost.Plan | None = None
    cost: celcost.Static | None = None

    @property
    def variables(self) -> frozenset[str]:
        return frozenset(self.paths)

    def evaluate(self, activation: Mapping[str, Any]) -> bool:
        """Evaluate against an activation from :func:`activation`; non-bool is an error."""
        if not isinstance(activation, Activation):
            activation = Activation(activation)
        self.check_cost(activation)
        return _engine(self.engine).evaluate(self, activation)

    @property
    def budget(self) -> int:
        """Cost units one evaluation may spend on this expression's engine."""
        return celcost.RUNTIME_BUDGET[self.engine]

    def check_cost(self, activation: Activation) -> float:
        """The estimate with this event's sizes; :class:`CelCostError` when over budget."""
        if self.plan is None or (
            self.cost is not None and celcost.fits(self.cost, activation.shape)
        ):
            return 0.0
        try:
            return celcost.check(self.plan, activation.shape, budget=self.budget)
        except celcost.CostError as error:
            raise CelCostError(str(error)) from None


def compile_expression(
    source: str,
    engine: str | None = None,
    *,
    checked: bool = True,
    kinds: Collection[str] = (),
) -> Expression:
    """Parse and prepare ``source``; raises :class:`CelError` with the parser's message,
    :class:`CelCostError` when it is too long or its estimated cost is over the limits, and
    :class:`CelCheckError` when it reads what its variables cannot hold for events of the run
    ``kinds`` (a policy's ``spec.selector.kinds``; empty: any) (unless not ``checked``: the
    language's own tests give the variables other values than events)."""
    if len(source) > celcost.MAX_LENGTH:  # before parsing: parsing costs time in the length
        raise CelCostError(
            f"expression of {len(source)} characters is longer than the limit of "
            f"{celcost.MAX_LENGTH}"
        )
    expression = _engine(engine or selected_engine()).compile(source)
    assert expression.plan is not None  # both engines make one
    try:
        cost = celcost.static(expression.plan, budget=expression.budget)
    except celcost.CostError as error:
        raise CelCostError(str(error)) from None
    try:
        if checked:
            celcheck.check(expression.plan, cost.paths, kinds)
    except celcheck.CheckError as error:
        raise CelCheckError(str(error)) from None
    return replace(expression, cost=cost)


def activation(
    *, run: Mapping[str, Any], event: Mapping[str, Any] | Lazy, policy: Mapping[str, Any]
) -> Activation:
    """The variables of one event; conversion to CEL values happens on first use (and a
    :class:`Lazy` value is made then)."""
    return Activation({"run": run, "event": event, "policy": policy})


def with_policy(base: Mapping[str, Any], policy: Mapping[str, Any]) -> Activation:
    """An event's activation with one policy's variable swapped in (cheap: nothing converted)."""
    parent = base if isinstance(base, Activation) else Activation(base)
    return Activation({**parent, "policy": policy}, parent=parent.root)


_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_CHAIN = re.compile(rf"(?:\s*\.\s*{_IDENT})*")


def read_paths(source: str, variable: str) -> Paths:
    """The field paths ``source`` reads under ``variable``: a conservative superset.

    Each mention ``run.a.b`` reads ``(a, b)`` and whatever is below it; a method call ends the
    path (``run.a.b.size()`` reads ``(a, b)``); anything else (``run[...]``, ``run`` alone,
    ``x.run``, a mention in a string) counts as reading all of ``run``. Dropping only map
    keys that no path names cannot change a result: those keys are never looked at.
    """
    found: set[tuple[str, ...]] = set()
    for mention in re.finditer(rf"\b{variable}\b", source):
        if source[: mention.start()].rstrip().endswith("."):
            return WHOLE
        chain = _CHAIN.match(source, mention.end())
        assert chain is not None  # the pattern matches the empty string
        segments = tuple(re.findall(_IDENT, chain.group(0)))
        if segments and source[chain.end() :].lstrip().startswith("("):
            segments = segments[:-1]
        found.add(segments)
    return union(frozenset(found), frozenset()) if found else WHOLE


def covers(loaded: Paths, wanted: Paths) -> bool:
    """Whether what ``loaded`` reaches includes everything ``wanted`` reaches."""
    return all(any(path[: len(have)] == have for have in loaded) for path in wanted)


def union(first: Paths, second: Paths) -> Paths:
    both = first | second
    return frozenset(
        path
        for path in both
        if not any(other != path and path[: len(other)] == other for other in both)
    )


def prune(value: Any, paths: Paths) -> Any:
    """``value`` with only the map keys on ``paths`` (lists and scalars are kept whole)."""
    if () in paths or not isinstance(value, Mapping):
        return value
    heads: dict[str, set[tuple[str, ...]]] = {}
    for path in paths:
        heads.setdefault(path[0], set()).add(path[1:])
    return {key: prune(value[key], frozenset(rest)) for key, rest in heads.items() if key in value}


def selected_engine() -> str:
    """The engine new expressions compile with: the one :func:`configure` or
    :func:`set_engine` chose, else the default. The core reads no environment itself."""
    return _selected or DEFAULT_ENGINE


def configure(environ: Mapping[str, str]) -> str:
    """Choose the engine from ``NOTIFICATIONS_CEL_ENGINE`` in ``environ``: called by the edges
    (a function's start, the CLI), so the filter and ``tkn-notify explain`` decide alike."""
    return set_engine(environ.get(ENGINE_VARIABLE) or None)


def set_engine(name: str | None) -> str:
    """Use engine ``name`` from now on (None: the default), if it can be used here.
    Expressions keep the engine that compiled them."""
    global _selected
    _selected = None if name is None else _choose(name)
    return selected_engine()


def available_engines() -> tuple[str, ...]:
    """The engines installed in this environment."""
    return tuple(name for name in ENGINES if name == "python" or _rust_installed())


def _choose(requested: str) -> str:
    requested = requested.strip().lower() or DEFAULT_ENGINE
    if requested not in ENGINES:
        logger.warning(
            "%s=%r is not one of %s; using %s", ENGINE_VARIABLE, requested, ENGINES, DEFAULT_ENGINE
        )
        requested = DEFAULT_ENGINE
    if requested == "rust" and not _rust_installed():
        logger.warning(
            "the rust CEL engine (common-expression-language) is not installed; using python"
        )
        return "python"
    return requested


_selected: str | None = None


# -- engines -------------------------------------------------------------------------------


class _PythonEngine:
    """cel-python, InterpretedRunner (imported on first use: ~0.1-0.2 s)."""

    name = "python"

    def __init__(self) -> None:
        import celpy
        from celpy import celtypes
        from celpy.adapter import json_to_cel
        from celpy.celparser import CELParseError
        from celpy.evaluation import CELEvalError, Evaluator

        # celpy logs every evaluation error at ERROR before raising; we report them ourselves.
        logging.getLogger("celpy").setLevel(logging.CRITICAL)
        celparse.install()  # before celpy.Environment, which builds celpy's parser otherwise
        self._environment = celpy.Environment(runner_class=celpy.InterpretedRunner)
        self._parse_error: type[Exception] = CELParseError
        self._eval_error: type[Exception] = CELEvalError
        self._bool = celtypes.BoolType
        self._json_to_cel = json_to_cel
        self._type_names = {
            celtypes.BoolType: "bool",
            celtypes.IntType: "int",
            celtypes.UintType: "uint",
            celtypes.DoubleType: "double",
            celtypes.StringType: "string",
            celtypes.BytesType: "bytes",
            celtypes.ListType: "list",
            celtypes.MapType: "map",
            celtypes.TimestampType: "timestamp",
            celtypes.DurationType: "duration",
            type(None): "null_type",
        }
        self._evaluator = _budgeted(Evaluator)

    def compile(self, source: str) -> Expression:
        try:
            tree = self._environment.compile(source)
            program = self._environment.program(tree)
        except self._parse_error as error:
            raise CelError(f"syntax error: {' '.join(str(error).split())}") from None
        except Exception as error:
            raise CelError(f"{type(error).__name__}: {error}") from None
        variables = [v for v in VARIABLES if re.search(rf"\b{v}\b", source)]
        paths = {name: read_paths(source, name) for name in variables}
        plan = celcost.Plan(source, tree)
        return Expression(source, program, self.name, paths, plan)

    def evaluate(self, expression: Expression, activation: Activation) -> bool:
        try:
            values = {
                name: activation.converted(self.name, name, paths, self._json_to_cel)
                for name, paths in expression.paths.items()
                if name in activation
            }
            program = expression._program
            evaluator = self._evaluator(
                program.ast, program.new_activation(), _Steps(expression.budget * STEPS_PER_UNIT)
            )
            result = evaluator.evaluate(values)
        except _Exhausted as exhausted:
            raise CelCostError(str(exhausted)) from None
        except self._eval_error as error:
            raise CelError(self._describe(error)) from None
        except CelError:
            raise
        except Exception as error:  # celpy surfaces Python errors from its builtins
            raise CelError(f"{type(error).__name__}: {error}") from None
        if isinstance(result, self._eval_error):
            raise CelError(self._describe(result))
        if not isinstance(result, self._bool):
            raise CelError(_not_bool(self._type_name(result), result))
        return bool(result)

    def _type_name(self, value: object) -> str:
        for kind, name in self._type_names.items():
            if isinstance(value, kind):
                return name
        return type(value).__name__

    @staticmethod
    def _describe(error: Any) -> str:
        """celpy's errors are ``(message, exception type, inner args)``: name the kind."""
        args = tuple(getattr(error, "args", ()))
        message = str(args[0]) if args else str(error)
        kind = args[1] if len(args) > 1 and isinstance(args[1], type) else None
        inner = args[2] if len(args) > 2 and isinstance(args[2], tuple) else ()
        if message.startswith("undeclared reference to"):
            return message.split(" (in activation", 1)[0]
        if kind is not None and issubclass(kind, KeyError):
            if message.startswith("no such member"):
                return message
            return f"no such member in mapping: {str(inner[0]) if inner else message!r}"
        if kind is not None and issubclass(kind, ZeroDivisionError):
            return "division or modulo by zero"
        if kind is not None and issubclass(kind, IndexError):
            return "index out of range"
        if "overflow" in inner:
            return "overflow"
        if "overload" in message:
            detail = str(inner[0]) if inner else message
            return f"no such overload: {detail}" if "overload" not in detail else detail
        while inner and isinstance(inner[-1], tuple) and inner[-1]:
            inner = inner[-1]
        return str(inner[0]) if inner else message


class _RustEngine:
    """common-expression-language: one mutable ``cel.Context`` per event, policy swapped in."""

    name = "rust"

    def __init__(self) -> None:
        self._cel = _load_rust()

    def compile(self, source: str) -> Expression:
        try:
            program = self._cel.compile(source)
        except ValueError as error:
            raise CelError(_rust_syntax_error(str(error))) from None
        except Exception as error:
            raise CelError(f"{type(error).__name__}: {error}") from None
        variables = [v for v in VARIABLES if v in program.variables()]
        paths = {name: read_paths(source, name) for name in variables}
        try:
            plan = celcost.plan(source)
        except celcost.CostError as error:
            raise CelCostError(str(error)) from None
        except Exception as error:  # fail closed: what cannot be estimated does not run
            raise CelError(
                f"its cost cannot be estimated (cel-python does not parse it): "
                f"{' '.join(str(error).split())[:300]}"
            ) from None
        return Expression(source, program, self.name, paths, plan)

    def evaluate(self, expression: Expression, activation: Activation) -> bool:
        root = activation.root
        try:
            with root.lock:
                if root.context is None:
                    root.context = self._cel.Context()
                for name, paths in expression.paths.items():
                    if name not in activation:
                        continue
                    holder = activation.holder(name)
                    # run and event are loaded once per event (widened if an expression reads
                    # more of them); policy whenever the policy changes.
                    source, loaded = root.context_sources.get(name, (None, frozenset()))
                    if source is not holder or not covers(loaded, paths):
                        wanted = paths if source is not holder else union(loaded, paths)
                        root.context.add_variable(name, _plain(prune(holder[name], wanted)))
                        root.context_sources[name] = (holder, wanted)
                result = expression._program.execute(root.context)
        except Exception as error:
            raise CelError(_rust_error(error)) from None
        if not isinstance(result, bool):
            raise CelError(_not_bool(_rust_type_name(result), result))
        return result


class _Exhausted(Exception):  # not an error of the expression's: the budget ran out
    """Raised inside cel-python's evaluator when the steps run out (no CEL code catches it)."""


class _Steps:
    """The parse-tree nodes an evaluation may still visit, shared by its nested evaluators."""

    __slots__ = ("budget", "left")

    def __init__(self, budget: int) -> None:
        self.budget = self.left = budget


def _budgeted(evaluator: type[Any]) -> type[Any]:
    """cel-python's Evaluator, spending one step per node it visits.

    Pure Python cannot be interrupted from another thread, so the evaluation counts its own
    work and stops itself: every node (and so every comprehension iteration, which visits its
    body) goes through ``_visit_tree``, and macros evaluate their bodies with
    ``sub_evaluator``, which shares the counter.
    """

    class Budgeted(evaluator):  # type: ignore[misc]
        def __init__(self, ast: Any, activation: Any, steps: _Steps) -> None:
            super().__init__(ast, activation)
            self.steps = steps

        def sub_evaluator(self, ast: Any) -> Any:
            return Budgeted(ast, self.activation, self.steps)

        def _visit_tree(self, tree: Any) -> Any:
            steps = self.steps
            steps.left -= 1
            if steps.left < 0:
                raise _Exhausted(
                    f"evaluation stopped after {steps.budget:,} steps: over the "
                    f"per-evaluation budget"
                )
            return super()._visit_tree(tree)

    return Budgeted


def _load_rust() -> Any:
    """The Rust extension module, without the ``cel`` package's ``__init__``.

    That ``__init__`` imports the package's command-line tool (typer, prompt_toolkit,
    pygments): ~0.25 s of every cold start for nothing. The extension is loaded from its file
    under its own name (``cel.cel``), so a later ``import cel`` reuses it.
    """
    loaded = sys.modules.get("cel.cel")
    if loaded is not None:
        return loaded
    spec = importlib.util.find_spec("cel")
    for location in (spec.submodule_search_locations or []) if spec else []:
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            path = Path(location) / f"cel{suffix}"
            extension = importlib.util.spec_from_file_location("cel.cel", path)
            if not path.is_file() or extension is None or extension.loader is None:
                continue
            module = importlib.util.module_from_spec(extension)
            extension.loader.exec_module(module)
            if hasattr(module, "compile") and hasattr(module, "Context"):
                sys.modules["cel.cel"] = module
                return module
    import cel  # the package as published, if its layout ever changes

    return cel


def _rust_installed() -> bool:
    spec = importlib.util.find_spec("cel")
    return spec is not None and bool(spec.submodule_search_locations)


_RUST_SYNTAX = re.compile(r"<input>:(\d+:\d+): Syntax error: (.*)")


def _rust_syntax_error(message: str) -> str:
    found = _RUST_SYNTAX.search(message)
    detail = f"{found.group(1)}: {found.group(2)}" if found else message.splitlines()[0]
    return f"syntax error: {' '.join(detail.split())}"


def _rust_error(error: Exception) -> str:
    """The Rust engine's exceptions, in the words the python engine's errors use."""
    text = str(error)
    if isinstance(error, KeyError):
        return f"no such member in mapping: {error.args[0]!r}" if error.args else text
    if isinstance(error, ZeroDivisionError):
        return "division or modulo by zero"
    if isinstance(error, IndexError):
        return "index out of range"
    if isinstance(error, OverflowError):
        return "overflow"
    if isinstance(error, TypeError) and text.startswith("No such overload"):
        return "no such overload"
    found = re.match(r"Undefined variable or function: ('[^']*')", text)
    if found:
        return f"undeclared reference to {found.group(1)}"
    return f"{type(error).__name__}: {text}"


def _rust_type_name(value: object) -> str:
    import datetime

    for kind, name in (
        (bool, "bool"),
        (int, "int"),
        (float, "double"),
        (str, "string"),
        (bytes, "bytes"),
        (list, "list"),
        (dict, "map"),
        (datetime.datetime, "timestamp"),
        (datetime.timedelta, "duration"),
        (type(None), "null_type"),
    ):
        if isinstance(value, kind):
            return name
    return type(value).__name__


def _not_bool(type_name: str, value: object) -> str:
    return f"must evaluate to bool, got {type_name}: {_short(value)}"


def _short(value: object) -> str:
    try:
        text = json.dumps(value, default=str, ensure_ascii=False, sort_keys=True)
    except (TypeError, ValueError):
        text = str(value)
    return text if len(text) <= 200 else text[:197] + "..."


_ENGINES: dict[str, _PythonEngine | _RustEngine] = {}
_ENGINES_LOCK = threading.Lock()


def _engine(name: str) -> _PythonEngine | _RustEngine:
    try:
        return _ENGINES[name]
    except KeyError:
        pass
    if name not in ENGINES:
        raise CelError(f"unknown CEL engine {name!r}; one of {', '.join(ENGINES)}")
    with _ENGINES_LOCK:
        if name not in _ENGINES:
            _ENGINES[name] = _PythonEngine() if name == "python" else _RustEngine()
        return _ENGINES[name]


def _plain(value: Any) -> Any:
    """Engines want plain dicts/lists; Tekton data may hold read-only mappings."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value
