"""The development event router, over real HTTP on loopback.

Subscribers are small stdlib servers (threads) that record each request and answer from a
script. Routing runs against the real manifests in knative/ (and knative/older/), so a wrong
Trigger there fails these tests.
"""

from __future__ import annotations

import base64
import itertools
import json
import logging
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
import yaml

from tekton_notifications.devtools.router import (
    DeliverySpec,
    EventRouter,
    load_triggers,
    matches,
    parse_duration,
    parse_filters,
)
from tests.conftest import event_files

ROOT = Path(__file__).resolve().parents[2]
KNATIVE = ROOT / "knative"

TEKTON_TYPES = [
    f"dev.tekton.event.{kind}.{event}.v1"
    for kind in ("taskrun", "pipelinerun")
    for event in ("queued", "started", "running", "unknown", "successful", "failed")
] + [
    f"dev.tekton.event.customrun.{event}.v1"
    for event in ("started", "running", "successful", "failed")
]
MATCHED = "dev.tekton.notification.matched.v1"
RENDERED = "dev.tekton.notification.rendered.v1"
FAILED = "dev.tekton.notification.failed.v1"
LAUNCHED = "dev.tekton.notification.launched.v1"
SUPPRESSED = "dev.tekton.notification.suppressed.v1"
#: Finished runs: the delivery tracker keeps the notification runs among them.
FINISHED = {
    t for t in TEKTON_TYPES if "customrun" not in t and t.split(".")[-2] in ("successful", "failed")
}
ROUTES: dict[str, list[str]] = {
    **{
        event_type: ["policy-filter"] + (["delivery-tracker"] if event_type in FINISHED else [])
        for event_type in TEKTON_TYPES
    },
    MATCHED: ["template-renderer"],
    RENDERED: ["task-launcher"],
    FAILED: ["notification-failures", "status-recorder"],
    LAUNCHED: ["status-recorder"],  # the end of the chain: only recorded
    SUPPRESSED: ["status-recorder"],  # held back by storm control: only recorded
    "dev.tekton.notification.delivered.v1": ["status-recorder"],
    "dev.tekton.notification.deliveryfailed.v1": ["status-recorder"],
}
SUBSCRIBERS = (
    "scheduler",
    "policy-filter",
    "template-renderer",
    "task-launcher",
    "notification-failures",
    "status-recorder",
    "delivery-tracker",
)


# --- scripted subscribers ------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def ce(self) -> dict[str, str]:
        return {k[3:]: v for k, v in self.headers.items() if k.startswith("ce-")}


@dataclass(frozen=True)
class Answer:
    status: int = 202
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay: float = 0.0


Script = Callable[[Received, int], Answer]


def answers(*scripted: Answer) -> Script:
    """Answer in order, then keep repeating the last one."""
    return lambda _request, index: scripted[min(index, len(scripted) - 1)]


def binary_reply(type_: str, data: bytes = b'{"from": "subscriber"}') -> Answer:
    headers = {
        "ce-specversion": "1.0",
        "ce-id": str(uuid.uuid4()),
        "ce-source": "/test/subscriber",
        "ce-type": type_,
        "content-type": "application/json",
    }
    return Answer(200, headers, data)


def structured_reply(type_: str) -> Answer:
    event = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "/test/subscriber",
        "type": type_,
        "datacontenttype": "application/json",
        "data": {"structured": True},
    }
    headers = {"content-type": "application/cloudevents+json; charset=utf-8"}
    return Answer(200, headers, json.dumps(event).encode())


class Sink:
    """A subscriber on loopback that records requests and answers from ``script``."""

    def __init__(self, script: Script | None = None) -> None:
        self.script: Script = script or answers(Answer())
        self.received: list[Received] = []
        self._lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                request = Received(
                    {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(length),
                    time.monotonic(),
                )
                with sink._lock:
                    index = len(sink.received)
                    sink.received.append(request)
                answer = sink.script(request, index)
                time.sleep(answer.delay)
                try:
                    self.send_response(answer.status)
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(answer.body)))
                    self.end_headers()
                    self.wfile.write(answer.body)
                except OSError:  # the router gave up waiting (timeout tests)
                    pass

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/"

    def ids(self) -> list[str]:
        return [r.ce.get("id", "") for r in self.received]

    def got(self, event_id: str) -> list[Received]:
        return [r for r in self.received if r.ce.get("id") == event_id]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


@pytest.fixture
def sinks() -> Iterator[dict[str, Sink]]:
    made = {name: Sink() for name in SUBSCRIBERS}
    yield made
    for sink in made.values():
        sink.close()


@pytest.fixture
def start_router() -> Iterator[Callable[..., EventRouter]]:
    started: list[EventRouter] = []

    def start(manifest_dir: Path, subscribers: Mapping[str, Sink], **kwargs: Any) -> EventRouter:
        urls = {name: sink.url for name, sink in subscribers.items()}
        router = EventRouter(manifest_dir, urls, **kwargs)
        router.start()
        started.append(router)
        return router

    yield start
    for router in started:
        router.stop()


