"""Hostile templates: one namespace's template runs over its render budget, another's renders.

Issue 11 (item 2): a template is code that runs in everyone's notification path. Here
``team-a``'s template is one of the hostile cases of the issue (and ours), ``team-b``'s is an
ordinary one. Each hostile render must end as a ``failed`` notification with reason
``RenderLimitExceeded`` within the render budget (2 s, all params together), with its memory
bounded; ``team-b``'s notifications keep rendering meanwhile; and after
``rendering.RENDER_LIMIT_STRIKES`` strikes ``team-a``'s template is refused without being
rendered, and the status recorder marks it not Ready. In-process through the TemplateRenderer
stage for the logic and the costs, and served (func-python, real HTTP) for what a server
adds: worker threads shared by both namespaces.

The measured numbers are printed (``pytest -s``); the bounds asserted are generous (2 cores
shared with other work), the budget itself is what tests/core/test_sandbox.py pins down.
"""

from __future__ import annotations

import math
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

from tekton_notifications import notifications, rendering, vocabulary
from tekton_notifications.devtools.kubeapi import KubeAPIServer
from tekton_notifications.devtools.serving import UNSIGNED, ServedFunction, serve_function
from tekton_notifications.events import parse_event
from tekton_notifications.matching import Match
from tekton_notifications.models import TemplateRef, parse_policy
from tekton_notifications.notifications import OutgoingEvent
from tekton_notifications.stages.base import Response
from tekton_notifications.stages.policy_filter import matched_event
from tekton_notifications.stages.status_recorder import StatusRecorder
from tekton_notifications.stages.template_renderer import TemplateCache, TemplateRenderer
from tests.reliability.test_tenancy import policy, run_event, template

pytestmark = pytest.mark.slow

#: A param that runs until the deadline: one long chain of filter calls.
SLOW = "{{ (range(100000)|map('string')|list * 2)|map('wordwrap', 1)|map('upper')|list }}"
#: team-a's template, per case: the params of a hostile NotificationTemplate.
HOSTILE: dict[str, dict[str, str]] = {
    "issue-max-of-repeated-list": {
        "message": "{% set big = (range(100000)|list) * 10 %}{{ ([big] * 1000000)|max }}"
    },
    "issue-map-upper-list": {"message": "{{ (['x'*1000000]*1000000)|map('upper')|list }}"},
    "issue-twelve-params": {
        f"p{i}": "{% for i in range(8000) %}{% set x = run|tojson %}{% endfor %}ok"
        for i in range(12)
    },
    "one-long-filter-call": {"message": SLOW},
    "string-multiplication-in-a-loop": {
        "message": "{% for i in range(100000) %}{% set x = 'x' * 999999 %}{% endfor %}"
    },
}
FINE = {"message": "{{ event.namespace }}/{{ event.name }} {{ event.outcome }}"}
#: Whole seconds a hostile render may take here (its budget is 2 s), and bytes it may peak at.
HOSTILE_SECONDS = 8.0
HOSTILE_PEAK_BYTES = 100 * 2**20
#: The slowest team-b render tolerated while team-a's render burns its budget.
B_LATENCY_SECONDS = 1.5


def objects(hostile: Mapping[str, str]) -> list[dict[str, Any]]:
    return [
        policy("team-a", "a-failed", events=["failed"], templateRefs=[{"name": "hostile"}]),
        template("team-a", "hostile", **hostile),
        policy("team-b", "b-failed", events=["failed"], templateRefs=[{"name": "fine"}]),
        template("team-b", "fine", **FINE),
    ]


def matched(namespace: str, policy_name: str, template_name: str, run: str) -> OutgoingEvent:
    """The policy filter's ``matched`` event for a failed run of ``namespace``."""
    cloudevent = run_event(namespace, run)
    spec = policy(namespace, policy_name, events=["failed"], templateRefs=[{"name": template_name}])
    match = Match(parse_policy(spec), TemplateRef(template_name, {}))
    return matched_event(match, parse_event(cloudevent, cloudevent["data"]))


def hostile_event(run: str) -> OutgoingEvent:
    return matched("team-a", "a-failed", "hostile", run)


def fine_event(run: str) -> OutgoingEvent:
    return matched("team-b", "b-failed", "fine", run)


def error_of(response: Response) -> Mapping[str, Any]:
    assert response.event is not None, response
    assert response.event.type == notifications.FAILED, response.event
    error: Mapping[str, Any] = response.event.data["error"]
    return error


