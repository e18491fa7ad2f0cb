"""Both CEL engines give the same results and errors on the same expressions.

The Rust engine (``NOTIFICATIONS_CEL_ENGINE=rust``) may only be used where it agrees with
cel-python, so every row runs on both. Where they are known to differ, the difference is pinned
down below, so a change in either library is noticed.
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tekton_notifications import cel
from tekton_notifications.events import RunEvent, parse_event
from tekton_notifications.matching import PolicyIndex
from tekton_notifications.models import parse_policy
from tests.conftest import EXAMPLES, ROOT, policy_object
from tests.core.test_policy_matching import CEL_TABLE, run_event

pytestmark = pytest.mark.skipif(
    "rust" not in cel.available_engines(),
    reason="common-expression-language not installed (a dependency: pip install .)",
)

ENGINES = cel.ENGINES
POLICY = {"name": "notify", "namespace": "ci"}


class Err:
    """An expected CelError whose message starts with ``prefix``."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def __repr__(self) -> str:
        return f"Err({self.prefix!r})"


def pipelinerun_failed() -> RunEvent:
    cloudevent = json.loads((EXAMPLES / "events" / "03-pipelinerun-failed.json").read_text())
    return parse_event(cloudevent, cloudevent["data"])


def outcome(engine: str, source: str, event: RunEvent) -> bool | str:
    """The result, or ``"error: <message>"`` (compile errors included). The load-time check
    of the variables' fields (tests/core/test_cel_check.py) is off: these rows provoke the
    engines' own errors (missing members, non-bool results) on purpose."""
    try:
        expression = cel.compile_expression(source, engine, checked=False)
        values = cel.activation(run=event.run, event=event.view(), policy={})
        return expression.evaluate(cel.with_policy(values, POLICY))
    except cel.CelError as error:
        return f"error: {error}"


def check(source: str, expected: bool | Err, event: RunEvent) -> None:
    results = {engine: outcome(engine, source, event) for engine in ENGINES}
    for engine, result in results.items():
        if isinstance(expected, Err):
            assert isinstance(result, str), (engine, result)
            assert result.startswith(f"error: {expected.prefix}"), (engine, result)
        else:
            assert result is expected, (engine, result)


# The policy-matching table, on both engines.
@pytest.mark.parametrize(
    ("when", "expected"), [row[1:] for row in CEL_TABLE], ids=[row[0] for row in CEL_TABLE]
)
def test_policy_matching_table(when: str, expected: bool) -> None:
    check(when, expected, run_event())


# The policy-matching error cases, with the same message on both engines.
@pytest.mark.parametrize(
    ("when", "expected"),
    [
        ('run.metadata.labels.env == "prod"', Err("no such member in mapping: 'env'")),
        ("event.name", Err('must evaluate to bool, got string: "build-and-test-run-8x2kq"')),
        ("1 / 0 == 1", Err("division or modulo by zero")),
        ("run.nosuch.field == 1", Err("no such member in mapping: 'nosuch'")),
        ("event.reason ==", Err("syntax error:")),
    ],
    ids=["missing key", "not a bool", "runtime error", "missing member", "syntax error"],
)
def test_policy_matching_errors(when: str, expected: Err) -> None:
    check(when, expected, run_event())


