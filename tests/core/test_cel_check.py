"""A ``when`` that reads what its variables cannot hold is refused when the policy loads.

A typo (``event.durationn``) otherwise loads Ready and never matches. The check
(:mod:`tekton_notifications.celcheck`) reads the variables' schema tables, which a test here
holds equal to what ``RunEvent.view()`` and ``Policy.view()`` produce, and refuses no ``when``
the project ships (no false positives).
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tekton_notifications import cel, celcheck, diagnosis, events, matching, models, recording
from tekton_notifications.events import parse_event
from tests.conftest import EXAMPLES, ROOT, event_files, policy_object

ENGINES = cel.available_engines()

BAD = [
    pytest.param(
        "event.durationn > 10.0",
        "event has no field 'durationn': did you mean event.duration? (line 1, column 7)",
        id="typo in an event field",
    ),
    pytest.param(
        'event.reason == "Failed" &&\n  event.namspace == "ci"',
        "event has no field 'namspace': did you mean event.namespace? (line 2, column 9)",
        id="typo on a second line",
    ),
    pytest.param(
        'policy.nmae == "x"',
        "policy has no field 'nmae': did you mean policy.name? (line 1, column 8)",
        id="typo in a policy field",
    ),
    pytest.param(
        'run.metdata.name == "x"',
        "run has no field 'metdata': did you mean run.metadata? (line 1, column 5)",
        id="typo in a top-level run key",
    ),
    pytest.param(
        "has(event.xyz)",
        "event has no field 'xyz': its fields are id, type, source,",
        id="no close field: all are listed",
    ),
    pytest.param(
        "event.duration.seconds > 1.0",
        "event.duration is a number or null: it has no field 'seconds' (line 1, column 16)",
        id="field of a number",
    ),
    pytest.param(
        'event.duration == "10"',
        'event.duration is a number or null, compared with a string "10" (line 1, column 19): '
        "never true",
        id="number compared with a string",
    ),
    pytest.param(
        "1 != event.name",
        "event.name is a string, compared with a number 1 (line 1, column 1): never different",
        id="string compared with a number, literal first",
    ),
    pytest.param(
        'event.kind == "Taskrun"',
        "event.kind is one of 'TaskRun', 'PipelineRun', 'CustomRun', never 'Taskrun' "
        "(line 1, column 15): did you mean 'TaskRun'?",
        id="value outside an enum",
    ),
    pytest.param(
        'event.event == "succeeded"',
        "event.event is one of 'queued', 'started', 'running', 'unknown', 'successful', "
        "'failed', never 'succeeded' (line 1, column 16)",
        id="policy event name where the tekton event is meant",
    ),
    pytest.param(
        'event.children.exists(t, t.nam == "x")',
        "t (an item of event.children) has no field 'nam' (line 1, column 28): "
        "did you mean t.name?",
        id="field of a comprehension variable",
    ),
    pytest.param(
        'event.children[0].nmae == "x"',
        "event.children[0] has no field 'nmae' (line 1, column 19): "
        "did you mean event.children[0].name?",
        id="field of a list item read by index",
    ),
    pytest.param(
        'event["durationn"] > 10.0',
        "event has no field 'durationn' (line 1, column 7): did you mean event.duration?",
        id="key read with brackets",
    ),
    pytest.param(
        'event.labels.exists(k, k.team == "web")',
        "k (a key of event.labels) is a string: it has no field 'team' (line 1, column 26)",
        id="field of a map key",
    ),
    pytest.param(
        'event.children.exists(c, c.status.reason == "x")',
        "c.status is a string: it has no field 'reason' (line 1, column 35)",
        id="field below a comprehension variable's field",
    ),
    pytest.param(
        'event.children.exists(event, event.nam == "x")',
        "event (an item of event.children) has no field 'nam'",
        id="comprehension variable shadowing a variable",
    ),
    pytest.param(
        'event.children.exists(c, c.status == "false")',
        "c.status is one of 'True', 'False', 'Unknown', '', never 'false' (line 1, column 38): "
        "did you mean 'False'?",
        id="comprehension variable's field outside its enum",
    ),
    pytest.param(
        "event.children.exists(c, c.status == 1)",
        "c.status is a string, compared with a number 1 (line 1, column 38): never true",
        id="comprehension variable's field compared with another type",
    ),
    pytest.param("event.name", "must evaluate to bool, but event.name is a string", id="a field"),
    pytest.param("event", "must evaluate to bool, but event is an object", id="a variable"),
    pytest.param('"yes"', 'must evaluate to bool, not a string "yes"', id="a literal"),
]

GOOD = [
    pytest.param('event.reason == "Failed"', id="a string field"),
    pytest.param("event.duration != null && event.duration > 600.0", id="nullable number"),
    pytest.param("event.duration > 600", id="int literal against a number"),
    pytest.param('has(event.labels.team) && event.labels.team == "web"', id="open map: labels"),
    pytest.param('event.results.version.startsWith("1.")', id="open map: results"),
    pytest.param('run.metadata.labels["x"] == "y" && run.spec.nosuch == 1', id="run is open"),
    pytest.param('event.children.exists(c, c.status == "False")', id="comprehension variable"),
    pytest.param('event.children[0].name == "x" && event["duration"] > 1.0', id="indexes"),
    pytest.param('event.labels.exists(k, k.startsWith("team"))', id="map keys are strings"),
    pytest.param(
        "event.children.map(c, c.pipelineTaskName).exists(n, n.size() > 2)", id="map() result"
    ),
    pytest.param('[{"nosuch": 1}].exists(event, event.nosuch == 1)', id="shadowed variable"),
    pytest.param('policy.kind == "ClusterNotificationPolicy"', id="value inside an enum"),
    pytest.param('event.kind in ["TaskRun", "Taskrun"]', id="in is not checked"),
    pytest.param("true", id="a bool literal"),
]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(("when", "message"), BAD)
def test_a_when_that_can_never_be_right_is_refused_at_load(
    engine: str, when: str, message: str
) -> None:
    with pytest.raises(cel.CelCheckError) as refused:
        cel.compile_expression(when, engine)
    assert refused.value.reason == "CELCheckFailed"
    assert message in str(refused.value)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("when", GOOD)
def test_a_when_the_variables_can_satisfy_loads(engine: str, when: str) -> None:
    assert cel.compile_expression(when, engine).cost is not None


KINDS = [
    pytest.param(
        'event.children.exists(c, c.status == "False")',
        ["TaskRun"],
        "event.children (line 1, column 7) is only set for PipelineRun events, but the policy "
        "selects only TaskRun (spec.selector.kinds): it is empty on every event this policy sees",
        id="PipelineRun field, TaskRun policy",
    ),
    pytest.param(
        "event.children.size() > 1",
        ["CustomRun", "TaskRun"],
        "event.children (line 1, column 7) is only set for PipelineRun events, but the policy "
        "selects only CustomRun and TaskRun",
        id="PipelineRun field, TaskRun and CustomRun policy",
    ),
    pytest.param("event.children.size() > 1", ["TaskRun", "PipelineRun"], "", id="one kind has it"),
    pytest.param("event.children.size() > 1", [], "", id="every kind: PipelineRuns have it"),
    pytest.param('event.reason == "Failed"', ["TaskRun"], "", id="field of every kind"),
]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(("when", "kinds", "message"), KINDS)
def test_a_field_only_other_run_kinds_carry_is_refused(
    engine: str, when: str, kinds: list[str], message: str
) -> None:
    """A TaskRun policy reading ``event.children`` sees an empty list on every event: as dead
    as a typo."""
    if not message:
        assert cel.compile_expression(when, engine, kinds=kinds).cost is not None
        return
    with pytest.raises(cel.CelCheckError) as refused:
        cel.compile_expression(when, engine, kinds=kinds)
    assert message in str(refused.value)


def test_the_kinds_are_the_policys_selector_kinds_at_load() -> None:
    ok = recording.Readiness(True, "Ready", "")
    obj = policy_object(selector={"kinds": ["TaskRun"]}, when="event.children.size() > 0")
    refused = recording.policy_readiness(obj, {"slack": ok})
    assert (refused.ready, refused.reason) == (False, "CELCheckFailed")
    assert "only set for PipelineRun events" in refused.message
    compiled = matching.compile_policy(models.parse_policy(obj))
    assert (compiled.ready, compiled.reason) == (False, "CELCheckFailed")


def test_every_problem_is_named_in_one_message() -> None:
    with pytest.raises(cel.CelCheckError) as refused:
        cel.compile_expression('event.nmae == "x" || policy.nmae == "y"')
    assert str(refused.value) == (
        "event has no field 'nmae': did you mean event.name? (line 1, column 7); "
        "policy has no field 'nmae': did you mean policy.name? (line 1, column 29)"
    )


# -- one source of truth ---------------------------------------------------------------------


def _all_events() -> Iterator[Any]:
    for path in [*event_files(), *sorted((EXAMPLES / "events").glob("*.json"))]:
        cloudevent = json.loads(path.read_text())
        yield pytest.param(parse_event(cloudevent, cloudevent["data"]), id=path.name)
    samples = ROOT / "src" / "tekton_notifications" / "samples" / "events.json"
    for index, document in enumerate(json.loads(samples.read_text())):
        yield pytest.param(diagnosis.event_from_document(document), id=f"sample-{index}")


@pytest.mark.parametrize("event", list(_all_events()))
def test_the_schema_lists_exactly_the_fields_view_produces(event: events.RunEvent) -> None:
    view = event.view()
    properties = celcheck.schema()["properties"]["event"]["properties"]
    assert list(view) == list(properties)
    child = properties["children"]["items"]["properties"]
    for item in view["children"]:
        assert list(item) == list(child)
        for name, value in item.items():
            assert value in child[name].get("enum", [value]), (name, value)
    python_types: dict[str, tuple[type, ...]] = {
        "string": (str,),
        "number": (int, float),
        "null": (type(None),),
        "object": (dict,),
        "array": (list,),
    }
    for name, value in view.items():
        kinds = properties[name]["type"]
        kinds = [kinds] if isinstance(kinds, str) else kinds
        allowed = tuple(kind for name_ in kinds for kind in python_types[name_])
        assert isinstance(value, allowed), (name, value, kinds)
        if "enum" in properties[name]:
            assert value in properties[name]["enum"], (name, value)


def test_the_schema_lists_exactly_the_fields_of_the_policy_variable() -> None:
    for obj in (policy_object(), {**policy_object(), "kind": "ClusterNotificationPolicy"}):
        if obj["kind"] == "ClusterNotificationPolicy":
            obj = {
                **obj,
                "metadata": {"name": "p"},
                "spec": {**obj["spec"], "templateNamespace": "n"},
            }
        view = models.parse_policy(obj).view()
        properties = celcheck.schema()["properties"]["policy"]["properties"]
        assert list(view) == list(properties)
        assert view["kind"] in properties["kind"]["enum"]


# -- no false positives ------------------------------------------------------------------------


def _shipped_whens() -> Iterator[Any]:
    for path in sorted([*EXAMPLES.rglob("*.yaml"), *(ROOT / "tests").rglob("*.yaml")]):
        try:
            documents = list(yaml.safe_load_all(path.read_text()))
        except yaml.YAMLError:
            continue  # examples/invalid holds files that are not YAML on purpose
        for document in documents:
            spec = document.get("spec") if isinstance(document, dict) else None
            when = spec.get("when") if isinstance(spec, dict) else None
            if isinstance(when, str):
                name = (document.get("metadata") or {}).get("name")
                yield pytest.param(when, id=f"{path.relative_to(ROOT)}:{name}")


def _test_whens() -> Iterator[Any]:
    """The ``when`` strings the tests pass (``when=...``, ``"when": ...``), but this file's."""
    for path in sorted((ROOT / "tests").rglob("*.py")):
        if path.name == Path(__file__).name:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            value: ast.expr | None = None
            if isinstance(node, ast.keyword) and node.arg == "when":
                value = node.value
            elif isinstance(node, ast.Dict):
                for key, item in zip(node.keys, node.values, strict=True):
                    if isinstance(key, ast.Constant) and key.value == "when":
                        value = item
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                yield pytest.param(value.value, id=f"{path.relative_to(ROOT)}:{value.lineno}")


