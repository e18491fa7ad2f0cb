"""The benchmark package imports and formats its table (no benchmark runs here: they are
``make bench``, never part of ``make test``)."""

from __future__ import annotations

import asyncio
import importlib
import math

import pytest

from bench.loadgen import LoadResult, _lua_string, _read_response
from bench.table import Row, format_number, format_table


@pytest.mark.parametrize(
    "module",
    [
        "bench.__main__",
        "bench.breakdown",
        "bench.cel_cost",
        "bench.coldstart",
        "bench.e2e",
        "bench.loadgen",
        "bench.servers",
        "bench.throughput",
        "bench.workload",
    ],
)
def test_every_bench_module_imports(module: str) -> None:
    importlib.import_module(module)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "0"),
        (0.01234, "0.0123"),
        (1.234, "1.23"),
        (12.34, "12.3"),
        (123.4, "123"),
        (12345.6, "12,346"),
        (math.nan, "n/a"),
    ],
)
def test_numbers_keep_three_significant_digits(value: float, text: str) -> None:
    assert format_number(value) == text


def test_the_table_has_the_promised_columns_and_aligns_them() -> None:
    rows = [
        Row("no-op: throughput", 2000.0, "req/s", 1.0, "no-op"),
        Row("filter: throughput", 1700.0, "req/s", 0.85, "no-op", ">= 0.8x no-op", True),
        Row("cold start", 1.5, "s", 4.0, "no-op", "<= 1 s", False),
    ]
    text = format_table(rows).splitlines()
    assert text[0].split() == [
        "measurement",
        "value",
        "unit",
        "ratio",
        "to",
        "baseline",
        "target",
        "met?",
    ]
    assert set(text[1]) <= {"-", " "}
    assert text[3].endswith("yes") and text[4].endswith("NO")
    assert "0.85x no-op" in text[3]
    assert len({line.index("req/s") for line in text[2:4]}) == 1
    markdown = format_table(rows, markdown=True).splitlines()
    assert markdown[0] == "| measurement | value | unit | ratio to baseline | target | met? |"
    assert (
        markdown[3] == "| filter: throughput | 1,700 | req/s | 0.85x no-op | >= 0.8x no-op | yes |"
    )


def test_a_load_result_knows_its_rate() -> None:
    assert (
        LoadResult(requests=300, seconds=2.0, p50_ms=1, p99_ms=2, errors=0, client="wrk").rps == 150
    )


def test_lua_long_strings_survive_any_body() -> None:
    assert _lua_string('{"a": "]]"}') == '[=[{"a": "]]"}]=]'
    assert _lua_string("x]=]y") == "[==[x]=]y]==]"


@pytest.mark.parametrize(
    ("raw", "status", "keep"),
    [
        (b"HTTP/1.1 202 \r\ncontent-length: 0\r\n\r\n", 202, True),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", 200, True),
        (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            200,
            True,
        ),
        (b"HTTP/1.1 503 x\r\nconnection: close\r\ncontent-length: 2\r\n\r\n{}", 503, False),
    ],
)
def test_the_python_load_generator_reads_whole_responses(
    raw: bytes, status: int, keep: bool
) -> None:
    async def read() -> tuple[tuple[int, bool], bytes]:
        reader = asyncio.StreamReader()
        reader.feed_data(raw + b"NEXT")
        reader.feed_eof()
        return await _read_response(reader), await reader.read()

    assert asyncio.run(read()) == ((status, keep), b"NEXT")
