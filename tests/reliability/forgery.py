"""Forged stage events made consistent, as anyone who reads the project can make them.

A payload's ``key`` and ``run`` are checked by every stage against the claim and the run it
names (stages/skeleton.py). Neither is a secret, so a forgery that means to reach a later
check (the template, the run's namespace, what the launcher admits) recomputes them; so do
the tests that drive a stage with an edited claim.
"""

from __future__ import annotations

from typing import Any

from tekton_notifications import notifications


def refit(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with its key and run identity recomputed from the claim and run it names."""
    data.pop("run", None)
    forged = notifications.parse_notification(data)
    data["key"] = forged.expected_key()
    data["run"] = notifications.run_identity(forged.event)
    return data
