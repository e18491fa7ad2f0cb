"""Benchmarks for tekton-notifications: ``python -m bench`` (``make bench``).

Every figure is printed with its ratio to a baseline measured side by side in the same run
(a no-op function served the same way, the other CEL engine, ...), because absolute numbers
on a shared two-core machine say little. Never run by ``make test``: nothing here is a
timed assertion. ``bench/README.md`` has the method and the latest results.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
