"""Rendering NotificationTemplate params: context variables, overrides, errors, limits, filters."""

from __future__ import annotations

import ast
import json
import pickle
import subprocess
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tekton_notifications import rendering
from tekton_notifications.events import RunEvent, parse_event
from tekton_notifications.models import Template, parse_template
from tekton_notifications.rendering import (
    RenderError,
    RenderSettings,
    compile_template,
    human_duration,
    json_escape,
    json_escape_strict,
    k8s_env_escape,
    oneline,
    render_context,
    shell_quote,
    shell_single_quote_escape,
    slack_escape,
)
from tests.conftest import load_event, load_realworld

POLICY = {"name": "notify-failures", "namespace": "ci"}
DASHBOARD = RenderSettings(dashboard_url="https://tekton.example.com/")


def make_event(
    *,
    kind: str = "PipelineRun",
    event: str = "failed",
    name: str = "build-run-x1",
    message: str = "Tasks Completed: 2 (Failed: 1, Cancelled 0), Skipped: 0",
    reason: str = "Failed",
    labels: dict[str, str] | None = None,
    start: str | None = "2025-06-12T09:14:05Z",
    end: str | None = "2025-06-12T09:16:03Z",
    task_runs: dict[str, Any] | None = None,
) -> RunEvent:
    """A Tekton event built in the test, for cases the fixtures don't cover."""
    status: dict[str, Any] = {
        "conditions": [
            {"type": "Succeeded", "status": "False", "reason": reason, "message": message}
        ],
    }
    if start:
        status["startTime"] = start
    if end:
        status["completionTime"] = end
    if task_runs is not None:
        status["taskRuns"] = task_runs
    run = {
        "metadata": {"name": name, "namespace": "ci", "uid": "u-1", "labels": labels or {}},
        "spec": {"params": [{"name": "git-url", "value": "https://github.com/example/app"}]},
        "status": status,
    }
    key = {"PipelineRun": "pipelineRun", "TaskRun": "taskRun", "CustomRun": "customRun"}[kind]
    attributes = {
        "id": "e-1",
        "type": f"dev.tekton.event.{kind.lower()}.{event}.v1",
        "source": f"/apis///namespaces/ci//{name}",
        "time": "2025-06-12T09:16:03Z",
    }
    return parse_event(attributes, {key: run})


def template(params: dict[str, str], name: str = "slack", namespace: str = "ci") -> Template:
    return parse_template(
        {
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"taskRef": {"name": "send-to-webhook-slack"}, "params": params},
        }
    )


def render(
    source: str,
    event: RunEvent | None = None,
    settings: RenderSettings = rendering.DEFAULT_SETTINGS,
) -> str:
    compiled = compile_template(template({"message": source}))
    out = compiled.render(event=event or make_event(), policy=POLICY, settings=settings)
    return out["message"]


def render_error(source: str, event: RunEvent | None = None, **kwargs: Any) -> RenderError:
    with pytest.raises(RenderError) as caught:
        render(source, event, **kwargs)
    return caught.value


# ---------------------------------------------------------------------------------------------
# Context variables


def test_event_fields_from_the_failed_pipelinerun_fixture() -> None:
    event = load_event("08-pipelinerun-failed.json")
    source = (
        "{{ event.kind }}|{{ event.event }}|{{ event.outcome }}|{{ event.namespace }}/"
        "{{ event.name }}|{{ event.reason }}|{{ event.message }}|{{ event.startTime }}|"
        "{{ event.completionTime }}|{{ event.duration }}|{{ event.type }}|"
        "{{ event.labels['tekton.dev/pipeline'] }}|{{ event.failed | length }}"
    )
    assert render(source, event) == (
        "PipelineRun|failed|failed|ci/storefront-ci-run-p7v2k|Failed|"
        "Tasks Completed: 2 (Failed: 1, Cancelled 0), Skipped: 1|2026-10-14T13:41:22Z|"
        "2026-10-14T13:43:20Z|118.0|dev.tekton.event.pipelinerun.failed.v1|storefront-ci|0"
    )


