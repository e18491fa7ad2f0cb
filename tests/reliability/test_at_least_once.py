"""Exactly one notification run per (policy, template, source run, Tekton event), however
often events arrive and however often the Kubernetes API fails.

The whole chain runs as deployed (three functions served by func-python, the router following
the Triggers in knative/, the API emulator). Tekton events come from tests/reliability/
generate.py: run lifecycles in several namespaces, repeated ``running``/``unknown`` events,
broker redeliveries (same id) and Tekton retries (new id). While they flow, the emulator fails
about a fifth of all API requests (500, 429, dropped connections, timeouts) and, on top of that,
some run creations are committed and *then* answered with a 504 or a dropped connection (what
a real API server does when etcd is slow), so the launcher retries a create that already
happened. Every launch in the ``flaky`` namespace fails, so those end in the dead-letter sink
after the Trigger's retries.

The expected runs are computed here, independently of the chain: the match decision by
``matching.PolicyIndex``, the run identity by this module. Then: each expected run exists
exactly once, nothing else exists, and each expected run that does not exist is accounted for
by a dead letter that carries ``knativeerrorcode``.
"""

from __future__ import annotations

import collections
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from tekton_notifications import notifications, taskruns, vocabulary
from tekton_notifications.devtools import router
from tekton_notifications.devtools.chain import LocalChain
from tekton_notifications.devtools.kubeapi import KubeError
from tekton_notifications.devtools.serving import ROOT
from tekton_notifications.events import EventError, parse_event
from tekton_notifications.matching import PolicyIndex
from tekton_notifications.models import parse_policy, parse_template
from tests.conftest import EXAMPLES
from tests.reliability.conftest import soak_seconds
from tests.reliability.deliveries import FAILURE_RATE, DeliveryOracle, TektonPlayer
from tests.reliability.generate import generate_events, policies_and_templates

pytestmark = pytest.mark.slow

SEED = 20250612
FAULT_RATE = 0.2
#: Share of run creations that are committed and then answered with an error.
COMMIT_THEN_FAIL_RATE = 0.1
#: Router backoffs x this: the launcher's 6 retries from 1s take about 1.3s instead of 63s.
TIME_SCALE = 0.02
#: Statuses the broker retries, hence the only ones a dead letter may carry here (0: no
#: response). A 4xx would mean a generated, valid event was refused.
RETRIED_CODES = {0, 429, 500, 502, 503, 504}
DNS_1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL = vocabulary.LABEL_PREFIX

#: (policy namespace, policy, template, source run uid, Tekton event name)
Identity = tuple[str, str, str, str, str]


def load_objects(*paths: Path) -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = []
    for path in paths:
        for file in sorted(path.glob("*.yaml")) if path.is_dir() else [path]:
            objects += [doc for doc in yaml.safe_load_all(file.read_text()) if doc]
    return objects


class Oracle:
    """What the chain should do, decided without it."""

    def __init__(self, objects: Iterable[Mapping[str, Any]]) -> None:
        objects = list(objects)
        self.index = PolicyIndex(
            parse_policy(o) for o in objects if o["kind"] == "NotificationPolicy"
        )
        self.templates = {
            (t.namespace, t.name)
            for t in (parse_template(o) for o in objects if o["kind"] == "NotificationTemplate")
        }
        #: Source run uid -> the pipeline it belongs to (RunEvent.pipeline).
        self.pipelines: dict[str, str] = {}

    def identities(self, cloudevent: Mapping[str, Any]) -> set[Identity]:
        """The runs an event must create exactly once."""
        return self._identities(cloudevent, storm=False)

    def storm_identities(self, cloudevent: Mapping[str, Any]) -> set[Identity]:
        """The runs an event may create, at most once, if storm control lets it (policies
        with a rate limit or ``fixed``; their own invariants are checked separately)."""
        return self._identities(cloudevent, storm=True)

    def _identities(self, cloudevent: Mapping[str, Any], *, storm: bool) -> set[Identity]:
        attributes = {k: str(v) for k, v in cloudevent.items() if k != "data"}
        try:
            event = parse_event(attributes, cloudevent.get("data"))
        except EventError:
            return set()
        matches, errors = self.index.match(event)
        assert not errors, [verdict.error for verdict in errors]
        self.pipelines[event.uid] = event.pipeline
        tekton_event = attributes["type"].split(".")[-2]
        return {
            (m.policy.namespace, m.policy.name, m.template_ref.name, event.uid, tekton_event)
            for m in matches
            # Suspended policies' matches are only counted (suppressed), never launched.
            if not m.suspended
            and m.policy.keeps_state == storm
            and (m.policy.namespace, m.template_ref.name) in self.templates
        }

    def identities_of_letter(self, letter: Mapping[str, Any]) -> set[Identity]:
        """The runs a dead-lettered event stood for: all matches of a Tekton event, or the
        one notification a matched/rendered event carries."""
        event_type = str(letter.get("type", ""))
        if event_type.startswith("dev.tekton.event."):
            return self.identities(letter)
        if event_type == notifications.SUPPRESSED:
            return set()  # stood for no run
        data = letter.get("data")
        if not isinstance(data, Mapping) or "runEvent" not in data:
            return set()  # launched/failed: about a run that exists, or a refusal
        wire = data["runEvent"]
        (run,) = wire["data"].values()
        return {
            (
                data["policy"]["namespace"],
                data["policy"]["name"],
                data["templateRef"]["name"],
                run["metadata"]["uid"],
                wire["attributes"]["type"].split(".")[-2],
            )
        }


