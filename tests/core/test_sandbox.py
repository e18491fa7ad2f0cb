"""The template sandbox: known Jinja2 SSTI payloads, resource exhaustion, environment access.

Every payload must end in a RenderError (at compile or render time) whose message does not
carry Python internals, and no template may read the process environment.
"""

from __future__ import annotations

import os
import re
import time

import pytest

from tekton_notifications.events import RunEvent, parse_event
from tekton_notifications.models import parse_template
from tekton_notifications.rendering import RenderError, RenderSettings, compile_template

POLICY = {"name": "notify", "namespace": "ci"}


def make_event() -> RunEvent:
    run = {
        "metadata": {"name": "build-x1", "namespace": "ci", "labels": {"team": "a"}},
        "spec": {"params": [{"name": "git-url", "value": "https://github.com/example/app"}]},
        "status": {
            "conditions": [
                {"type": "Succeeded", "status": "False", "reason": "Failed", "message": "boom"}
            ],
            "startTime": "2025-06-12T09:14:05Z",
            "completionTime": "2025-06-12T09:16:03Z",
        },
    }
    attributes = {
        "id": "e-1",
        "type": "dev.tekton.event.pipelinerun.failed.v1",
        "source": "/apis///namespaces/ci//build-x1",
    }
    return parse_event(attributes, {"pipelineRun": run})


def render(source: str, settings: RenderSettings | None = None) -> str:
    """Compile and render one param; RenderError from either step propagates."""
    template = parse_template(
        {
            "metadata": {"name": "evil", "namespace": "ci"},
            "spec": {"taskRef": {"name": "x"}, "params": {"p": source}},
        }
    )
    compiled = compile_template(template)
    out = compiled.render(event=make_event(), policy=POLICY, settings=settings or RenderSettings())
    return out["p"]


