"""The Python CEL engines side by side: conformance, type checking, cost limits, speed.

``python -m bench --only cel-engines`` (rows in the bench table) or ``python -m
bench.cel_engines`` (one wide table, an engine per column; ``--markdown`` for the README).

Engines: cel-python (``celpy``, InterpretedRunner, the project's default), the Rust-backed
common-expression-language (module ``cel``, the project's ``rust`` engine) and Google's
cel-expr-python (wraps cel-cpp; module ``cel_expr_python``), each used directly, not through
``tekton_notifications.cel``, so that engines the project does not support are measured
alike. An engine that is not installed is reported as such; to include cel-expr-python
without adding it to the project, install it elsewhere and put it on ``PYTHONPATH``.

Conformance comes from two sources:

- the CEL specification's own conformance data (``tests/simple/testdata/*.textproto`` of a
  local cel-spec checkout named by ``--cel-spec`` or ``$CEL_SPEC_DIR``; it is not part of
  this repository; bench/cel_spec.py reads it). Tests that need protobuf messages, a
  container or extensions are counted as not applicable;
- the project's table derived from the language definition
  (tests/core/test_cel_conformance.py), grouped by the features policies use.

Per-evaluation cost is measured on the project's policy corpus (every ``when`` in
examples/, tests' data and docs, and the tests' expressions: tests/core/test_cel_engines.py
``policy_corpus``) against every event in examples/events/, with variables converted once
per event as the policy filter does.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.metadata
import importlib.util
import logging
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from bench.cel_spec import (
    ERROR,
    SPEC_FILES,
    NotApplicable,
    TypeName,
    Uint,
    canonical,
    spec_tests,
)
from bench.table import Row, format_number, ratio

SPEC_VARIABLE: Final = "CEL_SPEC_DIR"

# -- engines --------------------------------------------------------------------------------


class Engine:
    """One CEL implementation, used directly. ``declarations`` are the variables' CEL types
    (``dyn`` when unknown); only engines with a type checker use them."""

    name: str = ""
    package: str = ""
    module: str = ""
    #: Whether results keep uint apart from int.
    uint_results: bool = True
    #: Where the project's ``tekton_notifications.cel`` names this engine, if it supports it.
    project_name: str | None = None
    #: Import and first compile, whose cost is measured in a fresh interpreter.
    import_statement: str = ""

    def compile(self, source: str, declarations: Mapping[str, Any], checked: bool) -> Any:
        raise NotImplementedError

    def bind(self, program: Any, variables: Mapping[str, Any]) -> Any:
        """The variables converted once (per event), reused by every evaluation."""
        raise NotImplementedError

    def run(self, program: Any, bound: Any) -> Any:
        """Evaluate; raise on an error; return the engine's own result."""
        raise NotImplementedError

    def plain(self, result: Any) -> Any:
        """The result as Python values (:class:`Uint`, :class:`TypeName` where known)."""
        return result

    def evaluate(self, source: str, variables: Mapping[str, Any], **options: Any) -> Any:
        """Compile and evaluate once: the result as plain values, or ``ERROR``."""
        try:
            program = self.compile(source, options.get("declarations", {}), options["checked"])
            return self.plain(self.run(program, self.bind(program, variables)))
        except NotApplicable:
            raise
        except Exception:
            return ERROR

    def compile_time_errors(self, source: str, declarations: Mapping[str, Any]) -> bool:
        """Whether ``source`` is refused before any evaluation."""
        try:
            self.compile(source, declarations, True)
        except Exception:
            return True
        return False


