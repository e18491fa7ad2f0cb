"""The filters and globals a template may use, each accounted against the render's budget.

Owns this project's filters (escaping for JSON, shells, Kubernetes env values and Slack;
``oneline``, ``human_duration``), the curated Jinja2 built-ins and the guard every filter is
wrapped in: inputs that would be printed are size-checked before the filter runs, inputs that
are walked (``map``, ``sort``, ``max``...) are measured item by item with the deadline checked
per item, and results are accounted (lazy results item by item as they are produced).

Must not: reach outside the sandbox, keep state, or know which task consumes a param. The
escaping filters are pure functions of their input; which one a param needs is documented
per catalog task in docs/templates.md.
"""

from __future__ import annotations

import functools
import json
import shlex
import string
from collections.abc import Callable, Iterator, Mapping
from datetime import timedelta
from typing import Any, Final

from jinja2 import Undefined, pass_context, pass_eval_context
from jinja2 import filters as jinja_filters
from jinja2.environment import Environment
from jinja2.nodes import EvalContext
from jinja2.runtime import Context
from jinja2.utils import Namespace

from tekton_notifications.rendering import limits
from tekton_notifications.rendering.errors import Problem
from tekton_notifications.rendering.limits import MAX_FORMAT_WIDTH

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


def _text(value: Any, filter_name: str) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        raise Problem(
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
    budget = limits.current()
    for index, char in enumerate(text):
        if budget is not None and not index & 4095:
            budget.check_time()  # a Python loop over up to a million characters
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
        raise Problem(
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
    limits.check_join(str(d), items)
    return jinja_filters.sync_do_join(eval_ctx, items, d, attribute)


@pass_eval_context
def _replace(eval_ctx: EvalContext, s: Any, old: Any, new: Any, count: Any = None) -> str:
    limits.check_replace(str(s), str(old), str(new), count)
    return jinja_filters.do_replace(eval_ctx, s, old, new, count)


def _indent(s: Any, width: Any = 4, first: bool = False, blank: bool = False) -> str:
    text = _text(s, "indent")
    pad = width if isinstance(width, str) else " " * min(int(width), MAX_FORMAT_WIDTH + 1)
    limits.check_width(len(pad))
    limits.check_len(len(text) + (text.count("\n") + 1) * len(pad), "the indented string")
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
    limits.check_len(len(text) + lines * len(str(wrapstring or "\n")), "the wrapped string")
    return jinja_filters.do_wordwrap(
        context.environment, text, width, break_long_words, wrapstring, break_on_hyphens
    )


def _format(value: Any, *args: Any, **kwargs: Any) -> str:
    fmt = _text(value, "format")
    limits.check_printf(fmt, (args, kwargs))
    return jinja_filters.do_format(fmt, *args, **kwargs)


@pass_eval_context
def _tojson(eval_ctx: EvalContext, value: Any, indent: int | None = None) -> str:
    if indent is not None and (not isinstance(indent, int) or not 0 <= indent <= 8):
        raise Problem("SecurityError", "tojson indent must be between 0 and 8")
    limits.check_len(limits.size(value) * (1 + (indent or 0) // 2), "the JSON text")
    return str(jinja_filters.do_tojson(eval_ctx, value, indent))


@pass_context
def _sum(context: Context, iterable: Any, attribute: Any = None, start: Any = 0) -> Any:
    if not isinstance(start, int | float):
        raise Problem("SecurityError", "sum() only adds numbers")
    return jinja_filters.sync_do_sum(context.environment, iterable, attribute, start)


#: Filters that turn their input into text: inputs are size-checked before they run.
_STRINGIFYING_FILTERS: Final = frozenset(
    {*PROJECT_FILTERS, "capitalize", "format", "indent", "lower", "replace", "string", "title"}
    | {"tojson", "trim", "truncate", "upper", "urlencode", "wordcount", "wordwrap"}
)
#: Filters that walk their whole input: it is measured item by item as they pull it, so
#: what they compare, sort or copy stays bounded even when the input is lazy.
_WALKING_FILTERS: Final = frozenset(
    {"batch", "dictsort", "groupby", "join", "list", "map", "max", "min", "reject"}
    | {"rejectattr", "reverse", "select", "selectattr", "slice", "sort", "sum", "unique"}
)
_PASSED: Final = (Context, EvalContext, Environment)


def _guarded(name: str, filter_function: Callable[..., Any]) -> Callable[..., Any]:
    """Account a filter: inputs it would print are size-checked before it runs, the input
    it walks is measured item by item, and what it returns is accounted (a lazy result,
    such as ``map``'s, item by item as it is consumed)."""
    check_inputs = name in _STRINGIFYING_FILTERS
    walks = name in _WALKING_FILTERS
    # This project's filters check the deadline themselves where they loop in Python.
    call = limits.watched if name not in PROJECT_FILTERS else _call
    what = f"the result of '{name}'"

    @functools.wraps(filter_function)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        if check_inputs:
            for argument in (*args, *kwargs.values()):
                if isinstance(argument, Mapping | list | tuple | Namespace) and not isinstance(
                    argument, Context
                ):
                    limits.check_size(argument, f"the input of '{name}'")
        if walks:
            args = _measured_input(name, args)
        result = call(filter_function, *args, **kwargs)
        if isinstance(result, Iterator):
            return limits.built_items(result, what)
        limits.build_value(result, what)
        return result

    return guarded


def _call(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return function(*args, **kwargs)


def _measured_input(name: str, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """``args`` with the filter's input (the first argument after any context Jinja2
    passes) replaced by a measuring iterator when it is lazy."""
    for index, argument in enumerate(args):
        if isinstance(argument, _PASSED):
            continue
        if isinstance(argument, Iterator):
            measured = limits.measured_items(argument, f"the input of '{name}'")
            return (*args[:index], measured, *args[index + 1 :])
        break
    return args


def _range(*args: Any) -> range:
    numbers = range(*args)
    limits.check_range(numbers)
    return numbers


def _builtins() -> dict[str, Callable[..., Any]]:
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
    return builtins


def filters() -> dict[str, Callable[..., Any]]:
    """Every filter a template may name, each wrapped in its guard."""
    return {name: _guarded(name, function) for name, function in _builtins().items()}


def template_globals() -> dict[str, Any]:
    """The globals a template may use besides the context variables."""
    return {"range": _range, "dict": dict, "namespace": Namespace}