def identity_of_run(run: Mapping[str, Any]) -> Identity:
    """Read back from what the launcher created (labels and annotations)."""
    metadata = run["metadata"]
    labels, annotations = metadata["labels"], metadata["annotations"]
    return (
        annotations[f"{LABEL}policy-namespace"],
        labels[f"{LABEL}policy"],
        labels[f"{LABEL}template"],
        labels[f"{LABEL}source-uid"],
        annotations[f"{LABEL}source-event-type"].split(".")[-2],
    )


def _run_name(cloudevent: Mapping[str, Any]) -> str:
    (run,) = cloudevent["data"].values()
    return str(run["metadata"]["name"])


class CommitThenFail:
    """Wraps the emulator's store: some run creations succeed, then the answer is lost.

    Half get a 504 (kube-apiserver's answer when a write outlives its deadline), half a
    connection closed without an answer. Either way the launcher must retry, meet 409 and
    report success, without a second run.
    """

    def __init__(self, create: Callable[..., dict[str, Any]], *, rate: float, seed: int) -> None:
        self._create, self._rate, self._rng = create, rate, random.Random(seed)
        self._lock = threading.Lock()
        self.fired: collections.Counter[str] = collections.Counter()

    def __call__(
        self,
        group: str,
        version: str,
        plural: str,
        namespace: str | None,
        obj: dict[str, Any],
        **options: Any,  # keep_uid, when LocalChain.send mirrors a source run
    ) -> dict[str, Any]:
        created = self._create(group, version, plural, namespace, obj, **options)
        labels = (obj.get("metadata") or {}).get("labels") or {}
        if group != "tekton.dev" or taskruns.POLICY_LABEL not in labels:
            return created  # not a notification run (LocalChain.send mirrors source runs)
        with self._lock:
            fail = self._rng.random() < self._rate
            mode = self._rng.choice(("504", "drop"))
            if fail:
                self.fired[mode] += 1
        if fail and mode == "504":
            raise KubeError(504, "Timeout: request did not complete within the allotted timeout")
        if fail:
            raise ConnectionResetError("committed, then the connection was lost")
        return created


def recorded_before_launched(deliveries: Iterable[router.Delivery]) -> int:
    """How many runs' outcome reached the status recorder before their ``launched`` did."""
    first: dict[tuple[str, bool], int] = {}
    for index, delivery in enumerate(deliveries):
        if not delivery.trigger.startswith("status-recorder-") or delivery.trigger.endswith(
            ("-failed", "-suppressed")
        ):
            continue
        run = re.sub(r"-(launched|delivered|deliveryfailed)", "", delivery.event_id)
        first.setdefault((run, delivery.trigger.endswith("-launched")), index)
    return sum(
        1
        for (run, launched), index in first.items()
        if not launched and index < first.get((run, True), -1)
    )


