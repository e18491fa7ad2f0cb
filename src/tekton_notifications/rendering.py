"""Rendering NotificationTemplate params: Jinja2 strings + a :class:`RunEvent` -> task params.

Owns the template sandbox and everything a template can see or do: the Jinja2 environment
(:class:`jinja2.sandbox.ImmutableSandboxedEnvironment`, strict undefined, no autoescape, no
loader, no extensions), the curated filters, tests and globals, the context variables (``run``,
``event``, ``policy``, ``template``), the resource limits (output size, intermediate value size,
loop iterations and macro calls, wall-clock time), compiling params (once per template
generation; policy overrides through a small LRU cache), and turning every failure into a
:class:`RenderError` that names the template, the param and the cause.

Must not: do I/O of any kind (files, network, Kubernetes, environment variables, logging),
keep state between renders other than the compile cache, know which task consumes the
params, or let a template reach Python internals. The escaping filters are pure functions of
their input; which one a param needs is documented per catalog task in docs/templates.md.
"""

from __future__ import annotations

import functools
import json
import re
import shlex
import string
import time
import traceback
import types
from collections.abc import Callable, Generator, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import timedelta
from types import MappingProxyType
from typing import Any, ClassVar, Final, Literal, cast
from urllib.parse import quote

from jinja2 import StrictUndefined, Undefined, nodes, pass_context, pass_eval_context
from jinja2 import filters as jinja_filters
from jinja2 import tests as jinja_tests
from jinja2.environment import Template as JinjaTemplate
from jinja2.exceptions import (
    SecurityError,
    TemplateRuntimeError,
    TemplateSyntaxError,
    UndefinedError,
)
from jinja2.nodes import EvalContext
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace, missing
from jinja2.visitor import NodeTransformer

from tekton_notifications.events import RunEvent
from tekton_notifications.models import Template

RenderReason = Literal[
    "UndefinedVariable", "TemplateSyntaxError", "SecurityError", "OutputTooLarge", "RenderFailed"
]

#: The largest string, list or mapping (as text) a template may build while rendering a param.
MAX_VALUE_CHARS: Final = 1_000_000
#: The most text one param render may produce, counting text captured by ``{% set %}`` blocks,
#: macros and call blocks (the param itself is capped by ``RenderSettings.max_param_chars``).
MAX_EMITTED_CHARS: Final = 4_000_000
#: ``range()`` refuses more items than this.
MAX_RANGE: Final = 100_000
#: Widths and precisions in ``%``-formatting and ``str.format`` specs.
MAX_FORMAT_WIDTH: Final = 1_000
#: Integer results of ``*`` and ``**`` must fit in this many bits.
MAX_INT_BITS: Final = 10_000

#: This project's filters (see docs/templates.md).
PROJECT_FILTERS: Final = (
    "json_escape",
    "json_escape_strict",
    "shell_quote",
    "shell_single_quote_escape",
    "k8s_env_escape",
    "slack_escape",
    "oneline",
    "human_duration",
)
_JINJA_FILTERS: Final = (
    "abs capitalize count d default dictsort filesizeformat first float format groupby indent "
    "int items join last length list lower map max min reject rejectattr replace reverse round "
    "select selectattr sort string sum title tojson trim truncate unique upper urlencode "
    "wordcount wordwrap"
)
#: Every filter a template may use: this project's and the Jinja2 built-ins that cannot reach
#: outside the sandbox (``default``/``d`` also replace None). The other built-ins are absent.
FILTER_NAMES: Final = (*PROJECT_FILTERS, *_JINJA_FILTERS.split())
#: The global names a template may use besides the context variables.
GLOBAL_NAMES: Final = ("range", "dict", "namespace")
#: The context variables (see :func:`render_context`).
CONTEXT_NAMES: Final = ("run", "event", "policy", "template")

_KIND_PATHS: Final[Mapping[str, str]] = {
    "PipelineRun": "pipelineruns",
    "TaskRun": "taskruns",
    "CustomRun": "customruns",
}
_TEMPLATE_FILENAME: Final = "<template>"


@dataclass(frozen=True)
class RenderSettings:
    """Per-deployment knobs for rendering; the defaults suit a shared notification service."""

    #: Tekton Dashboard base URL, e.g. ``https://tekton.example.com``; ``event.url`` is None
    #: without it.
    dashboard_url: str | None = None
    #: A rendered param longer than this many characters is an error (OutputTooLarge).
    max_param_chars: int = 16_384
    #: Loop iterations plus macro calls allowed while rendering one param (SecurityError).
    max_steps: int = 100_000
    #: Wall-clock seconds allowed for rendering one param (SecurityError).
    max_seconds: float = 2.0

    def __post_init__(self) -> None:
        if self.max_param_chars <= 0 or self.max_steps <= 0 or self.max_seconds <= 0:
            raise ValueError("RenderSettings limits must be positive")


