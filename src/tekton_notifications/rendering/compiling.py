"""Compiling and rendering NotificationTemplate params, one budget per render.

Owns the environment instance, compiling param sources (once per template generation;
policy overrides through a small LRU cache), rendering every param of a template under one
:class:`~tekton_notifications.rendering.limits.Budget`, and turning every failure into a
:class:`RenderError` that names the template, the param and the cause.

Must not: do I/O of any kind (files, network, Kubernetes, environment variables, logging),
keep state between renders other than the compile cache, or know which task consumes the
params.
"""

from __future__ import annotations

import functools
import traceback
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, cast

from jinja2 import nodes
from jinja2 import tests as jinja_tests
from jinja2.environment import Template as JinjaTemplate
from jinja2.exceptions import (
    SecurityError,
    TemplateRuntimeError,
    TemplateSyntaxError,
    UndefinedError,
)

from tekton_notifications.events import RunEvent
from tekton_notifications.models import Template
from tekton_notifications.rendering import filters, instrument, limits
from tekton_notifications.rendering.context import render_context
from tekton_notifications.rendering.errors import (
    LimitExceeded,
    Problem,
    RenderError,
    RenderReason,
)
from tekton_notifications.rendering.filters import FILTER_NAMES
from tekton_notifications.rendering.limits import DEFAULT_SETTINGS, RenderSettings
from tekton_notifications.rendering.sandbox import Sandbox, Undefined

_TEMPLATE_FILENAME: Final = "<template>"
_NO_OVERRIDES: Final[Mapping[str, str]] = MappingProxyType({})


def build_environment() -> Sandbox:
    env = Sandbox(
        autoescape=False,
        undefined=Undefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        extensions=(),
        loader=None,
        cache_size=0,
        auto_reload=False,
    )
    env.filters.clear()
    env.filters.update(filters.filters())
    env.filters.update(instrument.INTERNAL_FILTERS)
    env.tests.clear()
    env.tests.update(jinja_tests.TESTS)
    env.globals.clear()
    env.globals.update(filters.template_globals())
    env.policies["truncate.leeway"] = 0
    env.policies["json.dumps_kwargs"] = {"sort_keys": True}
    return env


ENV: Final = build_environment()


@functools.lru_cache(maxsize=256)
def compile_source(source: str) -> JinjaTemplate:
    """Parse, check, instrument and compile one param source. Raises TemplateSyntaxError or
    Problem; neither is cached, so a bad source is reported every time it is used."""
    tree = ENV.parse(source, filename=_TEMPLATE_FILENAME)
    for node_type, tag in instrument.FORBIDDEN_NODES.items():
        for node in tree.find_all(node_type):
            raise TemplateSyntaxError(
                f"{{% {tag} %}} is not supported: templates are self-contained strings, "
                "there is nothing to load; use macros defined in the same param",
                node.lineno,
                filename=_TEMPLATE_FILENAME,
            )
    for used in tree.find_all(nodes.Filter):
        if used.name.startswith("__") or used.name not in ENV.filters:
            raise TemplateSyntaxError(
                f"no filter named {used.name!r}; the filters are {', '.join(FILTER_NAMES)}",
                used.lineno,
                filename=_TEMPLATE_FILENAME,
            )
    for test in tree.find_all(nodes.Test):
        if test.name not in ENV.tests:
            raise TemplateSyntaxError(
                f"no test named {test.name!r}", test.lineno, filename=_TEMPLATE_FILENAME
            )
    instrumented = instrument.Instrument().visit(tree)
    instrumented.set_environment(ENV)
    code = ENV.compile(instrumented, filename=_TEMPLATE_FILENAME)
    return JinjaTemplate.from_code(ENV, code, ENV.make_globals(None))


@dataclass(frozen=True)
class _Where:
    template: Template
    param: str
    origin: str = ""
    source: str = field(default="", repr=False)

    def error(self, reason: RenderReason, detail: str, line: int | None = None) -> RenderError:
        if line is not None and "\n" not in self.source.strip("\n"):
            line = None
        return RenderError(
            self.template.name,
            self.param,
            reason,
            detail,
            namespace=self.template.namespace,
            line=line,
            origin=self.origin,
        )


def _compile(where: _Where) -> JinjaTemplate:
    try:
        return compile_source(where.source)
    except TemplateSyntaxError as error:
        raise where.error(
            "TemplateSyntaxError", error.message or str(error), error.lineno
        ) from None
    except RecursionError:
        raise where.error("TemplateSyntaxError", "the template is nested too deeply") from None
    except Exception as error:  # a Jinja2 internal failure on odd input: still the template's
        detail = f"{type(error).__name__}: {error}"
        raise where.error("TemplateSyntaxError", detail) from None