SAME = [
    # comparisons, logic and CEL's error-absorbing && / ||
    ('event.reason == "Failed"', True),
    ('!(event.reason == "Failed")', False),
    ('event.reason == "Failed" && event.outcome in ["failed", "cancelled"]', True),
    ("run.nosuch.x || true", True),
    ("run.nosuch.x && false", False),
    ("false && run.nosuch.x", False),
    ("true || 1 / 0 == 1", True),
    ('event.duration > 1800.0 || event.reason == "Failed"', True),
    ("event.duration > 100.0", True),
    ("event.duration > 1800", False),
    ('"abc" < "abd"', True),
    ("7 / 2 == 3", True),
    ("-5 % 3 == -2", True),
    ("1.0 / 0.0 > 0.0", True),
    # has() and in
    ("has(event.labels.team)", True),
    ("has(event.nosuch)", False),
    ("has(run.metadata.labels.env)", False),
    ('"team" in event.labels', True),
    ('"env" in event.labels', False),
    ('"web" in ["web", "api"]', True),
    (
        '"tekton.dev/pipelineTask" in run.metadata.labels && '
        'run.metadata.labels["tekton.dev/pipelineTask"] == "unit-tests"',
        False,
    ),
    ('event.labels["team"] == "web"', True),
    # string functions
    ('event.name.startsWith("web-")', True),
    ('event.name.endsWith("q")', False),
    ('event.message.contains("Failed: 1")', True),
    ('event.name.matches("^[a-z0-9-]+$")', True),
    ("event.name.size() > 3", True),
    ("size(event.name) == 15", True),
    ('string(1) == "1"', True),
    ('int("3") == 3', True),
    ('double("1.5") == 1.5', True),
    ('event.name + "-x" == "web-build-7hk2p-x"', True),
    ("type(event.name) == string", True),
    # lists, maps, macros
    ("event.children.size() == 2", True),
    ('event.children.exists(c, c.pipelineTaskName == "unit-tests")', True),
    ('event.children.all(c, c.kind == "TaskRun")', True),
    ('event.children.filter(c, c.pipelineTaskName == "unit-tests").size() == 1', True),
    ('event.children.map(c, c.pipelineTaskName) == ["fetch-source", "unit-tests"]', True),
    ('{"a": 1}.a == 1', True),
    ("event.results.size() == 0", True),
    # timestamps and durations
    ("timestamp(event.startTime) < timestamp(event.completionTime)", True),
    ('timestamp(event.completionTime) - timestamp(event.startTime) > duration("1m")', True),
    ("timestamp(event.startTime).getHours() >= 0", True),
    ('duration("90s") == duration("1m30s")', True),
    # the policy variable
    ('policy.name == "notify" && policy.namespace == "ci"', True),
    # runtime errors
    ('event.labels["nosuch"] == "x"', Err("no such member in mapping: 'nosuch'")),
    ("event.nosuch == 1", Err("no such member in mapping: 'nosuch'")),
    ("nosuch == 1", Err("undeclared reference to 'nosuch'")),
    ("1 % 0 == 0", Err("division or modulo by zero")),
    ("[1, 2, 3][5] == 1", Err("index out of range")),
    ("9223372036854775807 + 1 > 0", Err("overflow")),
    ("1 + 2.5 > 0.0", Err("no such overload")),
    ("event.name.lowerAscii() == event.name", Err("undeclared reference to 'lowerAscii'")),
    ('int("x") == 1', Err("")),
    ('timestamp("bad") == timestamp("bad")', Err("")),
    # results that are not bool
    ("1 + 1", Err("must evaluate to bool, got int: 2")),
    ("event.duration", Err("must evaluate to bool, got double: 192.0")),
    ("event.completionTime", Err('must evaluate to bool, got string: "2026-11-20T10:03:13Z"')),
    ("event.children", Err("must evaluate to bool, got list:")),
    ("event.labels", Err("must evaluate to bool, got map:")),
    ("null", Err("must evaluate to bool, got null_type: null")),
    ('duration("1h")', Err("must evaluate to bool, got duration")),
    # syntax errors
    ('event.reason = "x"', Err("syntax error:")),
    (")(", Err("syntax error:")),
    ("", Err("")),
]


@pytest.mark.parametrize(("source", "expected"), SAME, ids=[row[0] or "empty" for row in SAME])
def test_both_engines_agree(source: str, expected: bool | Err) -> None:
    check(source, expected, pipelinerun_failed())


# Where they differ: cel-python lacks CEL's heterogeneous equality, so comparing a number
# with null, another numeric type or a string is an error there; the Rust engine counts a
# string's size in UTF-8 bytes instead of code points. Don't rely on either in a policy.
KNOWN_DIFFERENCES = [
    ("1 == 1.0", Err("no such overload"), True),
    ("1 == 1u", Err("no such overload"), True),
    ('event.reason == 1 || event.reason == "Failed"', True, True),
    ("event.reason == 1", Err("no such overload"), False),
    ("event.duration == null", Err("no such overload"), False),
    ("event.duration != null && event.duration > 100.0", Err("no such overload"), True),
    ("event.duration != null ? event.duration > 10.0 : false", Err(""), True),
    ('size("héllo") == 5', True, False),
]