def test_run_is_the_tekton_object_as_sent() -> None:
    event = load_event("08-pipelinerun-failed.json")
    source = (
        "{{ run.metadata.annotations['example.com/git-sha'] }} "
        "{{ run.spec.params | selectattr('name', 'equalto', 'git-url') | map(attribute='value')"
        " | first }} {{ run.status.skippedTasks[0].name }}"
    )
    assert render(source, event) == (
        "9c41e7b2d05a8f36e1c4b7a90d2e5f8316ab4c07 https://github.com/example/storefront.git "
        "build-image"
    )


def test_policy_and_template_variables() -> None:
    compiled = compile_template(
        template({"m": "{{ policy.namespace }}/{{ policy.name }} {{ template.name }}"}, "tpl")
    )
    out = compiled.render(event=make_event(), policy=POLICY)
    assert out == {"m": "ci/notify-failures tpl"}


def test_cancelled_outcome_is_more_specific_than_failed() -> None:
    event = load_event("10-pipelinerun-cancelled.json")
    assert render("{{ event.event }} {{ event.outcome }} {{ event.reason }}", event) == (
        "failed cancelled Cancelled"
    )


def test_url_is_none_without_a_dashboard() -> None:
    assert render("{{ event.url is none }}") == "True"
    assert render("{{ event.url | default('no dashboard') }}") == "no dashboard"


@pytest.mark.parametrize(
    ("kind", "path"),
    [("PipelineRun", "pipelineruns"), ("TaskRun", "taskruns"), ("CustomRun", "customruns")],
)
def test_url_links_the_run_in_tekton_dashboard(kind: str, path: str) -> None:
    event = make_event(kind=kind)
    assert render("{{ event.url }}", event, DASHBOARD) == (
        f"https://tekton.example.com/#/namespaces/ci/{path}/build-run-x1"
    )


def test_failed_children_from_an_older_tekton_pipelinerun() -> None:
    """Before v0.45 a PipelineRun's status embeds each TaskRun's status: failures are named."""
    event = load_event("15-pipelinerun-failed-older-taskruns.json")
    context = render_context(
        event, policy=POLICY, template={"name": "t", "namespace": "ci"}, settings=DASHBOARD
    )
    failed = context["event"]["failed"]
    assert [(c["name"], c["pipelineTaskName"], c["reason"]) for c in failed] == [
        ("docs-site-pr-1042-h8d5m-build", "build", "Failed")
    ]
    assert failed[0]["message"].endswith("-c step-hugo")
    source = (
        "{% for c in event.failed %}{{ c.pipelineTaskName }}: {{ c.reason }} - "
        "{{ c.message | truncate(30) }}{% endfor %}"
    )
    assert render(source, event) == 'build: Failed - "step-hugo" exited with...'


@pytest.mark.reference("fixtures/tekton-events/realworld")
def test_failed_children_from_the_realworld_pipelinerun() -> None:
    """A PipelineRun captured from a production Tekton (v0.3x, ``status.taskRuns``)."""
    event = load_realworld("event-pipelinerun.failed.json")
    context = render_context(
        event, policy=POLICY, template={"name": "t", "namespace": "ci"}, settings=DASHBOARD
    )
    failed = context["event"]["failed"]
    assert [(c["name"], c["pipelineTaskName"], c["reason"]) for c in failed] == [
        ("build-package-tikv-tikv-linux-9bn55-build-binaries", "build-binaries", "Failed")
    ]
    assert failed[0]["message"].startswith('"step-build" exited with code 1 (image: "ghcr.io/')
    assert failed[0]["message"].endswith("-c step-build")
    source = (
        "{% for c in event.failed %}{{ c.pipelineTaskName }}: {{ c.reason }} - "
        "{{ c.message | truncate(30) }}{% endfor %}"
    )
    assert render(source, event) == 'build-binaries: Failed - "step-build" exited with...'
    assert context["event"]["url"] == (
        "https://tekton.example.com/#/namespaces/ee-cd/pipelineruns/"
        "build-package-tikv-tikv-linux-9bn55"
    )


