"""CEL as its language definition says it behaves, on the features policies use.

Every row is derived from the CEL language definition (cel-spec ``doc/langdef.md``), not from
what an engine happens to do: the expected value is the specification's. Each row runs on
every engine the project supports; where an engine departs from the specification the row is
marked ``xfail(strict=True)`` for that engine with the difference named, so a fix upstream is
noticed. tests/core/test_cel_engines.py pins what the engines actually answer where they
differ (``KNOWN_DIFFERENCES``) and that they word their errors alike; this file says what
they should answer.

The expressions are all boolean (a ``when`` must be), against one set of variables shaped
like the project's (``event``, ``run``, ``policy``), so that variables are dynamically typed
as they are in a policy. ``bench/cel_engines.py`` runs the same tables on the engines the
project does not use (yet), with the CEL specification's own conformance data beside them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import pytest

from tekton_notifications import cel

#: The expected outcome of a row that must fail to evaluate (any runtime or compile error).
ERROR: Final = "error"

Expected = bool | str

#: A PipelineRun event as the project builds it, trimmed to what the rows read.
VARIABLES: Final[Mapping[str, Any]] = {
    "event": {
        "kind": "PipelineRun",
        "reason": "Failed",
        "outcome": "failed",
        "name": "web-build-7hk2p",
        "namespace": "ci",
        "labels": {"team": "web", "tekton.dev/pipeline": "web-build"},
        "message": "Tasks Completed: 2 (Failed: 1, Cancelled 0), Skipped: 1",
        "startTime": "2026-11-20T10:00:01Z",
        "completionTime": "2026-11-20T10:03:13Z",
        "duration": 192.0,
        "retries": 2,
        "results": {},
        "nothing": None,
        "title": "héllo wörld",
        "children": [
            {"pipelineTaskName": "fetch-source", "reason": "Succeeded", "attempts": 1},
            {"pipelineTaskName": "unit-tests", "reason": "Failed", "attempts": 0},
        ],
    },
    "run": {"metadata": {"name": "web-build-7hk2p", "labels": {"team": "web"}}},
    "policy": {"name": "notify", "namespace": "ci"},
}

#: Differences from the language definition, named once (tests/core/test_cel_engines.py
#: KNOWN_DIFFERENCES pins the actual answers).
NO_HETEROGENEOUS_EQUALITY: Final = (
    "cel-python has no heterogeneous equality: comparing values of different types is a "
    "'no such overload' error instead of false / numeric equality"
)
NO_CROSS_TYPE_ORDERING: Final = (
    "cel-python cannot order an int against a double (int < double is an error; double > int works)"
)
UTF8_SIZE: Final = "the Rust engine's size() of a string counts UTF-8 bytes, not code points"


@dataclass(frozen=True)
class Case:
    id: str
    source: str
    expected: Expected
    #: engine (``cel.ENGINES``) -> how it departs from the language definition here.
    differs: Mapping[str, str] = field(default_factory=dict)


def case(id: str, source: str, expected: Expected, *, python: str = "", rust: str = "") -> Case:
    differs = {name: why for name, why in (("python", python), ("rust", rust)) if why}
    return Case(id, source, expected, differs)


#: Feature group -> rows. The groups are the features a ``when`` uses (docs/policies.md).
GROUPS: Final[Mapping[str, list[Case]]] = {
    "has() macro": [
        case("present map key", "has(event.labels.team)", True),
        case("absent map key", "has(event.labels.env)", False),
        case("absent top-level field", "has(event.nosuch)", False),
        case("key present with a null value", "has(event.nothing)", True),
        case("nested present", "has(run.metadata.labels)", True),
        case(
            "on a missing parent is an error",
            "has(event.nosuch.x)",
            ERROR,
            python="cel-python's has() answers false when a parent is missing",
        ),
        case("guards a lookup", 'has(event.labels.env) && event.labels.env == "prod"', False),
    ],
    "in operator": [
        case("map key present", '"team" in event.labels', True),
        case("map key absent", '"env" in event.labels', False),
        case("list member", 'event.outcome in ["failed", "timedOut"]', True),
        case("list non-member", 'event.outcome in ["succeeded"]', False),
        case("empty list", '"x" in []', False),
        case(
            "numeric list, other numeric type",
            "event.retries in [1.0, 2.0]",
            True,
            python=NO_HETEROGENEOUS_EQUALITY,
        ),
        case("list of mixed types", '"2" in [1, "2"]', True),
    ],
    "comparisons": [
        case("string equality", 'event.reason == "Failed"', True),
        case("string inequality", 'event.reason != "Failed"', False),
        case("string ordering", '"abc" < "abd"', True),
        case("int ordering", "event.retries >= 2", True),
        case("double ordering", "event.duration > 100.0", True),
        case("bool ordering", "false < true", True),
        case(
            "int equals double",
            "event.retries == 2.0",
            True,
            python=NO_HETEROGENEOUS_EQUALITY,
        ),
        case("double equals int", "event.duration == 192", True, python=NO_HETEROGENEOUS_EQUALITY),
        case("int equals uint", "dyn(2u) == event.retries", True, python=NO_HETEROGENEOUS_EQUALITY),
        case("int below double", "event.retries < 2.5", True, python=NO_CROSS_TYPE_ORDERING),
        case("double above int", "event.duration > 1800", False),
        case(
            "string vs int is unequal, not an error",
            "event.reason == 1",
            False,
            python=NO_HETEROGENEOUS_EQUALITY,
        ),
        case(
            "string vs int inequality",
            "event.reason != 1",
            True,
            python=NO_HETEROGENEOUS_EQUALITY,
        ),
        case(
            "NaN is not equal to itself",
            "0.0 / 0.0 != 0.0 / 0.0",
            True,
            python="cel-python compares NaN equal to itself",
        ),
        case("lists by value", "[1, 2] == [1, 2] && [1, 2] != [2, 1]", True),
        case("maps by value", '{"a": 1, "b": 2} == {"b": 2, "a": 1}', True),
        case("ordering strings and ints is an error", "event.reason < 1", ERROR),
    ],
    "string functions": [
        case("startsWith", 'event.name.startsWith("web-")', True),
        case("endsWith", 'event.name.endsWith("7hk2p")', True),
        case("contains", 'event.message.contains("Failed: 1")', True),
        case("contains is case-sensitive", 'event.message.contains("failed: 1")', False),
        case("matches is a partial RE2 match", 'event.name.matches("build")', True),
        case("matches anchored", 'event.name.matches("^web-[a-z0-9]+-[a-z0-9]{5}$")', True),
        case("matches a bad pattern is an error", 'event.name.matches("(")', ERROR),
        case("size of ASCII", "event.name.size() == 15", True),
        case("size counts code points", "size(event.title) == 11", True, rust=UTF8_SIZE),
        case(
            "concatenation", 'event.kind + "/" + event.name == "PipelineRun/web-build-7hk2p"', True
        ),
        case("startsWith on a non-string is an error", 'event.retries.startsWith("2")', ERROR),
    ],
    "comprehensions": [
        case("exists", 'event.children.exists(c, c.reason == "Failed")', True),
        case("exists none", 'event.children.exists(c, c.reason == "Cancelled")', False),
        case("all", 'event.children.all(c, c.pipelineTaskName != "")', True),
        case("all fails", 'event.children.all(c, c.reason == "Failed")', False),
        case("exists_one", 'event.children.exists_one(c, c.reason == "Failed")', True),
        case("exists_one of two", "[1, 2, 2].exists_one(i, i == 2)", False),
        case(
            "map",
            'event.children.map(c, c.pipelineTaskName) == ["fetch-source", "unit-tests"]',
            True,
        ),
        case("filter", 'event.children.filter(c, c.reason == "Failed").size() == 1', True),
        case(
            "map with a filter",
            "[1, 2, 3].map(x, x > 1, x * 2) == [4, 6]",
            True,
            python="cel-python has no three-argument map(x, filter, transform)",
        ),
        case("over a map's keys", 'event.labels.exists(k, k.startsWith("tekton.dev/"))', True),
        case("empty list: all", "[].all(x, x > 0)", True),
        case("empty list: exists", "[].exists(x, x > 0)", False),
        case(
            "exists absorbs an error when another element is true",
            "event.children.exists(c, 1 / c.attempts == 1)",
            True,
        ),
        case(
            "all absorbs an error when another element is false",
            "event.children.all(c, 1 / c.attempts == 5)",
            False,
        ),
        case("all with only errors and trues is an error", "[0, 1].all(x, 1 / x >= 0)", ERROR),
        case("exists_one does not absorb errors", "[0, 1].exists_one(x, 1 / x == 1)", ERROR),
    ],
    "timestamps and durations": [
        case(
            "timestamps order",
            "timestamp(event.startTime) < timestamp(event.completionTime)",
            True,
        ),
        case(
            "difference is a duration",
            'timestamp(event.completionTime) - timestamp(event.startTime) == duration("192s")',
            True,
        ),
        case(
            "timestamp plus duration",
            'timestamp(event.startTime) + duration("3m12s") == timestamp(event.completionTime)',
            True,
        ),
        case(
            "timestamp minus duration",
            'timestamp("2026-11-20T10:00:00Z") - duration("1h") == '
            'timestamp("2026-11-20T09:00:00Z")',
            True,
        ),
        case("durations order", 'duration("1h") > duration("59m59s")', True),
        case("duration forms", 'duration("90s") == duration("1m30s")', True),
        case("fractional and negative", 'duration("-1.5h") == duration("-90m")', True),
        case("duration getSeconds", 'duration("1m30s").getSeconds() == 90', True),
        case("getHours", "timestamp(event.completionTime).getHours() == 10", True),
        case(
            "getHours in a time zone",
            'timestamp(event.completionTime).getHours("+02:00") == 12',
            True,
            rust="the Rust engine's getHours() etc. take no time-zone argument",
        ),
        case("getDayOfWeek", "timestamp(event.completionTime).getDayOfWeek() == 5", True),
        case("getFullYear", "timestamp(event.completionTime).getFullYear() == 2026", True),
        case("duration getMinutes", 'duration("1h30m").getMinutes() == 90', True),
        case(
            "offset in the text",
            'timestamp("2026-11-20T12:03:13+02:00") == timestamp(event.completionTime)',
            True,
        ),
        case(
            "int of a timestamp is Unix seconds",
            'int(timestamp("1970-01-01T00:01:00Z")) == 60',
            True,
            rust="the Rust engine has no int(timestamp)",
        ),
        case(
            "string of a timestamp",
            "string(timestamp(event.completionTime)) == event.completionTime",
            True,
            rust="the Rust engine's string(timestamp) is not RFC 3339 with a Z",
        ),
        case(
            "bad timestamp text is an error",
            'timestamp("20 Nov 2026") < timestamp(event.startTime)',
            ERROR,
        ),
        case("bad duration text is an error", 'duration("1 hour") > duration("1m")', ERROR),
        case(
            "past year 9999 is an error",
            'timestamp("9999-12-31T23:59:59Z") + duration("1s") > timestamp(event.startTime)',
            ERROR,
        ),
    ],
    "errors and logic": [
        case("false && error", "false && 1 / 0 == 1", False),
        case("error && false (commutative)", "1 / 0 == 1 && false", False),
        case("true || error", "true || 1 / 0 == 1", True),
        case("error || true (commutative)", "1 / 0 == 1 || true", True),
        case("missing key || true", "event.nosuch.x == 1 || true", True),
        case("missing key && false", "event.nosuch.x == 1 && false", False),
        case("error && true is the error", "1 / 0 == 1 && true", ERROR),
        case("error || false is the error", "1 / 0 == 1 || false", ERROR),
        case("not of an error", "!(1 / 0 == 1)", ERROR),
        case("ternary takes one branch", "event.retries > 0 ? true : 1 / 0 == 1", True),
        case("ternary on an error", "1 / 0 == 1 ? true : false", ERROR),
        case("division by zero", "1 / 0 == 0", ERROR),
        case("modulo by zero", "1 % 0 == 0", ERROR),
        case("missing map key", 'event.labels["env"] == "prod"', ERROR),
        case("undeclared variable", "nosuch == 1", ERROR),
        case("unknown function", 'event.name.lowerAscii2() == ""', ERROR),
        case("no such overload", 'event.retries + "1" == "21"', ERROR),
    ],
    "null": [
        case("null equals null", "null == null", True),
        case("a null value equals null", "event.nothing == null", True),
        case("a string is not null", "event.reason != null", True),
        case(
            "a number is not null", "event.duration != null", True, python=NO_HETEROGENEOUS_EQUALITY
        ),
        case("a map is not null", "event.labels != null", True, python=NO_HETEROGENEOUS_EQUALITY),
        case("type of null", "type(event.nothing) == null_type", True),
        case("selecting from null is an error", "event.nothing.x == 1", ERROR),
    ],
    "lists and maps": [
        case("list index", 'event.children[1].pipelineTaskName == "unit-tests"', True),
        case("list size", "size(event.children) == 2 && event.children.size() == 2", True),
        case("list index out of range", 'event.children[2].reason == ""', ERROR),
        case(
            "negative list index",
            "[1, 2][-1] == 2",
            ERROR,
            python="cel-python indexes from the end with a negative index, as Python does",
        ),
        case("map index", 'event.labels["tekton.dev/pipeline"] == "web-build"', True),
        case("map select", 'run.metadata.labels.team == "web"', True),
        case("map literal", '{"a": {"b": 1}}.a.b == 1', True),
        case("list concatenation", "[1] + [2, 3] == [1, 2, 3]", True),
        case("empty map", "size(event.results) == 0", True),
        case("map size", "size(event.labels) == 2", True),
    ],
    "integer overflow": [
        case("int64 max + 1", "9223372036854775807 + 1 > 0", ERROR),
        case("int64 min - 1", "-9223372036854775808 - 1 < 0", ERROR),
        case("int64 multiplication", "9223372036854775807 * 2 > 0", ERROR),
        case("int64 min / -1", "-9223372036854775808 / -1 > 0", ERROR),
        case(
            "negating int64 min",
            "-(-9223372036854775808) > 0",
            ERROR,
            rust="the Rust engine wraps around when negating int64 min instead of an error",
        ),
        case("uint below zero", "0u - 1u > 0u", ERROR),
        case("uint64 max + 1", "18446744073709551615u + 1u > 0u", ERROR),
        case("int of a too large double", "int(1e19) > 0", ERROR),
        case("int64 max itself", "9223372036854775807 > 0 && -9223372036854775808 < 0", True),
        case("truncating division", "7 / 2 == 3 && -7 / 2 == -3 && -7 % 2 == -1", True),
    ],
    "conversions": [
        case("int of a string", 'int("42") == 42', True),
        case("int of a double truncates", "int(2.9) == 2 && int(-2.9) == -2", True),
        case("double of a string", 'double("1.5") == 1.5', True),
        case("string of an int", 'string(event.retries) == "2"', True),
        case("string of a double", 'string(1.5) == "1.5"', True),
        case("uint of an int", "uint(event.retries) == 2u", True),
        case(
            "type of a variable",
            "type(event.duration) == double && type(event.retries) == int",
            True,
        ),
        case("dyn is the identity", 'dyn(event.reason) == "Failed"', True),
        case("int of a bad string", 'int("x") == 0', ERROR),
        case("uint of a negative", "uint(-1) == 0u", ERROR),
    ],
}

CASES: Final = [(group, row) for group, rows in GROUPS.items() for row in rows]


def outcome(engine: str, source: str, variables: Mapping[str, Any] = VARIABLES) -> Expected:
    """True/False, or ``ERROR`` for a compile or evaluation error (both are CelError). The
    language is tested on variables of its own, not events: the check of the events' fields
    (tests/core/test_cel_check.py) is off."""
    try:
        expression = cel.compile_expression(source, engine, checked=False)
        return expression.evaluate(
            cel.activation(
                run=variables["run"], event=variables["event"], policy=variables["policy"]
            )
        )
    except cel.CelError:
        return ERROR


def _params() -> list[Any]:
    params = []
    for engine in cel.ENGINES:
        for group, row in CASES:
            marks = []
            if engine not in cel.available_engines():
                marks.append(pytest.mark.skip(reason=f"CEL engine {engine} not installed"))
            elif engine in row.differs:
                marks.append(pytest.mark.xfail(strict=True, reason=row.differs[engine]))
            params.append(pytest.param(engine, row, id=f"{engine}-{group}-{row.id}", marks=marks))
    return params


@pytest.mark.parametrize(("engine", "row"), _params())
def test_the_engine_follows_the_language_definition(engine: str, row: Case) -> None:
    assert outcome(engine, row.source) == row.expected


def test_row_ids_are_unique_within_a_group() -> None:
    """The bench reports per group and ids name the rows in its notes."""
    for group, rows in GROUPS.items():
        ids = [row.id for row in rows]
        assert len(ids) == len(set(ids)), group