#: (id, payload, expected RenderError reason)
SSTI_PAYLOADS: list[tuple[str, str, str]] = [
    ("str-mro-subclasses", "{{ ''.__class__.__mro__[1].__subclasses__() }}", "SecurityError"),
    ("str-base-subclasses", "{{ ''.__class__.__base__.__subclasses__() }}", "SecurityError"),
    ("list-class", "{{ [].__class__ }}", "SecurityError"),
    ("dict-class-via-subscript", "{{ run['__class__'] }}", "SecurityError"),
    ("cycler-globals-os", "{{ cycler.__init__.__globals__.os }}", "SecurityError"),
    ("joiner-globals", "{{ joiner.__init__.__globals__ }}", "SecurityError"),
    ("namespace-globals", "{{ namespace.__init__.__globals__ }}", "SecurityError"),
    ("lipsum-globals", "{{ lipsum.__globals__ }}", "SecurityError"),
    ("lipsum-builtins", "{{ lipsum.__globals__['__builtins__'] }}", "SecurityError"),
    ("self-context", "{{ self._TemplateReference__context }}", "SecurityError"),
    ("self-init-globals", "{{ self.__init__.__globals__.__builtins__ }}", "SecurityError"),
    ("flask-config", "{{ config }}", "UndefinedVariable"),
    ("flask-config-items", "{{ config.items() }}", "UndefinedVariable"),
    ("flask-request", "{{ request.application.__globals__ }}", "UndefinedVariable"),
    ("flask-url-for", "{{ url_for.__globals__['os'] }}", "SecurityError"),
    ("run-class", "{{ run.__class__ }}", "SecurityError"),
    ("event-items-globals", "{{ event.items.__globals__ }}", "SecurityError"),
    ("event-items-self", "{{ event.items.__self__ }}", "SecurityError"),
    ("range-globals", "{{ range.__globals__ }}", "SecurityError"),
    ("range-code", "{{ range.__code__.co_consts }}", "SecurityError"),
    ("dict-mro", "{{ dict.mro() }}", "SecurityError"),
    ("dict-fromkeys", "{{ dict.fromkeys(range(3)) }}", "SecurityError"),
    ("loop-class", "{% for x in [1] %}{{ loop.__class__ }}{% endfor %}", "SecurityError"),
    ("macro-func", "{% macro m() %}{% endmacro %}{{ m._func.__globals__ }}", "SecurityError"),
    ("attr-filter", "{{ ''|attr('__class__') }}", "TemplateSyntaxError"),
    ("attr-filter-chain", "{{ (''|attr('__class__')|attr('__mro__'))[1] }}", "TemplateSyntaxError"),
    ("map-attr", "{{ [run]|map(attribute='__class__')|list }}", "SecurityError"),
    ("format-class", "{{ '{0.__class__}'.format(run) }}", "SecurityError"),
    ("format-globals", "{{ '{0.__init__.__globals__}'.format(range) }}", "SecurityError"),
    ("format-map", "{{ '{x.__class__}'.format_map({'x': run}) }}", "SecurityError"),
    ("format-via-getitem", "{{ '{0.__class__}'['format'](run) }}", "SecurityError"),
    ("include-passwd", "{% include '/etc/passwd' %}", "TemplateSyntaxError"),
    ("import-os", "{% import 'os' as os %}{{ os.environ }}", "TemplateSyntaxError"),
    ("from-import", "{% from 'os' import environ %}{{ environ }}", "TemplateSyntaxError"),
    ("extends", "{% extends '/etc/hostname' %}", "TemplateSyntaxError"),
    ("do-extension", "{% do run.clear() %}", "TemplateSyntaxError"),
    ("debug-extension", "{% debug %}", "TemplateSyntaxError"),
    ("mutate-dict", "{{ run.clear() }}", "SecurityError"),
    ("mutate-list", "{{ event.children.append(1) }}", "SecurityError"),
    ("mutate-labels", "{{ event.labels.update({'x': 1}) }}", "SecurityError"),
    ("pop-in-set", "{% set x = run.pop('metadata') %}{{ x }}", "SecurityError"),
    ("range-huge", "{{ range(10**9)|list }}", "RenderLimitExceeded"),
    ("range-overflow", "{{ range(10**30) }}", "RenderLimitExceeded"),
    ("str-repeat", "{{ 'x' * 10**9 }}", "RenderLimitExceeded"),
    ("list-repeat", "{{ [1] * 10**9 }}", "RenderLimitExceeded"),
    ("pow-bomb", "{{ 9 ** (9 ** 9) }}", "RenderLimitExceeded"),
    ("int-mul-bomb", "{% set n = namespace(v=2**9000) %}{{ n.v * n.v }}", "RenderLimitExceeded"),
    ("str-center", "{{ 'x'.center(10**9) }}", "SecurityError"),
    ("str-ljust", "{{ 'x'.ljust(10**9) }}", "SecurityError"),
    ("str-zfill", "{{ 'x'.zfill(10**9) }}", "SecurityError"),
    ("str-expandtabs", "{{ '\t'.expandtabs(10**9) }}", "SecurityError"),
    ("int-to-bytes", "{{ (1).to_bytes(10**9, 'big') }}", "SecurityError"),
    ("printf-width", "{{ '%0999999999d' % 1 }}", "RenderLimitExceeded"),
    ("printf-star", "{{ '%*d' % (10**9, 1) }}", "SecurityError"),
    ("format-filter-width", "{{ '%0999999999d'|format(1) }}", "RenderLimitExceeded"),
    ("format-width", "{{ '{:>999999999}'.format(1) }}", "RenderLimitExceeded"),
    ("format-nested-width", "{{ '{:>{w}}'.format('x', w=10**9) }}", "SecurityError"),
    ("indent-bomb", "{{ ('x\n' * 1000)|indent(10**6) }}", "RenderLimitExceeded"),
    ("replace-bomb", "{{ ('x' * 100000)|replace('x', 'y' * 100000) }}", "RenderLimitExceeded"),
    ("str-replace-bomb", "{{ ('x' * 100000).replace('', 'y' * 100) }}", "RenderLimitExceeded"),
    ("join-bomb", "{{ (['x' * 100000] * 1000)|join }}", "RenderLimitExceeded"),
    ("str-join-bomb", "{{ ''.join(['x' * 100000] * 1000) }}", "RenderLimitExceeded"),
    ("tojson-bomb", "{{ (['x' * 100000] * 1000)|tojson }}", "RenderLimitExceeded"),
    ("print-bomb", "{{ ['x' * 100000] * 1000 }}", "RenderLimitExceeded"),
    ("upper-of-list-bomb", "{{ (['x' * 100000] * 1000)|upper }}", "RenderLimitExceeded"),
    ("concat-list-bomb", "{{ (['x' * 100000] * 1000) ~ '' }}", "RenderLimitExceeded"),
    ("sum-lists", "{{ ([[1]] * 1000)|sum(start=[]) }}", "SecurityError"),
    (
        "concat-doubling",
        "{% set ns = namespace(s='x') %}{% for i in range(64) %}"
        "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}",
        "RenderLimitExceeded",
    ),
    (
        "plus-doubling",
        "{% set ns = namespace(s=['x']) %}{% for i in range(64) %}"
        "{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s|length }}",
        "RenderLimitExceeded",
    ),
    (
        "captured-block-bomb",
        "{% set x %}{% for i in range(100000) %}{{ 'x' * 100000 }}{% endfor %}{% endset %}"
        "{{ x|length }}",
        "RenderLimitExceeded",
    ),
    (
        "nested-loops-no-output",
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        "RenderLimitExceeded",
    ),
    (
        "nested-loops-output",
        "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
        "OutputTooLarge",
    ),
    (
        "exponential-macro",
        "{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(40) }}",
        "RenderLimitExceeded",
    ),
    (
        "infinite-recursion",
        "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
        "RenderLimitExceeded",
    ),
    (
        "recursive-loop-bomb",
        "{% for x in range(2) recursive %}{{ loop(range(2)) }}{% endfor %}",
        "RenderLimitExceeded",
    ),
    # Environment lookups, as other template engines spell them.
    ("env-name", "{{ env }}", "UndefinedVariable"),
    ("environ-name", "{{ environ['HOME'] }}", "UndefinedVariable"),
    ("os-environ", "{{ os.environ }}", "UndefinedVariable"),
    ("ansible-lookup", "{{ lookup('env', 'HOME') }}", "UndefinedVariable"),
    ("getenv", "{{ getenv('HOME') }}", "UndefinedVariable"),
    ("salt-environ", "{{ salt['environ.get']('HOME') }}", "UndefinedVariable"),
    ("helm-style", "{{ .Env.HOME }}", "TemplateSyntaxError"),
]

