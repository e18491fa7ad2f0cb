"""`tkn-notify lint` names every field a template or a `when` reads that no event it can see
has, with its line and the closest field (issue 14): a typo must fail lint, not render empty
or never match on the cluster."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tekton_notifications import events
from tekton_notifications.cli import samples, templatefields
from tekton_notifications.rendering import render_context
from tests.cli.conftest import Invoke, template_object, write_yaml
from tests.conftest import policy_object


def lint(invoke: Invoke, *args: Any) -> tuple[int, list[dict[str, str]]]:
    result = invoke("lint", *args, "-o", "json")
    assert result.exit_code in (0, 1), result.output
    return result.exit_code, json.loads(result.stdout)["problems"]


def messages(found: list[dict[str, str]]) -> list[str]:
    return [f"{p['field']}: {p['message']} [{p['check']}]" for p in found]


TEMPLATES = [
    pytest.param(
        "Run {{ event.name }}\ntook {{ event.durationn | human_duration }}",
        ["line 2: 'event.durationn' is undefined; did you mean 'event.duration'? [template]"],
        id="typo, with its line and the closest field",
    ),
    pytest.param(
        "{{ event.nmae }}\n{% if false %}{{ policy.nmae }}{% endif %}",
        [
            "line 1: 'event.nmae' is undefined; did you mean 'event.name'? [template]",
            "line 2: 'policy.nmae' is undefined; did you mean 'policy.name'? [template]",
        ],
        id="each one, even where no sample goes",
    ),
    pytest.param(
        "{% for c in event.failed %}\n{{ c.pipelineTask }}\n{% endfor %}",
        [
            "line 2: 'c.pipelineTask' is undefined (c is an item of event.failed); "
            "did you mean 'c.pipelineTaskName'? [template]"
        ],
        id="field of a loop variable",
    ),
    pytest.param(
        "{{ event['durationn'] }} {{ run.metdata.name }} {{ template.nmae }}",
        [
            "line 1: 'event.durationn' is undefined; did you mean 'event.duration'? [template]",
            "line 1: 'run.metdata' is undefined; did you mean 'run.metadata'? [template]",
            "line 1: 'template.nmae' is undefined; did you mean 'template.name'? [template]",
        ],
        id="brackets, run's top level, template",
    ),
    pytest.param(
        "{% set e = event %}\n{{ e.durationn }}",
        [
            "line 2: UndefinedVariable: event.durationn is undefined: event has no key "
            "'durationn' (did you mean event.duration? its keys are: [render]"
        ],
        id="through an alias: the render finds it, with the closest key",
    ),
]

GUARDED = [
    pytest.param("{% if event.origin is defined %}{{ event.origin }}{% endif %}", id="is defined"),
    pytest.param("{{ event.origin.reason if event.origin is defined else '' }}", id="inline if"),
    pytest.param("{{ event.origin | default('') }} {{ event.why | d('-') }}", id="default"),
    pytest.param("{% if event.origin is undefined %}-{% endif %}", id="is undefined"),
    pytest.param(
        "{{ event.labels.get('team', 'none') }} {{ event.name.upper() }} "
        "{{ run.spec.nosuch | default(1) }} {{ event.results.commit | default('') }}",
        id="mapping and string methods, open maps",
    ),
    pytest.param(
        "{% for k, v in event.labels | dictsort %}{{ k }}={{ v }}{% endfor %}"
        "{% for c in event.children %}{{ c.name }}{{ loop.index }}{% endfor %}",
        id="loop variables",
    ),
    pytest.param(
        "{{ event.url | default('') }} {{ event.transition }} {{ policy.kind }}"
        "{% if event.previous %}{{ event.previous.outcome }}{% endif %}",
        id="fields the rendering adds",
    ),
]


@pytest.mark.parametrize(("source", "expected"), TEMPLATES)
def test_every_undefined_field_of_a_template_is_named(
    invoke: Invoke, tmp_path: Path, source: str, expected: list[str]
) -> None:
    path = write_yaml(tmp_path / "t.yaml", template_object(params={"message": source}))

    code, found = lint(invoke, path)

    assert code == 1
    assert [p["object"] for p in found] == ["NotificationTemplate ci/slack"] * len(expected)
    shown = messages(found)
    assert len(shown) == len(expected), shown
    for got, want in zip(shown, expected, strict=True):
        prefix, check = want.rsplit(" [", 1)
        assert got.startswith(f"spec.params.message: {prefix}"), got
        assert got.endswith(f"[{check}"), got


@pytest.mark.parametrize("source", GUARDED)
def test_guarded_and_open_reads_are_not_problems(
    invoke: Invoke, tmp_path: Path, source: str
) -> None:
    path = write_yaml(tmp_path / "t.yaml", template_object(params={"message": source}))

    assert lint(invoke, path) == (0, [])


def test_a_policy_override_is_checked_the_same_way(invoke: Invoke, tmp_path: Path) -> None:
    policy = policy_object(templates=["slack"])
    policy["spec"]["templateRefs"][0]["params"] = {"message": "{{ event.namespce }}"}
    path = write_yaml(tmp_path / "p.yaml", policy, template_object())

    _, found = lint(invoke, path)

    assert messages(found) == [
        "spec.templateRefs[0].params.message: line 1: 'event.namespce' is undefined; "
        "did you mean 'event.namespace'? [template]"
    ]


WHENS = [
    pytest.param(
        "event.durationn > 10.0",
        {},
        "CELCheckFailed: event has no field 'durationn': did you mean event.duration? "
        "(line 1, column 7)",
        id="the issue's typo",
    ),
    pytest.param(
        'event.children.exists(t, t.nam == "x")',
        {},
        "CELCheckFailed: t (an item of event.children) has no field 'nam' (line 1, column 28): "
        "did you mean t.name?",
        id="comprehension variable",
    ),
    pytest.param(
        'event.children.exists(t, t.name == "x")',
        {"kinds": ["TaskRun"]},
        "CELCheckFailed: event.children (line 1, column 7) is only set for PipelineRun events, "
        "but the policy selects only TaskRun (spec.selector.kinds)",
        id="a PipelineRun field on a TaskRun policy",
    ),
]


@pytest.mark.parametrize(("when", "selector", "message"), WHENS)
def test_a_when_reading_what_no_event_has_fails_lint(
    invoke: Invoke, tmp_path: Path, when: str, selector: dict[str, Any], message: str
) -> None:
    policy = policy_object(when=when, selector=selector or None)
    path = write_yaml(tmp_path / "p.yaml", policy, template_object())

    code, found = lint(invoke, path)

    assert code == 1
    assert [(p["field"], p["check"]) for p in found] == [("spec.when", "cel")]
    assert found[0]["message"].startswith(message)


@pytest.mark.parametrize(
    "event", samples.builtin(), ids=lambda e: e.id if isinstance(e, events.RunEvent) else ""
)
def test_the_template_schema_lists_exactly_what_a_template_sees(event: events.RunEvent) -> None:
    """The check reads :func:`templatefields.variables`; it must be what rendering gives."""
    schema = templatefields.variables()
    seen = render_context(
        event,
        policy={"name": "p", "namespace": "ci", "kind": "x"},
        template={
            "name": "t",
            "namespace": "ci",
        },
    )
    assert list(seen) == ["run", "event", "policy", "template", "subscription", "digest"]
    assert set(schema) == set(seen)
    assert list(seen["event"]) == list(schema["event"]["properties"])
    assert list(seen["template"]) == list(schema["template"]["properties"])


RENDERED_KINDS = [
    pytest.param(
        {"kinds": ["PipelineRun"]}, [], id="a PipelineRun policy: its samples have children"
    ),
    pytest.param(
        {"kinds": ["TaskRun"]},
        ["event.children[0] is undefined: event.children has 0 items"],
        id="a TaskRun policy: no children",
    ),
    pytest.param(None, ["event.children[0] is undefined"], id="no kinds: every kind's samples"),
]


@pytest.mark.parametrize(("selector", "expected"), RENDERED_KINDS)
def test_a_template_is_rendered_for_the_kinds_its_policies_send_it(
    invoke: Invoke, tmp_path: Path, selector: dict[str, Any] | None, expected: list[str]
) -> None:
    template = template_object(params={"message": "first: {{ event.children[0].name }}"})
    policy = policy_object(templates=["slack"], selector=selector)
    path = write_yaml(tmp_path / "t.yaml", template, policy)

    _, found = lint(invoke, path)

    assert len(found) == len(expected), found
    for problem, message in zip(found, expected, strict=True):
        assert problem["check"] == "render"
        assert message in problem["message"]