def test_failed_lists_only_children_whose_condition_is_false() -> None:
    event = make_event(
        task_runs={
            "run-a": {
                "pipelineTaskName": "a",
                "status": {"conditions": [{"type": "Succeeded", "status": "True"}]},
            },
            "run-b": {
                "pipelineTaskName": "b",
                "status": {
                    "conditions": [
                        {"type": "Succeeded", "status": "False", "reason": "Failed", "message": "x"}
                    ]
                },
            },
        }
    )
    assert render("{{ event.children | length }} {{ event.failed | tojson }}", event) == (
        '2 [{"kind": "TaskRun", "message": "x", "name": "run-b", "pipelineTaskName": "b", '
        '"reason": "Failed", "status": "False"}]'
    )


def test_context_names() -> None:
    context = render_context(
        make_event(), policy=POLICY, template={"name": "t", "namespace": "ci"}, settings=DASHBOARD
    )
    assert sorted(context) == sorted(rendering.CONTEXT_NAMES)
    assert set(context["event"]) >= {"url", "failed", "outcome", "duration", "children"}


# ---------------------------------------------------------------------------------------------
# Params and overrides


def test_params_render_in_template_order() -> None:
    compiled = compile_template(template({"b": "{{ event.name }}", "a": "literal", "c": ""}))
    out = compiled.render(event=make_event(), policy=POLICY)
    assert list(out) == ["b", "a", "c"]
    assert out == {"b": "build-run-x1", "a": "literal", "c": ""}


def test_overrides_replace_params_and_add_new_ones_after_the_template_params() -> None:
    compiled = compile_template(template({"message": "{{ event.name }}", "bot-name": "Tekton"}))
    out = compiled.render(
        event=make_event(),
        policy=POLICY,
        overrides={"icon-emoji": ":{{ event.outcome }}:", "message": "override {{ event.reason }}"},
    )
    assert list(out) == ["message", "bot-name", "icon-emoji"]
    assert out == {"message": "override Failed", "bot-name": "Tekton", "icon-emoji": ":failed:"}


def test_override_errors_name_the_policy() -> None:
    compiled = compile_template(template({"message": "ok"}))
    with pytest.raises(RenderError) as caught:
        compiled.render(event=make_event(), policy=POLICY, overrides={"message": "{{ oops"})
    error = caught.value
    assert (error.template, error.param, error.reason) == (
        "slack",
        "message",
        "TemplateSyntaxError",
    )
    assert "override from NotificationPolicy ci/notify-failures" in str(error)


def test_overrides_are_compiled_once_per_source() -> None:
    compiled = compile_template(template({"message": "ok"}))
    source = "{{ event.name }} override-cache-probe"
    before = rendering._compile_source.cache_info()
    for _ in range(5):
        compiled.render(event=make_event(), policy=POLICY, overrides={"message": source})
    after = rendering._compile_source.cache_info()
    assert after.misses - before.misses == 1
    assert after.hits - before.hits == 4


def test_whitespace_control_trims_block_lines() -> None:
    source = "first\n{% if event.reason %}\n  reason: {{ event.reason }}\n{% endif %}\nlast"
    assert render(source) == "first\n  reason: Failed\nlast"


# ---------------------------------------------------------------------------------------------
# Errors


def test_undefined_attribute_names_template_param_and_variable() -> None:
    error = render_error("hello {{ event.nosuch }}")
    assert (error.template, error.namespace, error.param) == ("slack", "ci", "message")
    assert error.reason == "UndefinedVariable"
    assert not error.retryable
    message = str(error)
    assert message.startswith("NotificationTemplate ci/slack, param 'message': UndefinedVariable")
    assert "event.nosuch is undefined" in message
    assert "outcome" in message  # lists what event does have


def test_missing_label_key_is_an_error_naming_the_path() -> None:
    error = render_error('{{ run.metadata.labels["example.com/team"] }}')
    assert error.reason == "UndefinedVariable"
    assert "run.metadata.labels['example.com/team'] is undefined" in str(error)
    assert "has no key 'example.com/team'" in str(error)


def test_undefined_top_level_name() -> None:
    error = render_error("{{ pipeline.name }}")
    assert error.reason == "UndefinedVariable"
    assert "'pipeline' is undefined; the variables are run, event, policy, template" in str(error)