DEFAULT_SETTINGS: Final = RenderSettings()
_NO_OVERRIDES: Final[Mapping[str, str]] = MappingProxyType({})


class RenderError(Exception):
    """A template that cannot be rendered for this event. Not retryable: the same template
    and event fail the same way. The message names the template, the param and the cause."""

    retryable: ClassVar[bool] = False

    def __init__(
        self,
        template: str,
        param: str | None,
        reason: RenderReason,
        detail: str,
        namespace: str = "",
        line: int | None = None,
        origin: str = "",
    ) -> None:
        self.template = template
        self.param = param
        self.reason: RenderReason = reason
        self.detail = detail
        self.namespace = namespace
        self.line = line
        #: Where the param's source came from when it is not the template, e.g.
        #: ``"override from NotificationPolicy ci/notify-failures"``.
        self.origin = origin
        where = f"NotificationTemplate {namespace}/{template}" if namespace else template
        if param is not None:
            where += f", param {param!r}"
        if origin:
            where += f" ({origin})"
        if line is not None:
            where += f", line {line}"
        super().__init__(f"{where}: {reason}: {detail}")

    def __reduce__(self) -> tuple[Any, ...]:
        args = (self.template, self.param, self.reason, self.detail)
        return (type(self), (*args, self.namespace, self.line, self.origin))


class _Problem(Exception):
    """Raised inside rendering by this module's guards; becomes a :class:`RenderError`."""

    def __init__(self, reason: RenderReason, detail: str) -> None:
        super().__init__(detail)
        self.reason: RenderReason = reason
        self.detail = detail


# --------------------------------------------------------------------------------------------
# Per-render state: limits and the roots used to name undefined variables.


@dataclass
class _RenderState:
    context: Mapping[str, Any]
    settings: RenderSettings
    deadline: float
    steps: int = 0
    emitted: int = 0

    def tick(self) -> None:
        self.steps += 1
        if self.steps > self.settings.max_steps:
            raise _Problem(
                "SecurityError",
                f"more than {self.settings.max_steps} loop iterations and macro calls",
            )
        self.check_time()

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise _Problem(
                "SecurityError", f"rendering took longer than {self.settings.max_seconds}s"
            )


_STATE: ContextVar[_RenderState | None] = ContextVar("tekton_notifications_render", default=None)


# --------------------------------------------------------------------------------------------
# Size guards.


def _size(value: object, limit: int = MAX_VALUE_CHARS) -> int:
    """About how many characters ``str()``/``tojson`` make of ``value``; stops past ``limit``.

    Shared references count every time they appear, as they do when printed. An Undefined
    anywhere inside raises: printing it would hide a mistake (or a refused attribute).
    """
    total = 0
    stack: list[object] = [value]
    while stack and total <= limit:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item) + 2
        elif isinstance(item, Mapping):
            total += 2 + 4 * len(item)
            for key, entry in item.items():
                stack.append(key)
                stack.append(entry)
        elif isinstance(item, list | tuple | set | frozenset):
            total += 2 + 2 * len(item)
            stack.extend(item)
        elif isinstance(item, Undefined):
            item._fail_with_undefined_error()
        elif isinstance(item, Namespace):
            try:
                attrs = object.__getattribute__(item, "_Namespace__attrs")
            except AttributeError:
                attrs = {}
            total += 16
            stack.append(attrs)
        else:
            total += 16
    return total


def _check_size(value: object, what: str = "a value") -> None:
    if not isinstance(value, int | float | bool) and value is not None:
        size = _size(value)
        if size > MAX_VALUE_CHARS:
            raise _Problem(
                "OutputTooLarge",
                f"{what} would be larger than {MAX_VALUE_CHARS} characters",
            )


def _check_len(length: int, what: str) -> None:
    if length > MAX_VALUE_CHARS:
        raise _Problem(
            "OutputTooLarge", f"{what} would be {length} long; the limit is {MAX_VALUE_CHARS}"
        )


def _check_int(value: int) -> None:
    if value > MAX_FORMAT_WIDTH:
        raise _Problem(
            "SecurityError", f"a width or count of {value} is over the limit {MAX_FORMAT_WIDTH}"
        )


_PRINTF_DIRECTIVE: Final = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")


def _check_printf(fmt: str, args: object) -> None:
    for match in _PRINTF_DIRECTIVE.finditer(fmt):
        for number in match.groups():
            if number == "*":
                raise _Problem("SecurityError", "'*' widths are not allowed in % formatting")
            if number:
                _check_int(int(number) if len(number) < 8 else MAX_FORMAT_WIDTH + 1)
    _check_size(args, "the % formatting arguments")


