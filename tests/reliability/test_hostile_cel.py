"""A hostile tenant's CEL ``when`` costs the other tenants nothing (issue 11, item 1).

``team-a`` loads the expressions that stalled the policy filter before costs were bounded
(nested comprehensions, a 600 KB literal, strings grown in ``map``, children against
children) plus one that is cheap on small runs but over budget on a big one; ``team-b`` has an
ordinary policy. While team-a's events are refused, team-b's keep matching: in process
through the PolicyFilter stage, and served as deployed (func-python, the API emulator, 8 of
team-a's events in flight). The measured figures are printed (``pytest -s``): time and memory
per refused event, team-b's latency meanwhile.
"""

from __future__ import annotations

import copy
import json
import statistics
import threading
import time
import tracemalloc
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tekton_notifications import cel, notifications, recording, vocabulary
from tekton_notifications.devtools.kubeapi import KubeAPIServer
from tekton_notifications.devtools.serving import UNSIGNED, serve_function
from tekton_notifications.matching import COST_STRIKES, PolicyIndex
from tekton_notifications.stages.policy_filter import PolicyFilter
from tests.core.test_cel_cost import PER_CHILD, growth, nested

pytestmark = pytest.mark.slow

GROUP_VERSION = f"{vocabulary.GROUP}/{vocabulary.VERSION}"
ENGINES = cel.available_engines()

#: team-a's expressions that are refused when the policy loads.
REFUSED_ON_LOAD = {
    "a-nested-exists": nested("exists", 7),
    "a-list-literal": "[" + ", ".join(["123456"] * 85_000) + "].size() > 0",
    "a-string-growth": growth(6),
    "a-children-twice": (
        "event.children.filter(c, event.children.exists(d, d.name == c.name)).size() > 1"
    ),
}
#: Accepted on load; over cel-python's per-evaluation budget for a run with BIG children,
#: so disabled after COST_STRIKES events. The Rust engine's budget is 500 times larger: no
#: event under the 1 MiB request limit takes an expression the static limit accepts over it,
#: so there it is evaluated (false) every time.
PER_EVENT = {"a-per-child": PER_CHILD}
BIG = 2_000
DISABLES = {"python": True, "rust": False}
#: team-b's ordinary policy must keep answering within this. Measured alone on loopback: a
#: few ms; in process while team-a's are refused: tens of ms; served, with eight 144 KiB
#: events of team-a in flight on a 2-core machine shared with other work: up to ~2.5 s, the
#: same as with eight such events of a namespace without policies (the cost of receiving
#: them, not of CEL: see the baseline printed by the served test).
B_BOUND_SECONDS = 5.0


def policy(namespace: str, name: str, when: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"events": ["failed"], "templateRefs": [{"name": "notify"}]}
    if when is not None:
        spec["when"] = when
    return {
        "apiVersion": GROUP_VERSION,
        "kind": "NotificationPolicy",
        "metadata": {"name": name, "namespace": namespace, "generation": 1},
        "spec": spec,
    }


POLICIES = [
    *(policy("team-a", name, when) for name, when in {**REFUSED_ON_LOAD, **PER_EVENT}.items()),
    policy("team-b", "b-failed", 'event.reason == "Failed"'),
]


def tekton_event(namespace: str, name: str, children: int = 0) -> tuple[dict[str, str], Any]:
    """A failed PipelineRun's CloudEvent (attributes, data) with ``children`` child runs."""
    run = {
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{namespace}-{name}"},
        "status": {
            "conditions": [
                {"type": "Succeeded", "status": "False", "reason": "Failed", "message": "boom"}
            ],
            "childReferences": [
                {"name": f"{name}-{index}", "pipelineTaskName": f"task-{index}", "kind": "TaskRun"}
                for index in range(children)
            ],
        },
    }
    attributes = {
        "specversion": "1.0",
        "id": f"{namespace}-{name}",
        "source": f"/apis///namespaces/{namespace}//{name}",
        "type": "dev.tekton.event.pipelinerun.failed.v1",
    }
    return attributes, {"pipelineRun": run}