class CelPython(Engine):
    name = "cel-python"
    package = "cel-python"
    module = "celpy"
    project_name = "python"
    import_statement = "import celpy; celpy.Environment().compile('1 == 1')"

    def __init__(self) -> None:
        import celpy
        from celpy import celtypes

        logging.getLogger("celpy").setLevel(logging.CRITICAL)
        self._celpy = celpy
        self._types = celtypes
        self._environment = celpy.Environment(runner_class=celpy.InterpretedRunner)
        self._error = celpy.evaluation.CELEvalError
        self._type_names = {
            celtypes.BoolType: "bool",
            celtypes.IntType: "int",
            celtypes.UintType: "uint",
            celtypes.DoubleType: "double",
            celtypes.StringType: "string",
            celtypes.BytesType: "bytes",
            celtypes.ListType: "list",
            celtypes.MapType: "map",
            celtypes.TimestampType: "google.protobuf.Timestamp",
            celtypes.DurationType: "google.protobuf.Duration",
            celtypes.TypeType: "type",
            type(None): "null_type",
        }

    def compile(self, source: str, declarations: Mapping[str, Any], checked: bool) -> Any:
        return self._environment.program(self._environment.compile(source))

    def bind(self, program: Any, variables: Mapping[str, Any]) -> Any:
        return {name: self._to_cel(value) for name, value in variables.items()}

    def run(self, program: Any, bound: Any) -> Any:
        result = program.evaluate(bound)
        if isinstance(result, self._error):
            raise ValueError(result)
        return result

    def _to_cel(self, value: Any) -> Any:
        t = self._types
        if isinstance(value, bool):
            return t.BoolType(value)
        if isinstance(value, Uint):
            return t.UintType(int(value))
        if isinstance(value, int):
            return t.IntType(value)
        if isinstance(value, float):
            return t.DoubleType(value)
        if isinstance(value, str):
            return t.StringType(value)
        if isinstance(value, bytes):
            return t.BytesType(value)
        if isinstance(value, list):
            return t.ListType([self._to_cel(item) for item in value])
        if isinstance(value, dict):
            return t.MapType({self._to_cel(k): self._to_cel(v) for k, v in value.items()})
        if isinstance(value, datetime.datetime):
            return t.TimestampType(value)
        if isinstance(value, datetime.timedelta):
            return t.DurationType(value)
        return value

    def plain(self, result: Any) -> Any:
        t = self._types
        if isinstance(result, type):
            return TypeName(self._type_names.get(result, result.__name__))
        if isinstance(result, t.BoolType):
            return bool(result)
        if isinstance(result, t.UintType):
            return Uint(int(result))
        if isinstance(result, int):
            return int(result)
        if isinstance(result, float):
            return float(result)
        if isinstance(result, str):
            return str(result)
        if isinstance(result, bytes):
            return bytes(result)
        if isinstance(result, list):
            return [self.plain(item) for item in result]
        if isinstance(result, dict):
            return {self.plain(k): self.plain(v) for k, v in result.items()}
        return result


class CommonExpressionLanguage(Engine):
    name = "common-expression-language"
    package = "common-expression-language"
    module = "cel"
    uint_results = False
    project_name = "rust"
    import_statement = "from tekton_notifications import cel; cel._load_rust().compile('1 == 1')"

    def __init__(self) -> None:
        from tekton_notifications import cel

        self._cel = cel._load_rust()

    def compile(self, source: str, declarations: Mapping[str, Any], checked: bool) -> Any:
        return self._cel.compile(source)

    def bind(self, program: Any, variables: Mapping[str, Any]) -> Any:
        context = self._cel.Context()
        for name, value in variables.items():
            context.add_variable(name, _fold_uint(value))
        return context

    def run(self, program: Any, bound: Any) -> Any:
        return program.execute(bound)

    def plain(self, result: Any) -> Any:
        # type() answers the type's name as a string: a type-valued spec test accepts it.
        return result


