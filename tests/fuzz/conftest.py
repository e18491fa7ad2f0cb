"""``--fuzz``: run the property tests long (``make fuzz``) instead of a few examples each."""

from __future__ import annotations

import pytest

from tests.fuzz import budget


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--fuzz",
        action="store_true",
        default=False,
        help="property tests with many examples (bounded: see tests/fuzz/budget.py)",
    )


def pytest_configure(config: pytest.Config) -> None:
    budget.FUZZ = bool(config.getoption("fuzz", default=False))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Long runs need more than the suite's per-test timeout; still bounded."""
    if budget.FUZZ:
        for item in items:
            if item.path.is_relative_to(config.rootpath / "tests" / "fuzz"):
                item.add_marker(pytest.mark.timeout(1800))