def send_binary(
    url: str,
    type_: str,
    *,
    event_id: str | None = None,
    data: bytes = b'{"taskRun": {}}',
    extra: Mapping[str, str] | None = None,
) -> tuple[str, httpx.Response]:
    event_id = event_id or str(uuid.uuid4())
    headers = {
        "ce-specversion": "1.0",
        "ce-id": event_id,
        "ce-source": "/apis///namespaces/ci//build-1",
        "ce-type": type_,
        "ce-subject": "build-1",
        "content-type": "application/json",
        **(extra or {}),
    }
    return event_id, httpx.post(url, content=data, headers=headers)


def send_structured(url: str, event: Mapping[str, Any]) -> httpx.Response:
    headers = {"content-type": "application/cloudevents+json"}
    return httpx.post(url, content=json.dumps(event).encode(), headers=headers)


def write_manifests(
    directory: Path,
    *,
    trigger_delivery: Mapping[str, Any] | None = None,
    broker_delivery: Mapping[str, Any] | None = None,
) -> Path:
    """A minimal Broker + one Trigger (every dev.* event → Service `sink`)."""
    directory.mkdir(parents=True, exist_ok=True)
    broker: dict[str, Any] = {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Broker",
        "metadata": {"name": "b", "namespace": "ns"},
        "spec": {"delivery": dict(broker_delivery)} if broker_delivery else {},
    }
    trigger: dict[str, Any] = {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Trigger",
        "metadata": {"name": "t", "namespace": "ns"},
        "spec": {
            "broker": "b",
            "filters": [{"prefix": {"type": "dev."}}],
            "subscriber": {"ref": {"apiVersion": "v1", "kind": "Service", "name": "sink"}},
        },
    }
    if trigger_delivery is not None:
        trigger["spec"]["delivery"] = dict(trigger_delivery)
    (directory / "manifests.yaml").write_text(yaml.safe_dump_all([broker, trigger]))
    return directory


DLS = {"ref": {"apiVersion": "v1", "kind": "Service", "name": "dead-letters"}}


# --- filter semantics ----------------------------------------------------------------------

EVENT = {
    "specversion": "1.0",
    "id": "1",
    "source": "/apis///namespaces/ci//build-1",
    "type": "dev.tekton.event.taskrun.failed.v1",
    "datacontenttype": "application/json; charset=utf-8",
    "myext": "blue",
}
T_FAILED = {"exact": {"type": "dev.tekton.event.taskrun.failed.v1"}}
T_STARTED = {"exact": {"type": "dev.tekton.event.taskrun.started.v1"}}

FILTER_CASES: list[tuple[str, dict[str, Any], bool]] = [
    ("no-filter", {}, True),
    ("empty-filters-list", {"filters": []}, True),
    ("exact", {"filters": [T_FAILED]}, True),
    ("exact-other", {"filters": [T_STARTED]}, False),
    ("exact-case-sensitive", {"filters": [{"exact": {"myext": "Blue"}}]}, False),
    ("exact-extension", {"filters": [{"exact": {"myext": "blue"}}]}, True),
    ("exact-missing-extension", {"filters": [{"exact": {"other": "blue"}}]}, False),
    ("exact-unset-subject", {"filters": [{"exact": {"subject": "x"}}]}, False),
    ("prefix", {"filters": [{"prefix": {"type": "dev.tekton.event."}}]}, True),
    ("prefix-typo", {"filters": [{"prefix": {"type": "dev.tekton.events."}}]}, False),
    ("prefix-missing-extension", {"filters": [{"prefix": {"other": "b"}}]}, False),
    ("suffix", {"filters": [{"suffix": {"type": ".failed.v1"}}]}, True),
    ("suffix-other", {"filters": [{"suffix": {"type": ".started.v1"}}]}, False),
    ("datamediatype", {"filters": [{"exact": {"datamediatype": "application/json"}}]}, True),
    ("all-true", {"filters": [{"all": [T_FAILED, {"exact": {"myext": "blue"}}]}]}, True),
    ("all-one-false", {"filters": [{"all": [T_FAILED, {"exact": {"myext": "red"}}]}]}, False),
    ("any-one-true", {"filters": [{"any": [T_STARTED, T_FAILED]}]}, True),
    ("any-none-true", {"filters": [{"any": [T_STARTED, {"exact": {"myext": "red"}}]}]}, False),
    ("not-false", {"filters": [{"not": T_STARTED}]}, True),
    ("not-true", {"filters": [{"not": T_FAILED}]}, False),
    ("not-any-excluded", {"filters": [{"not": {"any": [T_STARTED, T_FAILED]}}]}, False),
    ("not-any-kept", {"filters": [{"not": {"any": [T_STARTED, {"suffix": {"type": "x"}}]}}]}, True),
    ("not-all", {"filters": [{"not": {"all": [T_FAILED, {"exact": {"myext": "red"}}]}}]}, True),
    ("entries-and-ed", {"filters": [T_FAILED, {"exact": {"myext": "red"}}]}, False),
    (
        "entries-all-pass",
        {"filters": [{"prefix": {"type": "dev."}}, {"suffix": {"id": "1"}}]},
        True,
    ),
    ("attributes-exact", {"filter": {"attributes": {"type": EVENT["type"]}}}, True),
    ("attributes-other", {"filter": {"attributes": {"type": "dev.other"}}}, False),
    (
        "attributes-two-keys",
        {"filter": {"attributes": {"type": EVENT["type"], "myext": "blue"}}},
        True,
    ),
    ("attributes-any-value", {"filter": {"attributes": {"myext": ""}}}, True),
    ("attributes-any-missing-ext", {"filter": {"attributes": {"other": ""}}}, False),
    ("attributes-any-unset-subject", {"filter": {"attributes": {"subject": ""}}}, False),
    ("attributes-empty", {"filter": {"attributes": {}}}, True),
    (
        "filters-win-over-attributes",
        {"filters": [T_STARTED], "filter": {"attributes": {"type": EVENT["type"]}}},
        False,
    ),
    (
        "empty-filters-fall-back-to-attributes",
        {"filters": [], "filter": {"attributes": {"type": "dev.other"}}},
        False,
    ),
]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [(spec, expected) for _, spec, expected in FILTER_CASES],
    ids=[name for name, _, _ in FILTER_CASES],
)
def test_filter_semantics(spec: dict[str, Any], expected: bool) -> None:
    assert matches(parse_filters(spec), EVENT) is expected