SHIPPED = list(_shipped_whens()) + list(_test_whens())


def test_the_shipped_whens_were_found() -> None:
    assert len(SHIPPED) >= 5, SHIPPED


#: Whens the tests break on purpose, expecting an error (refused at load since this check).
BROKEN_ON_PURPOSE = {"run.nosuch.field == 1", "event.durationn > 10.0"}


@pytest.mark.parametrize("when", SHIPPED)
def test_every_when_the_project_ships_passes_the_check(when: str) -> None:
    if when in BROKEN_ON_PURPOSE:
        with pytest.raises(cel.CelCheckError):
            cel.compile_expression(when)
        return
    try:
        cel.compile_expression(when)
    except cel.CelCheckError as error:
        pytest.fail(f"refused: {error}")
    except cel.CelError:
        pass  # examples/invalid: refused for another reason, tested where they are


# -- where it shows ----------------------------------------------------------------------------


def test_readiness_says_cel_check_failed_naming_the_field_and_the_closest() -> None:
    ok = recording.Readiness(True, "Ready", "")
    refused = recording.policy_readiness(
        policy_object(when="event.durationn > 10.0"), {"slack": ok}
    )
    assert (refused.ready, refused.reason) == (False, "CELCheckFailed")
    assert refused.message == (
        "spec.when: event has no field 'durationn': did you mean event.duration? (line 1, column 7)"
    )