def test_missing_list_element() -> None:
    error = render_error("{{ event.failed[0].name }}")
    assert "event.failed[0] is undefined: event.failed has 0 items" in str(error)


def test_undefined_is_fine_when_tested_or_defaulted() -> None:
    source = (
        "{{ event.nosuch is defined }} {{ run.metadata.labels['x'] | default('none') }} "
        "{{ event.labels.get('x', 'dflt') }}"
    )
    assert render(source) == "False none dflt"


def test_error_in_a_multiline_param_names_the_line() -> None:
    error = render_error("line one\n{{ event.name }}\n{{ event.nope }}")
    assert error.line == 3
    assert ", line 3: UndefinedVariable" in str(error)


def test_syntax_error_is_reported_at_compile_time_naming_the_param() -> None:
    with pytest.raises(RenderError) as caught:
        compile_template(template({"ok": "{{ event.name }}", "message": "a\n{% if x %}b"}))
    error = caught.value
    assert (error.param, error.reason, error.line) == ("message", "TemplateSyntaxError", 2)
    assert "param 'message'" in str(error)


def test_unknown_filter_is_a_compile_error_even_in_an_untaken_branch() -> None:
    with pytest.raises(RenderError, match="no filter named 'shellquote'") as caught:
        compile_template(template({"message": "{% if false %}{{ x | shellquote }}{% endif %}"}))
    assert caught.value.reason == "TemplateSyntaxError"


def test_runtime_errors_become_render_failed() -> None:
    error = render_error("{{ 1 / 0 }}")
    assert error.reason == "RenderFailed"
    assert "ZeroDivisionError" in str(error)


def test_render_error_pickles() -> None:
    error = render_error("{{ event.nosuch }}")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.template, copy.param, copy.reason, str(copy)) == (
        error.template,
        error.param,
        error.reason,
        str(error),
    )


# ---------------------------------------------------------------------------------------------
# None


def test_none_is_never_rendered_silently() -> None:
    event = load_event("01-pipelinerun-queued.json")
    error = render_error("started {{ event.startTime }}", event)
    assert error.reason == "UndefinedVariable"
    assert "event.startTime is None" in str(error)
    assert "default" in str(error)


def test_default_replaces_none_too() -> None:
    event = load_event("01-pipelinerun-queued.json")
    assert render("{{ event.startTime | default('not started') }}", event) == "not started"
    assert render("{{ event.duration | d('?') }} {{ '' | default('x', true) }}", event) == "? x"
    assert render("{{ event.name | default('x') }}", event) == "storefront-ci-run-p7v2k"


def test_none_in_concatenation_is_an_error() -> None:
    error = render_error("{{ 'url: ' ~ event.url }}")
    assert error.reason == "UndefinedVariable"


def test_functions_are_not_rendered() -> None:
    error = render_error("{{ event.labels.items }}")
    assert "event.labels.items is a function" in str(error)


# ---------------------------------------------------------------------------------------------
# Limits


def test_output_over_max_param_chars_is_an_error() -> None:
    small = RenderSettings(max_param_chars=5)
    assert render("abcde", settings=small) == "abcde"
    error = render_error("abcdef", settings=small)
    assert error.reason == "OutputTooLarge"
    assert "5 characters" in str(error)


def test_runaway_nested_loop_with_output_stops_quickly() -> None:
    started = time.monotonic()
    error = render_error(
        "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}"
    )
    assert error.reason == "OutputTooLarge"
    assert time.monotonic() - started < 1


def test_runaway_nested_loop_without_output_stops_at_the_step_limit() -> None:
    started = time.monotonic()
    error = render_error(
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        settings=RenderSettings(max_steps=20_000),
    )
    assert error.reason == "RenderLimitExceeded"
    assert "20000 loop iterations" in str(error)
    assert time.monotonic() - started < 1


def test_slow_render_stops_at_the_deadline() -> None:
    started = time.monotonic()
    error = render_error(
        "{% for i in range(100000) %}{% set x = run | tojson %}{% endfor %}",
        settings=RenderSettings(max_seconds=0.2, max_steps=10**9),
    )
    assert error.reason == "RenderLimitExceeded"
    assert "longer than 0.2s" in str(error)
    assert time.monotonic() - started < 1.5