def renderer_for(hostile: Mapping[str, str]) -> TemplateRenderer:
    cache = TemplateCache()
    cache.reset([obj for obj in objects(hostile) if obj["kind"] == "NotificationTemplate"])
    return TemplateRenderer(cache)


def respond(renderer: TemplateRenderer, event: OutgoingEvent) -> tuple[Response, float]:
    started = time.monotonic()
    response = renderer.respond(event.attributes, event.data)
    return response, time.monotonic() - started


def fine_renders_while(busy: threading.Thread, respond_b: Any) -> list[float]:
    """team-b's render latencies, one after another, for as long as ``busy`` runs."""
    latencies: list[float] = []
    index = 0
    while busy.is_alive() or not latencies:
        latencies.append(respond_b(f"b-run-{index}"))
        index += 1
    busy.join()
    return latencies


def summary(latencies: list[float]) -> str:
    ordered = sorted(latencies)
    p95 = ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]
    return (
        f"{len(ordered)} renders, median {statistics.median(ordered) * 1000:.1f} ms, "
        f"p95 {p95 * 1000:.1f} ms, max {ordered[-1] * 1000:.1f} ms"
    )


@pytest.mark.parametrize("case", [pytest.param(case, id=case) for case in HOSTILE])
def test_a_hostile_template_costs_its_budget_and_then_nothing_in_process(case: str) -> None:
    """In-process, through the stage: the hostile render is RenderLimitExceeded within its
    budget and bounded memory, team-b renders meanwhile, and after the strikes team-a's
    template is refused without rendering."""
    renderer = renderer_for(HOSTILE[case])

    tracemalloc.start()
    try:
        response, alone = respond(renderer, hostile_event("a-run-0"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    error = error_of(response)
    assert error["reason"] == "RenderLimitExceeded", error

    hostile: dict[str, float] = {}

    def strike(run: str) -> None:
        reply, hostile[run] = respond(renderer, hostile_event(run))
        assert error_of(reply)["reason"] == "RenderLimitExceeded"

    def respond_b(run: str) -> float:
        reply, seconds = respond(renderer, fine_event(run))
        assert reply.event is not None and reply.event.type == notifications.RENDERED, reply
        return seconds

    busy = threading.Thread(target=strike, args=("a-run-1",))
    busy.start()
    latencies = fine_renders_while(busy, respond_b)
    for index in range(2, rendering.RENDER_LIMIT_STRIKES):
        strike(f"a-run-{index}")
    refused, refused_seconds = respond(renderer, hostile_event("a-run-last"))
    refusal = error_of(refused)

    print(
        f"\n  {case}: alone {alone:.3f} s, peak {peak / 2**20:.1f} MiB "
        f"({error['message'].split(': ', 2)[-1]})"
        f"\n    beside team-b: {hostile['a-run-1']:.3f} s; team-b meanwhile: {summary(latencies)}"
        f"\n    after {rendering.RENDER_LIMIT_STRIKES} strikes: refused in "
        f"{refused_seconds * 1000:.2f} ms"
    )
    assert alone < HOSTILE_SECONDS
    assert hostile["a-run-1"] < HOSTILE_SECONDS
    assert peak < HOSTILE_PEAK_BYTES
    assert max(latencies) < B_LATENCY_SECONDS
    assert refusal["reason"] == "RenderLimitExceeded"
    assert "is not rendered" in refusal["message"]
    assert refused_seconds < 0.5


def test_the_status_recorder_marks_a_repeated_offender_not_ready() -> None:
    """The renderer's ``failed`` events make the recorder set the template's Ready False
    (reason RenderLimitExceeded) after the strikes; a renderer that loads the template with
    that status refuses it at once (another replica, or after a restart); and a new
    generation of the template is rendered again."""
    renderer = renderer_for(HOSTILE["issue-max-of-repeated-list"])
    writes: list[tuple[str, str, str, Mapping[str, Any]]] = []
    recorder = StatusRecorder(
        write_event=lambda body: True,
        write_status=lambda plural, ns, name, patch: writes.append((plural, ns, name, patch)),
    )
    hostile_object = {**template("team-a", "hostile", **HOSTILE["issue-max-of-repeated-list"])}
    hostile_object["metadata"] = {**hostile_object["metadata"], "generation": 1}
    recorder.reset(vocabulary.TEMPLATE_PLURAL, [hostile_object])
    # The recorder believes a failure only of a policy it knows (claims.py).
    hostile_policies = [
        o
        for o in objects(HOSTILE["issue-max-of-repeated-list"])
        if o["kind"] == "NotificationPolicy"
    ]
    recorder.reset(vocabulary.POLICY_PLURAL, hostile_policies)
    recorder.flush()
    for index in range(rendering.RENDER_LIMIT_STRIKES):
        response, _ = respond(renderer, hostile_event(f"a-run-{index}"))
        assert response.event is not None
        answer = recorder.respond(response.event.attributes, response.event.data)
        assert answer.status == 202, answer.message
    writes.clear()
    recorder.flush()
    [(plural, namespace, name, patch)] = [w for w in writes if w[0] == vocabulary.TEMPLATE_PLURAL]
    [condition] = patch["status"]["conditions"]
    assert (plural, namespace, name) == (vocabulary.TEMPLATE_PLURAL, "team-a", "hostile")
    assert (condition["status"], condition["reason"]) == ("False", "RenderLimitExceeded")
    assert condition["observedGeneration"] == 1

    fresh = TemplateRenderer(TemplateCache())
    fresh.templates.upsert({**hostile_object, "status": patch["status"]})
    response, _ = respond(fresh, hostile_event("a-run-fresh"))
    assert error_of(response)["reason"] == "RenderLimitExceeded"
    assert "is not rendered" in error_of(response)["message"]

    changed = template("team-a", "hostile", **FINE)
    changed["metadata"] = {**changed["metadata"], "generation": 2}
    fresh.templates.upsert({**changed, "status": patch["status"]})
    response, _ = respond(fresh, hostile_event("a-run-changed"))
    assert response.event is not None and response.event.type == notifications.RENDERED


# Served -------------------------------------------------------------------------------------


def post(function: ServedFunction, event: OutgoingEvent) -> tuple[httpx.Response, float]:
    headers = {f"ce-{k}": v for k, v in event.attributes.items() if k != "datacontenttype"}
    headers["content-type"] = "application/json"
    started = time.monotonic()
    reply = httpx.post(function.url, headers=headers, json=dict(event.data), timeout=60)
    return reply, time.monotonic() - started


def reason_of(reply: httpx.Response) -> str:
    assert reply.headers.get("ce-type") == notifications.FAILED, reply.headers
    return str(reply.json()["error"]["reason"])


@pytest.fixture(scope="module")
def served_renderer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedFunction]:
    workdir: Path = tmp_path_factory.mktemp("hostile")
    with KubeAPIServer() as api:
        for obj in objects(HOSTILE["one-long-filter-call"]):
            api.store.create_manifest(obj)
        kubeconfig = workdir / "kubeconfig"
        api.write_kubeconfig(kubeconfig)
        function = serve_function(
            "template-renderer", {"KUBECONFIG": str(kubeconfig), **UNSIGNED}, workdir
        )
        try:
            yield function
        finally:
            function.stop()


def test_served_a_hostile_template_does_not_stall_another_namespace(
    served_renderer: ServedFunction,
) -> None:
    """Served as deployed: team-a's hostile renders (several in flight) each end within
    the budget as RenderLimitExceeded, team-b's events are answered meanwhile, and after the
    strikes team-a's template costs nothing."""
    in_flight = rendering.RENDER_LIMIT_STRIKES
    baseline = [post(served_renderer, fine_event(f"b-base-{i}"))[1] for i in range(5)]
    with ThreadPoolExecutor(in_flight) as pool:
        hostile = [pool.submit(post, served_renderer, hostile_event(f"a-{i}")) for i in range(3)]
        latencies: list[float] = []
        index = 0
        while not all(future.done() for future in hostile) or not latencies:
            reply, seconds = post(served_renderer, fine_event(f"b-{index}"))
            assert reply.headers.get("ce-type") == notifications.RENDERED, reply.text
            latencies.append(seconds)
            index += 1
        results = [future.result() for future in hostile]
    refused, refused_seconds = post(served_renderer, hostile_event("a-last"))

    hostile_seconds = [seconds for _, seconds in results]
    print(
        f"\n  team-b alone: {summary(baseline)}"
        f"\n  {len(results)} hostile renders in flight: "
        + ", ".join(f"{seconds:.3f} s" for seconds in hostile_seconds)
        + f"\n  team-b meanwhile: {summary(latencies)}"
        f"\n  after the strikes: refused in {refused_seconds * 1000:.1f} ms"
    )
    assert all(reason_of(reply) == "RenderLimitExceeded" for reply, _ in results)
    assert max(hostile_seconds) < HOSTILE_SECONDS
    assert max(latencies) < 2 * B_LATENCY_SECONDS
    assert reason_of(refused) == "RenderLimitExceeded"
    assert "is not rendered" in refused.json()["error"]["message"]
    assert refused_seconds < 1.0