def _check_format(fmt: str, args: object, kwargs: object) -> None:
    try:
        parsed = list(string.Formatter().parse(fmt))
    except ValueError as error:
        raise _Problem("RenderFailed", f"bad format string: {error}") from None
    for _literal, field_name, spec, _conversion in parsed:
        if field_name is None or not spec:
            continue
        if "{" in spec:
            raise _Problem("SecurityError", "nested fields in a format spec are not allowed")
        for number in re.findall(r"\d+", spec):
            _check_int(int(number) if len(number) < 8 else MAX_FORMAT_WIDTH + 1)
    _check_size(args, "the format arguments")
    _check_size(kwargs, "the format arguments")


def _check_replace(text: str, old: object, new: object, count: object = None) -> None:
    if not isinstance(old, str) or not isinstance(new, str):
        return
    hits = len(text) + 1 if old == "" else text.count(old)
    if isinstance(count, int) and count >= 0:
        hits = min(hits, count)
    _check_len(len(text) + hits * max(0, len(new) - len(old)), "the replaced string")


def _join_items(separator: str, items: list[Any]) -> None:
    total = len(separator) * max(0, len(items) - 1)
    for item in items:
        total += _size(item, MAX_VALUE_CHARS - total)
        if total > MAX_VALUE_CHARS:
            break
    _check_len(total, "the joined string")


# --------------------------------------------------------------------------------------------
# The sandbox.

_STR_METHOD_NAMES: Final = (
    "capitalize casefold count endswith find format format_map index isalnum isalpha isascii "
    "isdecimal isdigit isidentifier islower isnumeric isprintable isspace istitle isupper "
    "join lower lstrip partition removeprefix removesuffix replace rfind rindex rpartition "
    "rsplit rstrip split splitlines startswith strip swapcase title upper"
)
_STR_METHODS: Final = frozenset(_STR_METHOD_NAMES.split())
_MAPPING_METHODS: Final = frozenset({"get", "items", "keys", "values"})
_SEQUENCE_METHODS: Final = frozenset({"count", "index"})


def _allowed_methods(owner: object) -> frozenset[str] | None:
    """Methods a template may call on a value of this type; None: not a data value."""
    if isinstance(owner, type):
        return frozenset()
    if isinstance(owner, str):
        return _STR_METHODS
    if isinstance(owner, Mapping):
        return _MAPPING_METHODS
    if isinstance(owner, list | tuple):
        return _SEQUENCE_METHODS
    if isinstance(owner, int | float | bytes | bytearray | set | frozenset | range):
        return frozenset()
    return None


class _Undefined(StrictUndefined):
    """StrictUndefined whose message spells out the full path, e.g. ``event.nosuch``."""

    __slots__ = ()

    @property
    def _undefined_message(self) -> str:
        if self._undefined_hint:
            return self._undefined_hint
        name = self._undefined_name
        container = self._undefined_obj
        if container is missing:
            return f"{name!r} is undefined; the variables are {', '.join(CONTEXT_NAMES)}"
        state = _STATE.get()
        path = None
        if state is not None and isinstance(container, Mapping | list | tuple):
            path = _find_path(state.context, container)
        if path is None:
            return str(super()._undefined_message)
        if isinstance(container, Mapping):
            keys = sorted(map(str, container))
            listed = ", ".join(keys[:20]) + (", ..." if len(keys) > 20 else "")
            has = f"its keys are: {listed}" if keys else "it is empty"
            found = f"{path} has no key {name!r} ({has})"
        else:
            found = f"{path} has {len(container)} items"
        return (
            f"{path}{_accessor(name)} is undefined: {found}; "
            "use '| default(...)' or 'is defined' for optional values"
        )


def _accessor(key: object) -> str:
    if isinstance(key, str) and key.isidentifier():
        return f".{key}"
    return f"[{key!r}]"


def _find_path(roots: Mapping[str, Any], target: object, budget: int = 50_000) -> str | None:
    """The template expression (``run.metadata.labels``) of ``target`` inside the context."""
    queue: list[tuple[object, str]] = [(value, name) for name, value in roots.items()]
    seen: set[int] = set()
    index = 0
    while index < len(queue) and index < budget:
        value, path = queue[index]
        index += 1
        if value is target:
            return path
        if id(value) in seen:
            continue
        seen.add(id(value))
        if isinstance(value, Mapping):
            queue.extend((item, path + _accessor(key)) for key, item in value.items())
        elif isinstance(value, list | tuple):
            queue.extend((item, f"{path}[{i}]") for i, item in enumerate(value))
    return None


