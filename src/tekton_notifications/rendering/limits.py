"""The budget of one render: wall-clock time, steps, and the characters it may build.

One :class:`Budget` covers every param of one render (a template's params and a policy's
overrides together), so a template with twelve params gets the same two seconds as one with
one. It is enforced before work is done wherever the cost is known in advance (``*``, ``+``,
``join``, ``replace``, ``format``: the size of the result, counting the size of what is
repeated, is checked before the value is built), per item where it is not (lazy filters such
as ``map`` and ``select``, and the inputs of ``sort``, ``max``, ``groupby``...), and inside
long calls by a profile hook (:func:`watched`) that checks the deadline on every Python and
C call made on the rendering thread while the render runs.

Sizes are counted as printed characters (:func:`size`): a shared reference counts every time
it appears, as it would in output, so ``[big] * 1000000`` costs a million ``big``. Two
budgets apply: each value built may have at most ``MAX_VALUE_CHARS``, and all values built by
one render together at most ``RenderSettings.max_built_chars``; with at most 4 bytes a
character, that bounds the memory of a render.

Must not: know Jinja2's nodes or filters (the sandbox and filters modules call in here), do
I/O, or keep state between renders.
"""

from __future__ import annotations

import re
import string
import sys
import time
from collections.abc import Callable, Generator, Iterable, Mapping
from contextvars import ContextVar, Token
from dataclasses import dataclass
from types import FrameType
from typing import Any, Final, NoReturn, cast

from jinja2 import Undefined
from jinja2.utils import Namespace

from tekton_notifications import links
from tekton_notifications.rendering.errors import LimitExceeded, Problem

#: The largest string, list or mapping (as printed text) a template may build.
MAX_VALUE_CHARS: Final = 1_000_000
#: The most text one render may produce, counting text captured by ``{% set %}`` blocks,
#: macros and call blocks (each param itself is capped by ``RenderSettings.max_param_chars``).
MAX_EMITTED_CHARS: Final = 4_000_000
#: ``range()`` refuses more items than this.
MAX_RANGE: Final = 100_000
#: Widths and precisions in ``%``-formatting and ``str.format`` specs.
MAX_FORMAT_WIDTH: Final = 1_000
#: Integer results of ``*`` and ``**`` must fit in this many bits.
MAX_INT_BITS: Final = 10_000
#: Renders of one template generation over their limits before the template is refused
#: without rendering (and marked not Ready) until it is changed.
RENDER_LIMIT_STRIKES: Final = 3


@dataclass(frozen=True)
class RenderSettings:
    """Per-deployment knobs for rendering; the defaults suit a shared notification service."""

    #: Tekton Dashboard base URL, e.g. ``https://tekton.example.com``, or
    #: ``dashboard=URL,results=URL`` to link Tekton Results too (:mod:`links`); ``event.url``
    #: is None without a dashboard.
    dashboard_url: str | None = None
    #: A rendered param longer than this many characters is an error (OutputTooLarge).
    max_param_chars: int = 16_384
    #: Loop iterations plus macro calls allowed in one render, all params together.
    max_steps: int = 100_000
    #: Wall-clock seconds allowed for one render, all params together.
    max_seconds: float = 2.0
    #: Characters of values one render may build, all params together (see module docstring).
    max_built_chars: int = 16_000_000

    def __post_init__(self) -> None:
        limits = (self.max_param_chars, self.max_steps, self.max_seconds, self.max_built_chars)
        if any(limit <= 0 for limit in limits):
            raise ValueError("RenderSettings limits must be positive")
        links.parse(self.dashboard_url)  # a bad link setting fails at start, not per render


DEFAULT_SETTINGS: Final = RenderSettings()