class CelExprPython(Engine):
    name = "cel-expr-python"
    package = "cel-expr-python"
    module = "cel_expr_python"
    import_statement = "from cel_expr_python import cel; cel.NewEnv(variables={}).compile('1 == 1')"

    def __init__(self) -> None:
        from cel_expr_python import cel  # type: ignore[import-not-found,unused-ignore]

        self._cel = cel
        self._environments: dict[tuple[tuple[str, str], ...], Any] = {}

    def environment(self, declarations: Mapping[str, Any]) -> Any:
        key = tuple(sorted((name, repr(kind)) for name, kind in declarations.items()))
        if key not in self._environments:
            variables = {name: self._type(kind) for name, kind in declarations.items()}
            self._environments[key] = self._cel.NewEnv(variables=variables)
        return self._environments[key]

    def _type(self, kind: Any) -> Any:
        t = self._cel.Type
        if isinstance(kind, tuple) and kind[0] == "list":
            return t.List(self._type(kind[1]))
        if isinstance(kind, tuple) and kind[0] == "map":
            return t.Map(self._type(kind[1]), self._type(kind[2]))
        return {
            "int": t.INT,
            "uint": t.UINT,
            "double": t.DOUBLE,
            "string": t.STRING,
            "bool": t.BOOL,
            "bytes": t.BYTES,
            "null": t.NULL,
            "timestamp": t.TIMESTAMP,
            "duration": t.DURATION,
        }.get(kind, t.DYN)

    def compile(self, source: str, declarations: Mapping[str, Any], checked: bool) -> Any:
        environment = self.environment(declarations)
        return environment, environment.compile(source, disable_check=not checked)

    def bind(self, program: Any, variables: Mapping[str, Any]) -> Any:
        """An Activation: converted once, shared by the programs of the same environment."""
        return program[0].Activation(_fold_uint(dict(variables)))

    def run(self, program: Any, bound: Any) -> Any:
        result = program[1].eval(bound)
        if result.type() == self._cel.Type.ERROR:
            raise ValueError(result.value())
        return result

    def plain(self, result: Any) -> Any:
        t = self._cel.Type
        kind = result.type()
        value = result.value()
        if kind == t.UINT:
            return Uint(value)
        if kind == t.TYPE:
            name = value.name().split("<", 1)[0]
            return TypeName(_CPP_TYPE_NAMES.get(name, name.lower()))
        if isinstance(value, bytearray):
            return bytes(value)
        if isinstance(value, list):
            return [self.plain(item) for item in value]
        if isinstance(value, dict):
            return {k: self.plain(v) for k, v in value.items()}
        return value

    def is_boolean(self, program: Any) -> bool:
        kind = program[1].return_type()
        return bool(kind == self._cel.Type.BOOL or kind == self._cel.Type.DYN)


_CPP_TYPE_NAMES: Final = {
    "NULL": "null_type",
    "TIMESTAMP": "google.protobuf.Timestamp",
    "DURATION": "google.protobuf.Duration",
}

ENGINE_CLASSES: Final[tuple[type[Engine], ...]] = (
    CelPython,
    CommonExpressionLanguage,
    CelExprPython,
)


def _fold_uint(value: Any) -> Any:
    if isinstance(value, Uint):
        return int(value)
    if isinstance(value, list):
        return [_fold_uint(item) for item in value]
    if isinstance(value, dict):
        return {_fold_uint(k): _fold_uint(v) for k, v in value.items()}
    return value


def installed_engines() -> tuple[list[Engine], list[str]]:
    engines: list[Engine] = []
    missing: list[str] = []
    for kind in ENGINE_CLASSES:
        if importlib.util.find_spec(kind.module) is None:
            missing.append(kind.name)
            continue
        try:
            engines.append(kind())
        except Exception as error:  # installed but unusable here: say why
            missing.append(f"{kind.name} ({type(error).__name__}: {error})")
    return engines, missing


# -- checking ------------------------------------------------------------------------------


def passes(engine: Engine, result: Any, expected: Any) -> bool:
    if isinstance(expected, str) and expected == ERROR:
        return isinstance(result, str) and result == ERROR
    if isinstance(expected, TypeName) and isinstance(result, str) and not engine.uint_results:
        return result == expected.name.removeprefix("google.protobuf.").lower() or (
            result == expected.name
        )
    if isinstance(result, str) and result == ERROR and not isinstance(expected, str):
        return False
    uint = engine.uint_results
    return bool(canonical(result, uint=uint) == canonical(expected, uint=uint))


@dataclass
class Tally:
    passed: int = 0
    total: int = 0
    failures: list[str] = field(default_factory=list)


def spec_conformance(
    engines: Sequence[Engine], directory: Path
) -> tuple[dict[str, dict[str, Tally]], int]:
    """group -> engine -> tally, and how many tests were not applicable."""
    tallies: dict[str, dict[str, Tally]] = {}
    skipped = 0
    for test in spec_tests(directory):
        if isinstance(test, str):
            skipped += 1
            continue
        row = tallies.setdefault(test.group, {e.name: Tally() for e in engines})
        for engine in engines:
            tally = row[engine.name]
            tally.total += 1
            result = engine.evaluate(
                test.source, test.variables, declarations=test.declarations, checked=test.checked
            )
            if passes(engine, result, test.expected):
                tally.passed += 1
            else:
                tally.failures.append(f"{test.id}: {test.source}")
    return tallies, skipped