@pytest.mark.soak
def test_every_expected_run_exists_exactly_once_under_faults(
    tmp_path: Path, soak_size: int, capsys: pytest.CaptureFixture[str]
) -> None:
    events = generate_events(soak_size, seed=SEED)
    generated = tmp_path / "generated.yaml"
    generated.write_text(yaml.safe_dump_all(policies_and_templates()))
    manifests = (EXAMPLES / "policies", EXAMPLES / "templates", generated)
    oracle = Oracle(load_objects(*manifests))
    expected_by_event = [oracle.identities(event) for event in events]
    expected = set().union(*expected_by_event)
    storm_controlled = set().union(*(oracle.storm_identities(event) for event in events))
    assert storm_controlled, "the example policies put some events under storm control"
    flaky = {identity for identity in expected if identity[0] == "flaky"}
    assert flaky, "the seed must give the flaky namespace something to dead-letter"

    started = time.monotonic()
    with LocalChain(tmp_path / "chain", manifests=manifests, time_scale=TIME_SCALE) as chain:
        api = chain.emulator
        assert api is not None
        # Every launch in `flaky` fails with a retryable status, however often it is retried.
        api.faults.add(
            503, method="POST", path=r"/namespaces/flaky/(taskruns|pipelineruns)$", count=10**9
        )
        api.faults.random(
            FAULT_RATE,
            seed=SEED,
            statuses=(500, 429),
            modes=("status", "drop", "timeout"),
            delay=0.05,
        )
        original_create = api.store.create
        commit_then_fail = CommitThenFail(original_create, rate=COMMIT_THEN_FAIL_RATE, seed=SEED)
        api.store.create = commit_then_fail  # type: ignore[method-assign]

        statuses = collections.Counter(chain.send(event) for event in events)
        idle = chain.wait_idle(timeout=soak_seconds(soak_size))

        fired = collections.Counter(
            f"{f.mode} {f.status}" if f.status else f.mode for f in api.faults.fired
        )
        api.faults.clear()
        api.store.create = original_create  # type: ignore[method-assign]
        # Source runs that carry the managed-by label (loop-guard cases) are mirrored into
        # the API by LocalChain.send like any other source run: they are not ours.
        sources = {_run_name(event) for event in events}
        runs = [r for r in chain.notification_runs() if r["metadata"]["name"] not in sources]
        letters = list(chain.router.dead_letters)
        deliveries = list(chain.router.deliveries)
        failures = list(chain.failures.events)
        letter_file = chain.dead_letter_file
        dead_letter_lines = letter_file.read_text().splitlines() if letter_file.exists() else []
        elapsed = time.monotonic() - started

        # The delivery half: Tekton finishes every notification run (a fifth fail); the
        # tracker retries them as their templates say and falls back as their policies say.
        delivery_started = time.monotonic()
        expected_deliveries = DeliveryOracle(load_objects(*manifests), events).expect(runs)
        player = TektonPlayer(chain, ignore=sources, seed=SEED)
        played = player.play(timeout=soak_seconds(soak_size))
        played = played and player.replay_reversed(timeout=soak_seconds(soak_size))
        all_runs = [r for r in chain.notification_runs() if r["metadata"]["name"] not in sources]
        counts_wanted = collections.Counter[tuple[str, str, str]]()
        for namespace, policy, ok in expected_deliveries.runs.values():
            counts_wanted[(namespace, policy, "delivered" if ok else "failed")] += 1

        def delivery_counts() -> collections.Counter[tuple[str, str, str]]:
            found = collections.Counter[tuple[str, str, str]]()
            for policy in chain.policies():
                status, metadata = policy.get("status") or {}, policy["metadata"]
                where = (metadata.get("namespace", ""), metadata["name"])
                found[(*where, "delivered")] += int(status.get("deliveredCount") or 0)
                found[(*where, "failed")] += int(status.get("deliveryFailedCount") or 0)
            return +found

        deadline = time.monotonic() + 30
        while (counted := delivery_counts()) != counts_wanted and time.monotonic() < deadline:
            time.sleep(0.2)
        delivery_letters = list(chain.router.dead_letters)[len(letters) :]
        delivery_deliveries = list(chain.router.deliveries)[len(deliveries) :]
        delivery_elapsed = time.monotonic() - delivery_started
        reordered = recorded_before_launched(chain.router.deliveries)

    created = collections.Counter(identity_of_run(run) for run in runs)
    covered = set().union(*(oracle.identities_of_letter(letter) for letter in letters))
    missing = expected - set(created)
    attempts = sum(d.attempts for d in deliveries)
    letter_kinds = collections.Counter(
        f"{str(letter['type']).split('.')[-2]} {letter['knativeerrorcode']}" for letter in letters
    )
    with capsys.disabled():
        print(
            f"\nat-least-once soak (seed {SEED}): sent {len(events)} events "
            f"({len({e['id'] for e in events})} distinct ids) in {elapsed:.1f}s; "
            f"expected {len(expected)} runs, created {len(runs)}, not created "
            f"{len(missing)} ({len(flaky)} of them in flaky), each dead-lettered; "
            f"storm control: {len(set(created) & storm_controlled)} runs of "
            f"{len(storm_controlled)} candidates; "
            f"{len(letters)} dead letters {dict(letter_kinds)}; "
            f"API faults fired {sum(fired.values())} {dict(fired)}, "
            f"committed-then-failed {sum(commit_then_fail.fired.values())} "
            f"{dict(commit_then_fail.fired)}; "
            f"{len(deliveries)} deliveries, {attempts - len(deliveries)} retries"
        )
        failed_runs = sum(not ok for _, _, ok in expected_deliveries.runs.values())
        print(
            f"delivery soak: {len(runs)} notifications, {len(all_runs)} runs finished in "
            f"{delivery_elapsed:.1f}s ({failed_runs} failed, "
            f"{failed_runs / max(1, len(all_runs)):.0%}; target {FAILURE_RATE:.0%}) by "
            f"{player.sent} Tekton finish events ({len(player.sent_ids)} distinct ids); "
            f"endings {dict(sorted(expected_deliveries.endings.items()))}; "
            f"{len(delivery_deliveries)} deliveries, {len(delivery_letters)} dead letters; "
            f"{reordered} outcomes recorded before their run's launched"
        )

    assert statuses == {202: len(events)}
    assert idle, "the chain did not settle in time"
    assert failures == [], "no render or launch failure was expected"
    duplicates = {identity: count for identity, count in created.items() if count > 1}
    assert duplicates == {}, "a notification run was created more than once"
    assert set(created) - expected - storm_controlled == set(), "runs nobody asked for"
    # Storm control under the same faults: each rate-limited (policy, pipeline) sent at most
    # its limit of failure notifications (the whole soak fits in one window).
    limits = {p.key: p.rate_limit for p in (c.policy for c in oracle.index.all()) if p.rate_limit}
    spent = collections.Counter(
        (namespace, name, oracle.pipelines[uid] if limit.per == "pipeline" else "")
        for namespace, name, _, uid, tekton_event in set(created) & storm_controlled
        if tekton_event == "failed" and (limit := limits.get((namespace, name))) is not None
    )
    assert spent, "rate-limited policies sent nothing"
    for (namespace, name, pipeline), count in spent.items():
        assert count <= limits[(namespace, name)].limit, (name, pipeline, count)
    assert missing - covered == set(), "expected runs that are neither created nor dead-lettered"
    assert missing >= flaky
    for letter in letters:
        assert letter["knativeerrorcode"] in RETRIED_CODES, letter
        assert letter["knativeerrordest"], letter
    assert len(dead_letter_lines) == len(letters)
    # Retries are bounded by the Trigger's (or the Broker's) delivery in knative/: an event is
    # given up after exactly retry + 1 attempts, never more.
    broker, triggers = router.load_triggers(ROOT / "knative")
    retries = {
        t.name: (t.delivery or broker.delivery or router.DeliverySpec()).retry for t in triggers
    }
    for delivery in deliveries:
        assert delivery.attempts <= retries[delivery.trigger] + 1, delivery
        if delivery.dead_lettered:
            assert delivery.attempts == retries[delivery.trigger] + 1, delivery
    for run in runs:
        metadata = run["metadata"]
        assert len(metadata["name"]) <= 63 and DNS_1123_LABEL.match(metadata["name"]), metadata
        assert metadata["labels"][vocabulary.MANAGED_BY_LABEL] == vocabulary.MANAGED_BY_VALUE
        assert run["spec"]["params"], run
    # The faults really happened, and the launcher really met its own earlier creates.
    assert sum(fired.values()) > 0 and sum(commit_then_fail.fired.values()) > 0

    # Deliveries: every notification ended as the oracle says (delivered, after its retries,
    # fallen back, or failed with no fallback), each attempt and fallback created once, none
    # more; each run counted once in its policy's status however often its finish came.
    assert played, "the delivery half did not settle in time"
    assert delivery_letters == []
    assert sorted(r["metadata"]["name"] for r in all_runs) == sorted(expected_deliveries.runs)
    for first, made, allowed in expected_deliveries.exhausted:
        assert made == allowed, (first, made, allowed)
    assert expected_deliveries.endings["delivered after retries"] > 0
    assert expected_deliveries.endings["fallen back, delivered"] > 0
    assert counted == counts_wanted
    # The loop guard: every finish of ours reached the policy filter and went no further.
    to_filter = [
        d
        for d in delivery_deliveries
        if d.event_id in player.sent_ids and d.trigger == "policy-filter"
    ]
    assert to_filter and all(d.status == 202 and d.reply_type is None for d in to_filter)
