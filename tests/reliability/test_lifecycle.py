"""Graceful shutdown and start-up of a served function (func-python, as ``kn func`` runs it).

Knative stops a revision with SIGTERM while requests may be in flight, and starts pods before
the Kubernetes API is necessarily reachable. Neither may lose or half-do a notification:

- SIGTERM during a burst of launches: every request gets a complete answer or a connection
  error (which the broker retries); redelivering what did not succeed to a new instance
  creates every run exactly once, each complete and labelled as rendered.
- Started while the API is unreachable: not ready, events answered 503 (retried); ready by
  itself once the API listens on that address, and then it works.
"""

from __future__ import annotations

import copy
import json
import random
import signal
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tekton_notifications import notifications, taskruns, vocabulary
from tekton_notifications.devtools.kubeapi import KubeAPIServer
from tekton_notifications.devtools.serving import (
    UNSIGNED,
    ServedFunction,
    free_port,
    serve_function,
    write_kubeconfig,
)
from tekton_notifications.events import parse_event
from tekton_notifications.models import TemplateRef, parse_template
from tekton_notifications.notifications import Notification
from tests.reliability.generate import Run, cloudevent

pytestmark = pytest.mark.slow

BURST = 40
#: Of those, sent after SIGTERM: refused, or still answered.
LATE = 10
#: How long the emulator takes to create a run: keeps launches in flight at SIGTERM.
CREATE_LATENCY = 0.25
GROUP_VERSION = f"{vocabulary.GROUP}/{vocabulary.VERSION}"
TEMPLATE = {
    "apiVersion": GROUP_VERSION,
    "kind": "NotificationTemplate",
    "metadata": {"name": "notify", "namespace": "ci"},
    "spec": {
        "taskRef": {"name": "send-to-webhook-slack"},
        "params": {"message": "{{ event.name }} {{ event.outcome }}"},
    },
}
POLICY = {
    "apiVersion": GROUP_VERSION,
    "kind": "NotificationPolicy",
    "metadata": {"name": "all-failed", "namespace": "ci"},
    "spec": {"events": ["failed"], "templateRefs": [{"name": "notify"}]},
}


def failed_run_event(index: int) -> dict[str, Any]:
    """A Tekton event: TaskRun number ``index`` in ``ci`` failed."""
    run = Run(
        kind="TaskRun",
        name=f"unit-tests-{index:03d}",
        namespace="ci",
        uid=f"6a0d1f9e-2b3c-4d5e-8f70-{index:012d}",
        labels={"team": "web"},
        annotations={},
        start=datetime(2025, 6, 12, tzinfo=UTC),
    )
    return cloudevent(random.Random(index), run, "failed", "False", "Failed", 3)


def rendered_events(count: int) -> list[tuple[dict[str, str], dict[str, Any]]]:
    """``rendered`` events for ``count`` different runs, as the renderer would send them."""
    template = parse_template(TEMPLATE)
    found: list[tuple[dict[str, str], dict[str, Any]]] = []
    for index in range(count):
        source = failed_run_event(index)
        event = parse_event({k: str(v) for k, v in source.items() if k != "data"}, source["data"])
        resource = taskruns.build_run(
            event=event,
            template=template,
            params={"message": f"{event.name} {event.outcome}"},
            policy_namespace="ci",
            policy="all-failed",
        )
        notification = Notification(
            key=taskruns.notification_key(
                event, policy_namespace="ci", policy="all-failed", template="notify"
            ),
            event=event,
            policy_name="all-failed",
            policy_namespace="ci",
            template_ref=TemplateRef("notify"),
            resource=resource,
        )
        outgoing = notification.to_event(notifications.RENDERED)
        found.append((dict(outgoing.attributes), dict(outgoing.data)))
    return found


def post(url: str, attributes: Mapping[str, str], data: Any, timeout: float = 30) -> httpx.Response:
    headers = {f"ce-{k}": v for k, v in attributes.items() if k != "datacontenttype"}
    headers["content-type"] = "application/json"
    return httpx.post(url, headers=headers, content=json.dumps(data), timeout=timeout)


class SlowCreates:
    """Makes the emulator take ``delay`` seconds per run creation, and counts them."""

    def __init__(self, api: KubeAPIServer, delay: float) -> None:
        self._create: Callable[..., dict[str, Any]] = api.store.create
        self._delay = delay
        self._lock = threading.Lock()
        self.started = 0
        self.busy = threading.Event()
        api.store.create = self  # type: ignore[method-assign]

    def __call__(
        self,
        group: str,
        version: str,
        plural: str,
        namespace: str | None,
        obj: Any,
        *,
        keep_uid: bool = False,
    ) -> dict[str, Any]:
        if group == "tekton.dev":
            with self._lock:
                self.started += 1
                if self.started >= 4:
                    self.busy.set()
            time.sleep(self._delay)
        return self._create(group, version, plural, namespace, obj, keep_uid=keep_uid)