class Budget:
    """What one render has spent. Once a limit is crossed every later check fails too, so
    nothing that swallowed the first failure can keep the render going."""

    __slots__ = (
        "armed",
        "built",
        "context",
        "deadline",
        "emitted",
        "exceeded",
        "settings",
        "steps",
        "watching",
    )

    def __init__(self, settings: RenderSettings, context: Mapping[str, Any]) -> None:
        self.settings = settings
        #: The render's variables, used to name undefined values in messages.
        self.context = context
        self.deadline = time.monotonic() + settings.max_seconds
        self.steps = 0
        self.emitted = 0
        self.built = 0
        self.exceeded: str | None = None
        #: Whether the profile hook enforces the deadline (see :func:`start`).
        self.armed = False
        #: Whether a filter call runs under the hook (see :func:`watched`).
        self.watching = False

    def exceed(self, detail: str) -> NoReturn:
        self.exceeded = self.exceeded or detail
        raise LimitExceeded(self.exceeded)

    def hook(self, frame: FrameType, event: str, arg: object) -> None:
        """The profile hook of :func:`watched`: stop the render once past the deadline."""
        if self.armed and time.monotonic() > self.deadline:
            self.armed = False
            self.exceed(f"rendering took longer than {self.settings.max_seconds}s")

    def check_time(self) -> None:
        if self.exceeded or time.monotonic() > self.deadline:
            self.exceed(f"rendering took longer than {self.settings.max_seconds}s")

    def tick(self) -> None:
        self.steps += 1
        if self.steps > self.settings.max_steps:
            self.exceed(f"more than {self.settings.max_steps} loop iterations and macro calls")
        self.check_time()

    def build(self, chars: int, what: str) -> None:
        """Account ``chars`` characters of a value about to be (or just) built."""
        check_len(chars, what)
        self.built += chars
        if self.built > self.settings.max_built_chars:
            self.exceed(
                f"the template built over {self.settings.max_built_chars} characters of values"
            )
        self.check_time()

    def emit(self, chars: int) -> None:
        self.emitted += chars
        if self.emitted > MAX_EMITTED_CHARS:
            self.exceed(f"the template produced over {MAX_EMITTED_CHARS} characters")
        self.check_time()


_CURRENT: ContextVar[Budget | None] = ContextVar("tekton_notifications_render", default=None)


def current() -> Budget | None:
    """The budget of the render running in this context, None outside a render."""
    return _CURRENT.get()


def start(budget: Budget) -> Token[Budget | None]:
    """Make ``budget`` the current one until :func:`stop`.

    The caller sets ``budget.armed = False`` (an attribute store, which the profile hook of
    :func:`watched` does not see) before any call it makes while unwinding, so the hook never
    fires in the caller's own error handling.
    """
    token = _CURRENT.set(budget)
    budget.armed = True
    return token


def stop(budget: Budget, token: Token[Budget | None]) -> None:
    budget.armed = False
    _CURRENT.reset(token)