def project_conformance(engines: Sequence[Engine]) -> dict[str, dict[str, Tally]]:
    """The project's table (tests/core/test_cel_conformance.py), variables declared dyn."""
    from tests.core.test_cel_conformance import GROUPS, VARIABLES

    declarations = dict.fromkeys(VARIABLES, "dyn")
    tallies: dict[str, dict[str, Tally]] = {}
    for group, rows in GROUPS.items():
        row_tallies = tallies.setdefault(group, {e.name: Tally() for e in engines})
        for case in rows:
            for engine in engines:
                tally = row_tallies[engine.name]
                tally.total += 1
                result = engine.evaluate(
                    case.source, VARIABLES, declarations=declarations, checked=True
                )
                if passes(engine, result, case.expected):
                    tally.passed += 1
                else:
                    tally.failures.append(f"{group}/{case.id}: {case.source}")
    return tallies


#: Mistakes a type checker finds before a policy is ever evaluated (variables declared dyn,
#: as a policy's are).
TYPE_ERRORS: Final = {
    "undeclared variable": 'evnt.reason == "Failed"',
    "unknown function": 'event.name.lowerAscii2() == ""',
    "operands of wrong types": '"a" + 1 == "a1"',
    "argument of a wrong type": "size(1) == 1",
    "result not bool": "1 + 1",
}


def type_checking(engine: Engine) -> int:
    declarations = dict.fromkeys(("event", "run", "policy"), "dyn")
    found = 0
    for source in TYPE_ERRORS.values():
        if engine.compile_time_errors(source, declarations):
            found += 1
        elif isinstance(engine, CelExprPython):
            program = engine.compile(source, declarations, True)
            found += not engine.is_boolean(program)
    return found


# -- cost --------------------------------------------------------------------------------


def corpus() -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
    """The project's expressions and its example events' variables (as the filter builds
    them, plain values)."""
    from tests.core.test_cel_engines import POLICY, example_events, policy_corpus

    events = {
        name: {
            "run": _plain(event.run),
            "event": _plain(event.view()),
            "policy": dict(POLICY),
        }
        for name, event in example_events().items()
    }
    return policy_corpus(), events


def best_seconds(call: Callable[[], Any], *, budget: float) -> float:
    """The fastest of at least three calls of ``call`` made within about ``budget`` seconds."""
    call()
    best, started, rounds = math.inf, time.perf_counter(), 0
    while rounds < 3 or time.perf_counter() - started < budget:
        began = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - began)
        rounds += 1
    return best


def _plain(value: Any) -> Any:
    """Plain dicts and lists (Tekton data may hold read-only mappings)."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def evaluation_cost(
    engine: Engine,
    sources: Mapping[str, str],
    events: Mapping[str, Mapping[str, Any]],
    *,
    budget: float,
) -> tuple[float, float]:
    """Mean µs per evaluation over every (expression, event) pair, the variables bound once
    per event as the filter does; and mean µs to bind one event's variables (whole)."""
    declarations = dict.fromkeys(("event", "run", "policy"), "dyn")
    programs = []
    for source in sources.values():
        try:
            programs.append(engine.compile(source, declarations, True))
        except Exception:
            try:  # what a checker refuses still runs unchecked: time it too
                programs.append(engine.compile(source, declarations, False))
            except Exception:
                continue
    pairs = []
    for variables in events.values():
        bound = engine.bind(programs[0], variables)
        pairs += [(program, bound) for program in programs]

    def evaluate_all() -> None:
        for program, bound in pairs:
            with contextlib.suppress(Exception):
                engine.run(program, bound)

    def bind_all() -> None:
        for variables in events.values():
            engine.bind(programs[0], variables)

    evaluation = best_seconds(evaluate_all, budget=budget) / len(pairs) * 1e6
    binding = best_seconds(bind_all, budget=budget / 4) / len(events) * 1e6
    return evaluation, binding