def summary(seconds: list[float]) -> str:
    ms = sorted(s * 1000 for s in seconds)
    return f"median {statistics.median(ms):.1f} ms, max {ms[-1]:.1f} ms ({len(ms)} events)"


def storm(
    send_a: Any, send_b: Any, *, a_events: int, in_flight: int
) -> tuple[list[float], list[float]]:
    """team-a's events ``in_flight`` at a time; team-b's one after another meanwhile."""
    a_times: list[float] = []
    b_times: list[float] = []
    done = threading.Event()

    def timed_a(index: int) -> None:
        started = time.perf_counter()
        send_a(index)
        a_times.append(time.perf_counter() - started)

    def team_b() -> None:
        index = 0
        while not done.is_set() or index < 5:
            started = time.perf_counter()
            send_b(index)
            b_times.append(time.perf_counter() - started)
            index += 1
            time.sleep(0.02)

    b_thread = threading.Thread(target=team_b)
    b_thread.start()
    try:
        with ThreadPoolExecutor(in_flight) as pool:
            list(pool.map(timed_a, range(a_events)))
    finally:
        done.set()
        b_thread.join(timeout=60)
    return a_times, b_times


def peak_kib(call: Any) -> int:
    """The most memory Python allocated during ``call`` (timed apart: tracing is slow)."""
    tracemalloc.start()
    try:
        call()
        return tracemalloc.get_traced_memory()[1] >> 10
    finally:
        tracemalloc.stop()


def refused(when: str) -> None:
    with pytest.raises(cel.CelCostError):
        cel.compile_expression(when)


# -- in process -----------------------------------------------------------------------------


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(cel, "_selected", request.param)
    return str(request.param)


def test_in_process_the_filter_refuses_team_a_and_answers_team_b(engine: str) -> None:
    reports: list[tuple[str, bool]] = []
    stage = PolicyFilter(
        PolicyIndex(),
        report_cost=lambda policy, message, disabled: reports.append((policy.name, disabled)),
    )
    for name, when in REFUSED_ON_LOAD.items():
        started = time.perf_counter()
        stage.upsert(policy("team-a", name, when))
        seconds = time.perf_counter() - started
        compiled = stage.index.get("team-a", name)
        assert compiled is not None and compiled.reason == "CELCostExceeded", compiled
        print(f"\n{engine} {name}: refused on load in {seconds * 1000:.0f} ms", end="")
        print(f", peak {peak_kib(lambda when=when: refused(when))} KiB")
        assert seconds < 5
    stage.upsert(policy("team-a", "a-per-child", PER_EVENT["a-per-child"]))
    stage.upsert(policy("team-b", "b-failed", 'event.reason == "Failed"'))
    assert reports == [(name, False) for name in REFUSED_ON_LOAD]  # an Event each

    big = tekton_event("team-a", "huge", BIG)
    started = time.perf_counter()
    first = stage.respond(*big)
    seconds = time.perf_counter() - started
    assert (first.status, first.message) == (202, "no policy matched")
    print(f"{engine} team-a event, {BIG:,} children: {seconds * 1000:.0f} ms", end="")
    print(f", peak {peak_kib(lambda: stage.respond(*big))} KiB")

    def send_a(index: int) -> None:
        assert stage.respond(*big).status == 202

    def send_b(index: int) -> None:
        response = stage.respond(*tekton_event("team-b", f"b-{index}"))
        assert response.status == 200 and response.event is not None
        assert response.event.attributes["type"] == notifications.MATCHED

    a_times, b_times = storm(send_a, send_b, a_events=16, in_flight=4)
    print(f"{engine} team-a refused: {summary(a_times)}; team-b meanwhile: {summary(b_times)}")
    disabled = [("a-per-child", True)] if DISABLES[engine] else []
    assert reports == [(name, False) for name in REFUSED_ON_LOAD] + disabled
    assert (stage.index.disabled("team-a", "a-per-child") is not None) is DISABLES[engine]
    assert max(b_times) < B_BOUND_SECONDS