INVALID_FILTERS: list[tuple[str, dict[str, Any], str]] = [
    ("cesql", {"filters": [{"cesql": "type = 'x'"}]}, "cesql filters are not supported"),
    ("two-dialects", {"filters": [{**T_FAILED, "prefix": {"type": "d"}}]}, "exactly one dialect"),
    ("no-dialect", {"filters": [{}]}, "exactly one dialect"),
    ("unknown-dialect", {"filters": [{"regex": {"type": "."}}]}, "unknown filter dialect"),
    ("exact-two-keys", {"filters": [{"exact": {"type": "a", "source": "b"}}]}, "exactly one"),
    ("exact-empty-value", {"filters": [{"exact": {"type": ""}}]}, "non-empty string"),
    ("prefix-bad-name", {"filters": [{"prefix": {"Type": "dev."}}]}, "invalid attribute name"),
    ("all-empty", {"filters": [{"all": []}]}, "exactly one dialect"),
    ("any-not-list", {"filters": [{"any": T_FAILED}]}, "non-empty list"),
    ("nested-cesql", {"filters": [{"not": {"cesql": "true"}}]}, "cesql"),
    ("attributes-number", {"filter": {"attributes": {"retry": 3}}}, "must be a string"),
    ("attributes-bad-name", {"filter": {"attributes": {"my-ext": "x"}}}, "invalid attribute"),
    ("filter-unknown-key", {"filter": {"exact": {"type": "x"}}}, "only `attributes`"),
]


