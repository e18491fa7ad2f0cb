"""CEL ``when`` expressions: compiled once per policy generation, evaluated per candidate.

Uses cel-python's InterpretedRunner. Its CompiledRunner is ~5x faster but was measured to get
CEL's error-absorbing ``&&``/``||`` wrong (``has(x.y) && x.y.z`` raises instead of returning
false), and ``has()`` guards are the idiom users write, so correctness wins here.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import celpy
from celpy import celtypes
from celpy.adapter import json_to_cel
from celpy.celparser import CELParseError
from celpy.evaluation import CELEvalError

# celpy logs every evaluation error at ERROR before raising; we report them ourselves.
logging.getLogger("celpy").setLevel(logging.CRITICAL)

_ENVIRONMENT = celpy.Environment(runner_class=celpy.InterpretedRunner)

#: Variables a ``when`` expression may use; documented in docs/policies.md.
VARIABLES = ("run", "event", "policy")


class CelError(ValueError):
    """A CEL expression that does not compile, fails at run time, or is not boolean."""


@dataclass(frozen=True)
class Expression:
    source: str
    _program: Any

    def evaluate(self, activation: Mapping[str, Any]) -> bool:
        """Evaluate against an activation from :func:`activation`; non-bool is an error."""
        try:
            result = self._program.evaluate(dict(activation))
        except CELEvalError as error:
            raise CelError(_describe(error)) from None
        except Exception as error:  # celpy surfaces Python errors from its builtins
            raise CelError(f"{type(error).__name__}: {error}") from None
        if isinstance(result, CELEvalError):
            raise CelError(_describe(result))
        if not isinstance(result, celtypes.BoolType):
            raise CelError(f"must evaluate to bool, got {type(result).__name__}: {result}")
        return bool(result)


def compile_expression(source: str) -> Expression:
    """Parse and prepare ``source``; raises :class:`CelError` with the parser's message."""
    try:
        ast = _ENVIRONMENT.compile(source)
        program = _ENVIRONMENT.program(ast)
    except CELParseError as error:
        raise CelError(f"syntax error: {' '.join(str(error).split())}") from None
    except Exception as error:
        raise CelError(f"{type(error).__name__}: {error}") from None
    return Expression(source=source, _program=program)


def activation(
    *, run: Mapping[str, Any], event: Mapping[str, Any], policy: Mapping[str, Any]
) -> dict[str, Any]:
    """Convert the variables to CEL values; do it once per event, not once per policy."""
    return {
        "run": json_to_cel(_plain(run)),
        "event": json_to_cel(_plain(event)),
        "policy": json_to_cel(_plain(policy)),
    }


def with_policy(base: Mapping[str, Any], policy: Mapping[str, Any]) -> dict[str, Any]:
    """An event's activation with one policy's variable swapped in (cheap: one small map)."""
    return {**base, "policy": json_to_cel(_plain(policy))}


def _plain(value: Any) -> Any:
    """json_to_cel wants plain dicts/lists; Tekton data may hold read-only mappings."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def _describe(error: Any) -> str:
    """The innermost message of celpy's nested error tuples."""
    args = getattr(error, "args", ())
    while args and isinstance(args[-1], tuple) and args[-1]:
        inner = args[-1]
        if isinstance(inner[0], str) and len(inner) == 1:
            return inner[0]
        args = inner
    return str(args[0]) if args else str(error)