# -- served ---------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=ENGINES)
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, KubeAPIServer, str, int]]:
    engine = str(request.param)
    workdir = tmp_path_factory.mktemp(f"hostile-cel-{engine}")
    objects = copy.deepcopy(POLICIES)
    with KubeAPIServer() as api:
        for obj in objects:
            api.store.create_manifest(obj)
        kubeconfig = workdir / "kubeconfig"
        api.write_kubeconfig(kubeconfig)
        function = serve_function(
            "policy-filter",
            {"KUBECONFIG": str(kubeconfig), "NOTIFICATIONS_CEL_ENGINE": engine, **UNSIGNED},
            workdir,
        )
        try:
            yield engine, api, function.url, function.process.pid
        finally:
            function.stop()


def post(url: str, event: tuple[Mapping[str, str], Any]) -> httpx.Response:
    attributes, data = event
    headers = {f"ce-{k}": v for k, v in attributes.items()}
    headers["content-type"] = "application/json"
    return httpx.post(url, headers=headers, content=json.dumps(data), timeout=60)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def test_served_team_b_is_answered_while_team_a_is_refused(
    served: tuple[str, KubeAPIServer, str, int],
) -> None:
    engine, api, url, pid = served
    big = tekton_event("team-a", "huge", BIG)
    size = len(json.dumps(big[1]))
    before = rss_mib(pid)

    def send_a(index: int) -> None:
        response = post(url, big)
        if response.status_code == 429:  # the flood's own share is full: fairness refusing it
            return
        assert (response.status_code, response.headers["x-notifications-detail"]) == (
            202,
            "no policy matched",
        )

    def send_b(index: int) -> None:
        response = post(url, tekton_event("team-b", f"b-{index}"))
        assert (response.status_code, response.headers["ce-type"]) == (200, notifications.MATCHED)

    def send_c(index: int) -> None:  # the same events, in a namespace with no policy
        response = post(url, tekton_event("team-c", "huge", BIG))
        assert response.status_code in (202, 429)  # 429: team-c's share is full, by design

    c_times, b_alone = storm(send_c, send_b, a_events=16, in_flight=8)
    print(
        f"\nserved, {engine}: baseline, team-c ({size >> 10} KiB events, no policy, 8 in "
        f"flight): {summary(c_times)}; team-b meanwhile: {summary(b_alone)}"
    )
    a_times, b_times = storm(send_a, send_b, a_events=24, in_flight=8)
    print(
        f"served, {engine}: team-a ({size >> 10} KiB events, 8 in flight) refused: "
        f"{summary(a_times)}; team-b meanwhile: {summary(b_times)}; "
        f"filter RSS {before:.0f} -> {rss_mib(pid):.0f} MiB"
    )
    assert max(b_times) < B_BOUND_SECONDS
    assert max(a_times) < 10 * B_BOUND_SECONDS

    # What the team sees: Events on each refused policy, the disabled one marked in status
    # (the status recorder turns that into Ready False, CELCostExceeded).
    events = api.store.list("", "events", "team-a")
    refused = {e["involvedObject"]["name"] for e in events if e["reason"] == "CELCostExceeded"}
    assert refused == {*REFUSED_ON_LOAD, *(["a-per-child"] if DISABLES[engine] else [])}
    for name in REFUSED_ON_LOAD:
        obj = api.store.get(vocabulary.GROUP, vocabulary.POLICY_PLURAL, "team-a", name)
        assert recording.policy_readiness(obj, {}).reason == "CELCostExceeded"
    per_child = api.store.get(vocabulary.GROUP, vocabulary.POLICY_PLURAL, "team-a", "a-per-child")
    if not DISABLES[engine]:
        assert "disabled" not in (per_child.get("status") or {})
        return
    mark = per_child["status"]["disabled"]
    assert mark["reason"] == "CELCostExceeded"
    assert f"after {COST_STRIKES} evaluations in a row" in mark["message"]
    readiness = recording.policy_readiness(per_child, {"notify": recording.Readiness(True, "", "")})
    assert (readiness.ready, readiness.reason) == (False, "CELCostExceeded")
