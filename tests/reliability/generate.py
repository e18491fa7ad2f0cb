"""Seedable Tekton CloudEvents, NotificationPolicies and NotificationTemplates for soak tests.

Events have Tekton's shape (binary-mode attributes, ``source`` ``/apis///namespaces/<ns>//<name>``,
``data`` = ``{"taskRun"|"pipelineRun"|"customRun": <v1beta1 run>}``, a ``Succeeded`` condition
whose reason tells cancelled and timed-out runs apart). Each generated run goes through a
lifecycle: maybe ``queued``, ``started``, one to three ``running``, maybe ``unknown`` (Tekton
repeats those), and usually an outcome. On top of that some events are re-delivered: the same
event again (a broker redelivery: same id) or with a new id (Tekton's own retry).

The same seed gives the same events, so a failing soak run can be replayed.
"""

from __future__ import annotations

import copy
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from tekton_notifications import vocabulary

#: Namespaces runs are generated in: ``ci`` has the example policies, ``team-a``/``team-b``
#: the generated ones, ``flaky`` a policy whose launches the soak test makes fail every time,
#: ``quiet`` no policy at all.
NAMESPACES: tuple[str, ...] = ("ci", "team-a", "team-b", "flaky", "quiet")
TEAM_NAMESPACES: tuple[str, ...] = ("team-a", "team-b")

_ENVELOPE = {"TaskRun": "taskRun", "PipelineRun": "pipelineRun", "CustomRun": "customRun"}
_CANCELLED = {
    "TaskRun": ("TaskRunCancelled",),
    "PipelineRun": ("Cancelled", "PipelineRunCancelled"),
    "CustomRun": ("CustomRunCancelled",),
}
_TIMED_OUT = {
    "TaskRun": ("TaskRunTimeout",),
    "PipelineRun": ("PipelineRunTimeout",),
    "CustomRun": ("CustomRunTimedOut",),
}
_NAMES = ("build", "deploy", "unit-tests", "lint", "release", "nightly", "e2e")
_EPOCH = datetime(2025, 6, 12, 9, 0, tzinfo=UTC)


@dataclass
class Run:
    """One generated run: what Tekton would put in the event's metadata."""

    kind: vocabulary.RunKind
    name: str
    namespace: str
    uid: str
    labels: dict[str, str]
    annotations: dict[str, str]
    start: datetime
    children: list[str] = field(default_factory=list)


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _run(rng: random.Random, index: int) -> Run:
    kind: vocabulary.RunKind = rng.choices(vocabulary.RUN_KINDS, weights=(45, 45, 10))[0]
    namespace = rng.choices(NAMESPACES, weights=(35, 25, 20, 5, 15))[0]
    base = rng.choice(_NAMES)
    name = f"{base}-{index:05d}-{rng.getrandbits(20):05x}"
    if rng.random() < 0.03:
        # A name as long as Kubernetes allows (253), dotted like a DNS subdomain.
        name = ".".join([name, *("x" * 60 for _ in range(3))])[:253].rstrip(".-")
    labels: dict[str, str] = {}
    if rng.random() < 0.5:
        labels["team"] = rng.choice(("web", "api", "data"))
    if rng.random() < 0.4:
        labels["env"] = rng.choice(("prod", "staging"))
    if kind == "TaskRun" and rng.random() < 0.5:
        labels["tekton.dev/pipelineTask"] = rng.choice(("unit-tests", "build", "lint"))
        labels["tekton.dev/task"] = "golang-test"
    if kind == "PipelineRun":
        labels["tekton.dev/pipeline"] = base
        if rng.random() < 0.4:
            labels["triggers.tekton.dev/eventlistener"] = "github-listener"
    if rng.random() < 0.02:
        # A notification run's own events: the loop guard must ignore them.
        labels[vocabulary.MANAGED_BY_LABEL] = vocabulary.MANAGED_BY_VALUE
    annotations: dict[str, str] = {}
    if rng.random() < 0.5:
        annotations["example.com/git-repo"] = "https://github.com/example/app"
        annotations["example.com/git-sha"] = f"{rng.getrandbits(160):040x}"
    children = []
    if kind == "PipelineRun":
        children = [f"{name[:40]}-{task}" for task in rng.sample(("fetch", "test", "push"), 2)]
    start = _EPOCH + timedelta(seconds=index * 7)
    return Run(kind, name, namespace, _uuid(rng), labels, annotations, start, children)


