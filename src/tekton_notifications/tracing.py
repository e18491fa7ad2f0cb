"""W3C trace context along the chain: one trace per notification, end to end.

The ``traceparent`` CloudEvents extension of the incoming Tekton event (Knative and Tekton
may set it) is continued; without one, the policy filter starts a trace. Each stage passes
on a child: same trace id, a new parent id, so one notification can be followed from the
Tekton event to the run it created (which carries it as an annotation).
"""

from __future__ import annotations

import re
import secrets
from typing import Final

_TRACEPARENT: Final = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_INVALID_TRACE: Final = "0" * 32
_INVALID_SPAN: Final = "0" * 16


def is_valid(traceparent: str | None) -> bool:
    matched = _TRACEPARENT.match(traceparent or "")
    return matched is not None and matched[1] != _INVALID_TRACE and matched[2] != _INVALID_SPAN


def new_trace() -> str:
    """A fresh, sampled traceparent."""
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


def child_of(traceparent: str | None) -> str:
    """The traceparent for the next hop: same trace and flags, new parent id.

    An absent or malformed parent starts a new trace rather than propagating garbage.
    """
    matched = _TRACEPARENT.match(traceparent or "")
    if not matched or not is_valid(traceparent):
        return new_trace()
    return f"00-{matched[1]}-{secrets.token_hex(8)}-{matched[3]}"


def trace_id(traceparent: str | None) -> str | None:
    matched = _TRACEPARENT.match(traceparent or "")
    return matched[1] if matched else None
