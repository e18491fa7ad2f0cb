"""Cold start and memory (item 4), and what the start-up time is spent importing.

Cold start: from ``Popen`` to the first 2xx answer to a real event (the policy filter and the
renderer must have listed their resources by then). The median of a few starts. Memory: RSS
of the process (with gunicorn's workers) after 1,000 events. Import time: ``python -X
importtime`` of what each function imports before it can answer, top-level packages by
cumulative time: the list of what to make lazy or drop.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from bench import workload
from bench.loadgen import Load
from bench.servers import (
    FF_DEFAULT,
    FUNC_PYTHON,
    FUNC_PYTHON_NOOP,
    FUNCTIONS,
    NOOP,
    Server,
    emulator,
    first_reply,
    send,
    spawn,
)
from bench.table import Row, ratio
from bench.throughput import matched_load, rendered_same_load, tekton_load
from tekton_notifications.devtools import serving

LOADS: dict[str, Callable[[str], Load]] = {
    NOOP: tekton_load,
    "policy-filter": tekton_load,
    "template-renderer": matched_load,
    # The launcher admits only the run its template builds (a varied name is refused): the
    # renderer's own reply, a create the first time, then 409 AlreadyExists (also a 2xx).
    "task-launcher": rendered_same_load,
}
COLD_START_TARGET = 1.0
RSS_TARGET = 80.0

#: What func's scaffolding imports, then the function, started until it is ready.
IMPORT_PROBE = (
    "import os, sys, time\n"
    "sys.path.insert(0, '.')\n"
    "import func_python.cloudevent\n"
    "from function import new\n"
    "function = new()\n"
    "function.start(dict(os.environ))\n"
    "deadline = time.monotonic() + 20\n"
    "while not function.ready()[0] and time.monotonic() < deadline:\n"
    "    time.sleep(0.01)\n"
    "function.stop()\n"
    "sys.stderr.flush()\n"
    "os._exit(0)\n"
)


def cold_start(
    name: str, server: Server, env: dict[str, str], log_dir: Path, *, starts: int, events: int
) -> tuple[float, float]:
    """Median seconds to the first 2xx over ``starts`` starts; RSS (MB) after ``events``."""
    times: list[float] = []
    rss = 0.0
    for attempt in range(starts):
        running = spawn(name, server, env, log_dir)
        try:
            load = LOADS[name](running.url + "/")
            times.append(first_reply(running, load))
            if attempt == starts - 1:
                ok = send(load, events, start=attempt * events)
                if ok != events:
                    raise RuntimeError(f"{name}: {events - ok} of {events} events failed")
                rss = running.rss_mb()
        finally:
            running.stop()
    return statistics.median(times), rss


#: Imports worth knowing the cost of: each with everything it imported first.
WATCHED = (
    "func_python.cloudevent",
    "hypercorn",
    "kubernetes",
    "kubernetes.config",
    "kubernetes.dynamic",
    "kubernetes.stream",
    "kubernetes_validate",
    "celpy",
    "jinja2",
    "prometheus_client",
    "cloudevents",
    "yaml",
    "urllib3",
)


def import_profile(name: str, env: dict[str, str]) -> tuple[float, list[tuple[str, float]]]:
    """Total import time (ms) until ready, and the cumulative time of the watched imports
    (each including what it was first to import: shared dependencies count once)."""
    cwd = FUNC_PYTHON_NOOP if name == NOOP else serving.FUNCTIONS / name
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", IMPORT_PROBE],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    total = 0.0
    watched: dict[str, float] = {}
    for line in done.stderr.splitlines():
        found = re.match(r"import time:\s+(\d+) \|\s+(\d+) \| *(\S+)", line)
        if found:
            total += int(found.group(1)) / 1000
            module = found.group(3)
            if module in WATCHED and module not in watched:
                watched[module] = int(found.group(2)) / 1000
    ranked = sorted(watched.items(), key=lambda item: -item[1])
    return total, ranked


def run(*, quick: bool, log_dir: Path) -> tuple[list[Row], list[str]]:
    starts, events = (1, 200) if quick else (3, 1000)
    rows: list[Row] = []
    notes: list[str] = []
    with emulator([*workload.templates(), workload.matching_policy()]) as kube:
        configs: list[tuple[str, Server, dict[str, str], str]] = []
        for server in (FUNC_PYTHON,) if quick else (FUNC_PYTHON, FF_DEFAULT):
            configs += [(name, server, kube, "") for name in (NOOP, *FUNCTIONS)]
        configs.append(
            ("policy-filter", FUNC_PYTHON, {**kube, "NOTIFICATIONS_CEL_ENGINE": "rust"}, "rust CEL")
        )
        baseline: dict[str, tuple[float, float]] = {}
        for name, server, env, variant in configs:
            seconds, rss = cold_start(name, server, env, log_dir, starts=starts, events=events)
            short = "func-python" if server is FUNC_PYTHON else "functions-framework"
            if name == NOOP:
                baseline[short] = (seconds, rss)
            base_s, base_rss = baseline[short]
            label = f"{name}{', ' + variant if variant else ''} ({short})"
            rows.append(
                Row(
                    f"cold start, {label}",
                    seconds,
                    "s",
                    ratio(seconds, base_s),
                    f"no-op ({short})",
                    f"<= {COLD_START_TARGET:g} s",
                    seconds <= COLD_START_TARGET,
                )
            )
            rows.append(
                Row(
                    f"RSS after {events:,} events, {label}",
                    rss,
                    "MB",
                    ratio(rss, base_rss),
                    f"no-op ({short})",
                    f"<= {RSS_TARGET:g} MB",
                    rss <= RSS_TARGET,
                )
            )
        environ = {**os.environ, **serving.UNSIGNED, **kube}
        noop_ms, ranked = import_profile(NOOP, environ)
        notes.append(
            f"imports of the no-op ({noop_ms:.0f} ms): "
            + ", ".join(f"{module} {ms:.0f}" for module, ms in ranked)
        )
        for name in FUNCTIONS:
            total, ranked = import_profile(name, environ)
            rows.append(
                Row(
                    f"import time before the first event, {name} (func-python)",
                    total,
                    "ms",
                    ratio(total, noop_ms),
                    "no-op imports",
                )
            )
            notes.append(
                f"imports of {name} until ready ({total:.0f} ms): "
                + ", ".join(f"{module} {ms:.0f}" for module, ms in ranked)
            )
    notes.append(
        f"cold start is the median of {starts} start(s); functions-framework RSS is gunicorn's "
        "arbiter plus its worker."
    )
    return rows, notes