def _lifecycle(rng: random.Random, run: Run) -> list[tuple[str, str, str]]:
    """(Tekton event name, condition status, condition reason) in the order Tekton sends them."""
    steps: list[tuple[str, str, str]] = []
    if run.kind != "CustomRun" and rng.random() < 0.3:
        steps.append(("queued", "Unknown", "Pending"))
    steps.append(("started", "Unknown", "Started"))
    steps.extend(("running", "Unknown", "Running") for _ in range(rng.randint(1, 3)))
    if run.kind != "CustomRun" and rng.random() < 0.25:
        steps.extend(("unknown", "Unknown", "Running") for _ in range(rng.randint(1, 2)))
    ending = rng.choices(
        ("succeeded", "failed", "cancelled", "timedOut", None), weights=(35, 25, 15, 15, 10)
    )[0]
    if ending == "succeeded":
        steps.append(("successful", "True", "Succeeded"))
    elif ending == "failed":
        steps.append(("failed", "False", "Failed"))
    elif ending == "cancelled":
        steps.append(("failed", "False", rng.choice(_CANCELLED[run.kind])))
    elif ending == "timedOut":
        steps.append(("failed", "False", rng.choice(_TIMED_OUT[run.kind])))
    return steps


def cloudevent(
    rng: random.Random, run: Run, event: str, status: str, reason: str, step: int
) -> dict[str, Any]:
    """A Tekton CloudEvent (structured view: attributes and ``data``) about ``run``."""
    now = run.start + timedelta(seconds=5 * step)
    metadata: dict[str, Any] = {
        "name": run.name,
        "namespace": run.namespace,
        "uid": run.uid,
        "resourceVersion": str(1000 + step),
        "generation": 1,
        "creationTimestamp": _time(run.start),
        "labels": dict(run.labels),
        "annotations": dict(run.annotations),
    }
    condition = {
        "type": "Succeeded",
        "status": status,
        "reason": reason,
        "message": _message(run, event, reason),
        "lastTransitionTime": _time(now),
    }
    run_status: dict[str, Any] = {"conditions": [condition]}
    if event != "queued":
        run_status["startTime"] = _time(run.start + timedelta(seconds=2))
    if status != "Unknown":
        run_status["completionTime"] = _time(now)
    if run.kind == "PipelineRun":
        spec: dict[str, Any] = {"pipelineRef": {"name": run.labels["tekton.dev/pipeline"]}}
        run_status["childReferences"] = [
            {
                "apiVersion": "tekton.dev/v1",
                "kind": "TaskRun",
                "name": child,
                "pipelineTaskName": child.rsplit("-", 1)[-1],
            }
            for child in run.children
        ]
    elif run.kind == "TaskRun":
        spec = {"taskRef": {"name": "golang-test", "kind": "Task"}, "timeout": "1h0m0s"}
    else:
        spec = {"customRef": {"apiVersion": "example.dev/v1", "kind": "Wait"}}
    return {
        "specversion": "1.0",
        "id": _uuid(rng),
        "source": f"/apis///namespaces/{run.namespace}//{run.name}",
        "type": f"dev.tekton.event.{run.kind.lower()}.{event}.v1",
        "subject": run.name,
        "datacontenttype": "application/json",
        "time": _time(now),
        "data": {_ENVELOPE[run.kind]: {"metadata": metadata, "spec": spec, "status": run_status}},
    }


def _message(run: Run, event: str, reason: str) -> str:
    if event == "successful":
        return "All Steps have completed executing"
    if event == "failed":
        return f'{run.kind} "{run.name}" failed: {reason}'
    return f"{run.kind} {run.name} is {event}"


