"""Properties of the pure core, checked on generated input (hypothesis).

- The event parser raises nothing but ``EventError`` (``UnsupportedEvent`` is one) on any
  attributes and data, and for well-formed Tekton events its fields equal the input.
- ``PolicyIndex.match`` agrees with evaluating every policy one by one with
  ``matching.evaluate``, after any sequence of upserts and removals: the buckets never lose
  a match nor add one.
- ``taskruns.run_name`` is always a DNS-1123 label of at most 63 characters, the same for the
  same input, and different for different notifications of the same run.
- Rendering any template with any event raises nothing but ``RenderError``.

``make test`` runs a few deterministic examples of each; ``make fuzz`` (``--fuzz``) many
random ones (tests/fuzz/budget.py).
"""

from __future__ import annotations

import hashlib
import json
import re
import string
import typing
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tekton_notifications import cel, rendering, taskruns, vocabulary
from tekton_notifications.events import (
    CANCELLED_REASONS,
    TIMED_OUT_REASONS,
    EventError,
    RunEvent,
    from_wire,
    parse_event,
)
from tekton_notifications.matching import PolicyIndex, compile_policy, evaluate
from tekton_notifications.models import Policy, Template, parse_policy
from tests.fuzz.budget import examples

# cel-python raises the recursion limit (to 2500) when it first compiles; do it before
# hypothesis runs, which warns about limits changed under it.
cel.compile_expression("true")

DNS_1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
KINDS = {"TaskRun": "taskRun", "PipelineRun": "pipelineRun", "CustomRun": "customRun"}
TEKTON_EVENTS = {
    "TaskRun": ("queued", "started", "running", "unknown", "successful", "failed"),
    "PipelineRun": ("queued", "started", "running", "unknown", "successful", "failed"),
    "CustomRun": ("started", "running", "successful", "failed"),
}
POLICY_EVENT = {"successful": "succeeded"}

# --- generic JSON-like garbage ----------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)


def _json_containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)


json_values = st.recursive(json_scalars, _json_containers, max_leaves=20)
tekton_types = st.builds(
    "dev.tekton.event.{}.{}.{}".format,
    st.sampled_from(["taskrun", "pipelinerun", "customrun", "widgetrun", ""]),
    st.sampled_from([*TEKTON_EVENTS["TaskRun"], "exploded", "Failed", ""]),
    st.sampled_from(["v1", "v2", ""]),
)
any_type = tekton_types | st.text(max_size=40) | json_scalars
any_source = (
    st.builds(
        "/apis///namespaces/{}//{}".format,
        st.text(max_size=10),
        st.text(max_size=10),
    )
    | st.text(max_size=40)
    | json_scalars
)
attributes = st.fixed_dictionaries(
    {"type": any_type},
    optional={
        "id": json_values,
        "source": any_source,
        "time": json_values,
        "traceparent": json_values,
        "tracestate": json_values,
    },
)


def _envelope(content: Any) -> Any:
    return st.sampled_from([*KINDS.values(), "run"]).map(lambda key: {key: content})


run_garbage = st.fixed_dictionaries(
    {},
    optional={
        "metadata": json_values
        | st.fixed_dictionaries(
            {},
            optional={
                "name": json_values,
                "namespace": json_values,
                "uid": json_values,
                "labels": json_values,
                "annotations": json_values,
            },
        ),
        "status": json_values
        | st.fixed_dictionaries(
            {},
            optional={
                "conditions": json_values,
                "startTime": json_values,
                "completionTime": json_values,
                "results": json_values,
                "taskResults": json_values,
                "childReferences": json_values,
                "taskRuns": json_values,
                "runs": json_values,
            },
        ),
        "spec": json_values,
    },
)
any_data = (
    json_values
    | st.binary(max_size=64)
    | st.text(max_size=64)
    | run_garbage.flatmap(_envelope)
    | run_garbage.flatmap(_envelope).map(lambda d: json.dumps(d))
    | st.integers(1, 3000).map(lambda n: "[" * n + "]" * n)
    | st.integers(4000, 6000).map(lambda n: '{"taskRun": ' + "7" * n + "}")
)


@examples(quick=300, fuzz=20_000)
@given(attributes, any_data)
def test_the_parser_raises_nothing_but_event_error(attrs: dict[str, Any], data: Any) -> None:
    try:
        event = parse_event(attrs, data)
    except EventError:
        return
    # What later stages do with a parsed event must not fail either.
    event.view()
    again = from_wire(event.to_wire())
    assert (again.kind, again.tekton_event, again.name, again.namespace) == (
        event.kind,
        event.tekton_event,
        event.name,
        event.namespace,
    )


# --- well-formed Tekton events ----------------------------------------------------------