def test_the_policy_filter_keeps_such_a_policy_unready() -> None:
    policy = models.parse_policy(policy_object(when="event.durationn > 10.0"))
    compiled = matching.compile_policy(policy)
    assert not compiled.ready
    assert compiled.reason == "CELCheckFailed"
    assert compiled.error is not None and "did you mean event.duration?" in compiled.error


def test_the_schema_is_json_schema_and_every_event_view_validates() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    document = celcheck.schema()
    jsonschema.Draft202012Validator.check_schema(document)
    validator = jsonschema.Draft202012Validator(document)
    for param in _all_events():
        (event,) = param.values
        policy = models.parse_policy(policy_object()).view()
        validator.validate({"event": event.view(), "policy": policy, "run": {}})


def test_a_reloaded_policy_is_checked_again_when_its_kinds_change() -> None:
    """The index reuses a compiled ``when`` across reloads; the kinds are part of the check."""
    index = matching.PolicyIndex()
    when = 'event.children.exists(c, c.status == "False")'

    def load(kinds: list[str]) -> matching.CompiledPolicy:
        obj = policy_object(selector={"kinds": kinds}, when=when)
        return index.upsert(models.parse_policy(obj))

    assert load(["PipelineRun"]).ready
    narrowed = load(["TaskRun"])
    assert (narrowed.ready, narrowed.reason) == (False, "CELCheckFailed")
    reloaded = load(["TaskRun"])  # unchanged: reused, reason kept
    assert (reloaded.ready, reloaded.reason) == (False, "CELCheckFailed")