def test_sigterm_during_a_burst_loses_nothing_and_half_does_nothing(tmp_path: Path) -> None:
    events = rendered_events(BURST)
    with KubeAPIServer() as api:
        creates = SlowCreates(api, CREATE_LATENCY)
        api.store.create_manifest(dict(POLICY))  # the launcher refuses claims to no policy
        api.store.create_manifest(copy.deepcopy(TEMPLATE))  # and runs unlike their template
        kubeconfig = tmp_path / "kubeconfig"
        api.write_kubeconfig(kubeconfig)
        env = {"KUBECONFIG": str(kubeconfig), **UNSIGNED}
        launcher = serve_function("task-launcher", env, tmp_path)
        outcomes: list[str | int] = ["not sent"] * BURST
        finished_at = [0.0] * BURST
        limits = httpx.Limits(max_connections=BURST, max_keepalive_connections=0)
        try:
            with httpx.Client(limits=limits, timeout=30) as client:

                def launch(index: int) -> None:
                    attributes, data = events[index]
                    headers = {f"ce-{k}": v for k, v in attributes.items()}
                    headers["content-type"] = "application/json"
                    try:
                        reply = client.post(launcher.url, headers=headers, json=data)
                    except httpx.TransportError as error:  # refused, reset, cut short
                        outcomes[index] = type(error).__name__
                        return
                    finished_at[index] = time.monotonic()
                    if reply.status_code == 200:
                        # A complete answer: the launched event naming the run it created.
                        assert reply.headers["ce-type"] == notifications.LAUNCHED
                        launched = reply.json()["launched"]
                        assert launched["name"] == data["resource"]["metadata"]["name"]
                    outcomes[index] = reply.status_code

                with ThreadPoolExecutor(max_workers=BURST) as pool:
                    futures = [pool.submit(launch, index) for index in range(BURST - LATE)]
                    assert creates.busy.wait(timeout=30), "the burst never got going"
                    sigterm_at = time.monotonic()
                    launcher.process.send_signal(signal.SIGTERM)
                    time.sleep(0.05)
                    futures += [pool.submit(launch, i) for i in range(BURST - LATE, BURST)]
                    for future in futures:
                        future.result()
            launcher.process.wait(timeout=15)  # it stops by itself
        finally:
            launcher.stop()

        # Every request got a complete answer, or an error the broker would retry; and
        # requests in flight at SIGTERM were finished, not dropped.
        retried = [i for i, outcome in enumerate(outcomes) if outcome != 200]
        # 429: over its namespace's share of the workers for longer than the queue wait
        # (stages/fairness.py), which a burst of 30 slow creates in one namespace is.
        for index in retried:
            assert outcomes[index] in (503, 429) or isinstance(outcomes[index], str), outcomes
        assert "not sent" not in outcomes
        drained = [i for i in range(BURST) if outcomes[i] == 200 and finished_at[i] > sigterm_at]
        assert drained, f"nothing in flight was finished after SIGTERM: {outcomes}"

        # The broker redelivers what did not succeed, to a new instance.
        launcher = serve_function("task-launcher", env, tmp_path)
        try:
            for index in retried:
                reply = post(launcher.url, *events[index])
                assert reply.status_code == 200, reply.content
        finally:
            launcher.stop()

        runs = {run["metadata"]["name"]: run for run in api.store.list("tekton.dev", "taskruns")}
    sent = {data["resource"]["metadata"]["name"]: data["resource"] for _, data in events}
    assert set(runs) == set(sent), "runs lost or invented"
    for name, resource in sent.items():
        run = runs[name]
        assert run["spec"] == resource["spec"], "a half-created run"
        assert run["metadata"]["labels"] == resource["metadata"]["labels"]
        assert run["metadata"]["annotations"] == resource["metadata"]["annotations"]


def readiness(function: ServedFunction) -> int:
    try:
        return httpx.get(function.url + "/health/readiness", timeout=5).status_code
    except httpx.TransportError:
        return 0


def test_started_before_the_api_it_is_unready_then_ready_by_itself(tmp_path: Path) -> None:
    port = free_port()
    kubeconfig = tmp_path / "kubeconfig"
    write_kubeconfig(kubeconfig, f"http://127.0.0.1:{port}")  # nothing listens there yet
    env = {"KUBECONFIG": str(kubeconfig), **UNSIGNED}
    functions = {
        name: serve_function(name, env, tmp_path, wait_ready=False)
        for name in ("policy-filter", "template-renderer", "task-launcher")
    }
    source = failed_run_event(999)
    attributes = {k: str(v) for k, v in source.items() if k != "data"}
    try:
        for name in ("policy-filter", "template-renderer"):
            assert readiness(functions[name]) not in (0, 200)
        reply = post(functions["policy-filter"].url, attributes, source["data"])
        assert reply.status_code == 503
        assert reply.json()["message"].startswith("policies not loaded yet")
        (rendered_attributes, rendered), *_ = rendered_events(1)
        reply = post(functions["task-launcher"].url, rendered_attributes, rendered)
        assert reply.status_code == 503  # the API is unreachable: the broker retries

        api = KubeAPIServer(port=port)
        api.start()
        try:
            for obj in (POLICY, TEMPLATE):
                api.store.create_manifest(dict(obj))
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not all(
                readiness(function) == 200 for function in functions.values()
            ):
                time.sleep(0.1)
            assert all(readiness(function) == 200 for function in functions.values())

            # Now the whole chain works: matched, rendered, launched.
            reply = post(functions["policy-filter"].url, attributes, source["data"])
            assert reply.headers.get("ce-type") == notifications.MATCHED, reply.content
            reply = post(functions["template-renderer"].url, _ce(reply), reply.json())
            assert reply.headers.get("ce-type") == notifications.RENDERED, reply.content
            reply = post(functions["task-launcher"].url, _ce(reply), reply.json())
            assert reply.headers.get("ce-type") == notifications.LAUNCHED, reply.content
            assert len(api.store.list("tekton.dev", "taskruns", "ci")) == 1
        finally:
            api.stop()
    finally:
        for function in functions.values():
            function.stop()


def _ce(reply: httpx.Response) -> dict[str, str]:
    return {k[3:]: v for k, v in reply.headers.items() if k.startswith("ce-")}