names = st.from_regex(r"[a-z0-9]([-a-z0-9.]{0,60}[a-z0-9])?", fullmatch=True)
label_maps = st.dictionaries(st.text(min_size=1, max_size=20), st.text(max_size=20), max_size=5)
times = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
reasons = st.sampled_from(
    sorted(CANCELLED_REASONS | TIMED_OUT_REASONS | {"Failed", "Succeeded", "Running", ""})
)


@st.composite
def tekton_events(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(attributes, data, what the parser must report) for a well-formed Tekton event."""
    kind = draw(st.sampled_from(sorted(KINDS)))
    event = draw(st.sampled_from(TEKTON_EVENTS[kind]))
    name, namespace = draw(names), draw(names)
    start_time, completion_time = draw(st.none() | times), draw(st.none() | times)
    fields: dict[str, Any] = {
        "kind": kind,
        "tekton_event": event,
        "name": name,
        "namespace": namespace,
        "uid": draw(st.uuids()).hex,
        "labels": draw(label_maps),
        "annotations": draw(label_maps),
        "reason": draw(reasons),
        "message": draw(st.text(max_size=50)),
        "start_time": start_time,
        "completion_time": completion_time,
    }
    condition = {"type": "Succeeded", "status": "Unknown", "reason": fields["reason"]}
    condition["message"] = fields["message"]
    status: dict[str, Any] = {"conditions": [{"type": "Other"}, condition]}
    for key, value in (("startTime", start_time), ("completionTime", completion_time)):
        if value is not None:
            status[key] = value.isoformat().replace("+00:00", "Z")
    run = {
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": fields["uid"],
            "labels": fields["labels"],
            "annotations": fields["annotations"],
        },
        "status": status,
    }
    attributes = {
        "id": draw(st.uuids()).hex,
        "type": f"dev.tekton.event.{kind.lower()}.{event}.v1",
        "source": f"/apis///namespaces/{namespace}//{name}",
    }
    policy_events = {POLICY_EVENT.get(event, event)}
    if event == "failed" and fields["reason"] in CANCELLED_REASONS:
        policy_events.add("cancelled")
    if event == "failed" and fields["reason"] in TIMED_OUT_REASONS:
        policy_events.add("timedOut")
    fields["policy_events"] = frozenset(policy_events)
    return attributes, {KINDS[kind]: run}, fields


@examples(quick=200, fuzz=5_000)
@given(tekton_events())
def test_a_well_formed_tekton_event_is_parsed_as_sent(
    case: tuple[dict[str, Any], dict[str, Any], dict[str, Any]],
) -> None:
    attrs, data, expected = case
    event = parse_event(attrs, data)
    assert {name: getattr(event, name) for name in expected} == expected
    assert event.id == attrs["id"]
    assert event.run == data[KINDS[event.kind]]
    assert parse_event(attrs, json.dumps(data)) == event


# --- the policy index agrees with evaluating policies one by one -------------------------

NAMESPACES = ("ci", "team-a")
LABELS = {"team": ("web", "api"), "env": ("prod", "staging"), "tier": ("1",)}
WHENS = (
    None,
    'event.outcome == "failed"',
    '"team" in event.labels && event.labels["team"] == "web"',
    'event.labels["team"] == "api"',  # an error when the label is absent
    "event.name.startsWith(",  # never compiles
    "event.name",  # not a boolean
    'run.metadata.name.endsWith("1")',
)


@st.composite
def policy_objects(draw: st.DrawFn) -> dict[str, Any]:
    selector: dict[str, Any] = {}
    if draw(st.booleans()):
        selector["kinds"] = draw(
            st.lists(st.sampled_from(vocabulary.RUN_KINDS), min_size=1, unique=True)
        )
    if draw(st.booleans()):
        selector["names"] = draw(
            st.lists(st.sampled_from(["build-*", "*-1", "deploy", "*", "b?ild-[0-9]"]), min_size=1)
        )
    if draw(st.booleans()):
        selector["matchLabels"] = draw(
            st.dictionaries(
                st.sampled_from(sorted(LABELS)), st.sampled_from(["web", "prod", "1"]), max_size=2
            )
        )
    expressions = []
    for key in draw(st.lists(st.sampled_from(sorted(LABELS)), max_size=2)):
        operator = draw(st.sampled_from(["In", "NotIn", "Exists", "DoesNotExist"]))
        requirement: dict[str, Any] = {"key": key, "operator": operator}
        if operator in ("In", "NotIn"):
            requirement["values"] = draw(st.lists(st.sampled_from(LABELS[key]), min_size=1))
        expressions.append(requirement)
    if expressions:
        selector["matchExpressions"] = expressions
    spec: dict[str, Any] = {
        "events": draw(
            st.lists(st.sampled_from(vocabulary.POLICY_EVENTS), min_size=1, unique=True)
        ),
        "templateRefs": [
            {"name": name}
            for name in draw(st.lists(st.sampled_from(["slack", "mail"]), min_size=1, unique=True))
        ],
        "suspend": draw(st.booleans()),
    }
    if selector:
        spec["selector"] = selector
    when = draw(st.sampled_from(WHENS))
    if when is not None:
        spec["when"] = when
    return {
        "apiVersion": f"{vocabulary.GROUP}/{vocabulary.VERSION}",
        "kind": "NotificationPolicy",
        "metadata": {
            "name": draw(st.sampled_from(["p1", "p2", "p3", "p4"])),
            "namespace": draw(st.sampled_from(NAMESPACES)),
        },
        "spec": spec,
    }


@st.composite
def run_events(draw: st.DrawFn) -> RunEvent:
    kind = draw(st.sampled_from(sorted(KINDS)))
    event = draw(st.sampled_from(TEKTON_EVENTS[kind]))
    name = draw(st.sampled_from(["build-1", "build-2", "deploy", "bild-7"]))
    namespace = draw(st.sampled_from([*NAMESPACES, "other"]))
    labels = {
        key: draw(st.sampled_from(values)) for key, values in LABELS.items() if draw(st.booleans())
    }
    if draw(st.integers(0, 9)) == 0:
        labels[vocabulary.MANAGED_BY_LABEL] = vocabulary.MANAGED_BY_VALUE
    reason = draw(
        st.sampled_from(["Failed", "TaskRunCancelled", "PipelineRunTimeout", "Cancelled"])
    )
    run = {
        "metadata": {"name": name, "namespace": namespace, "uid": "u", "labels": labels},
        "status": {"conditions": [{"type": "Succeeded", "status": "False", "reason": reason}]},
    }
    return parse_event(
        {"id": "e", "type": f"dev.tekton.event.{kind.lower()}.{event}.v1"}, {KINDS[kind]: run}
    )


operations = st.lists(
    st.tuples(st.sampled_from(["upsert", "upsert", "upsert", "remove"]), policy_objects()),
    min_size=1,
    max_size=12,
)


@examples(quick=60, fuzz=2_000)
@given(operations, st.lists(run_events(), min_size=1, max_size=6))
def test_the_index_matches_exactly_what_evaluating_every_policy_matches(
    ops: list[tuple[str, dict[str, Any]]], events: list[RunEvent]
) -> None:
    index = PolicyIndex()
    policies: dict[tuple[str, str], Policy] = {}
    for operation, obj in ops:
        policy = parse_policy(obj)
        if operation == "upsert":
            index.upsert(policy)
            policies[policy.key] = policy
        else:
            index.remove(policy.namespace, policy.name)
            policies.pop(policy.key, None)
    assert len(index) == len(policies)
    for event in events:
        matches, errors = index.match(event)
        expected, expected_errors = [], []
        for key in sorted(policies):
            verdict = evaluate(compile_policy(policies[key]), event)
            if verdict.error:
                expected_errors.append(key)
            elif verdict.matched or verdict.suspended:  # suspended: counted as suppressed
                expected += [(key, ref.name) for ref in policies[key].template_refs]
        assert [(m.policy.key, m.template_ref.name) for m in matches] == expected
        assert [verdict.policy.key for verdict in errors] == expected_errors
        # The matched Policy objects are the current ones, not stale copies.
        assert all(m.policy == policies[m.policy.key] for m in matches)


# --- deterministic run names -----------------------------------------------------------

BASE_EVENT = parse_event(
    {"id": "e", "type": "dev.tekton.event.taskrun.failed.v1"},
    {"taskRun": {"metadata": {"name": "x", "namespace": "ci", "uid": "u"}}},
)
any_names = st.text(max_size=300) | st.text(
    string.ascii_letters + string.digits + ".-_", max_size=300
)


@examples(quick=300, fuzz=20_000)
@given(
    any_names,
    st.sampled_from(TEKTON_EVENTS["TaskRun"]),
    st.sampled_from(["p", "another-policy"]),
    st.sampled_from(["slack", "mail"]),
)
def test_run_names_are_short_dns_labels_and_deterministic(
    name: str, tekton_event: str, policy: str, template: str
) -> None:
    event = replace(BASE_EVENT, name=name, tekton_event=tekton_event)
    key = taskruns.notification_key(event, policy_namespace="ci", policy=policy, template=template)
    run_name = taskruns.run_name(event, key)
    assert len(run_name) <= taskruns.MAX_NAME and DNS_1123_LABEL.match(run_name), run_name
    again = replace(BASE_EVENT, name=name, tekton_event=tekton_event, id="another-delivery")
    assert (
        taskruns.run_name(
            again,
            taskruns.notification_key(
                again, policy_namespace="ci", policy=policy, template=template
            ),
        )
        == run_name
    )
    other_key = taskruns.notification_key(
        event, policy_namespace="ci", policy=policy + "-2", template=template
    )
    assert taskruns.run_name(event, other_key) != run_name
    assert (
        key
        == hashlib.sha256(
            "\x00".join(("u", tekton_event, "ci", policy, template)).encode()
        ).hexdigest()
    )


# --- rendering raises nothing but RenderError ---------------------------------------------

#: Pieces of Jinja2 syntax and of the context, glued at random (mostly syntax errors).
FRAGMENTS = [
    *("{{", "}}", "{%", "%}", "{#", "#}", "event", "run", "policy", "template", ".", "[", "]"),
    *("(", ")", "|", ",", "=", "==", "~", "**", "*", "+", "-", "/", "//", "%", "upper", "join"),
    *("replace", "format", "tojson", "length", "truncate", "indent", "wordwrap", "default"),
    *("map", "json_escape_strict", "human_duration", "attribute=", "range(", "10", "99999"),
    *("'a'", '"%s%d"', "none", "true", "1e308", "-0.0", "__class__", "mro", "loop", "caller"),
    *("namespace(", "dict(", "x", "m(", "name", "labels", "metadata", "children", "duration"),
    *("items()", "keys()", " for x in ", " endfor ", " if ", " elif ", " else ", " endif "),
    *(" set ", " endset ", " macro m(a) ", " endmacro ", " call ", " endcall "),
    *(" filter upper ", " endfilter ", " is ", " in ", " not ", " and ", " or ", "\n", " "),
]
#: Values an expression starts from: the context, and literals of every type.
EXPRESSION_ATOMS = [
    *("event.name", "event.labels", "event.duration", "event.children", "event.failed"),
    *("event.url", "run", "run.metadata", "run.status.conditions", "policy.name", "template"),
    *("'text'", "''", "0", "-1", "3.5", "1e308", "[1, 2]", "{'a': 1}", "none", "true"),
    *("range(5)",),
]
#: Filters, allowed ones and one that is not (batch).
EXPRESSION_FILTERS = [
    *("upper", "length", "list", "tojson", "string", "first", "last", "sum", "int", "float"),
    *("abs", "reverse", "sort", "unique", "json_escape", "json_escape_strict", "shell_quote"),
    *("k8s_env_escape", "slack_escape", "oneline", "human_duration", "trim", "dictsort"),
    *("items", "count", "round", "wordcount", "select", "join(',')", "truncate(3)"),
    *("replace('a', 'bb')", "format(1)", "default('d')", "indent(2)", "map('upper')"),
    *("batch(2)",),
]
OPERATORS = [" + ", " - ", " * ", " / ", " // ", " % ", " ** ", " ~ ", " == ", " < ", " in "]


def _compound(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Expressions built from smaller ones: filters, operators, subscripts, attributes, lists."""
    return st.one_of(
        st.builds("{} | {}".format, inner, st.sampled_from(EXPRESSION_FILTERS)),
        st.builds("({}{}{})".format, inner, st.sampled_from(OPERATORS), inner),
        st.builds("{}[{}]".format, inner, inner),
        st.builds("{}.{}".format, inner, st.sampled_from(["name", "items()", "__len__", "x"])),
        st.builds("[{}, {}]".format, inner, inner),
    )


expressions = st.recursive(st.sampled_from(EXPRESSION_ATOMS), _compound, max_leaves=8)
template_sources = st.one_of(
    st.lists(st.sampled_from(FRAGMENTS), max_size=25).map("".join),
    st.text(max_size=40),
    expressions.map("{{{{ {} }}}}".format),
    st.builds("{{% for x in {} %}}{{{{ {} }}}}{{% endfor %}}".format, expressions, expressions),
    st.builds("{{% set v = {} %}}{{{{ v ~ {} }}}}".format, expressions, expressions),
)
SETTINGS = rendering.RenderSettings(max_param_chars=2_000, max_steps=2_000, max_seconds=0.5)


@examples(quick=150, fuzz=10_000)
@given(st.dictionaries(st.sampled_from(["a", "b"]), template_sources, min_size=1), tekton_events())
def test_rendering_raises_nothing_but_render_error(
    params: Mapping[str, str], case: tuple[dict[str, Any], dict[str, Any], dict[str, Any]]
) -> None:
    template = Template(
        name="t", namespace="ci", target="Task", ref={"name": "task"}, params=dict(params)
    )
    attrs, data, _ = case
    event = parse_event(attrs, data)
    try:
        compiled = rendering.compile_template(template)
        rendered = compiled.render(
            event=event, policy={"name": "p", "namespace": "ci"}, settings=SETTINGS
        )
    except rendering.RenderError as error:
        assert error.reason in typing.get_args(rendering.RenderReason)
        return
    assert set(rendered) == set(params)
    assert all(
        isinstance(value, str) and len(value) <= SETTINGS.max_param_chars
        for value in rendered.values()
    )
