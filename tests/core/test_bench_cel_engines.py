"""The CEL engine comparison reads the spec's data and scores engines as the spec means.

Nothing here is timed: these check the parts whose mistakes would make the published pass
counts wrong (reading text-format protobuf, comparing CEL values by type, the adapters).
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from bench import cel_engines, cel_spec
from bench.cel_spec import ERROR, NotApplicable, TypeName, Uint, canonical
from tests.core.test_cel_conformance import GROUPS

SPEC_SNIPPET = r"""
# proto-message: cel.expr.conformance.test.SimpleTestFile
name: "sample"
section {
  name: "one"
  test {
    name: "uint_list"
    expr: "[1u, 2u]"
    value: { list_value { values { uint64_value: 1 } values: { uint64_value: 2 } } }
  }
  test {
    name: "escapes"
    expr: 'b"\\xff" == b"\\377"'
    description: "caf\303\251 " "\u00e9\x41\n"
  }
  test {
    name: "error"
    expr: "1 / 0"
    eval_error: { errors: { message: "divide by zero" } }
  }
  test {
    name: "binding"
    expr: "x + 1"
    disable_check: true
    type_env: { name: "x" ident: { type: { primitive: INT64 } } }
    bindings: { key: "x" value: { value: { int64_value: 41 } } }
    value: { int64_value: 42 }
  }
  test {
    name: "proto"
    expr: "TestAllTypes{}"
    value: { object_value { [type.googleapis.com/x.TestAllTypes] {} } }
  }
}
"""


def test_text_format_is_read_into_nested_fields() -> None:
    document = cel_spec.parse_textproto(SPEC_SNIPPET)
    section = document["section"][0]
    tests = section["test"]
    assert [t["name"][0] for t in tests] == [
        b"uint_list",
        b"escapes",
        b"error",
        b"binding",
        b"proto",
    ]
    assert tests[1]["expr"][0].decode() == r'b"\xff" == b"\377"'
    assert tests[1]["description"][0].decode() == "café éA\n"
    values = tests[0]["value"][0]["list_value"][0]["values"]
    assert [v["uint64_value"][0] for v in values] == ["1", "2"]


def test_spec_tests_carry_expected_values_variables_and_reasons_to_skip(tmp_path: Any) -> None:
    data = tmp_path / "tests" / "simple" / "testdata"
    data.mkdir(parents=True)
    (data / "sample.textproto").write_text(SPEC_SNIPPET)
    found = list(cel_spec.spec_tests(tmp_path, ["sample"]))
    tests = {t.id: t for t in found if not isinstance(t, str)}
    assert tests["sample/one/uint_list"].expected == [Uint(1), Uint(2)]
    assert tests["sample/one/escapes"].expected is True  # the format's default
    assert tests["sample/one/error"].expected == ERROR
    binding = tests["sample/one/binding"]
    assert (binding.variables, binding.declarations, binding.checked) == (
        {"x": 41},
        {"x": "int"},
        False,
    )
    assert [t for t in found if isinstance(t, str)] == ["sample/one/proto: protobuf messages"]


@pytest.mark.parametrize(
    ("first", "second", "same"),
    [
        pytest.param(1, Uint(1), False, id="int is not uint"),
        pytest.param(1, 1.0, False, id="int is not double"),
        pytest.param(True, 1, False, id="bool is not int"),
        pytest.param(float("nan"), float("nan"), True, id="NaN results compare equal"),
        pytest.param({1: "a"}, {1: "a"}, True, id="maps"),
        pytest.param([Uint(1)], [Uint(1)], True, id="nested uint"),
        pytest.param(
            datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC),
            datetime.datetime(2020, 1, 1),
            True,
            id="naive timestamps are UTC",
        ),
    ],
)
def test_values_compare_by_type_and_value(first: Any, second: Any, same: bool) -> None:
    assert (canonical(first) == canonical(second)) is same


def test_a_value_of_a_protobuf_message_is_not_applicable() -> None:
    with pytest.raises(NotApplicable):
        cel_spec.spec_value({"object_value": [{}]})


ENGINES, _ = cel_engines.installed_engines()


@pytest.mark.parametrize("engine", ENGINES, ids=[e.name for e in ENGINES])
@pytest.mark.parametrize(
    ("source", "expected"),
    [
        pytest.param("1u + 2u", Uint(3), id="uint"),
        pytest.param("[1, 2.5, 'a', b'b', null]", [1, 2.5, "a", b"b", None], id="list"),
        pytest.param("{'a': true}", {"a": True}, id="map"),
        pytest.param("type(1)", TypeName("int"), id="type"),
        pytest.param("x.y", 7, id="variable"),
        pytest.param("1 / 0", ERROR, id="error"),
        pytest.param(
            "timestamp('2020-01-01T00:00:00Z')",
            datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC),
            id="timestamp",
        ),
    ],
)
def test_every_installed_engine_is_scored_on_its_results(
    engine: cel_engines.Engine, source: str, expected: Any
) -> None:
    result = engine.evaluate(source, {"x": {"y": 7}}, declarations={"x": "dyn"}, checked=False)
    assert cel_engines.passes(engine, result, expected), result


def test_the_bench_scores_the_projects_engines_as_the_conformance_tests_do() -> None:
    """Pass counts in bench/README.md equal the rows minus the strict xfails per engine."""
    tallies = cel_engines.project_conformance(ENGINES)
    for engine in ENGINES:
        if engine.project_name is None:
            continue
        for group, rows in GROUPS.items():
            differing = sum(1 for row in rows if engine.project_name in row.differs)
            assert tallies[group][engine.name].passed == len(rows) - differing, (engine.name, group)
