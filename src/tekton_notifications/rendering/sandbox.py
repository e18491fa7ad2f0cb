"""The Jinja2 sandbox templates run in: what a template may reach and which operators cost.

Owns the environment class (:class:`Sandbox`, on top of Jinja2's
:class:`~jinja2.sandbox.ImmutableSandboxedEnvironment`): mapping keys win over methods,
underscore names are refused, only listed methods of str/dict/list may be called, and the
operators and methods that build values are accounted against the render's budget (see
limits). Also the undefined type that spells out the full path of a missing value.

Must not: define filters (filters), rewrite templates (instrument), or render (compiling).
"""

from __future__ import annotations

import difflib
import types
from collections.abc import Callable, Mapping
from typing import Any, Final, cast

from jinja2 import StrictUndefined
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace, missing

from tekton_notifications.rendering import limits

#: The context variables (see :func:`tekton_notifications.rendering.context.render_context`).
CONTEXT_NAMES: Final = ("run", "event", "policy", "template", "subscription", "digest")

_STR_METHOD_NAMES: Final = (
    "capitalize casefold count endswith find format format_map index isalnum isalpha isascii "
    "isdecimal isdigit isidentifier islower isnumeric isprintable isspace istitle isupper "
    "join lower lstrip partition removeprefix removesuffix replace rfind rindex rpartition "
    "rsplit rstrip split splitlines startswith strip swapcase title upper"
)
#: Methods of strings a template may call; documented in docs/templates.md.
STR_METHODS: Final = frozenset(_STR_METHOD_NAMES.split())
_MAPPING_METHODS: Final = frozenset({"get", "items", "keys", "values"})
_SEQUENCE_METHODS: Final = frozenset({"count", "index"})


def _allowed_methods(owner: object) -> frozenset[str] | None:
    """Methods a template may call on a value of this type; None: not a data value."""
    if isinstance(owner, type):
        return frozenset()
    if isinstance(owner, str):
        return STR_METHODS
    if isinstance(owner, Mapping):
        return _MAPPING_METHODS
    if isinstance(owner, list | tuple):
        return _SEQUENCE_METHODS
    if isinstance(owner, int | float | bytes | bytearray | set | frozenset | range):
        return frozenset()
    return None


class Undefined(StrictUndefined):
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
        budget = limits.current()
        path = None
        if budget is not None and isinstance(container, Mapping | list | tuple):
            path = _find_path(budget.context, container)
        if path is None:
            return str(super()._undefined_message)
        if isinstance(container, Mapping):
            keys = sorted(map(str, container))
            listed = ", ".join(keys[:20]) + (", ..." if len(keys) > 20 else "")
            has = f"its keys are: {listed}" if keys else "it is empty"
            closest = difflib.get_close_matches(str(name), keys, n=1, cutoff=0.6)
            if closest:
                has = f"did you mean {path}{_accessor(closest[0])}? {has}"
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


class Sandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, plus: mapping keys win over methods (``labels.items`` is the
    label ``items`` if there is one), underscore names are always refused, only listed
    methods of str/dict/list may be called, and what operators and methods build is
    accounted (sizes of repeated values included) before it is built where it can be."""

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
            limits.check_format(fmt, args, kwargs)
            result = wrapped(*args, **kwargs)
            limits.build(len(result), "the formatted string")
            return result

        return checked

    def call(
        __self,
        __context: Context,
        __obj: Any,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        data_method = False
        if isinstance(__obj, types.BuiltinMethodType | types.MethodType):
            owner = getattr(__obj, "__self__", None)
            allowed = _allowed_methods(owner)
            name = getattr(__obj, "__name__", "?")
            if allowed is not None and name not in allowed:
                kind = owner.__name__ if isinstance(owner, type) else type(owner).__name__
                raise SecurityError(f"{kind}.{name}() is not available in templates")
            data_method = allowed is not None
            if isinstance(owner, str) and name == "join" and args:
                items = list(limits.measured_items(args[0], "str.join()"))
                limits.check_join(owner, items)
                args = (items, *args[1:])
            elif isinstance(owner, str) and name == "replace" and len(args) >= 2:
                limits.check_replace(owner, *args[:3])
        elif __obj is dict or __obj is Namespace:
            data_method = True  # dict(old, **new) in a loop grows a mapping: account it
        result = super().call(__context, __obj, *args, **kwargs)
        if data_method:
            limits.build_value(result, "the result of a call")
        return result

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            _check_multiply(left, right)
            return super().call_binop(context, operator, left, right)
        if operator == "**":
            if isinstance(left, int) and isinstance(right, int):
                limits.check_int_power(left, right)
        elif operator == "+":
            if isinstance(left, str) and isinstance(right, str):
                limits.build(len(left) + len(right), "the sum")
            elif isinstance(left, list | tuple) and isinstance(right, list | tuple):
                limits.check_len(limits.size(left) + limits.size(right), "the sum")
                limits.build(2 * (len(left) + len(right)), "the sum")
        elif operator == "%" and isinstance(left, str):
            limits.check_printf(left, right)
            result = super().call_binop(context, operator, left, right)
            limits.build_value(result, "the % formatted string")
            return result
        return super().call_binop(context, operator, left, right)


def _check_multiply(left: Any, right: Any) -> None:
    for sequence, times in ((left, right), (right, left)):
        if isinstance(sequence, str | list | tuple) and isinstance(times, int):
            limits.check_repeat(sequence, times)
    if isinstance(left, int) and isinstance(right, int):
        limits.check_int_product(left, right)