@pytest.mark.parametrize(
    ("spec", "message"),
    [(spec, message) for _, spec, message in INVALID_FILTERS],
    ids=[name for name, _, _ in INVALID_FILTERS],
)
def test_invalid_filters_fail_at_load(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_filters(spec)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("PT0.5S", 0.5),
        ("PT0.2S", 0.2),
        ("PT1S", 1.0),
        ("PT1M30S", 90.0),
        ("PT2H", 7200.0),
        ("P1D", 86400.0),
        ("P1DT1S", 86401.0),
        ("P1W", 604800.0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["1s", "PT", "P", "P1Y", "P1M", "PT-1S", "0.5"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="ISO-8601"):
        parse_duration(text)


def test_backoff_follows_knative_formula() -> None:
    exponential = DeliverySpec(retry=5, backoff_policy="exponential", backoff_delay=0.5)
    linear = DeliverySpec(retry=5, backoff_policy="linear", backoff_delay=0.5)
    assert [exponential.backoff(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 4.0, 8.0]
    assert [linear.backoff(n) for n in range(1, 6)] == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert DeliverySpec(retry=3, backoff_delay=0.5).backoff(2) == 0.0  # no policy: no wait


# --- the real knative/ manifests -----------------------------------------------------------


def test_real_manifests_load() -> None:
    broker, triggers = load_triggers(KNATIVE)
    assert (broker.namespace, broker.name) == ("tekton-notifications", "tekton-notifications")
    assert broker.delivery == DeliverySpec(
        retry=5,
        backoff_policy="exponential",
        backoff_delay=0.5,
        dead_letter_sink="notification-dead-letters",
    )
    # The status recorder has one Trigger per type it hears (launched, failed, suppressed).
    assert sorted({t.subscriber for t in triggers}) == sorted(SUBSCRIBERS)


@pytest.fixture(scope="module", params=["knative", "knative/older"])
def table(request: pytest.FixtureRequest) -> Iterator[tuple[EventRouter, dict[str, Sink]]]:
    """One router per manifest set, shared by the routing table (default answers: 202)."""
    made = {name: Sink() for name in SUBSCRIBERS}
    router = EventRouter(ROOT / request.param, {n: s.url for n, s in made.items()})
    router.start()
    yield router, made
    router.stop()
    for sink in made.values():
        sink.close()


def test_a_ping_source_pings_through_the_broker_and_a_redelivery_keeps_its_id(
    table: tuple[EventRouter, dict[str, Sink]],
) -> None:
    """Issue 17: the PingSource in knative/ sends its ping to the Broker, whose Trigger hands
    it to the scheduler, in binary mode, with Knative's attributes and the spec's data."""
    router, made = table
    at = datetime(2026, 12, 2, 1, 5, tzinfo=UTC)
    assert router.ping("scheduler", at=at, event_id="tick-1")
    assert router.ping("scheduler", at=at, event_id="tick-1")
    assert router.wait_idle(5)
    got = made["scheduler"].got("tick-1")
    assert len(got) == 2
    assert {k: got[0].ce[k] for k in ("type", "source", "time")} == {
        "type": "dev.knative.sources.ping",
        "source": "/apis/v1/namespaces/tekton-notifications/pingsources/scheduler",
        "time": "2026-12-02T01:05:00Z",
    }
    assert json.loads(got[0].body) == {"wake": "scheduler"}


def test_a_chain_without_the_scheduler_leaves_its_trigger_out(sinks: dict[str, Sink]) -> None:
    urls = {name: sink.url for name, sink in sinks.items() if name != "scheduler"}
    router = EventRouter(ROOT / "knative", urls, without=frozenset({"scheduler"}))
    assert "scheduler" not in {t.subscriber for t in router.triggers}


@pytest.mark.parametrize("event_type", list(ROUTES))
def test_every_type_reaches_its_subscriber(
    table: tuple[EventRouter, dict[str, Sink]], event_type: str
) -> None:
    router, made = table
    event_id, response = send_binary(router.url, event_type)
    assert response.status_code == 202
    assert router.wait_idle(5)
    receivers = sorted(name for name, sink in made.items() if sink.got(event_id))
    assert receivers == sorted(ROUTES[event_type])
    for name in receivers:
        assert len(made[name].got(event_id)) == 1


@pytest.mark.parametrize(
    ("source", "receivers"),
    [
        pytest.param(
            "/apis/v1/namespaces/tekton-notifications/pingsources/delivery-retries",
            ["delivery-tracker"],
            id="delivery-retries",
        ),
        pytest.param(
            "/apis/v1/namespaces/tekton-notifications/pingsources/scheduler",
            ["scheduler"],
            id="scheduler",
        ),
        pytest.param("/apis/v1/namespaces/tekton-notifications/pingsources/other", [], id="other"),
    ],
)
def test_each_pingsource_wakes_only_its_own_stage(
    table: tuple[EventRouter, dict[str, Sink]], source: str, receivers: list[str]
) -> None:
    router, made = table
    event_id, _ = send_binary(
        router.url, "dev.knative.sources.ping", data=b"{}", extra={"ce-source": source}
    )
    assert router.wait_idle(5)
    assert sorted(name for name, sink in made.items() if sink.got(event_id)) == receivers


def test_tekton_events_reach_the_policy_filter(
    sinks: dict[str, Sink], start_router: Callable[..., EventRouter]
) -> None:
    router = start_router(KNATIVE, sinks)
    for path in event_files():
        event = json.loads(path.read_text())
        data = json.dumps(event.pop("data")).encode()
        extra = {f"ce-{k}": str(v) for k, v in event.items() if k != "datacontenttype"}
        extra["content-type"] = event.get("datacontenttype", "application/json")
        _, response = send_binary(router.url, event["type"], data=data, extra=extra)
        assert response.status_code == 202, path.name
    assert router.wait_idle(5)
    got = sinks["policy-filter"].received
    assert len(got) == len(event_files())
    assert all(json.loads(r.body) for r in got)
    # The delivery tracker hears the finished TaskRuns and PipelineRuns among them, too.
    assert len(sinks["delivery-tracker"].received) == sum(
        json.loads(p.read_text())["type"] in FINISHED for p in event_files()
    )
    assert not any(
        s.received for name, s in sinks.items() if name not in ("policy-filter", "delivery-tracker")
    )


def test_structured_ingress_is_delivered_in_binary_mode(
    sinks: dict[str, Sink], start_router: Callable[..., EventRouter]
) -> None:
    router = start_router(KNATIVE, sinks)
    event = {
        "specversion": "1.0",
        "id": "s-1",
        "source": "/apis///namespaces/ci//build-1",
        "type": "dev.tekton.event.pipelinerun.failed.v1",
        "subject": 'build 1 "quoted" 100% ünïcode',
        "datacontenttype": "application/json",
        "myext": "blue",
        "data": {"pipelineRun": {"metadata": {"name": "build-1"}}},
    }
    assert send_structured(router.url, event).status_code == 202
    assert router.wait_idle(5)
    (request,) = sinks["policy-filter"].received
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.body) == event["data"]
    ce = request.ce
    assert ce["id"] == "s-1" and ce["type"] == event["type"] and ce["myext"] == "blue"
    assert unquote(ce["subject"]) == event["subject"]  # percent-encoded, as the binding says
    assert ce["subject"].isascii() and '"' not in ce["subject"]
    assert "knativebrokerttl" not in ce  # stripped before delivery, as the MT broker does
    assert "knativearrivaltime" in ce


# --- replies -------------------------------------------------------------------------------


def test_replies_chain_through_the_three_stages(
    sinks: dict[str, Sink], start_router: Callable[..., EventRouter]
) -> None:
    sinks["policy-filter"].script = answers(binary_reply(MATCHED))
    sinks["template-renderer"].script = answers(structured_reply(RENDERED))
    sinks["task-launcher"].script = answers(binary_reply(LAUNCHED))
    router = start_router(KNATIVE, sinks)
    event_id, response = send_binary(router.url, "dev.tekton.event.taskrun.failed.v1")
    assert response.status_code == 202
    assert router.wait_idle(5)

    chain = [
        (d.trigger, d.event_type, d.reply_type, d.status)
        for d in router.deliveries
        if not d.trigger.startswith("delivery-tracker")  # it hears the finish too: 202
    ]
    assert chain == [
        ("policy-filter", "dev.tekton.event.taskrun.failed.v1", MATCHED, 200),
        ("template-renderer", MATCHED, RENDERED, 200),
        ("task-launcher", RENDERED, LAUNCHED, 200),
        ("status-recorder-launched", LAUNCHED, None, 202),
    ]
    assert router.deliveries[0].event_id == event_id
    (rendered,) = sinks["task-launcher"].received
    assert json.loads(rendered.body) == {"structured": True}  # structured reply → binary
    assert rendered.ce["type"] == RENDERED
    assert not sinks["notification-failures"].received
    assert not router.dead_letters


def test_failed_notifications_go_to_the_failure_display(
    sinks: dict[str, Sink], start_router: Callable[..., EventRouter]
) -> None:
    sinks["template-renderer"].script = answers(binary_reply(FAILED, b'{"error": "no template"}'))
    router = start_router(KNATIVE, sinks)
    send_binary(router.url, MATCHED)
    assert router.wait_idle(5)
    (failure,) = sinks["notification-failures"].received
    assert failure.ce["type"] == FAILED
    assert json.loads(failure.body) == {"error": "no template"}


def test_policy_filter_fans_out_through_k_sink(
    sinks: dict[str, Sink], start_router: Callable[..., EventRouter]
) -> None:
    """Several matches: the function POSTs each to K_SINK (the ingress) and answers 202."""
    k_sink: list[str] = []

    def fan_out(request: Received, index: int) -> Answer:
        for n in range(2):
            send_binary(k_sink[0], MATCHED, event_id=f"{request.ce['id']}-{n}")
        return Answer(202)

    sinks["policy-filter"].script = fan_out
    router = start_router(KNATIVE, sinks)
    k_sink.append(router.url)
    event_id, _ = send_binary(router.url, "dev.tekton.event.pipelinerun.successful.v1")
    assert router.wait_idle(5)
    assert sorted(sinks["template-renderer"].ids()) == [f"{event_id}-0", f"{event_id}-1"]
    outcomes = sorted(
        (d.trigger, d.status, d.reply_type)
        for d in router.deliveries
        if not d.trigger.startswith("delivery-tracker")  # it hears the finish too: 202
    )
    assert outcomes == [
        ("policy-filter", 202, None),
        ("template-renderer", 202, None),
        ("template-renderer", 202, None),
    ]


# --- retries and dead letters --------------------------------------------------------------


def gaps(sink: Sink) -> list[float]:
    times = [r.at for r in sink.received]
    return [b - a for a, b in itertools.pairwise(times)]


def test_exponential_retries_then_success(
    sinks: dict[str, Sink], start_router: Callable[..., EventRouter]
) -> None:
    """The Broker's delivery: exponential from PT0.5S, here scaled by 0.2 (0.1 s, 0.2 s)."""
    sinks["policy-filter"].script = answers(Answer(500), Answer(503), Answer(202))
    router = start_router(KNATIVE, sinks, time_scale=0.2)
    send_binary(router.url, "dev.tekton.event.taskrun.started.v1")
    assert router.wait_idle(5)
    (delivery,) = router.deliveries
    assert (delivery.attempts, delivery.status, delivery.dead_lettered) == (3, 202, False)
    assert delivery.backoffs == pytest.approx((0.1, 0.2))
    first, second = gaps(sinks["policy-filter"])  # lower bounds only: load only adds delay
    assert first >= 0.09 and second >= 0.19


def test_linear_retries_exhausted_dead_letter_with_last_code(
    tmp_path: Path, start_router: Callable[..., EventRouter]
) -> None:
    delivery = {"retry": 3, "backoffPolicy": "linear", "backoffDelay": "PT0.1S"}
    manifests = write_manifests(
        tmp_path / "m", trigger_delivery={**delivery, "deadLetterSink": DLS}
    )
    sink = Sink(answers(Answer(500), Answer(502), Answer(503, body=b"overloaded")))
    try:
        router = start_router(manifests, {"sink": sink}, dead_letter_path=tmp_path / "dl.jsonl")
        event_id, _ = send_binary(router.url, "dev.x")
        assert router.wait_idle(5)
    finally:
        sink.close()
    (record,) = router.deliveries
    assert (record.attempts, record.status, record.dead_lettered) == (4, 503, True)
    assert record.backoffs == pytest.approx((0.0, 0.1, 0.2))  # Knative's linear: 0, d, 2d
    measured = gaps(sink)
    assert measured[1] >= 0.09 and measured[2] >= 0.19
    (letter,) = router.dead_letters
    assert letter["id"] == event_id
    assert letter["knativeerrorcode"] == 503
    assert letter["knativeerrordest"] == sink.url
    assert base64.b64decode(str(letter["knativeerrordata"])) == b"overloaded"


def test_non_retryable_400_goes_straight_to_dead_letter(
    tmp_path: Path, sinks: dict[str, Sink], start_router: Callable[..., EventRouter]
) -> None:
    dead_letter_file = tmp_path / "dead-letters.jsonl"
    sinks["policy-filter"].script = answers(Answer(400, body=b"policy spec invalid"))
    router = start_router(KNATIVE, sinks, dead_letter_path=dead_letter_file)
    data = b'{"taskRun": {"metadata": {"name": "build-1"}}}'
    event_id, _ = send_binary(
        router.url, "dev.tekton.event.taskrun.failed.v1", data=data, extra={"ce-myext": "x"}
    )
    assert router.wait_idle(5)
    (record,) = [d for d in router.deliveries if d.trigger == "policy-filter"]
    assert (record.attempts, record.status, record.dead_lettered) == (1, 400, True)
    (line,) = dead_letter_file.read_text().splitlines()
    letter = json.loads(line)
    assert letter == router.dead_letters[0]
    assert letter["specversion"] == "1.0" and letter["id"] == event_id
    assert letter["type"] == "dev.tekton.event.taskrun.failed.v1"
    assert letter["myext"] == "x"
    assert letter["data"] == json.loads(data)
    assert letter["knativeerrordest"] == sinks["policy-filter"].url
    assert letter["knativeerrorcode"] == 400
    assert base64.b64decode(letter["knativeerrordata"]) == b"policy spec invalid"
    assert "knativebrokerttl" not in letter


@pytest.mark.parametrize(
    ("status", "attempts"),
    [
        *((status, 2) for status in (404, 408, 409, 429, 500, 503)),
        *((status, 1) for status in (301, 400, 401, 403, 410, 422)),
    ],
)
def test_which_statuses_are_retried(
    tmp_path: Path, start_router: Callable[..., EventRouter], status: int, attempts: int
) -> None:
    manifests = write_manifests(tmp_path, broker_delivery={"retry": 1, "deadLetterSink": DLS})
    sink = Sink(answers(Answer(status)))
    try:
        router = start_router(manifests, {"sink": sink})
        send_binary(router.url, "dev.x")
        assert router.wait_idle(5)
    finally:
        sink.close()
    (record,) = router.deliveries
    assert (record.attempts, record.status, record.dead_lettered) == (attempts, status, True)
    assert router.dead_letters[0]["knativeerrorcode"] == status


def test_error_data_is_truncated_like_knative(
    tmp_path: Path, start_router: Callable[..., EventRouter]
) -> None:
    manifests = write_manifests(tmp_path, broker_delivery={"deadLetterSink": DLS})
    body = bytes(range(256)) * 8
    sink = Sink(answers(Answer(422, body=body)))
    try:
        router = start_router(manifests, {"sink": sink})
        send_binary(router.url, "dev.x")
        assert router.wait_idle(5)
    finally:
        sink.close()
    data = str(router.dead_letters[0]["knativeerrordata"])
    assert len(data) == 1024
    assert base64.b64encode(body).decode().startswith(data)


def test_slow_subscriber_times_out_and_is_retried(
    tmp_path: Path, start_router: Callable[..., EventRouter]
) -> None:
    delivery = {"retry": 1, "timeout": "PT0.2S", "deadLetterSink": DLS}
    manifests = write_manifests(tmp_path, trigger_delivery=delivery)
    sink = Sink(answers(Answer(202, delay=0.6)))
    try:
        router = start_router(manifests, {"sink": sink})
        send_binary(router.url, "dev.x")
        assert not router.wait_idle(0.1)  # still in flight
        assert router.wait_idle(5)
    finally:
        sink.close()
    (record,) = router.deliveries
    assert (record.attempts, record.status, record.dead_lettered) == (2, 0, True)
    assert record.error is not None and "timed out" in record.error
    assert router.dead_letters[0]["knativeerrorcode"] == 0


@pytest.mark.parametrize(
    "bad",
    [
        Answer(200, {"content-type": "text/plain"}, b"OK"),
        Answer(200, {"ce-specversion": "1.0", "ce-type": "x", "ce-source": "/s"}, b"{}"),
        Answer(200, {"content-type": "application/cloudevents+json"}, b"{not json"),
    ],
    ids=["plain-body", "ce-without-id", "structured-not-json"],
)
def test_bad_reply_counts_as_502_and_is_retried(
    sinks: dict[str, Sink], start_router: Callable[..., EventRouter], bad: Answer
) -> None:
    sinks["policy-filter"].script = answers(bad)
    router = start_router(KNATIVE, sinks, time_scale=0.001)
    send_binary(router.url, "dev.tekton.event.taskrun.running.v1")
    assert router.wait_idle(5)
    (record,) = router.deliveries
    assert (record.attempts, record.status, record.dead_lettered) == (6, 502, True)
    assert base64.b64decode(str(router.dead_letters[0]["knativeerrordata"])) == bad.body
    assert not sinks["template-renderer"].received


def test_dead_letters_reach_a_mapped_dead_letter_sink(
    sinks: dict[str, Sink], start_router: Callable[..., EventRouter]
) -> None:
    sinks["template-renderer"].script = answers(Answer(403, body=b"forbidden"))
    dead_letters = Sink()
    try:
        router = start_router(KNATIVE, {**sinks, "notification-dead-letters": dead_letters})
        event_id, _ = send_binary(router.url, MATCHED, data=b'{"policy": "p"}')
        assert router.wait_idle(5)
    finally:
        dead_letters.close()
    (letter,) = dead_letters.received
    assert letter.ce["id"] == event_id and letter.ce["type"] == MATCHED
    assert letter.ce["knativeerrorcode"] == "403"
    assert letter.ce["knativeerrordest"] == sinks["template-renderer"].url
    assert base64.b64decode(letter.ce["knativeerrordata"]) == b"forbidden"
    assert json.loads(letter.body) == {"policy": "p"}


def test_without_dead_letter_sink_failures_are_dropped(
    tmp_path: Path, start_router: Callable[..., EventRouter]
) -> None:
    manifests = write_manifests(tmp_path / "m")
    sink = Sink(answers(Answer(400)))
    try:
        router = start_router(manifests, {"sink": sink}, dead_letter_path=tmp_path / "dl.jsonl")
        send_binary(router.url, "dev.x")
        assert router.wait_idle(5)
    finally:
        sink.close()
    assert router.deliveries[0].dead_lettered is False
    assert not router.dead_letters and not (tmp_path / "dl.jsonl").exists()


def test_each_delivery_is_logged(
    sinks: dict[str, Sink],
    start_router: Callable[..., EventRouter],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="tekton_notifications.devtools.router")
    router = start_router(KNATIVE, sinks)
    event_id, _ = send_binary(router.url, "dev.tekton.event.customrun.started.v1")
    assert router.wait_idle(5)
    assert any(
        event_id in r.getMessage() and "trigger policy-filter" in r.getMessage()
        for r in caplog.records
        if r.levelno == logging.INFO
    )


# --- loop guard ----------------------------------------------------------------------------


def test_ttl_stops_a_reply_loop(
    sinks: dict[str, Sink], start_router: Callable[..., EventRouter]
) -> None:
    """The policy filter answers with another Tekton event: it would loop forever."""
    sinks["policy-filter"].script = answers(binary_reply("dev.tekton.event.taskrun.running.v1"))
    router = start_router(KNATIVE, sinks)
    send_binary(router.url, "dev.tekton.event.taskrun.running.v1")
    assert router.wait_idle(20)
    assert len(router.deliveries) == 255  # TTL 255 at ingress, one less per re-ingestion
    assert len(router.dropped) == 1
    assert router.dropped[0]["type"] == "dev.tekton.event.taskrun.running.v1"


def test_ttl_from_the_sender_is_decremented(
    sinks: dict[str, Sink], start_router: Callable[..., EventRouter]
) -> None:
    sinks["policy-filter"].script = answers(binary_reply("dev.tekton.event.taskrun.running.v1"))
    router = start_router(KNATIVE, sinks)
    _, response = send_binary(
        router.url, "dev.tekton.event.taskrun.running.v1", extra={"ce-knativebrokerttl": "4"}
    )
    assert response.status_code == 202
    assert router.wait_idle(5)
    assert len(router.deliveries) == 3  # 4 → 3 at ingress, then 2, 1, 0 (dropped)
    _, spent = send_binary(
        router.url, "dev.tekton.event.taskrun.running.v1", extra={"ce-knativebrokerttl": "1"}
    )
    assert spent.status_code == 400


# --- ingress -------------------------------------------------------------------------------

GOOD = {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "/s", "ce-type": "dev.x"}
STRUCTURED = {"content-type": "application/cloudevents+json"}


@pytest.mark.parametrize(
    ("method", "path", "headers", "body", "status"),
    [
        ("POST", "", GOOD, b"{}", 202),
        ("POST", "", {"content-type": "application/json"}, b'{"type": "dev.x"}', 400),
        ("POST", "", {k: v for k, v in GOOD.items() if k != "ce-id"}, b"", 400),
        ("POST", "", {**GOOD, "ce-specversion": "2.0"}, b"", 400),
        ("POST", "", STRUCTURED, b'{"specversion": "1.0", "id": "1", "source": "/s"}', 400),
        ("POST", "", STRUCTURED, b"garbage", 400),
        ("POST", "", STRUCTURED, b"[1, 2]", 400),
        ("POST", "", {"content-type": "application/cloudevents-batch+json"}, b"[]", 400),
        ("POST", "", {}, b"", 400),
        ("GET", "", {}, b"", 405),
        ("POST", "/elsewhere", GOOD, b"", 404),
    ],
    ids=[
        "valid-binary",
        "plain-json",
        "binary-missing-id",
        "bad-specversion",
        "structured-missing-type",
        "structured-garbage",
        "structured-not-object",
        "batch",
        "empty",
        "get",
        "wrong-path",
    ],
)
def test_ingress_answers(
    sinks: dict[str, Sink],
    start_router: Callable[..., EventRouter],
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes,
    status: int,
) -> None:
    router = start_router(KNATIVE, sinks)
    url = router.url.rsplit("/", 2)[0] + path if path else router.url
    response = httpx.request(method, url, headers=headers, content=body)
    assert response.status_code == status


# --- the router reads the manifests --------------------------------------------------------


@pytest.fixture
def knative_copy(tmp_path: Path) -> Path:
    return Path(shutil.copytree(KNATIVE, tmp_path / "knative"))


def test_a_wrong_trigger_in_the_manifests_stops_routing(
    knative_copy: Path, sinks: dict[str, Sink], start_router: Callable[..., EventRouter]
) -> None:
    trigger = knative_copy / "policy-filter-trigger.yaml"
    trigger.write_text(trigger.read_text().replace("dev.tekton.event.", "dev.tekton.events."))
    router = start_router(knative_copy, sinks)
    send_binary(router.url, "dev.tekton.event.taskrun.failed.v1")
    assert router.wait_idle(5)
    # Only the delivery tracker's own Trigger still takes it.
    assert {d.trigger for d in router.deliveries} == {"delivery-tracker-taskrun-failed"}
    assert not any(sink.received for name, sink in sinks.items() if name != "delivery-tracker")


@pytest.mark.parametrize(
    ("path", "old", "new", "message"),
    [
        (
            "base/triggers.yaml",
            "Service\n      name: task-launcher",
            "Service\n      name: tl",
            "'tl'",
        ),
        ("policy-filter-trigger.yaml", "broker: tekton-", "broker: tekon-", "points at broker"),
        ("base/kustomization.yaml", "- triggers.yaml", "- trigger.yaml", "does not exist"),
        ("policy-filter-trigger.yaml", "- prefix:\n        type:", "- cesql:\n        x:", "cesql"),
        ("kustomization.yaml", "resources:", "namePrefix: x-\nresources:", "unsupported"),
        ("base/broker.yaml", "kind: Broker", "kind: Brokr", "exactly one Broker"),
        ("base/broker.yaml", "PT0.5S", "half a second", "ISO-8601"),
    ],
    ids=[
        "subscriber-typo",
        "broker-typo",
        "missing-resource",
        "cesql",
        "kustomize-transform",
        "no-broker",
        "bad-duration",
    ],
)
def test_invalid_manifests_are_refused(
    knative_copy: Path, sinks: dict[str, Sink], path: str, old: str, new: str, message: str
) -> None:
    target = knative_copy / path
    text = target.read_text()
    assert old in text
    target.write_text(text.replace(old, new, 1))
    with pytest.raises(ValueError, match=message):
        EventRouter(knative_copy, {name: sink.url for name, sink in sinks.items()})


def test_every_subscriber_needs_a_url(sinks: dict[str, Sink]) -> None:
    urls = {name: sink.url for name, sink in sinks.items() if name != "notification-failures"}
    with pytest.raises(ValueError, match="notification-failures"):
        EventRouter(KNATIVE, urls)