def project_cost(engine: Engine, sources: Mapping[str, str], *, budget: float) -> float | None:
    """Mean µs per evaluation through tekton_notifications.cel (conversions included, once
    per event), for the engines the project supports."""
    from tekton_notifications import cel
    from tests.core.test_cel_engines import POLICY, example_events

    if engine.project_name not in cel.available_engines():
        return None
    expressions = []
    for source in sources.values():
        try:
            expressions.append(cel.compile_expression(source, engine.project_name))
        except cel.CelError:
            continue
    events = list(example_events().values())

    def one_round() -> None:
        for event in events:
            base = cel.activation(run=event.run, event=event.view(), policy={})
            for expression in expressions:
                with contextlib.suppress(cel.CelError):
                    expression.evaluate(cel.with_policy(base, POLICY))

    return best_seconds(one_round, budget=budget) / (len(events) * len(expressions)) * 1e6


#: No engine here has a cost budget: this shows how long an unbounded expression runs.
NESTED: Final = "[{items}].exists(a, [{items}].exists(b, [{items}].exists(c, a + b + c < 0)))"


def nested_comprehension_ms(engine: Engine, width: int) -> float:
    items = ", ".join(str(i) for i in range(width))
    source = NESTED.format(items=items)
    program = engine.compile(source, {}, True)
    bound = engine.bind(program, {})
    return best_seconds(lambda: engine.run(program, bound), budget=0) * 1e3


def import_seconds(engine: Engine, repeats: int = 3) -> float:
    """Best wall time of the engine's import in a fresh interpreter."""
    code = (
        "import time; started = time.perf_counter(); "
        f"{engine.import_statement}; print(time.perf_counter() - started)"
    )
    best = math.inf
    for _ in range(repeats):
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
        )
        best = min(best, float(done.stdout.strip().splitlines()[-1]))
    return best


def installed_megabytes(engine: Engine) -> float:
    try:
        files = importlib.metadata.files(engine.package) or []
    except importlib.metadata.PackageNotFoundError:
        return math.nan
    total = 0
    for file in files:
        path = Path(str(file.locate()))
        if path.is_file():
            total += path.stat().st_size
    return total / 1e6


# -- the report ----------------------------------------------------------------------------


@dataclass
class Report:
    engines: list[str]
    missing: list[str]
    #: (row label, {engine: cell}) in order.
    lines: list[tuple[str, dict[str, str]]]
    rows: list[Row]
    notes: list[str]


