"""End-to-end latency (item 3): Tekton event in, notification TaskRun created in the emulator.

Runs the whole local chain (``devtools.chain.LocalChain``: emulator, router following the
Triggers in ``knative/``, the three functions on func-python). Events are sent one at a time,
each with its own run uid so each creates one TaskRun; the clock stops when the emulator's
watch reports the TaskRun labelled with that uid. The baseline is one request to the no-op
function, the same way (one at a time, loopback): the chain makes about six HTTP hops.
"""

from __future__ import annotations

import contextlib
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import urllib3

from bench import workload
from bench.servers import FUNC_PYTHON, NOOP, serve
from bench.table import Row, ratio
from bench.throughput import tekton_load
from tekton_notifications.devtools.chain import MANAGED, LocalChain
from tekton_notifications.devtools.kubeapi import Selector
from tekton_notifications.taskruns import SOURCE_UID_LABEL

WARMUP_EVENTS = 20
EVENT_TIMEOUT = 15.0


class Arrivals:
    """Watches the emulator for notification TaskRuns and notes when each source uid's came."""

    def __init__(self, chain: LocalChain) -> None:
        assert chain.emulator is not None
        self._store = chain.emulator.store
        self._since = self._store.resource_version
        self._stopping = threading.Event()
        self._cond = threading.Condition()
        self.seen: dict[str, float] = {}
        self._thread = threading.Thread(target=self._run, name="bench-arrivals", daemon=True)

    def __enter__(self) -> Arrivals:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        self._store._wake()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        stream = self._store.watch(
            "tekton.dev",
            "taskruns",
            None,
            Selector.parse(MANAGED),
            self._since,
            time.monotonic() + 3600,
            self._stopping,
        )
        for change in stream:
            if change.get("type") != "ADDED":
                continue
            labels = change["object"].get("metadata", {}).get("labels", {})
            with self._cond:
                self.seen.setdefault(str(labels.get(SOURCE_UID_LABEL)), time.perf_counter())
                self._cond.notify_all()

    def wait(self, uid: str, timeout: float) -> float | None:
        with self._cond:
            self._cond.wait_for(lambda: uid in self.seen, timeout=timeout)
            return self.seen.get(uid)


def noop_latency_ms(count: int, log_dir: Path) -> list[float]:
    """One request at a time to the func-python no-op: what one loopback hop costs."""
    pool = urllib3.PoolManager(retries=False, timeout=10.0)
    latencies = []
    with serve(NOOP, FUNC_PYTHON, {}, log_dir) as running:
        load = tekton_load(running.url + "/")
        for _ in range(count + WARMUP_EVENTS):
            started = time.perf_counter()
            answer = pool.request("POST", load.url, body=load.body, headers=dict(load.headers))
            latencies.append((time.perf_counter() - started) * 1000)
            assert 200 <= answer.status < 300, answer.status
    return latencies[WARMUP_EVENTS:]


def percentile(values: list[float], percent: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * percent / 100))]


@dataclass
class Chain:
    """Latencies (ms) of the chain and of the no-op baseline, and what went missing."""

    count: int
    latencies: list[float]
    baseline: list[float]
    missing: int
    created: int


def measure(*, quick: bool, log_dir: Path) -> Chain:
    count = 100 if quick else 1000
    baseline = noop_latency_ms(count, log_dir)
    latencies: list[float] = []
    missing = 0
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-e2e-")))
        manifests = workdir / "manifests"
        manifests.mkdir()
        (manifests / "policy.yaml").write_text(workload.MATCHING_POLICY.read_text())
        chain = stack.enter_context(
            LocalChain(
                log_dir / "e2e",
                manifests=(workload.EXAMPLES / "templates", manifests),
            )
        )
        arrivals = stack.enter_context(Arrivals(chain))
        for n in range(count + WARMUP_EVENTS):
            uid = f"bench-e2e-{n:05d}"
            started = time.perf_counter()
            status = chain.send(workload.tekton_event(uid))
            arrived = arrivals.wait(uid, EVENT_TIMEOUT) if 200 <= status < 300 else None
            if arrived is None:
                missing += 1
            elif n >= WARMUP_EVENTS:
                latencies.append((arrived - started) * 1000)
        chain.wait_idle(timeout=30)
        created = len(chain.notification_runs())
    return Chain(count, latencies, baseline, missing, created)


def run(*, quick: bool, log_dir: Path) -> tuple[list[Row], list[str]]:
    measured = measure(quick=quick, log_dir=log_dir)
    count, latencies, baseline = measured.count, measured.latencies, measured.baseline
    missing, created = measured.missing, measured.created
    notes = [
        f"end-to-end: {count} events (+{WARMUP_EVENTS} warm-up) one at a time, "
        f"{created} TaskRuns created, {missing} not seen within {EVENT_TIMEOUT:.0f}s."
    ]
    base50, base99 = percentile(baseline, 50), percentile(baseline, 99)
    rows = [
        Row("no-op, one request at a time (func-python)", base50, "ms p50", 1.0, "no-op"),
        Row(
            f"end-to-end event -> TaskRun, p50 of {count}",
            percentile(latencies, 50),
            "ms",
            ratio(percentile(latencies, 50), base50),
            "no-op p50",
        ),
        Row(
            f"end-to-end event -> TaskRun, p99 of {count}",
            percentile(latencies, 99),
            "ms",
            ratio(percentile(latencies, 99), base99),
            "no-op p99",
        ),
        Row(
            "end-to-end event -> TaskRun, mean",
            statistics.mean(latencies),
            "ms",
            ratio(statistics.mean(latencies), statistics.mean(baseline)),
            "no-op mean",
        ),
        Row("end-to-end events lost", float(missing), "events", target="0", met=missing == 0),
    ]
    return rows, notes