# ---------------------------------------------------------------------------------------------
# Filters

NASTY = 'say "hi" it\'s a\\b\n\ttab $(reboot) `id` ünï ✅ {x}'

FILTER_TABLE: list[tuple[str, Any, str]] = [
    # json_escape
    ("json_escape", 'a "b"', 'a \\"b\\"'),
    ("json_escape", "back\\slash", "back\\\\slash"),
    ("json_escape", "l1\nl2\r\t", "l1\\nl2\\r\\t"),
    ("json_escape", "$(reboot) `id` it's", "$(reboot) `id` it's"),
    ("json_escape", "ünï ✅ \x01", "ünï ✅ \\u0001"),
    ("json_escape", 42, "42"),
    # json_escape_strict
    ("json_escape_strict", 'a "b"', "a \\u0022b\\u0022"),
    ("json_escape_strict", "back\\slash", "back\\u005cslash"),
    ("json_escape_strict", "l1\nl2\t", "l1\\u000al2\\u0009"),
    ("json_escape_strict", "$(reboot) `id`", "\\u0024(reboot) \\u0060id\\u0060"),
    (
        "json_escape_strict",
        "it's {x} *?[a]",
        "it\\u0027s \\u007bx\\u007d \\u002a\\u003f\\u005ba\\u005d",
    ),
    ("json_escape_strict", "ünï ✅ 🚀", "ünï ✅ 🚀"),
    ("json_escape_strict", "a  b   c", "a \\u0020b \\u0020 c"),
    ("json_escape_strict", " lead trail ", "\\u0020lead trail\\u0020"),
    ("json_escape_strict", "-n", "\\u002dn"),
    (
        "json_escape_strict",
        "a-b <x> & y | z; (w) #1 @u ~ % ^ =+!",
        "a-b <x> & y | z; (w) #1 @u ~ % ^ =+!",
    ),
    ("json_escape_strict", "\u2028\x85\x7f", "\\u2028\\u0085\\u007f"),
    ("json_escape_strict", "", ""),
    # shell_quote
    ("shell_quote", "plain", "plain"),
    ("shell_quote", "it's $(x)", "'it'\"'\"'s $(x)'"),
    ("shell_quote", "", "''"),
    ("shell_quote", "a\nb `c`", "'a\nb `c`'"),
    # shell_single_quote_escape
    ("shell_single_quote_escape", "it's", "it'\\''s"),
    ("shell_single_quote_escape", '"$(x)" `y` \\', '"$(x)" `y` \\'),
    # k8s_env_escape
    ("k8s_env_escape", "$(URL) $$ $x", "$$(URL) $$$$ $$x"),
    ("k8s_env_escape", "no dollars ✅", "no dollars ✅"),
    # slack_escape
    ("slack_escape", "<!channel> & <http://x|y>", "&lt;!channel&gt; &amp; &lt;http://x|y&gt;"),
    # oneline
    ("oneline", "  a\n\n b\tc\r\n d  ", "a b c d"),
    ("oneline", "single", "single"),
    # tojson (Jinja's: HTML-safe, so no raw ' or < in the output)
    ("tojson", "it's <b>", '"it\\u0027s \\u003cb\\u003e"'),
    ("tojson", {"b": [1, None], "a": "x"}, '{"a": "x", "b": [1, null]}'),
]


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    FILTER_TABLE,
    ids=[f"{name}-{index}" for index, (name, _, _) in enumerate(FILTER_TABLE)],
)
def test_filter_table(name: str, value: Any, expected: str) -> None:
    # The value reaches the template as policy.value: any Python value, no quoting games.
    compiled = compile_template(template({"out": "{{ policy.value | " + name + " }}"}))
    out = compiled.render(event=make_event(), policy={**POLICY, "value": value})
    assert out["out"] == expected


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (None, "unknown"),
        (0, "0s"),
        (45, "45s"),
        (59.4, "59s"),
        (59.6, "1m"),
        (60, "1m"),
        (118, "1m 58s"),
        (3599, "59m 59s"),
        (3600, "1h"),
        (7380, "2h 3m"),
        (7385, "2h 3m"),
        (86_400, "1d"),
        (90_061, "1d 1h"),
        (-1, "unknown"),
        (float("nan"), "unknown"),
        (timedelta(seconds=61), "1m 1s"),
        ("118", "1m 58s"),
    ],
)
def test_human_duration(seconds: Any, expected: str) -> None:
    assert human_duration(seconds) == expected