@pytest.mark.parametrize(
    ("source", "python", "rust"), KNOWN_DIFFERENCES, ids=[row[0] for row in KNOWN_DIFFERENCES]
)
def test_known_differences(source: str, python: bool | Err, rust: bool | Err) -> None:
    event = pipelinerun_failed()
    for engine, expected in (("python", python), ("rust", rust)):
        result = outcome(engine, source, event)
        if isinstance(expected, Err):
            assert isinstance(result, str) and result.startswith(f"error: {expected.prefix}")
        else:
            assert result is expected, (engine, result)


def test_a_guard_that_works_on_both_engines_for_nullable_numbers() -> None:
    """What docs/policies.md should suggest instead of ``event.duration != null``."""
    for duration, expected in ((2000.0, True), (100.0, False), (None, False)):
        event = pipelinerun_failed()
        view = {**event.view(), "duration": duration}
        for engine in ENGINES:
            expression = cel.compile_expression(
                "type(event.duration) == double && event.duration > 1800.0", engine
            )
            values = cel.activation(run=event.run, event=view, policy=POLICY)
            assert expression.evaluate(values) is expected, (engine, duration)


@pytest.mark.parametrize("engine", ENGINES)
def test_policies_in_one_index_see_their_own_policy_variable(
    engine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One activation per event, the policy swapped in per candidate: no leaks between them."""
    monkeypatch.setattr(cel, "_selected", engine)
    policies = [
        policy_object(f"p{i}", when=f'policy.name == "p{i}" && event.reason == "Failed"')
        for i in range(5)
    ]
    policies.append(policy_object("other", when='policy.name == "p0"'))
    index = PolicyIndex(parse_policy(p) for p in policies)
    assert {c.when.engine for c in index.all() if c.when} == {engine}
    found, errors = index.match(run_event())
    assert sorted(m.policy.name for m in found) == [f"p{i}" for i in range(5)]
    assert errors == []


@pytest.mark.parametrize("engine", ENGINES)
def test_one_activation_used_from_several_threads(engine: str) -> None:
    event = pipelinerun_failed()
    base = cel.activation(run=event.run, event=event.view(), policy={})
    expression = cel.compile_expression('policy.name.endsWith("-yes")', engine)
    failures: list[str] = []

    def worker(number: int) -> None:
        for i in range(200):
            name = f"p{number}-{i}-{'yes' if i % 2 else 'no'}"
            result = expression.evaluate(cel.with_policy(base, {"name": name, "namespace": "ci"}))
            if result is not (i % 2 == 1):
                failures.append(name)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert failures == []


@pytest.mark.parametrize("engine", ENGINES)
def test_only_the_variables_an_expression_uses_are_converted(engine: str) -> None:
    """Tekton's run object is the biggest variable: an expression on ``event`` never pays it."""
    event = pipelinerun_failed()
    unconvertible: dict[str, Any] = {"metadata": {"thing": object()}}
    values = cel.activation(run=unconvertible, event=event.view(), policy=POLICY)
    assert cel.compile_expression('event.reason == "Failed"', engine).evaluate(values) is True
    with pytest.raises(cel.CelError):
        cel.compile_expression("has(run.metadata)", engine).evaluate(values)


@pytest.mark.parametrize(
    ("source", "variable", "paths"),
    [
        ('run.metadata.labels["team"] == "web"', "run", {("metadata", "labels")}),
        ("has(run.metadata.labels.env)", "run", {("metadata", "labels", "env")}),
        ("run . metadata\n  .name == 'x'", "run", {("metadata", "name")}),
        ("run.metadata.labels.size() > 0", "run", {("metadata", "labels")}),
        (
            'run.metadata.name.startsWith("a") && run.metadata.name != ""',
            "run",
            {("metadata", "name")},
        ),
        ("run.metadata.labels.a == '' || run.metadata == {}", "run", {("metadata",)}),
        ("run.spec.params.exists(p, p.name == 'x')", "run", {("spec", "params")}),
        ("run.status.conditions[0].reason == 'x'", "run", {("status", "conditions")}),
        ('run["metadata"].name == "x"', "run", {()}),
        ("size(run) > 0", "run", {()}),
        ("event.run == 1 && run.metadata.name == ''", "run", {()}),
        ('event.reason == "Failed"', "event", {("reason",)}),
        ('event.children.exists(event, event.name == "x")', "event", {()}),
        (
            "event.labels.team == 'a' && event.reason == 'b'",
            "event",
            {("labels", "team"), ("reason",)},
        ),
    ],
)
def test_the_paths_an_expression_reads(
    source: str, variable: str, paths: set[tuple[str, ...]]
) -> None:
    assert cel.read_paths(source, variable) == frozenset(paths)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(("source", "expected"), SAME, ids=[row[0] or "empty" for row in SAME])
def test_converting_only_the_paths_read_changes_no_result(
    engine: str, source: str, expected: bool | Err
) -> None:
    event = pipelinerun_failed()
    try:
        pruned = cel.compile_expression(source, engine)
    except cel.CelError:
        return
    whole = dataclasses.replace(pruned, paths=dict.fromkeys(pruned.paths, cel.WHOLE))

    def result(expression: cel.Expression) -> bool | str:
        values = cel.activation(run=event.run, event=event.view(), policy=POLICY)
        try:
            return expression.evaluate(values)
        except cel.CelError as error:
            return str(error)

    assert result(pruned) == result(whole)


@pytest.mark.parametrize("engine", ENGINES)
def test_one_activation_widens_as_expressions_read_more(engine: str) -> None:
    event = pipelinerun_failed()
    values = cel.activation(run=event.run, event=event.view(), policy=POLICY)
    sequence = [
        ('run.metadata.name == "web-build-7hk2p"', True),
        ('has(run.metadata.labels) && run.metadata.labels["team"] == "web"', True),
        ("size(run.metadata) > 3", True),
        ('run.metadata.name == "web-build-7hk2p"', True),
        ("run.status.conditions.size() == 1", True),
        ('event.reason == "Failed" && event.children.size() == 2', True),
        ("has(run.spec.nosuch)", False),
    ]
    for source, expected in sequence:
        expression = cel.compile_expression(source, engine)
        derived = cel.with_policy(values, POLICY)
        assert expression.evaluate(derived) is expected, source


def test_a_plain_dict_still_works_as_an_activation() -> None:
    for engine in ENGINES:
        expression = cel.compile_expression('event.reason == "Failed"', engine)
        assert expression.evaluate({"event": {"reason": "Failed"}}) is True


@pytest.mark.parametrize(
    ("requested", "installed", "chosen"),
    [
        pytest.param("", True, "rust", id="unset: the default, the Rust engine"),
        pytest.param("rust", True, "rust", id="rust"),
        pytest.param(" Python ", True, "python", id="python, any case and spacing"),
        pytest.param("java", True, "rust", id="unknown: the default (logged)"),
        pytest.param("", False, "python", id="the Rust engine missing: python (logged)"),
        pytest.param("rust", False, "python", id="rust asked, missing: python (logged)"),
    ],
)
def test_the_engine_is_chosen_by_the_environment(
    monkeypatch: pytest.MonkeyPatch, requested: str, installed: bool, chosen: str
) -> None:
    monkeypatch.setattr(cel, "_rust_installed", lambda: installed)
    assert cel._choose(requested) == chosen
    assert cel.available_engines() == (("python", "rust") if installed else ("python",))


def test_the_rust_engine_skips_the_packages_command_line_imports() -> None:
    """celpy is imported on compiling, though: its parser gives the tree that the cost of
    every expression is estimated on, whichever engine evaluates (celcost)."""
    code = (
        "import sys\n"
        "from tekton_notifications import cel\n"
        "assert cel.compile_expression('1 == 1', 'rust').evaluate({})\n"
        "print(sorted(m for m in ('typer', 'prompt_toolkit') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"


# -- the project's whole policy corpus -----------------------------------------------------


def _whens(document: Any) -> Iterator[str]:
    if isinstance(document, dict):
        for key, value in document.items():
            if key == "when" and isinstance(value, str):
                yield value
            else:
                yield from _whens(value)
    elif isinstance(document, list):
        for item in document:
            yield from _whens(item)


def _documented_whens(markdown: str) -> Iterator[str]:
    """``when:`` in the YAML examples and each line of the ``cel`` examples of a doc."""
    for language, body in re.findall(r"```(yaml|cel)\n(.*?)```", markdown, re.S):
        if language == "cel":
            for line in body.splitlines():
                source = line.split("//", 1)[0].strip()
                if source:
                    yield source
        else:
            try:
                yield from _whens(list(yaml.safe_load_all(body)))
            except yaml.YAMLError:
                continue


def policy_corpus() -> dict[str, str]:
    """Every ``when`` the project ships or documents, and the tests' expressions: id -> CEL.

    The policies and docs are what users copy; the tests' tables are what the engines are
    held to. bench/cel_engines.py times the engines on the same corpus.
    """
    from bench.cel_cost import EXPRESSIONS

    corpus: dict[str, str] = {}

    def add(label: str, source: str) -> None:
        corpus.setdefault(source, label)

    for path in sorted([*EXAMPLES.rglob("*.yaml"), *ROOT.glob("tests/*/data/*.yaml")]):
        for number, source in enumerate(_whens(list(yaml.safe_load_all(path.read_text())))):
            add(f"{path.relative_to(ROOT)}#{number}", source)
    for path in sorted([ROOT / "README.md", *ROOT.glob("docs/*.md")]):
        for number, source in enumerate(_documented_whens(path.read_text())):
            add(f"{path.relative_to(ROOT)}#{number}", source)
    for label, source, _ in CEL_TABLE:
        add(f"test_policy_matching: {label}", source)
    for source, _ in SAME:
        add(f"test_cel_engines: {source}", source)
    for label, source in EXPRESSIONS.items():
        add(f"bench: {label}", source)
    return {label: source for source, label in corpus.items()}


def example_events() -> dict[str, RunEvent]:
    """Every event in examples/events/, parsed as the policy filter parses it."""
    events = {}
    for path in sorted((EXAMPLES / "events").glob("*.json")):
        cloudevent = json.loads(path.read_text())
        events[path.stem] = parse_event(cloudevent, cloudevent["data"])
    return events


def test_the_corpus_holds_the_shipped_policies() -> None:
    """The corpus is found, not listed: a policy added to examples/ joins it by itself."""
    corpus = policy_corpus().values()
    shipped = yaml.safe_load((EXAMPLES / "policies" / "taskrun-failed-discord.yaml").read_text())
    assert shipped["spec"]["when"] in corpus
    assert 'secrets["slack-webhook"] != ""' in corpus  # tests/reliability/data/policies.yaml
    assert 'event.message.contains("OOMKilled")' in corpus  # docs/policies.md
    assert len(example_events()) >= 7


CORPUS = policy_corpus()
EVENTS = example_events()


@pytest.mark.parametrize("source", list(CORPUS.values()), ids=list(CORPUS))
def test_both_engines_answer_alike_on_the_whole_corpus(source: str) -> None:
    """Same decision (true, false, or an error: no match, logged) for every event in
    examples/events/. The error's wording may differ (cel-python reports Python's words for
    some); test_both_engines_agree pins the wording of the errors a policy meets most."""
    compiled: dict[str, cel.Expression | str] = {}
    for engine in ENGINES:
        try:
            compiled[engine] = cel.compile_expression(source, engine)
        except cel.CelError as error:
            compiled[engine] = f"error: {error}"
    for name, event in EVENTS.items():
        results: dict[str, bool | str] = {}
        for engine, expression in compiled.items():
            if isinstance(expression, str):
                results[engine] = expression
                continue
            values = cel.activation(run=event.run, event=event.view(), policy={})
            try:
                results[engine] = expression.evaluate(cel.with_policy(values, POLICY))
            except cel.CelError as error:
                results[engine] = f"error: {error}"
        decisions = {engine: "error" if isinstance(r, str) else r for engine, r in results.items()}
        assert len(set(decisions.values())) == 1, (name, results)