class _Sandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, plus: mapping keys win over methods (``labels.items`` is the
    label ``items`` if there is one), underscore names are always refused, only listed
    methods of str/dict/list may be called, and operators that build big values are capped."""

    intercepted_binops = frozenset({"+", "*", "**", "%"})

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, Mapping):
            try:
                return obj[attribute]
            except (KeyError, TypeError):
                pass
        if attribute.startswith("_"):
            return self.unsafe_undefined(obj, attribute)
        return super().getattr(obj, attribute)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        fmt = cast(str, value.__self__)

        def checked(*args: Any, **kwargs: Any) -> str:
            _check_format(fmt, args, kwargs)
            return wrapped(*args, **kwargs)

        return checked

    def call(
        __self,
        __context: Context,
        __obj: Any,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        if isinstance(__obj, types.BuiltinMethodType | types.MethodType):
            owner = getattr(__obj, "__self__", None)
            allowed = _allowed_methods(owner)
            name = getattr(__obj, "__name__", "?")
            if allowed is not None and name not in allowed:
                kind = owner.__name__ if isinstance(owner, type) else type(owner).__name__
                raise SecurityError(f"{kind}.{name}() is not available in templates")
            if isinstance(owner, str) and name == "join" and args:
                items = list(args[0])
                _join_items(owner, items)
                args = (items, *args[1:])
            elif isinstance(owner, str) and name == "replace" and len(args) >= 2:
                _check_replace(owner, *args[:3])
        return super().call(__context, __obj, *args, **kwargs)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            _check_multiply(left, right)
        elif operator == "**":
            _check_power(left, right)
        elif operator == "+":
            if isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple):
                _check_len(len(left) + len(right), "the sum")
        elif operator == "%" and isinstance(left, str):
            _check_printf(left, right)
        return super().call_binop(context, operator, left, right)


def _check_multiply(left: Any, right: Any) -> None:
    for seq, times in ((left, right), (right, left)):
        if isinstance(seq, str | list | tuple) and isinstance(times, int):
            _check_len(len(seq) * max(times, 0), "the repeated value")
    ints = isinstance(left, int) and isinstance(right, int)
    if ints and left.bit_length() + right.bit_length() > MAX_INT_BITS:
        raise _Problem("SecurityError", f"integer product over {MAX_INT_BITS} bits")


def _check_power(left: Any, right: Any) -> None:
    ints = isinstance(left, int) and isinstance(right, int)
    if ints and right > 0 and abs(left) > 1 and left.bit_length() * right > MAX_INT_BITS:
        raise _Problem("SecurityError", f"integer power over {MAX_INT_BITS} bits")


# --------------------------------------------------------------------------------------------
# Compile-time instrumentation: output accounting, loop/macro step counting, concat caps.

_FORBIDDEN_NODES: Final[Mapping[type[nodes.Node], str]] = {
    nodes.Extends: "extends",
    nodes.Include: "include",
    nodes.Import: "import",
    nodes.FromImport: "from ... import",
}


def _internal(name: str, node: nodes.Expr | None, *args: nodes.Expr, lineno: int) -> nodes.Filter:
    return nodes.Filter(node, name, list(args), [], None, None, lineno=lineno)


def _describe(node: nodes.Node) -> str | None:
    """The source form of simple expressions, for messages: ``event.url``."""
    if isinstance(node, nodes.Name):
        return node.name
    if isinstance(node, nodes.Getattr):
        base = _describe(node.node)
        return f"{base}.{node.attr}" if base else None
    if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
        base = _describe(node.node)
        return f"{base}[{node.arg.value!r}]" if base else None
    if isinstance(node, nodes.Filter) and node.node is not None:
        base = _describe(node.node)
        return f"{base} | {node.name}" if base else None
    return None


class _Instrument(NodeTransformer):
    def visit_Output(self, node: nodes.Output) -> nodes.Node:
        self.generic_visit(node)
        wrapped: list[nodes.Expr] = []
        for child in node.nodes:
            if isinstance(child, nodes.TemplateData):
                child = cast(nodes.Expr, nodes.Const(child.data, lineno=child.lineno))
            description = _describe(child) or "an expression"
            wrapped.append(_internal("__out", child, nodes.Const(description), lineno=child.lineno))
        node.nodes = wrapped
        return node

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = _internal("__tick_iter", cast(nodes.Expr, node.iter), lineno=node.lineno)
        if node.recursive:
            node.body.insert(0, _tick_stmt(node.lineno))
        return node

    def visit_Macro(self, node: nodes.Macro) -> nodes.Node:
        self.generic_visit(node)
        node.body.insert(0, _tick_stmt(node.lineno))
        return node

    def visit_CallBlock(self, node: nodes.CallBlock) -> nodes.Node:
        self.generic_visit(node)
        node.body.insert(0, _tick_stmt(node.lineno))
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        node.nodes = [_internal("__str", part, lineno=part.lineno) for part in node.nodes]
        return _internal("__cap", node, lineno=node.lineno)


def _tick_stmt(lineno: int) -> nodes.ExprStmt:
    return nodes.ExprStmt(_internal("__tick", nodes.Const(None), lineno=lineno), lineno=lineno)


def _none_problem(what: str, expression: str = "value") -> _Problem:
    return _Problem(
        "UndefinedVariable",
        f"{what} is None (null), which is never rendered as text; write "
        f"'{{{{ {expression} | default(\"\") }}}}' or test it with 'is none'",
    )


@pass_context
def _out(context: Context, value: Any, description: str = "an expression") -> str:
    """Every piece of output goes through here (instead of ``finalize``)."""
    if isinstance(value, str):
        text = value
    elif value is None:
        expression = description if description != "an expression" else "value"
        raise _none_problem(description, expression)
    elif isinstance(value, Undefined):
        text = str(value)  # raises
    elif callable(value):
        raise _Problem(
            "RenderFailed", f"{description} is a function or macro; call it with ( ) to use it"
        )
    else:
        _check_size(value, description)
        text = str(value)
    state = _STATE.get()
    if state is not None:
        state.emitted += len(text)
        if state.emitted > MAX_EMITTED_CHARS:
            raise _Problem(
                "OutputTooLarge", f"the template produced over {MAX_EMITTED_CHARS} characters"
            )
        state.check_time()
    return text


@pass_context
def _tick(context: Context, value: Any = None) -> Any:
    state = _STATE.get()
    if state is not None:
        state.tick()
    return value


@pass_context
def _tick_iter(context: Context, iterable: Any) -> Any:
    state = _STATE.get()
    if state is None:
        return iterable
    return _ticking(state, iter(iterable))


def _ticking(state: _RenderState, iterator: Iterator[Any]) -> Iterator[Any]:
    for item in iterator:
        state.tick()
        yield item


@pass_context
def _concat_part(context: Context, value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        raise _none_problem("an operand of '~'")
    if not isinstance(value, Undefined):
        _check_size(value, "an operand of '~'")
    return str(value)


@pass_context
def _cap(context: Context, value: Any) -> Any:
    if isinstance(value, str):
        _check_len(len(value), "the concatenated string")
    return value


# --------------------------------------------------------------------------------------------
# Public filters.


def _text(value: Any, filter_name: str) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        raise _Problem(
            "UndefinedVariable",
            f"'{filter_name}' got None (null); put '| default(\"\")' before it",
        )
    return str(value)


def json_escape(value: Any) -> str:
    """JSON string contents, without the surrounding quotes: ``a "b"`` -> ``a \\"b\\"``.

    ``json.loads('"' + json_escape(s) + '"') == s`` for every string ``s``; the result is
    also a valid Python string literal body (JSON escapes are a subset of Python's).
    """
    return json.dumps(_text(value, "json_escape"), ensure_ascii=False)[1:-1]


#: Characters json_escape_strict leaves alone: inert in JSON, Python string literals,
#: sh words (quoted or not), sed, echo and Kubernetes env expansion.
_STRICT_SAFE: Final = frozenset(string.ascii_letters + string.digits + ".,:;_/=+@%^~!#()<>&|-")


def json_escape_strict(value: Any) -> str:
    """JSON string contents in which everything that means something to a shell, ``sed``,
    ``echo``, Python, Tekton or Kubernetes is written as a ``\\uXXXX`` escape.

    Like :func:`json_escape` the result decodes back to the input in a JSON string or a
    Python ``"..."``/``\"\"\"...\"\"\"``/f-string literal, and additionally contains no quote,
    backslash (except in ``\\u`` escapes), ``$``, backtick, brace, glob character, tab or
    newline, no leading ``-``, and no leading, trailing or repeated raw space. So it stays
    the same through: substitution into a single- or double-quoted sh word, an env var
    expanded unquoted (word splitting and globbing), ``echo``, ``sed 's/"/.../'``,
    Tekton's ``$(...)`` substitution and Kubernetes' ``$(VAR)`` env expansion.
    """
    text = _text(value, "json_escape_strict")
    out: list[str] = []
    last = len(text) - 1
    previous_raw_space = False
    for index, char in enumerate(text):
        code = ord(char)
        raw = (
            char in _STRICT_SAFE
            or (code >= 0xA0 and not 0xD800 <= code <= 0xDFFF and code not in (0x2028, 0x2029))
            or (char == " " and 0 < index < last and not previous_raw_space)
        )
        if index == 0 and char == "-":
            raw = False
        out.append(char if raw else f"\\u{code:04x}")
        previous_raw_space = raw and char == " "
    return "".join(out)


def shell_quote(value: Any) -> str:
    """One sh word that expands to the text: ``it's`` -> ``'it'"'"'s'`` (``shlex.quote``)."""
    return shlex.quote(_text(value, "shell_quote"))


def shell_single_quote_escape(value: Any) -> str:
    """Contents for inside ``'...'`` in sh: each ``'`` becomes ``'\\''``."""
    return _text(value, "shell_single_quote_escape").replace("'", "'\\''")


def k8s_env_escape(value: Any) -> str:
    """Doubles ``$`` so Kubernetes' ``$(VAR)`` expansion of container env values (which a
    task's ``env: [{value: $(params.x)}]`` goes through) gives the text back unchanged."""
    return _text(value, "k8s_env_escape").replace("$", "$$")


def slack_escape(value: Any) -> str:
    """Slack mrkdwn text: ``&``, ``<`` and ``>`` as entities, so run data cannot inject
    links or ``<!channel>`` mentions."""
    text = _text(value, "slack_escape")
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def oneline(value: Any) -> str:
    """Newlines, tabs and runs of whitespace become single spaces; ends are trimmed."""
    return " ".join(_text(value, "oneline").split())


def human_duration(value: Any) -> str:
    """Seconds as ``45s``, ``1m 58s``, ``2h 3m``, ``1d 4h``; None or negative: ``unknown``."""
    if value is None:
        return "unknown"
    if isinstance(value, Undefined):
        str(value)  # raises
    if isinstance(value, timedelta):
        value = value.total_seconds()
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise _Problem(
            "RenderFailed", f"human_duration needs a number of seconds, not {value!r}"
        ) from None
    if seconds != seconds or seconds < 0 or seconds == float("inf"):
        return "unknown"
    total = round(seconds)
    days, rest = divmod(total, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m {secs}s" if secs else f"{minutes}m"
    return f"{secs}s"


def _default(value: Any, default_value: Any = "", boolean: bool = False) -> Any:
    """Jinja's ``default``, except that None (JSON null) counts as missing too."""
    if isinstance(value, Undefined) or value is None or (boolean and not value):
        return default_value
    return value


# Guarded versions of Jinja filters that can build large values from small inputs.


@pass_eval_context
def _join(eval_ctx: EvalContext, value: Any, d: str = "", attribute: Any = None) -> str:
    items = list(value)
    _join_items(str(d), items)
    return jinja_filters.sync_do_join(eval_ctx, items, d, attribute)


@pass_eval_context
def _replace(eval_ctx: EvalContext, s: Any, old: Any, new: Any, count: Any = None) -> str:
    _check_replace(str(s), str(old), str(new), count)
    return jinja_filters.do_replace(eval_ctx, s, old, new, count)


def _indent(s: Any, width: Any = 4, first: bool = False, blank: bool = False) -> str:
    text = _text(s, "indent")
    pad = width if isinstance(width, str) else " " * min(int(width), MAX_FORMAT_WIDTH + 1)
    _check_int(len(pad))
    _check_len(len(text) + (text.count("\n") + 1) * len(pad), "the indented string")
    return jinja_filters.do_indent(text, width, first, blank)


@pass_context
def _wordwrap(
    context: Context,
    s: Any,
    width: int = 79,
    break_long_words: bool = True,
    wrapstring: str | None = None,
    break_on_hyphens: bool = True,
) -> str:
    text = _text(s, "wordwrap")
    lines = len(text) // max(int(width), 1) + text.count("\n") + 1
    _check_len(len(text) + lines * len(str(wrapstring or "\n")), "the wrapped string")
    return jinja_filters.do_wordwrap(
        context.environment, text, width, break_long_words, wrapstring, break_on_hyphens
    )


def _format(value: Any, *args: Any, **kwargs: Any) -> str:
    fmt = _text(value, "format")
    _check_printf(fmt, (args, kwargs))
    return jinja_filters.do_format(fmt, *args, **kwargs)


@pass_eval_context
def _tojson(eval_ctx: EvalContext, value: Any, indent: int | None = None) -> str:
    if indent is not None:
        if not isinstance(indent, int) or not 0 <= indent <= 8:
            raise _Problem("SecurityError", "tojson indent must be between 0 and 8")
        _check_len(_size(value) * (1 + indent // 2), "the JSON text")
    return str(jinja_filters.do_tojson(eval_ctx, value, indent))


@pass_context
def _sum(context: Context, iterable: Any, attribute: Any = None, start: Any = 0) -> Any:
    if not isinstance(start, int | float):
        raise _Problem("SecurityError", "sum() only adds numbers")
    return jinja_filters.sync_do_sum(context.environment, iterable, attribute, start)


#: Filters that turn their input into text: inputs are size-checked before they run.
_STRINGIFYING_FILTERS: Final = frozenset(
    {*PROJECT_FILTERS, "capitalize", "format", "indent", "lower", "replace", "string", "title"}
    | {"tojson", "trim", "truncate", "upper", "urlencode", "wordcount", "wordwrap"}
)


def _guarded(name: str, filter_function: Callable[..., Any]) -> Callable[..., Any]:
    """Refuse oversized inputs before a filter stringifies them, and oversized text results.

    Filters that only rearrange data (``map``, ``sort``, ``list``...) build lists of references
    to values that already exist, so only their text results are checked.
    """
    check_inputs = name in _STRINGIFYING_FILTERS

    @functools.wraps(filter_function)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        if check_inputs:
            for argument in (*args, *kwargs.values()):
                if isinstance(argument, Mapping | list | tuple | Namespace) and not isinstance(
                    argument, Context
                ):
                    _check_size(argument, f"the input of '{name}'")
        result = filter_function(*args, **kwargs)
        if isinstance(result, str):
            _check_len(len(result), f"the result of '{name}'")
        return result

    return guarded


def _range(*args: Any) -> range:
    numbers = range(*args)
    try:
        length = len(numbers)
    except OverflowError:
        length = MAX_RANGE + 1
    if length > MAX_RANGE:
        raise _Problem("SecurityError", f"range() of {length} items; the limit is {MAX_RANGE}")
    return numbers


def _build_environment() -> _Sandbox:
    env = _Sandbox(
        autoescape=False,
        undefined=_Undefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        extensions=(),
        loader=None,
        cache_size=0,
        auto_reload=False,
    )
    builtins: dict[str, Callable[..., Any]] = {
        name: jinja_filters.FILTERS[name] for name in FILTER_NAMES if name in jinja_filters.FILTERS
    }
    builtins.update(
        {
            "default": _default,
            "d": _default,
            "join": _join,
            "replace": _replace,
            "indent": _indent,
            "wordwrap": _wordwrap,
            "format": _format,
            "tojson": _tojson,
            "sum": _sum,
            "json_escape": json_escape,
            "json_escape_strict": json_escape_strict,
            "shell_quote": shell_quote,
            "shell_single_quote_escape": shell_single_quote_escape,
            "k8s_env_escape": k8s_env_escape,
            "slack_escape": slack_escape,
            "oneline": oneline,
            "human_duration": human_duration,
        }
    )
    if set(builtins) != set(FILTER_NAMES):  # pragma: no cover - a Jinja2 upgrade dropped one
        raise RuntimeError(f"filters out of sync: {set(FILTER_NAMES) ^ set(builtins)}")
    env.filters.clear()
    env.filters.update({name: _guarded(name, function) for name, function in builtins.items()})
    env.filters.update(
        {
            "__out": _out,
            "__tick": _tick,
            "__tick_iter": _tick_iter,
            "__str": _concat_part,
            "__cap": _cap,
        }
    )
    env.tests.clear()
    env.tests.update(jinja_tests.TESTS)
    env.globals.clear()
    env.globals.update({"range": _range, "dict": dict, "namespace": Namespace})
    env.policies["truncate.leeway"] = 0
    env.policies["json.dumps_kwargs"] = {"sort_keys": True}
    return env


_ENV: Final = _build_environment()


@functools.lru_cache(maxsize=256)
def _compile_source(source: str) -> JinjaTemplate:
    """Parse, check, instrument and compile one param source. Raises TemplateSyntaxError or
    _Problem; neither is cached, so a bad source is reported every time it is used."""
    tree = _ENV.parse(source, filename=_TEMPLATE_FILENAME)
    for node_type, tag in _FORBIDDEN_NODES.items():
        for node in tree.find_all(node_type):
            raise TemplateSyntaxError(
                f"{{% {tag} %}} is not supported: templates are self-contained strings, "
                "there is nothing to load; use macros defined in the same param",
                node.lineno,
                filename=_TEMPLATE_FILENAME,
            )
    for used in tree.find_all(nodes.Filter):
        if used.name.startswith("__") or used.name not in _ENV.filters:
            raise TemplateSyntaxError(
                f"no filter named {used.name!r}; the filters are {', '.join(FILTER_NAMES)}",
                used.lineno,
                filename=_TEMPLATE_FILENAME,
            )
    for test in tree.find_all(nodes.Test):
        if test.name not in _ENV.tests:
            raise TemplateSyntaxError(
                f"no test named {test.name!r}", test.lineno, filename=_TEMPLATE_FILENAME
            )
    instrumented = _Instrument().visit(tree)
    instrumented.set_environment(_ENV)
    code = _ENV.compile(instrumented, filename=_TEMPLATE_FILENAME)
    return JinjaTemplate.from_code(_ENV, code, _ENV.make_globals(None))


# --------------------------------------------------------------------------------------------
# Context, compiling and rendering.


def dashboard_url(event: RunEvent, settings: RenderSettings) -> str | None:
    """The run's page in Tekton Dashboard, or None when no dashboard is configured."""
    if not settings.dashboard_url:
        return None
    base = settings.dashboard_url.rstrip("/")
    return (
        f"{base}/#/namespaces/{quote(event.namespace, safe='')}/"
        f"{_KIND_PATHS[event.kind]}/{quote(event.name, safe='')}"
    )


def render_context(
    event: RunEvent,
    *,
    policy: Mapping[str, Any],
    template: Mapping[str, Any],
    settings: RenderSettings = DEFAULT_SETTINGS,
    transition: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The variables a template sees: ``run``, ``event``, ``policy``, ``template``.

    ``event.transition`` is ``"broken"`` or ``"fixed"`` when the run changed its pipeline's
    outcome (else ""), with the pipeline's outcome before it in ``event.previous`` (else None).
    """
    view = event.view()
    view["url"] = dashboard_url(event, settings)
    view["failed"] = [child.as_dict() for child in event.failed_children]
    view["transition"] = str(transition.get("name") or "") if transition else ""
    previous = transition.get("previous") if transition else None
    view["previous"] = dict(previous) if isinstance(previous, Mapping) else None
    return {"run": event.run, "event": view, "policy": dict(policy), "template": dict(template)}


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
        return _compile_source(where.source)
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
    ) -> dict[str, str]:
        """Render every param: the template's in its order, then overrides that add params.

        ``overrides`` (a policy's templateRef params, Jinja2 strings too) replace the
        template's params of the same name. Raises :class:`RenderError`.
        """
        context = render_context(
            event,
            policy=policy,
            template=self.template.view(),
            settings=settings,
            transition=transition,
        )
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
        rendered: dict[str, str] = {}
        for where, compiled in jobs:
            if not isinstance(where.source, str):
                raise where.error("TemplateSyntaxError", "an override must be a string")
            jinja_template = compiled if compiled is not None else _compile(where)
            rendered[where.param] = _render_param(jinja_template, context, settings, where)
        return rendered


def compile_template(template: Template) -> CompiledTemplate:
    """Compile every param of ``template``; raises :class:`RenderError` (TemplateSyntaxError)
    naming the first param that does not compile."""
    compiled = {
        name: _compile(_Where(template, name, "", source))
        for name, source in template.params.items()
    }
    return CompiledTemplate(template, compiled)


def _render_param(
    compiled: JinjaTemplate, context: Mapping[str, Any], settings: RenderSettings, where: _Where
) -> str:
    state = _RenderState(context, settings, time.monotonic() + settings.max_seconds)
    token = _STATE.set(state)
    chunks: list[str] = []
    size = 0
    stream = cast(Generator[str, None, None], compiled.generate(context))
    try:
        for chunk in stream:
            size += len(chunk)
            if size > settings.max_param_chars:
                raise _Problem(
                    "OutputTooLarge",
                    f"the rendered value is longer than {settings.max_param_chars} characters",
                )
            chunks.append(chunk)
    except Exception as error:
        raise _to_render_error(error, where) from None
    finally:
        stream.close()
        _STATE.reset(token)
    return "".join(chunks)


_UNKNOWN_NAMES: Final = ("No filter named", "No test named")


def _to_render_error(error: Exception, where: _Where) -> RenderError:
    reason: RenderReason
    if isinstance(error, _Problem):
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
        reason, detail = "RenderFailed", "recursion too deep (a macro or loop calls itself)"
    elif isinstance(error, MemoryError):
        reason, detail = "OutputTooLarge", "out of memory"
    else:
        reason, detail = "RenderFailed", f"{type(error).__name__}: {error}"
    return where.error(reason, detail, _template_line(error))


def _template_line(error: BaseException) -> int | None:
    if isinstance(error, TemplateSyntaxError) and error.lineno:
        return error.lineno
    line = None
    for frame in traceback.extract_tb(error.__traceback__):
        if frame.filename == _TEMPLATE_FILENAME:
            line = frame.lineno
    return line
