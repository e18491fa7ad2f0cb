"""cel-python's parser with its LALR tables loaded from a file (celparse): it must parse exactly
as celpy's own parser does, and a missing, stale or damaged file must only cost time."""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from celpy import celparser

from tekton_notifications import celparse

EXPRESSIONS = [
    pytest.param(
        'has(run.metadata.labels) && "tekton.dev/pipelineTask" in run.metadata.labels',
        id="has and in",
    ),
    pytest.param('event.name.startsWith("app-") || event.reason == "Failed"', id="methods"),
    pytest.param("[1, 2, 3].exists(x, x > 2) && {'a': 1}['a'] == 1", id="macros and literals"),
    pytest.param("true ? -1 : 2u", id="true is a literal, not an identifier"),
    pytest.param('timestamp("2026-01-01T00:00:00Z") + duration("1h")', id="timestamps"),
]


@cache
def _celpy_lark() -> Any:
    """celpy's own parser, as celpy builds it (no cache file); built once: ~0.5 s."""
    saved = celparser.CELParser.CEL_PARSER
    celparser.CELParser.CEL_PARSER = None
    try:
        celparser.CELParser()
        return celparser.CELParser.CEL_PARSER
    finally:
        celparser.CELParser.CEL_PARSER = saved


def _celpy_own(source: str) -> Any:
    return _celpy_lark().parse(source)


@pytest.fixture
def cache_at(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """celparse with its cache file in ``tmp_path`` and no parser installed yet."""
    path = tmp_path / "celparse.cache"
    monkeypatch.setattr(celparse, "CACHE", path)
    saved = celparser.CELParser.CEL_PARSER
    celparser.CELParser.CEL_PARSER = None
    try:
        yield path
    finally:
        celparser.CELParser.CEL_PARSER = saved


def _fresh_parse(source: str) -> Any:
    celparser.CELParser.CEL_PARSER = None
    return celparse.parser().parse(source)


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A parser whose tables were built and saved by celparse, then loaded from the file."""
    path = tmp_path_factory.mktemp("celparse") / "celparse.cache"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(celparse, "CACHE", path)
        saved = celparser.CELParser.CEL_PARSER
        try:
            celparser.CELParser.CEL_PARSER = None
            celparse.install()  # no file yet: built, then saved
            assert path.is_file()
            celparser.CELParser.CEL_PARSER = None
            celparse.install()  # from the file
            return celparser.CELParser.CEL_PARSER
        finally:
            celparser.CELParser.CEL_PARSER = saved


@pytest.mark.parametrize("source", EXPRESSIONS)
def test_tables_loaded_from_the_file_parse_as_celpy_does(loaded: Any, source: str) -> None:
    assert loaded.parse(source) == _celpy_own(source)


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"0" * 64 + b"\nnot a pickle", id="another grammar's hash"),
        pytest.param(None, id="truncated"),
    ],
)
def test_a_damaged_file_costs_time_not_a_wrong_parse(cache_at: Path, content: bytes | None) -> None:
    source = 'event.reason == "Failed" && run.metadata.name.startsWith("x")'
    _fresh_parse(source)
    good = cache_at.read_bytes()
    cache_at.write_bytes(good[: len(good) // 2] if content is None else content)

    assert _fresh_parse(source) == _celpy_own(source)
    # Rebuilt and saved again: the same grammar's hash heads the file.
    assert cache_at.read_bytes().split(b"\n", 1)[0] == good.split(b"\n", 1)[0]
