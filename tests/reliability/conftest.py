"""Options for the reliability tests: the soak size (``--full-soak`` or ``SOAK_EVENTS``)."""

from __future__ import annotations

import os

import pytest

DEFAULT_SOAK_EVENTS = 300
FULL_SOAK_EVENTS = 10_000


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--full-soak",
        action="store_true",
        default=False,
        help=f"send {FULL_SOAK_EVENTS} events in the at-least-once soak test "
        f"(default {DEFAULT_SOAK_EVENTS}; SOAK_EVENTS=<n> sets any size)",
    )


def soak_events(config: pytest.Config) -> int:
    if config.getoption("full_soak", default=False):
        return FULL_SOAK_EVENTS
    return int(os.environ.get("SOAK_EVENTS") or DEFAULT_SOAK_EVENTS)


def soak_seconds(events: int) -> float:
    """How long a soak of ``events`` may take before it counts as hung (2 cores)."""
    return 60.0 + events * 0.1


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "soak: sized by --full-soak / SOAK_EVENTS")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A larger soak gets a per-test timeout to match (pytest-timeout reads the marker)."""
    events = soak_events(config)
    for item in items:
        if item.get_closest_marker("soak") is not None:
            item.add_marker(pytest.mark.timeout(soak_seconds(events) + 60))


@pytest.fixture
def soak_size(request: pytest.FixtureRequest) -> int:
    return soak_events(request.config)