class CompiledTemplate:
    """A NotificationTemplate with every param compiled; build one per template generation."""

    __slots__ = ("_params", "template")

    def __init__(self, template: Template, params: Mapping[str, JinjaTemplate]) -> None:
        self.template = template
        self._params = dict(params)

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(self._params)

    def __repr__(self) -> str:
        return f"CompiledTemplate({self.template.namespace}/{self.template.name})"

    def render(
        self,
        *,
        event: RunEvent,
        policy: Mapping[str, Any],
        overrides: Mapping[str, str] = _NO_OVERRIDES,
        settings: RenderSettings = DEFAULT_SETTINGS,
        transition: Mapping[str, Any] | None = None,
        scheduled: Mapping[str, Any] | None = None,
        subscription: Mapping[str, Any] | None = None,
    ) -> dict[str, str]:
        """Render every param: the template's in its order, then overrides that add params.

        ``overrides`` (a policy's templateRef params, Jinja2 strings too) replace the
        template's params of the same name. All of them share one budget (time, steps,
        characters built; see :class:`RenderSettings`). Raises :class:`RenderError`.
        """
        context = render_context(
            event,
            policy=policy,
            template=self.template.view(),
            settings=settings,
            transition=transition,
            scheduled=scheduled,
            subscription=subscription,
        )
        jobs = self._jobs(policy, overrides)
        for unchecked, _compiled in jobs:
            if not isinstance(unchecked.source, str):
                raise unchecked.error("TemplateSyntaxError", "an override must be a string")
        budget = limits.Budget(settings, context)
        rendered: dict[str, str] = {}
        failure: BaseException | None = None
        where: _Where | None = None
        token = limits.start(budget)
        try:
            for job, compiled in jobs:
                where = job
                jinja_template = compiled if compiled is not None else _compile(job)
                rendered[job.param] = _render_param(jinja_template, context, settings)
        except (Exception, LimitExceeded) as error:
            # Nothing here may call anything before the hook is disarmed (see limits.start).
            budget.armed = False
            failure = error
        finally:
            budget.armed = False
            limits.stop(budget, token)
        if failure is not None:
            if isinstance(failure, RenderError):
                raise failure
            assert where is not None
            raise _to_render_error(failure, where) from None
        return rendered

    def _jobs(
        self, policy: Mapping[str, Any], overrides: Mapping[str, str]
    ) -> list[tuple[_Where, JinjaTemplate | None]]:
        policy_name = f"{policy.get('namespace', '')}/{policy.get('name', '')}".strip("/")
        origin = f"override from NotificationPolicy {policy_name}" if policy_name else "override"
        jobs: list[tuple[_Where, JinjaTemplate | None]] = []
        for name, own in self._params.items():
            if name in overrides:
                jobs.append((_Where(self.template, name, origin, overrides[name]), None))
            else:
                jobs.append((_Where(self.template, name, "", self.template.params[name]), own))
        for name, source in overrides.items():
            if name not in self._params:
                jobs.append((_Where(self.template, name, origin, source), None))
        return jobs


def compile_template(template: Template) -> CompiledTemplate:
    """Compile every param of ``template``; raises :class:`RenderError` (TemplateSyntaxError)
    naming the first param that does not compile."""
    compiled = {
        name: _compile(_Where(template, name, "", source))
        for name, source in template.params.items()
    }
    return CompiledTemplate(template, compiled)


def _render_param(
    compiled: JinjaTemplate, context: Mapping[str, Any], settings: RenderSettings
) -> str:
    chunks: list[str] = []
    size = 0
    stream = cast(Generator[str, None, None], compiled.generate(context))
    try:
        for chunk in stream:
            size += len(chunk)
            if size > settings.max_param_chars:
                raise Problem(
                    "OutputTooLarge",
                    f"the rendered value is longer than {settings.max_param_chars} characters",
                )
            chunks.append(chunk)
    finally:
        stream.close()
    return "".join(chunks)


_UNKNOWN_NAMES: Final = ("No filter named", "No test named")


def _to_render_error(error: BaseException, where: _Where) -> RenderError:
    reason: RenderReason
    if isinstance(error, LimitExceeded):
        reason, detail = "RenderLimitExceeded", error.detail
    elif isinstance(error, Problem):
        reason, detail = error.reason, error.detail
    elif isinstance(error, SecurityError):
        reason, detail = "SecurityError", str(error)
    elif isinstance(error, UndefinedError):
        reason, detail = "UndefinedVariable", str(error)
    elif isinstance(error, TemplateSyntaxError):
        reason, detail = "TemplateSyntaxError", error.message or str(error)
    elif isinstance(error, TemplateRuntimeError) and str(error).startswith(_UNKNOWN_NAMES):
        reason, detail = "TemplateSyntaxError", str(error)
    elif isinstance(error, RecursionError):
        reason = "RenderLimitExceeded"
        detail = "recursion too deep (a macro or loop calls itself)"
    elif isinstance(error, MemoryError):
        reason, detail = "RenderLimitExceeded", "out of memory"
    else:
        reason, detail = "RenderFailed", f"{type(error).__name__}: {error}"
    return where.error(reason, detail, _template_line(error))


def _template_line(error: BaseException) -> int | None:
    if isinstance(error, TemplateSyntaxError) and error.lineno:
        return error.lineno
    line = None
    # walk_tb, not extract_tb: no source lines are read for the (deep) Jinja2 frames.
    for frame, lineno in traceback.walk_tb(error.__traceback__):
        if frame.f_code.co_filename == _TEMPLATE_FILENAME:
            line = lineno
    return line