def watched(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call ``function`` (a filter) with the render's deadline enforced inside it.

    One filter call (``max`` of a huge list, ``sort`` with a key, ``wordwrap`` of a long
    text) never returns to the template's own checks until it is done. While it runs, a
    ``sys.setprofile`` hook (this thread only) checks the deadline on every Python call and
    return and every C call made from Python, so the filter is stopped at its next call after
    the deadline. Raising from the hook makes CPython drop the hook, and the exception unwinds
    the render. Only filter calls are watched: the hook costs about a microsecond per call,
    and the template's own loops, output and values are checked by the budget directly.
    """
    budget = current()
    if budget is None or budget.watching or sys.getprofile() is not None:
        # Not rendering, already watched, or a profiler (cProfile in a benchmark) is on:
        # it is left alone, and the budget's own checks still bound the render.
        return function(*args, **kwargs)
    budget.watching = True
    sys.setprofile(budget.hook)
    try:
        return function(*args, **kwargs)
    finally:
        budget.watching = False
        sys.setprofile(None)  # the hook may fire once more here, and stop the render


def exceed(detail: str) -> NoReturn:
    """Fail the current render. Outside a render (Jinja2 folding constants while compiling)
    this is an ordinary Problem, which makes Jinja2 leave the expression to render time."""
    budget = current()
    if budget is not None:
        budget.exceed(detail)
    raise Problem("RenderLimitExceeded", detail)


# Sizes -----------------------------------------------------------------------------------


_SCALARS: Final = frozenset({int, float, bool, type(None)})
#: What a number, bool or None counts for: about what it prints as, with its separator.
_SCALAR_CHARS: Final = 4


def size(value: object, limit: int = MAX_VALUE_CHARS) -> int:
    """About how many characters ``str()``/``tojson`` make of ``value``; stops past ``limit``.

    Shared references count every time they appear, as they do when printed. An Undefined
    anywhere inside raises: printing it would hide a mistake (or a refused attribute).
    """
    total = 0
    stack: list[object] = [value]
    while stack and total <= limit:
        item = stack.pop()
        kind = type(item)
        if kind is str:
            total += len(cast(str, item)) + 2
        elif kind in _SCALARS:
            total += _SCALAR_CHARS
        elif isinstance(item, list | tuple):
            total += 2 + 2 * len(item)
            for entry in item:  # the common case, lists of strings and numbers, inline
                entry_kind = type(entry)
                if entry_kind is str:
                    total += len(entry) + 2
                elif entry_kind in _SCALARS:
                    total += _SCALAR_CHARS
                else:
                    stack.append(entry)
                if total > limit:
                    break
        elif isinstance(item, str):
            total += len(item) + 2
        elif isinstance(item, Mapping):
            total += 2 + 4 * len(item)
            for key, entry in item.items():
                stack.append(key)
                stack.append(entry)
        elif isinstance(item, set | frozenset):
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
        elif isinstance(item, int | float):
            total += _SCALAR_CHARS
        else:
            total += 16
    return total


def check_len(length: int, what: str) -> None:
    """Refuse one value of ``length`` characters before it is built."""
    if length > MAX_VALUE_CHARS:
        exceed(f"{what} would be {length} long; the limit is {MAX_VALUE_CHARS}")


def check_size(value: object, what: str = "a value") -> int:
    """Refuse a value whose printed size is over the limit; returns the size."""
    if isinstance(value, int | float | bool) or value is None:
        return 0
    measured = size(value)
    if measured > MAX_VALUE_CHARS:
        exceed(f"{what} would be larger than {MAX_VALUE_CHARS} characters")
    return measured


def build(chars: int, what: str) -> None:
    """Account a value of ``chars`` characters against the current render's budget."""
    budget = current()
    if budget is None:
        check_len(chars, what)
    else:
        budget.build(chars, what)


def build_value(value: object, what: str) -> None:
    """Account a value just built (a filter's or method's result, a literal).

    A string costs its characters; a container costs its slots (what it holds was accounted
    when that was built) and must not print larger than one value may be, so whatever
    compares, sorts or prints it later stays bounded.
    """
    if isinstance(value, str):
        build(len(value), what)
    elif isinstance(value, Mapping | list | tuple | set | frozenset):
        check_size(value, what)
        build(2 + 2 * len(value), what)


def check_width(value: int) -> None:
    if value > MAX_FORMAT_WIDTH:
        exceed(f"a width or count of {value} is over the limit {MAX_FORMAT_WIDTH}")


def check_repeat(sequence: str | list[Any] | tuple[Any, ...], times: int) -> None:
    """``sequence * times``: the size of what is repeated, times the count."""
    times = max(times, 0)
    if isinstance(sequence, str):
        build(len(sequence) * times, "the repeated value")
        return
    scan_limit = MAX_VALUE_CHARS // max(times, 1) + 1
    per_copy = size(sequence, scan_limit)
    if per_copy * times > MAX_VALUE_CHARS:
        at_least = "at least " if per_copy > scan_limit else ""
        exceed(
            f"the repeated value would be {at_least}{per_copy * times} characters; "
            f"the limit is {MAX_VALUE_CHARS}"
        )
    build(2 * len(sequence) * times, "the repeated value")


def check_int_product(left: int, right: int) -> None:
    if left.bit_length() + right.bit_length() > MAX_INT_BITS:
        exceed(f"integer product over {MAX_INT_BITS} bits")


def check_int_power(left: int, right: int) -> None:
    if right > 0 and abs(left) > 1 and left.bit_length() * right > MAX_INT_BITS:
        exceed(f"integer power over {MAX_INT_BITS} bits")


def check_range(numbers: range) -> None:
    try:
        length = len(numbers)
    except OverflowError:
        length = MAX_RANGE + 1
    if length > MAX_RANGE:
        exceed(f"range() of {length} items; the limit is {MAX_RANGE}")


# Iteration -------------------------------------------------------------------------------


def measured_items(iterable: Iterable[Any], what: str) -> Generator[Any, None, None]:
    """The items of a lazy input, refusing once their sizes add up to more than one value
    may hold: what ``sort``, ``max``, ``groupby``... compare or copy stays bounded when the
    input is a ``map`` or ``select`` over something big. (Lists and mappings need no such
    walk: every one a template builds was checked when it was built.)"""
    budget = current()
    total = 0
    for count, item in enumerate(iterable):
        total += size(item, MAX_VALUE_CHARS - total)
        if total > MAX_VALUE_CHARS:
            exceed(f"the items of {what} would be larger than {MAX_VALUE_CHARS} characters")
        if budget is not None and not count % 256:
            budget.check_time()
        yield item


def built_items(iterable: Iterable[Any], what: str) -> Generator[Any, None, None]:
    """The items of a lazy filter result, each accounted as it is produced."""
    for item in iterable:
        if isinstance(item, str | Mapping | list | tuple):
            build_value(item, what)
        else:
            build(2, what)
        yield item


def checked_call(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call ``function`` and account what it returns."""
    result = function(*args, **kwargs)
    build_value(result, "a result")
    return result


# Text operations whose result size follows from their arguments --------------------------

_PRINTF_DIRECTIVE: Final = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")


def _width(number: str) -> int:
    return int(number) if len(number) < 8 else MAX_FORMAT_WIDTH + 1


def check_printf(fmt: str, args: object) -> None:
    """``fmt % args``: widths, and the result as if every directive printed all of ``args``
    (``'%(a)s' * 100 % {'a': big}`` repeats ``big`` a hundred times)."""
    directives = 0
    for match in _PRINTF_DIRECTIVE.finditer(fmt):
        directives += 1
        for number in match.groups():
            if number == "*":
                raise Problem("SecurityError", "'*' widths are not allowed in % formatting")
            if number:
                check_width(_width(number))
    arguments = check_size(args, "the % formatting arguments")
    check_len(len(fmt) + directives * arguments, "the formatted string")


def check_format(fmt: str, args: object, kwargs: object) -> None:
    try:
        parsed = list(string.Formatter().parse(fmt))
    except ValueError as error:
        raise Problem("RenderFailed", f"bad format string: {error}") from None
    fields = 0
    for _literal, field_name, spec, _conversion in parsed:
        if field_name is None:
            continue
        fields += 1
        if not spec:
            continue
        if "{" in spec:
            raise Problem("SecurityError", "nested fields in a format spec are not allowed")
        for number in re.findall(r"\d+", spec):
            check_width(_width(number))
    arguments = check_size(args, "the format arguments") + check_size(
        kwargs, "the format arguments"
    )
    # Every field may print all the arguments: '{0}' * 100 repeats the first a hundred times.
    check_len(len(fmt) + fields * (arguments + MAX_FORMAT_WIDTH), "the formatted string")


def check_replace(text: str, old: object, new: object, count: object = None) -> None:
    if not isinstance(old, str) or not isinstance(new, str):
        return
    hits = len(text) + 1 if old == "" else text.count(old)
    if isinstance(count, int) and count >= 0:
        hits = min(hits, count)
    check_len(len(text) + hits * max(0, len(new) - len(old)), "the replaced string")


def check_join(separator: str, items: list[Any]) -> None:
    total = len(separator) * max(0, len(items) - 1)
    for item in items:
        total += size(item, MAX_VALUE_CHARS - total)
        if total > MAX_VALUE_CHARS:
            break
    check_len(total, "the joined string")
