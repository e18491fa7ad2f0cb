"""LocalTekton plays Tekton for notification runs in the emulator: it runs each managed
TaskRun once, writes its status, and sends Tekton's finish CloudEvent in binary mode to the
broker. The event's shape is compared with one captured from Tekton in a reference test."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tekton_notifications import vocabulary
from tekton_notifications.devtools import checktools
from tekton_notifications.devtools.kubeapi import ObjectStore
from tekton_notifications.devtools.localtekton import LocalTekton, finish_event
from tekton_notifications.devtools.steprunner import StepRunner
from tests.conftest import SHARED

TOOLS = checktools.check()
pytestmark = pytest.mark.skipif(not TOOLS.ok, reason=TOOLS.message())
TEKTON_EVENTS = SHARED / "fixtures" / "tekton-events" / "current"


class Broker:
    """Records each POST's headers and body, answers 202: the broker's ingress, as seen by
    a sender."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.arrived = threading.Semaphore(0)
        broker = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                broker.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(202)
                self.send_header("content-length", "0")
                self.end_headers()
                broker.arrived.release()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/ns/default"


@pytest.fixture
def broker() -> Iterator[Broker]:
    started = Broker()
    thread = threading.Thread(target=started.server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield started
    started.server.shutdown()
    started.server.server_close()
    thread.join()


@pytest.fixture
def tekton(broker: Broker, tmp_path: Path) -> Iterator[LocalTekton]:
    store = ObjectStore()
    runner = StepRunner(store, tmp_path, checktools.environment(tmp_path / "tools"))
    local = LocalTekton(store, runner, broker=broker.url)
    local.start()
    yield local
    local.stop()


def taskrun(name: str, script: str, *, managed: bool = True) -> dict[str, Any]:
    labels = {vocabulary.MANAGED_BY_LABEL: vocabulary.MANAGED_BY_VALUE} if managed else {}
    return {
        "apiVersion": "tekton.dev/v1",
        "kind": "TaskRun",
        "metadata": {"name": name, "namespace": "ci", "labels": labels},
        "spec": {
            "taskSpec": {
                "results": [{"name": "id"}],
                "steps": [{"name": "send", "image": "curl", "script": script}],
            }
        },
    }


SCRIPTS = {
    "successful": '#!/bin/sh\nprintf 42 > "$(results.id.path)"\n',
    "failed": "#!/bin/sh\necho 'webhook refused' >&2\nexit 3\n",
}


@pytest.mark.parametrize("outcome", sorted(SCRIPTS))
def test_a_managed_run_is_run_once_and_its_finish_is_sent_in_binary_mode(
    tekton: LocalTekton, broker: Broker, outcome: str
) -> None:
    created = tekton.store.create(
        "tekton.dev", "v1", "taskruns", "ci", taskrun("n-1", SCRIPTS[outcome])
    )

    assert broker.arrived.acquire(timeout=30)
    assert tekton.wait_idle(30)

    stored = tekton.store.get("tekton.dev", "taskruns", "ci", "n-1")
    condition = stored["status"]["conditions"][0]
    assert condition["status"] == ("True" if outcome == "successful" else "False")
    ((headers, body),) = broker.received
    assert headers["ce-type"] == f"dev.tekton.event.taskrun.{outcome}.v1"
    assert headers["ce-specversion"] == "1.0"
    assert headers["ce-source"] == "/apis///namespaces/ci//n-1"
    assert headers["ce-subject"] == "n-1"
    assert headers["content-type"] == "application/json"
    data = json.loads(body)
    assert list(data) == ["taskRun"]
    sent = data["taskRun"]
    assert sent["metadata"]["uid"] == created["metadata"]["uid"]
    assert sent["status"]["conditions"] == stored["status"]["conditions"]
    if outcome == "successful":  # v1beta1's name for the results, as Tekton's event has it
        assert sent["status"]["taskResults"] == [{"name": "id", "type": "string", "value": "42"}]
    else:
        assert sent["status"]["steps"][0]["terminated"]["exitCode"] == 3
        assert "webhook refused" in tekton.finished[0].outcome.logs["send"]
    assert len(tekton.finished) == 1  # its own status updates do not run it again


def test_runs_it_did_not_create_are_left_to_tekton(tekton: LocalTekton, broker: Broker) -> None:
    tekton.store.create(
        "tekton.dev",
        "v1",
        "taskruns",
        "ci",
        taskrun("users-own", SCRIPTS["successful"], managed=False),
    )
    tekton.store.create("tekton.dev", "v1", "taskruns", "ci", taskrun("n-2", SCRIPTS["successful"]))

    assert broker.arrived.acquire(timeout=30)
    assert tekton.wait_idle(30)

    assert [f.name for f in tekton.finished] == ["n-2"]
    assert "status" not in tekton.store.get("tekton.dev", "taskruns", "ci", "users-own")


def test_a_pending_run_waits_and_a_cancelled_one_never_runs(
    tekton: LocalTekton, broker: Broker
) -> None:
    """``spec.status`` as Tekton reads it: TaskRunPending starts once cleared,
    TaskRunCancelled fails at once with reason TaskRunCancelled (and its failed event)."""
    store = tekton.store
    pending = {**taskrun("later-1", SCRIPTS["successful"])}
    pending["spec"] = {**pending["spec"], "status": "TaskRunPending"}
    cancelled = {**taskrun("never-1", "#!/bin/sh\ntouch ran\n")}
    cancelled["spec"] = {**cancelled["spec"], "status": "TaskRunCancelled"}
    store.create("tekton.dev", "v1", "taskruns", "ci", pending)
    store.create("tekton.dev", "v1", "taskruns", "ci", cancelled)

    assert broker.arrived.acquire(timeout=30)
    assert tekton.wait_idle(30)
    assert [f.name for f in tekton.finished] == ["never-1"]
    condition = store.get("tekton.dev", "taskruns", "ci", "never-1")["status"]["conditions"][0]
    assert (condition["status"], condition["reason"]) == ("False", "TaskRunCancelled")
    assert broker.received[0][0]["ce-type"] == "dev.tekton.event.taskrun.failed.v1"
    assert "status" not in store.get("tekton.dev", "taskruns", "ci", "later-1")

    store.patch("tekton.dev", "taskruns", "ci", "later-1", {"spec": {"status": None}})

    assert broker.arrived.acquire(timeout=30)
    assert tekton.wait_idle(30)
    assert [f.name for f in tekton.finished] == ["never-1", "later-1"]


@pytest.mark.reference("fixtures/tekton-events/current")
@pytest.mark.parametrize(
    ("fixture", "outcome"),
    [
        pytest.param("06-taskrun-successful.json", "successful", id="successful"),
        pytest.param("07-taskrun-failed.json", "failed", id="failed"),
    ],
)
def test_the_finish_event_has_tektons_shape(fixture: str, outcome: str, tmp_path: Path) -> None:
    """Same attributes, same source and subject form, same data key, and the run's status
    fields Tekton fills are all there (captured from Tekton's events controller)."""
    captured = json.loads((TEKTON_EVENTS / fixture).read_text())
    store = ObjectStore()
    runner = StepRunner(store, tmp_path, checktools.environment(tmp_path / "tools"))
    run = store.create("tekton.dev", "v1", "taskruns", "ci", taskrun("n-3", SCRIPTS[outcome]))
    run["status"] = runner.run(run).status

    event = finish_event(run)

    assert set(event.attributes) == set(captured) - {"data"}
    assert event.type == captured["type"]
    metadata = captured["data"]["taskRun"]["metadata"]
    assert captured["source"] == f"/apis///namespaces/{metadata['namespace']}//{metadata['name']}"
    assert captured["subject"] == metadata["name"]
    assert event.attributes["source"] == "/apis///namespaces/ci//n-3"
    assert event.attributes["subject"] == "n-3"
    assert set(event.data) == set(captured["data"])
    sent, real = event.data["taskRun"]["status"], captured["data"]["taskRun"]["status"]
    assert {"conditions", "podName", "startTime", "completionTime", "steps", "taskSpec"} <= set(
        real
    )
    assert {"conditions", "podName", "startTime", "completionTime", "steps", "taskSpec"} <= set(
        sent
    )
    assert set(sent["conditions"][0]) == set(real["conditions"][0])
    real_step, sent_step = real["steps"][0], sent["steps"][0]
    assert {"name", "container", "terminated"} <= set(real_step)
    assert {"name", "container", "terminated"} <= set(sent_step)
    assert set(sent_step["terminated"]) - {"message"} <= set(real_step["terminated"])
    assert sent_step["terminated"]["reason"] == real_step["terminated"]["reason"]
    if outcome == "successful":
        assert "taskResults" in real and "taskResults" in sent