def _time(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def generate_events(
    count: int, *, seed: int, redelivered: float = 0.1, retried: float = 0.1
) -> list[dict[str, Any]]:
    """``count`` Tekton CloudEvents: run lifecycles, plus a share of re-sent events.

    ``redelivered``: the share that are a copy of an earlier event (same id, as a broker
    redelivers); ``retried``: the share that are an earlier event with a new id (as Tekton
    retries a send). Copies land later in the stream than their original.
    """
    rng = random.Random(seed)
    originals: list[dict[str, Any]] = []
    target = max(int(count * (1 - redelivered - retried)), 1)
    index = 0
    while len(originals) < target:
        run = _run(rng, index)
        index += 1
        for step, (event, status, reason) in enumerate(_lifecycle(rng, run)):
            originals.append(cloudevent(rng, run, event, status, reason, step))
    originals = originals[:target]
    stream = list(originals)
    while len(stream) < count:
        position = rng.randrange(len(stream))
        copy_of = copy.deepcopy(stream[rng.randrange(position + 1)])
        if rng.random() < retried / (redelivered + retried or 1):
            copy_of["id"] = _uuid(rng)
        stream.insert(position + 1, copy_of)
    return stream


# --- policies and templates for the generated namespaces ---------------------------------


def _policy(namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{vocabulary.GROUP}/{vocabulary.VERSION}",
        "kind": "NotificationPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def _template(namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{vocabulary.GROUP}/{vocabulary.VERSION}",
        "kind": "NotificationTemplate",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def policies_and_templates(namespaces: Sequence[str] = TEAM_NAMESPACES) -> list[dict[str, Any]]:
    """Policies covering selectors, every event kind, CEL, suspend; and their templates.

    Each team namespace gets the same set; ``flaky`` gets one broad policy. The templates
    render any generated event (no undefined variables), so every match should launch.
    """
    objects: list[dict[str, Any]] = []
    for namespace in (*namespaces, "flaky"):
        objects.append(
            _template(
                namespace,
                "notify",
                taskRef={"name": "send-to-webhook-slack"},
                params={
                    "webhook-secret": "slack-webhook",
                    "message": "{{ (event.kind ~ ' ' ~ event.name ~ ' ' ~ event.outcome)"
                    " | json_escape_strict }}",
                },
                retries=2,  # a failed Slack post is run again twice (delivery soak)
            )
        )
        # The fallback of notify for the policies that name one: mail when Slack is down.
        objects.append(
            _template(
                namespace,
                "email",
                taskRef={"name": "sendmail"},
                params={
                    "server": "smtp-server",
                    "sender": "tekton@example.com",
                    "recipients": "team@example.com",
                    "subject": "{{ (event.name ~ ' ' ~ event.outcome) | oneline"
                    " | json_escape_strict }}",
                    "body": "{{ event.message | json_escape_strict }}",
                },
            )
        )
        objects.append(
            _template(
                namespace,
                "audit",
                pipelineRef={"name": "record-outcome"},
                params={"run": "{{ event.uid }}", "outcome": "{{ event.outcome }}"},
                timeout="10m",
                retries=1,
            )
        )
    for namespace in namespaces:
        objects += [
            _policy(
                namespace,
                "all-failed",
                events=["failed"],
                templateRefs=[{"name": "notify", "fallback": {"name": "email"}}],
            ),
            _policy(
                namespace,
                "taskrun-progress",
                selector={"kinds": ["TaskRun"]},
                events=["running", "unknown"],
                templateRefs=[{"name": "notify"}],
            ),
            _policy(
                namespace,
                "web-succeeded",
                selector={"matchLabels": {"team": "web"}},
                events=["succeeded"],
                templateRefs=[
                    {"name": "notify", "fallback": {"name": "email"}},
                    {"name": "audit", "fallback": {"name": "email"}},
                ],
            ),
            _policy(
                namespace,
                "prod-stopped",
                selector={
                    "kinds": ["PipelineRun", "CustomRun"],
                    "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod"]}],
                },
                events=["cancelled", "timedOut"],
                templateRefs=[{"name": "audit"}],
            ),
            _policy(
                namespace,
                "api-started",
                events=["queued", "started"],
                when='"team" in event.labels && event.labels["team"] == "api"',
                templateRefs=[
                    {"name": "notify", "params": {"message": "started {{ event.name }}"}}
                ],
            ),
            _policy(
                namespace,
                "deploys",
                selector={"names": ["deploy-*"], "kinds": ["PipelineRun", "TaskRun"]},
                events=["succeeded", "failed"],
                templateRefs=[{"name": "audit"}],
            ),
            _policy(
                namespace,
                "not-staging",
                selector={
                    "matchExpressions": [
                        {"key": "env", "operator": "NotIn", "values": ["staging"]},
                        {"key": "team", "operator": "Exists"},
                    ]
                },
                events=["timedOut"],
                templateRefs=[{"name": "notify"}],
            ),
            _policy(
                namespace,
                "suspended",
                events=["failed", "succeeded"],
                suspend=True,
                templateRefs=[{"name": "notify"}],
            ),
        ]
    # Every event of every run in the first team namespace: the most launches per event.
    objects.append(
        _policy(
            namespaces[0],
            "firehose",
            events=[e for e in vocabulary.POLICY_EVENTS if e not in vocabulary.TRANSITION_EVENTS],
            templateRefs=[{"name": "audit"}],
        )
    )
    objects.append(
        _policy("flaky", "all-failed", events=["failed"], templateRefs=[{"name": "notify"}])
    )
    return objects