def test_human_duration_in_a_template_and_on_bad_input() -> None:
    assert render("{{ event.duration | human_duration }}") == "1m 58s"
    assert render_error("{{ 'soon' | human_duration }}").reason == "RenderFailed"


def test_escaping_filters_refuse_none() -> None:
    error = render_error("{{ event.url | json_escape }}")
    assert error.reason == "UndefinedVariable"
    assert "json_escape" in str(error)


def test_public_filter_set() -> None:
    public = {name for name in rendering._ENV.filters if not name.startswith("__")}
    assert public == set(rendering.FILTER_NAMES)
    for absent in ("attr", "batch", "center", "pprint", "random", "safe", "slice", "xmlattr"):
        assert absent not in public
    assert set(rendering._ENV.globals) == set(rendering.GLOBAL_NAMES)


def test_nasty_text_through_each_escaper_decodes_back() -> None:
    assert json.loads('"' + json_escape(NASTY) + '"') == NASTY
    assert json.loads('"' + json_escape_strict(NASTY) + '"') == NASTY
    assert ast.literal_eval('"' + json_escape_strict(NASTY) + '"') == NASTY
    # An f-string literal: braces in the text must not become replacement fields.
    assert eval('f"""' + json_escape_strict(NASTY) + '"""') == NASTY
    assert shell_single_quote_escape(NASTY).count("'") == 3 * NASTY.count("'")
    assert oneline(NASTY) == 'say "hi" it\'s a\\b tab $(reboot) `id` ünï ✅ {x}'
    assert k8s_env_escape(NASTY).replace("$$", "$") == NASTY
    assert slack_escape(NASTY) == NASTY


# ---------------------------------------------------------------------------------------------
# Properties

ANY_TEXT = st.text(max_size=60)
SHELL_TEXT = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00"),
    max_size=40,
)


@given(ANY_TEXT)
def test_json_escape_round_trips_through_json(text: str) -> None:
    assert json.loads('"' + json_escape(text) + '"') == text


@given(ANY_TEXT)
def test_json_escape_strict_round_trips_through_json_and_python(text: str) -> None:
    escaped = json_escape_strict(text)
    assert json.loads('"' + escaped + '"') == text
    assert ast.literal_eval('"' + escaped + '"') == text
    assert not set(escaped) & set("\"'`${}*?[]\t\n\r")
    assert not escaped.startswith(("-", " ")) and not escaped.endswith(" ")
    assert "  " not in escaped


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(SHELL_TEXT)
def test_escapes_survive_a_real_shell(text: str) -> None:
    """One sh per example. A single-quoted word built with shell_single_quote_escape, and an
    unquoted ``echo $1`` of json_escape_strict (word splitting, globbing, echo's options and
    backslash handling, as send-to-telegram does) must both give the text back."""
    script = "printf '%s\\0' '" + shell_single_quote_escape(text) + "'; echo $1"
    completed = subprocess.run(
        ["/bin/sh", "-c", script, "sh", json_escape_strict(text)],
        capture_output=True,
        check=True,
        cwd=Path(__file__).parent,  # files for a stray glob to match
        timeout=10,
    )
    quoted, echoed = completed.stdout.decode().split("\0")
    assert quoted == text
    assert json.loads('"' + echoed.removesuffix("\n") + '"') == text


@given(SHELL_TEXT)
@settings(max_examples=50, deadline=None)
def test_shell_quote_is_one_word(text: str) -> None:
    completed = subprocess.run(
        ["/bin/sh", "-c", f"printf %s {shell_quote(text)}"],
        capture_output=True,
        check=True,
        timeout=10,
    )
    assert completed.stdout.decode() == text
