"""Where a policy-filter request's time goes, measured in-process (no sockets, no load
generator): func-python's ASGI application called directly, with the no-op and with our
adapter, next to the stage's ``respond`` alone and the adapter's parts.

The HTTP figures of ``throughput`` add hypercorn's parsing and the kernel; these say how much
of a request is ours, and which part.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

from bench import BENCH, workload
from bench.cel_cost import interleaved_us
from bench.table import Row, ratio
from tekton_notifications import cel, signing
from tekton_notifications.stages.policy_filter import PolicyFilter

Scope = dict[str, Any]


def _asgi_call(app: Any, scope: Scope, body: bytes) -> Callable[[], Awaitable[None]]:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        return None

    async def call() -> None:
        await app(dict(scope), receive, send)

    return call


def run(*, quick: bool, log_dir: Path) -> tuple[list[Row], list[str]]:
    # func-python configures the root logger at import; keep its lines out of the table.
    root = logging.getLogger()
    saved = list(root.handlers), root.level
    sys.path.insert(0, str(BENCH / "noop"))
    try:
        from func_python.cloudevent import ASGIApplication

        from tekton_notifications.adapters.funcpython import Function

        new_noop = importlib.import_module("function").new  # bench/noop/function

        logging.basicConfig(level=logging.INFO)
        for handler in list(root.handlers):
            root.removeHandler(handler)
        root.addHandler(logging.FileHandler(log_dir / "breakdown.log"))
        return asyncio.run(_measure(quick, ASGIApplication, new_noop, Function))
    finally:
        sys.path.remove(str(BENCH / "noop"))
        for handler in list(root.handlers):
            root.removeHandler(handler)
            handler.close()
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])


async def _measure(
    quick: bool, asgi: Any, new_noop: Callable[[], Any], function: Any
) -> tuple[list[Row], list[str]]:
    load = workload.load_for("http://x/", workload.outgoing(workload.tekton_event()))
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/",
        # As hypercorn hands it over: the request's own headers, Content-Length included
        # (wrk and the broker send it; without it the adapter measures the body by
        # serialising the data, ~35 us the served path never pays).
        "headers": [(k.encode(), v.encode()) for k, v in load.headers.items()]
        + [(b"content-length", str(len(load.body)).encode())],
    }
    event = workload.tekton_event()
    attributes = {k: str(v) for k, v in event.items() if k != "data"}
    previous = cel.selected_engine()
    variants: dict[str, tuple[str, list[dict[str, Any]]]] = {
        "1 policy without CEL": ("python", [workload.matching_policy(when=False)]),
        "1 policy, python CEL": ("python", [workload.matching_policy()]),
        "1,000 policies, python CEL": ("python", workload.policy_set(1000)),
    }
    if "rust" in cel.available_engines():
        variants["1,000 policies, rust CEL"] = ("rust", workload.policy_set(1000))
    stages: dict[str, PolicyFilter] = {}
    try:
        for label, (engine, policies) in variants.items():
            cel.set_engine(engine)
            stages[label] = PolicyFilter(workload.policy_index(policies))
    finally:
        cel.set_engine(previous)

    noop_call = _asgi_call(asgi(new_noop()), scope, load.body)
    coroutines: dict[str, Callable[[], Awaitable[None]]] = {"no-op": noop_call}
    for label, stage in stages.items():
        app = asgi(function(lambda env, stage=stage: stage))
        app.f.start({signing.SWITCH: signing.DISABLED})
        coroutines[f"policy-filter, {label}"] = _asgi_call(app, scope, load.body)

    async def to_thread_round_trip() -> None:
        await asyncio.to_thread(int)

    coroutines["asyncio.to_thread round trip (our adapter's hop)"] = to_thread_round_trip
    timed_async = await _interleaved_async(coroutines, budget=1.0 if quick else 3.0)
    timed_sync = interleaved_us(
        {
            f"PolicyFilter.respond alone, {label}": partial(
                stage.respond, attributes, event["data"]
            )
            for label, stage in stages.items()
        },
        budget=1.0 if quick else 3.0,
    )
    base = timed_async["no-op"]
    rows = [
        Row(f"in-process ASGI call (no HTTP), {label}", us, "us", ratio(us, base), "no-op call")
        for label, us in timed_async.items()
    ]
    rows += [
        Row(label, us, "us", ratio(us, base), "no-op call") for label, us in timed_sync.items()
    ]
    return rows, []


async def _interleaved_async(
    coroutines: dict[str, Callable[[], Awaitable[None]]], *, budget: float, rounds: int = 5
) -> dict[str, float]:
    """Like :func:`bench.cel_cost.interleaved_us`, for coroutine functions."""
    loops: dict[str, int] = {}
    for key, make in coroutines.items():
        await make()
        started, count = time.perf_counter(), 0
        while time.perf_counter() - started < budget / len(coroutines) / rounds:
            await make()
            count += 1
        loops[key] = max(1, count)
    best = dict.fromkeys(coroutines, float("inf"))
    for _ in range(rounds):
        for key, make in coroutines.items():
            started = time.perf_counter()
            for _ in range(loops[key]):
                await make()
            best[key] = min(best[key], (time.perf_counter() - started) / loops[key])
    return {key: value * 1e6 for key, value in best.items()}
