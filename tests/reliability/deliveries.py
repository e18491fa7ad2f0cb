"""The delivery half of the at-least-once soak: Tekton finishing the notification runs.

:class:`TektonPlayer` plays Tekton's part for the runs the chain created: as soon as a
notification run exists it sends its finish event (one in five fails, decided by a hash of
the run's name, so the expectation needs no chain), twice with one id (a broker redelivery),
sometimes a third time with a new id (a Tekton retry), shuffled with the others, without
waiting for the chain; once all is settled, every finish event is sent again, last first.

:class:`DeliveryOracle` computes, without the chain, every run that must then exist (each
attempt ``spec.retries`` allows, then the policy's fallback once) and how each notification
ends.
"""

from __future__ import annotations

import collections
import hashlib
import random
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tekton_notifications import notifications, taskruns
from tekton_notifications.devtools.chain import LocalChain
from tekton_notifications.events import EventError, RunEvent, parse_event
from tekton_notifications.models import parse_policy, parse_template
from tests.e2e.tekton_finish import finish_event

#: Share of notification runs that fail.
FAILURE_RATE = 0.2


def fails(run_name: str) -> bool:
    """Whether this run fails: the same answer for the chain, the player and the oracle."""
    return hashlib.sha256(run_name.encode()).digest()[0] < FAILURE_RATE * 256


@dataclass
class Expected:
    """Every run that must exist, what each does, and how each notification ends."""

    runs: dict[str, tuple[str, str, bool]] = field(default_factory=dict)  # name -> ns, policy, ok
    endings: collections.Counter[str] = field(default_factory=collections.Counter)
    #: Runs per notification that never got through: must equal 1 + the template's retries.
    exhausted: list[tuple[str, int, int]] = field(default_factory=list)  # first run, made, allowed


class DeliveryOracle:
    def __init__(self, objects: Iterable[Mapping[str, Any]], events: Iterable[Mapping[str, Any]]):
        objects = list(objects)
        self.retries = {
            (t.namespace, t.name): t.retries
            for t in (parse_template(o) for o in objects if o["kind"] == "NotificationTemplate")
        }
        self.fallbacks = {
            (p.namespace, p.name, ref.name): ref.fallback
            for p in (parse_policy(o) for o in objects if o["kind"] == "NotificationPolicy")
            for ref in p.template_refs
        }
        self.events: dict[tuple[str, str], RunEvent] = {}
        for cloudevent in events:
            attributes = {k: str(v) for k, v in cloudevent.items() if k != "data"}
            try:
                event = parse_event(attributes, cloudevent.get("data"))
            except EventError:
                continue
            self.events.setdefault((event.uid, event.tekton_event), event)

    def expect(self, first_runs: Iterable[Mapping[str, Any]]) -> Expected:
        expected = Expected()
        for run in first_runs:
            metadata = run["metadata"]
            labels, annotations = metadata["labels"], metadata["annotations"]
            namespace = annotations[taskruns.POLICY_NAMESPACE_ANNOTATION]
            policy, template = labels[taskruns.POLICY_LABEL], labels[taskruns.TEMPLATE_LABEL]
            allowed = 1 + self.retries[(namespace, template)]
            event = self.events[
                (
                    labels[taskruns.SOURCE_UID_LABEL],
                    annotations[taskruns.SOURCE_EVENT_TYPE_ANNOTATION].split(".")[-2],
                )
            ]
            key = notifications.notification_key(
                event, policy_namespace=namespace, policy=policy, template=template
            )
            names = [taskruns.run_name(event, key, n) for n in range(1, allowed + 1)]
            assert names[0] == metadata["name"], (names[0], metadata["name"])
            for made, name in enumerate(names, start=1):
                ok = not fails(name)
                expected.runs[name] = (namespace, policy, ok)
                if ok:
                    expected.endings["delivered" if made == 1 else "delivered after retries"] += 1
                    break
            else:
                expected.exhausted.append((metadata["name"], len(names), allowed))
                fallback = self.fallbacks.get((namespace, policy, template))
                if fallback is None:
                    expected.endings["failed, no fallback"] += 1
                    continue
                key = notifications.notification_key(
                    event,
                    policy_namespace=namespace,
                    policy=policy,
                    template=fallback,
                    fallback_of=template,
                )
                name = taskruns.run_name(event, key)
                ok = not fails(name)
                expected.runs[name] = (namespace, policy, ok)
                expected.endings["fallen back, delivered" if ok else "fallen back, failed"] += 1
        return expected


class TektonPlayer:
    """Finishes every notification run as soon as it exists (see the module docstring)."""

    def __init__(self, chain: LocalChain, *, ignore: set[str], seed: int) -> None:
        self.chain, self.ignore = chain, ignore
        self.rng = random.Random(seed)
        self.finished: set[str] = set()
        self.sent_ids: set[str] = set()
        self.sent = 0
        self._events: list[dict[str, Any]] = []

    def play(self, timeout: float) -> bool:
        """Until no run is left unfinished and the chain is idle; False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs = [
                r
                for r in self.chain.notification_runs()
                if r["metadata"]["name"] not in self.ignore | self.finished
            ]
            if not runs:
                if not self.chain.wait_idle(timeout=max(1.0, deadline - time.monotonic())):
                    return False
                if not any(
                    r["metadata"]["name"] not in self.ignore | self.finished
                    for r in self.chain.notification_runs()
                ):
                    return True
                continue
            batch: list[dict[str, Any]] = []
            for run in runs:
                name = run["metadata"]["name"]
                run.setdefault("kind", "PipelineRun" if "pipelineRef" in run["spec"] else "TaskRun")
                event = finish_event(run, succeeded=not fails(name))
                batch += [event, event]
                if self.rng.random() < 0.3:
                    batch.append(finish_event(run, succeeded=not fails(name)))
                self.finished.add(name)
            self.rng.shuffle(batch)
            for event in batch:
                assert self.chain.send(event) == 202
                self.sent_ids.add(event["id"])
                self.sent += 1
            self._events += batch
        return False

    def replay_reversed(self, timeout: float) -> bool:
        """Every finish event again, last first, once the chain has settled: late
        redeliveries in the reverse order, which must change nothing."""
        for event in reversed(self._events):
            assert self.chain.send(event) == 202
            self.sent += 1
        return self.chain.wait_idle(timeout=timeout)
