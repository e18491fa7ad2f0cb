"""What a failed render says: :class:`RenderError` for callers, :class:`Problem` inside.

Owns the reasons a render can fail with. Must not: know how a limit is measured (limits) or
where a template came from beyond the names a message needs.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

RenderReason = Literal[
    "UndefinedVariable",
    "TemplateSyntaxError",
    "SecurityError",
    "OutputTooLarge",
    "RenderLimitExceeded",
    "RenderFailed",
]


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


class Problem(Exception):
    """Raised inside rendering by the package's guards; becomes a :class:`RenderError`."""

    def __init__(self, reason: RenderReason, detail: str) -> None:
        super().__init__(detail)
        self.reason: RenderReason = reason
        self.detail = detail


class LimitExceeded(BaseException):
    """A render spent its budget. A BaseException, so no ``except Exception`` inside Jinja2
    or a filter can swallow it and let the render go on; becomes ``RenderLimitExceeded``."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail
