"""The throughput baseline for functions-framework: an HTTP function that answers 202 at once.

``functions-framework --source bench/noop_ff.py --target noop`` (from .venv-ff).
"""

from __future__ import annotations

from typing import Any

import functions_framework


@functions_framework.http  # type: ignore[untyped-decorator]
def noop(request: Any) -> tuple[str, int]:
    return "", 202