def measure(*, quick: bool, spec: Path | None) -> Report:
    engines, missing = installed_engines()
    names = [e.name for e in engines]
    lines: list[tuple[str, dict[str, str]]] = []
    rows: list[Row] = []
    notes: list[str] = []
    if missing:
        notes.append(f"not installed here: {', '.join(missing)}")

    def conformance(label: str, tallies: Mapping[str, Mapping[str, Tally]]) -> None:
        totals = {name: Tally() for name in names}
        for group, by_engine in tallies.items():
            total = next(iter(by_engine.values())).total
            lines.append(
                (f"{label}{group} ({total})", {n: str(by_engine[n].passed) for n in names})
            )
            for name in names:
                totals[name].passed += by_engine[name].passed
                totals[name].total += by_engine[name].total
                rows.append(
                    Row(
                        f"CEL conformance, {label}{group}: {name}",
                        by_engine[name].passed,
                        f"of {total}",
                    )
                )
        total = next(iter(totals.values())).total if totals else 0
        lines.append((f"{label}all ({total})", {n: f"{totals[n].passed}" for n in names}))

    if spec is not None:
        tallies, skipped = spec_conformance(engines, spec)
        conformance("spec: ", tallies)
        notes.append(
            f"cel-spec conformance data from {spec}: tests/simple/testdata/"
            f"{{{','.join(SPEC_FILES)}}}.textproto; {skipped} tests not applicable "
            "(protobuf messages, containers, extensions)"
        )
        for name in names:
            failed = [f for t in tallies.values() for f in t[name].failures]
            if failed:
                notes.append(f"{name} fails spec tests: {'; '.join(failed)}")
    else:
        notes.append(
            f"no cel-spec checkout given (--cel-spec or ${SPEC_VARIABLE}): the project's own "
            "cases only"
        )
    own = project_conformance(engines)
    conformance("project: ", own)
    for name in names:
        failed = [f for t in own.values() for f in t[name].failures]
        if failed:
            notes.append(f"{name} fails project cases: {'; '.join(failed)}")

    checks = {e.name: type_checking(e) for e in engines}
    lines.append(
        (
            f"type errors refused at compile time (of {len(TYPE_ERRORS)})",
            {n: str(checks[n]) for n in names},
        )
    )
    lines.append(("cost limit (static estimate or runtime budget)", dict.fromkeys(names, "none")))

    sources, events = corpus()
    budget = 0.5 if quick else 2.0
    costs = {e.name: evaluation_cost(e, sources, events, budget=budget) for e in engines}
    pairs = len(sources) * len(events)
    lines.append(
        (
            f"us per evaluation, corpus ({len(sources)} exprs x {len(events)} events)",
            {n: format_number(costs[n][0]) for n in names},
        )
    )
    lines.append(
        (
            "us to bind one event's variables (once per event)",
            {n: format_number(costs[n][1]) for n in names},
        )
    )
    through = {e.name: project_cost(e, sources, budget=budget) for e in engines}
    lines.append(
        (
            "us per evaluation via tekton_notifications.cel",
            {n: _cell(through[n]) for n in names},
        )
    )
    width = 8 if quick else 12
    nested = {e.name: nested_comprehension_ms(e, width) for e in engines}
    lines.append(
        (
            f"ms for {width}^3 nested exists (no budget stops it)",
            {n: format_number(nested[n]) for n in names},
        )
    )
    imports = {e.name: import_seconds(e, 1 if quick else 3) for e in engines}
    lines.append(
        (
            "import + first compile, s (fresh interpreter)",
            {n: format_number(imports[n]) for n in names},
        )
    )
    sizes = {e.name: installed_megabytes(e) for e in engines}
    lines.append(("installed size, MB", {n: format_number(sizes[n]) for n in names}))

    base = costs.get("cel-python", (math.nan, 0))[0]
    for name in names:
        rows.append(
            Row(
                f"CEL engines: us per evaluation on the corpus, {name}",
                costs[name][0],
                "us",
                ratio(costs[name][0], base),
                "cel-python",
            )
        )
        rows.append(Row(f"CEL engines: {width}^3 nested exists, {name}", nested[name], "ms"))
        rows.append(Row(f"CEL engines: import, {name}", imports[name], "s"))
        rows.append(
            Row(
                f"CEL engines: type errors refused at compile time, {name}",
                checks[name],
                f"of {len(TYPE_ERRORS)}",
            )
        )
    notes.append(
        f"corpus: {len(sources)} expressions x {len(events)} events = {pairs} evaluations per "
        "round (tests/core/test_cel_engines.py policy_corpus, examples/events)"
    )
    return Report(names, missing, lines, rows, notes)


def format_matrix(report: Report, *, markdown: bool = False) -> str:
    header = ["", *report.engines]
    body = [[label, *(cells.get(n, "") for n in report.engines)] for label, cells in report.lines]
    if markdown:
        out = [f"| {' | '.join(header)} |", f"|---|{'---:|' * len(report.engines)}"]
        out += [f"| {' | '.join(line)} |" for line in body]
        return "\n".join(out)
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]

    def render(line: Sequence[str]) -> str:
        cells = zip(line, widths, strict=True)
        return "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(cells)
        ).rstrip()

    return "\n".join([render(header), "  ".join("-" * w for w in widths), *map(render, body)])


def _cell(value: float | None) -> str:
    return "-" if value is None else format_number(value)


def spec_directory(argument: str | None) -> Path | None:
    value = argument or os.environ.get(SPEC_VARIABLE)
    if not value:
        return None
    path = Path(value)
    if not (path / "tests" / "simple" / "testdata").is_dir():
        raise SystemExit(f"{path} is not a cel-spec checkout (no tests/simple/testdata)")
    return path


def run(*, quick: bool, spec: str | None = None) -> tuple[list[Row], list[str]]:
    """For ``python -m bench``: prints the side-by-side table at once, returns the rows
    (one per figure and engine) and notes for the bench's own table."""
    report = measure(quick=quick, spec=spec_directory(spec))
    print(format_matrix(report), flush=True)
    return report.rows, report.notes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cel_engines", description=__doc__)
    parser.add_argument("--cel-spec", help=f"a cel-spec checkout (default: ${SPEC_VARIABLE})")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    report = measure(quick=args.quick, spec=spec_directory(args.cel_spec))
    print(format_matrix(report, markdown=args.markdown))
    print()
    for note in report.notes:
        print(f"- {note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
