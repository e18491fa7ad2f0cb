"""Drive one HTTP endpoint from a second process: ``wrk`` when installed, else a Python client.

The load generator must not share a process (or a GIL) with the server it measures, so both
run as subprocesses of the benchmark. ``wrk`` (Debian package ``wrk``) costs far less CPU per
request, which matters on a two-core machine; the Python client (``python -m bench.loadgen``)
is the fallback and speaks just enough HTTP/1.1: keep-alive, Content-Length, chunked.

Each request may carry a unique token (``vary``): every occurrence of it in the body is
replaced by 10 distinct characters, so each launched run gets its own name.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

#: Replaced per request by a unique 10-character token when ``vary`` is set.
TOKEN = "@@VARY@@"
CLIENTS = ("auto", "wrk", "python")


@dataclass
class LoadResult:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    #: Non-2xx answers and transport errors; a result with errors is not a valid figure.
    errors: int
    client: str
    statuses: dict[str, int] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else math.nan


@dataclass(frozen=True)
class Load:
    """What to send: one URL, method POST, the same headers, this body (``TOKEN`` varied)."""

    url: str
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    vary: bool = False


def run_load(
    load: Load,
    *,
    seconds: float,
    connections: int,
    warmup: float = 1.0,
    client: str = "auto",
    salt: int = 0,
) -> LoadResult:
    """Warm up, then measure for ``seconds`` with ``connections`` concurrent keep-alive
    connections (closed loop: each sends its next request when the answer arrives)."""
    chosen = "wrk" if client == "auto" and shutil.which("wrk") else client
    if chosen == "wrk":
        if warmup > 0:
            _wrk(load, seconds=warmup, connections=connections, salt=f"{(salt * 2) % 256:02x}")
        return _wrk(
            load, seconds=seconds, connections=connections, salt=f"{(salt * 2 + 1) % 256:02x}"
        )
    spec = {
        "url": load.url,
        "body": load.body.decode(),
        "headers": dict(load.headers),
        "vary": load.vary,
        "seconds": seconds,
        "warmup": warmup,
        "connections": connections,
        "salt": f"{salt % 256:02x}",
    }
    done = subprocess.run(
        [sys.executable, "-m", "bench.loadgen"],
        input=json.dumps(spec).encode(),
        capture_output=True,
        timeout=seconds + warmup + 60,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    return LoadResult(**json.loads(done.stdout))


# -- wrk ------------------------------------------------------------------------------------

_WRK_SCRIPT = """
local body = {body}
local salt = "{salt}"
wrk.method = "POST"
wrk.body = body
{headers}
local threads = {{}}
function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end
{vary}
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, ' ..
    '"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout))
end
"""

_WRK_VARY = """
local counter = 0
function request()
  counter = counter + 1
  local token = string.format("%s%03x%05x", salt, tid % 4096, counter % 1048576)
  return wrk.format(nil, nil, nil, (body:gsub("{token}", token)))
end
"""


def _lua_string(text: str) -> str:
    level = 1
    while f"]{'=' * level}]" in text:
        level += 1
    return f"[{'=' * level}[{text}]{'=' * level}]"


def _wrk(load: Load, *, seconds: float, connections: int, salt: str) -> LoadResult:
    headers = "\n".join(
        f"wrk.headers[ {_lua_string(name)} ] = {_lua_string(value)}"
        for name, value in load.headers.items()
    )
    script = _WRK_SCRIPT.format(
        body=_lua_string(load.body.decode()),
        salt=salt,
        headers=headers,
        vary=_WRK_VARY.replace("{token}", TOKEN) if load.vary else "",
    )
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as file:
        file.write(script)
    try:
        command = [
            "wrk",
            f"-t{min(2, connections)}",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "-s",
            file.name,
            load.url,
        ]
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=seconds + 60, check=True
        )
    finally:
        Path(file.name).unlink(missing_ok=True)
    line = next((x for x in done.stdout.splitlines() if x.startswith('{"requests"')), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result: {done.stdout[-500:]} {done.stderr[-500:]}")
    data = json.loads(line)
    errors = sum(data[k] for k in ("connect", "read", "write", "status", "timeout"))
    return LoadResult(
        requests=int(data["requests"]),
        seconds=data["duration_us"] / 1e6,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        errors=errors,
        client="wrk",
        statuses={"non-2xx/3xx": data["status"]} if data["status"] else {},
    )


# -- the Python client ----------------------------------------------------------------------


class _Closed(Exception):
    pass


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Status and whether the connection stays open; the body is read and dropped."""
    status_line = await reader.readline()
    if not status_line:
        raise _Closed()
    status = int(status_line.split()[1])
    length, chunked, keep = 0, False, True
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "transfer-encoding" and "chunked" in value:
            chunked = True
        elif name == "connection" and value == "close":
            keep = False
    if chunked:
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length:
        await reader.readexactly(length)
    return status, keep


async def _client(spec: Mapping[str, object]) -> dict[str, object]:
    url = urlsplit(str(spec["url"]))
    host, port = url.hostname or "127.0.0.1", url.port or 80
    path = url.path or "/"
    headers = dict(spec["headers"])  # type: ignore[call-overload]
    body = str(spec["body"])
    vary, salt = bool(spec["vary"]), str(spec["salt"])
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    seconds, warmup = float(spec["seconds"]), float(spec["warmup"])  # type: ignore[arg-type]
    start = time.perf_counter()
    measure_from, end = start + warmup, start + warmup + seconds
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    errors = 0

    async def worker(index: int) -> None:
        nonlocal errors
        reader = writer = None
        count = 0
        while time.perf_counter() < end:
            if writer is None:
                try:
                    reader, writer = await asyncio.open_connection(host, port)
                except OSError:
                    errors += 1
                    await asyncio.sleep(0.05)
                    continue
            assert reader is not None
            count += 1
            text = body.replace(TOKEN, f"{salt}{index:03x}{count:05x}") if vary else body
            payload = text.encode()
            request = (
                f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{head}"
                f"Content-Length: {len(payload)}\r\n\r\n"
            ).encode() + payload
            sent = time.perf_counter()
            try:
                writer.write(request)
                status, keep = await _read_response(reader)
            except (OSError, _Closed, asyncio.IncompleteReadError, ValueError):
                errors += 1
                writer.close()
                writer = None
                continue
            answered = time.perf_counter()
            if measure_from <= sent and answered <= end:
                latencies.append(answered - sent)
                statuses[str(status)] += 1
            if not keep:
                writer.close()
                writer = None
        if writer is not None:
            writer.close()

    await asyncio.wait_for(
        asyncio.gather(*(worker(i) for i in range(int(spec["connections"])))),  # type: ignore[call-overload]
        timeout=warmup + seconds + 30,
    )
    latencies.sort()
    bad = sum(n for status, n in statuses.items() if not status.startswith("2"))
    return asdict(
        LoadResult(
            requests=len(latencies),
            seconds=seconds,
            p50_ms=_percentile(latencies, 50) * 1000,
            p99_ms=_percentile(latencies, 99) * 1000,
            errors=errors + bad,
            client="python",
            statuses=dict(statuses),
        )
    )


def _percentile(values: list[float], percent: float) -> float:
    if not values:
        return math.nan
    return values[min(len(values) - 1, int(len(values) * percent / 100))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.loadgen",
        description="The fallback load generator: reads a JSON spec on stdin, prints a result.",
    )
    parser.parse_args(argv)
    spec = json.loads(sys.stdin.read())
    print(json.dumps(asyncio.run(_client(spec))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
