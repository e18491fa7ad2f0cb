"""How hard the property tests try: a few examples in ``make test``, many in ``make fuzz``.

``tests/fuzz/conftest.py`` sets :data:`FUZZ` from ``--fuzz`` before the test modules are
imported; :func:`examples` then builds each property's hypothesis settings.
"""

from __future__ import annotations

from datetime import timedelta

from hypothesis import HealthCheck, settings

#: True under ``pytest tests/fuzz --fuzz`` (``make fuzz``).
FUZZ = False


def examples(quick: int, fuzz: int) -> settings:
    """``quick`` examples, deterministic, in ``make test``; ``fuzz`` random ones with ``--fuzz``.

    Under ``--fuzz`` every example must finish within a generous deadline: one that does not
    is a hang the limits in the code should have stopped.
    """
    if FUZZ:
        return settings(
            max_examples=fuzz,
            deadline=timedelta(seconds=5),
            database=None,
            print_blob=True,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
    return settings(
        max_examples=quick,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