#: Text that must never appear in an answer: Python object reprs and module internals.
LEAKS = re.compile(r"<class |<module |<function |<built-in |at 0x[0-9a-f]|__builtins__'?:")


@pytest.mark.parametrize(
    ("payload", "reason"),
    [pytest.param(payload, reason, id=name) for name, payload, reason in SSTI_PAYLOADS],
)
def test_payload_fails_with_render_error(payload: str, reason: str) -> None:
    started = time.monotonic()
    with pytest.raises(RenderError) as caught:
        render(payload)
    assert caught.value.reason == reason, str(caught.value)
    assert not LEAKS.search(str(caught.value)), str(caught.value)
    assert time.monotonic() - started < 3


SECRET = "s3cr3t-tekton-notifications-test-value"

ENV_PROBES = [
    "{{ env.TEKTON_TEST_SECRET }}",
    "{{ environ.TEKTON_TEST_SECRET | default('') }}",
    "{{ self.__init__.__globals__['os'].environ['TEKTON_TEST_SECRET'] }}",
    "{{ cycler.__init__.__globals__.os.environ.TEKTON_TEST_SECRET }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ run | tojson }}{{ event | tojson }}{{ policy | tojson }}{{ template | tojson }}",
    "{% for name in ['env', 'environ', 'os', 'ENV', 'process'] %}"
    "{{ name }}={{ (name is defined) }};{% endfor %}",
    "{{ '{0.__init__.__globals__[os].environ}'.format(range) }}",
    "{{ range.__globals__['os'].environ }}",
    "{{ dict(TEKTON_TEST_SECRET=1) | tojson }}",
]


@pytest.mark.parametrize("payload", ENV_PROBES)
def test_no_template_can_read_the_environment(
    payload: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEKTON_TEST_SECRET", SECRET)
    assert os.environ["TEKTON_TEST_SECRET"] == SECRET
    try:
        output = render(payload)
    except RenderError as error:
        output = str(error)
    assert SECRET not in output


def test_every_payload_is_blind_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEKTON_TEST_SECRET", SECRET)
    for _, payload, _ in SSTI_PAYLOADS:
        try:
            output = render(payload)
        except RenderError as error:
            output = str(error)
        assert SECRET not in output


def test_legitimate_templates_still_work_inside_the_sandbox() -> None:
    source = (
        "{% set ns = namespace(names=[]) %}"
        "{% for key, value in event.labels.items() %}{% set ns.names = ns.names + [key] %}"
        "{% endfor %}{{ ns.names | join(',') }} "
        "{{ '%s/%s' % (event.namespace, event.name) }} {{ '{}!'.format(event.outcome) }} "
        "{{ event.message.upper().replace('O', '0') }} {{ 'a,b'.split(',') | length }} "
        "{{ dict(a=1) | tojson }} {{ range(3) | join('') }} {{ 2 ** 10 }} {{ 'ab' * 2 }}"
    )
    assert render(source) == 'team ci/build-x1 failed! B00M 2 {"a": 1} 012 1024 abab'
