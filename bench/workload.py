"""What the benchmarks send: a real Tekton event, generated policy sets, and the events each
later stage receives (made by running the earlier stages in-process, so they are exactly what
the chain would carry).

The event is ``examples/events/02-taskrun-failed.json``; it matches the example policy
``taskrun-failed-discord`` (selector, event and a CEL ``when`` with ``has()`` and ``in``) and
renders the ``discord`` template: one match, one rendered TaskRun.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from typing import Any

import yaml

from bench import ROOT
from bench.loadgen import TOKEN, Load
from tekton_notifications.matching import PolicyIndex
from tekton_notifications.models import parse_policy
from tekton_notifications.notifications import OutgoingEvent
from tekton_notifications.stages.policy_filter import PolicyFilter
from tekton_notifications.stages.template_renderer import TemplateCache, TemplateRenderer
from tekton_notifications.wire import binary_message

EXAMPLES = ROOT / "examples"
EVENT_FILE = EXAMPLES / "events" / "02-taskrun-failed.json"
MATCHING_POLICY = EXAMPLES / "policies" / "taskrun-failed-discord.yaml"
NAMESPACE = "ci"


def _yaml_objects(path: Any) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


@cache
def _cloudevent() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(EVENT_FILE.read_text())
    return data


def tekton_event(uid: str | None = None) -> dict[str, Any]:
    """The Tekton CloudEvent (structured view); ``uid`` replaces the run's uid."""
    event = copy.deepcopy(_cloudevent())
    if uid is not None:
        event["data"]["taskRun"]["metadata"]["uid"] = uid
    return event


def outgoing(cloudevent: dict[str, Any]) -> OutgoingEvent:
    attributes = {k: str(v) for k, v in cloudevent.items() if k != "data"}
    return OutgoingEvent(attributes, cloudevent["data"])


def load_for(url: str, event: OutgoingEvent, *, vary: str | None = None) -> Load:
    """A load of ``event`` in binary mode (as Tekton and the broker send); ``vary`` is a
    string in the body replaced by a unique token per request."""
    headers, body = binary_message(event)
    text = body.decode()
    if vary is not None:
        assert vary in text, vary
        text = text.replace(vary, TOKEN)
    return Load(url=url, body=text.encode(), headers=headers, vary=vary is not None)


def templates() -> list[dict[str, Any]]:
    return [
        obj
        for path in sorted((EXAMPLES / "templates").glob("*.yaml"))
        for obj in _yaml_objects(path)
    ]


def matching_policy(*, when: bool = True) -> dict[str, Any]:
    """``taskrun-failed-discord``; without its CEL ``when`` if ``when`` is false (it still
    matches the event: the selector and the event do)."""
    (policy,) = _yaml_objects(MATCHING_POLICY)
    if not when:
        del policy["spec"]["when"]
    return policy


def _policy(name: str, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "notifications.tekton.dev/v1alpha1",
        "kind": "NotificationPolicy",
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{namespace}-{name}"},
        "spec": {"templateRefs": [{"name": "discord"}], **spec},
    }


def _cel_false(i: int) -> dict[str, Any]:
    """A spec in the event's bucket whose ``when`` is evaluated and false."""
    return {
        "selector": {"kinds": ["TaskRun"]},
        "events": ["failed"],
        "when": (
            '"tekton.dev/pipelineTask" in run.metadata.labels && '
            f'run.metadata.labels["tekton.dev/pipelineTask"] == "lint-{i}"'
        ),
    }


def _label_fails(i: int) -> dict[str, Any]:
    """A spec in the event's bucket whose label selector fails (no CEL)."""
    return {
        "selector": {"kinds": ["TaskRun"], "matchLabels": {"team": f"team-{i}"}},
        "events": ["failed"],
    }


def candidates(count: int) -> list[dict[str, Any]]:
    """Policies in the event's bucket (same namespace, kind and event) that do not match it:
    half fail on a label, half on a CEL ``when`` that is evaluated and false."""
    made = []
    for i in range(count):
        spec = _label_fails(i) if i % 2 else _cel_false(i)
        made.append(_policy(f"candidate-{i}", NAMESPACE, spec))
    return made


def unrelated(count: int) -> list[dict[str, Any]]:
    """Policies that cannot match the event: 80% in other namespaces, 10% for PipelineRuns in
    its namespace, 10% for other events of TaskRuns in its namespace. All have a CEL ``when``,
    so if the index ever evaluated them it would show."""
    made = []
    for i in range(count):
        when = f'event.reason == "Failed" && event.name.startsWith("app-{i}")'
        if i % 10 < 8:
            namespace, kinds, events = f"team-{i % 97}", ["TaskRun"], ["failed"]
        elif i % 10 == 8:
            namespace, kinds, events = NAMESPACE, ["PipelineRun"], ["failed"]
        else:
            namespace, kinds, events = NAMESPACE, ["TaskRun"], ["succeeded", "started"]
        spec = {"selector": {"kinds": kinds}, "events": events, "when": when}
        made.append(_policy(f"unrelated-{i}", namespace, spec))
    return made


def policy_set(total: int) -> list[dict[str, Any]]:
    """``total`` policies: the matching one, ~1% candidates that don't match, the rest
    unrelated (other namespaces, kinds, events). One match per event."""
    in_bucket = max(1, total // 100)
    chosen = [matching_policy(), *candidates(in_bucket - 1)]
    return chosen + unrelated(total - len(chosen))


#: The issue's mix (issue 16): in the event's bucket, the match, 4 policies whose CEL runs and
#: is false, 15 whose selector fails; every other policy in one of 97 other namespaces.
CEL_FALSE = 4
SELECTOR_FAILS = 15
OTHER_NAMESPACES = 97


def issue_policy_set(total: int) -> list[dict[str, Any]]:
    """``total`` (>= 20) policies in the issue's mix: one match, :data:`CEL_FALSE` whose
    ``when`` is evaluated and false, :data:`SELECTOR_FAILS` whose label selector fails, and the
    rest (all with a CEL ``when``) spread over :data:`OTHER_NAMESPACES` other namespaces."""
    bucket = 1 + CEL_FALSE + SELECTOR_FAILS
    if total < bucket:
        raise ValueError(f"the issue's mix needs at least {bucket} policies, not {total}")
    made = [matching_policy()]
    for i in range(CEL_FALSE):
        made.append(_policy(f"cel-false-{i}", NAMESPACE, _cel_false(i)))
    for i in range(SELECTOR_FAILS):
        spec = {
            "selector": {"kinds": ["TaskRun"], "matchLabels": {"team": f"team-{i}"}},
            "events": ["failed"],
            "when": 'event.reason == "Failed"',
        }
        made.append(_policy(f"selector-fails-{i}", NAMESPACE, spec))
    for i in range(total - bucket):
        spec = {
            "selector": {"kinds": ["TaskRun"]},
            "events": ["failed"],
            "when": f'event.reason == "Failed" && event.name.startsWith("app-{i}")',
        }
        made.append(_policy(f"elsewhere-{i}", f"team-{i % OTHER_NAMESPACES}", spec))
    return made


def policy_index(objects: list[dict[str, Any]]) -> PolicyIndex:
    return PolicyIndex(parse_policy(obj) for obj in objects)


@cache
def matched_event() -> OutgoingEvent:
    """What the policy filter replies to the Tekton event."""
    stage = PolicyFilter(policy_index([matching_policy()]))
    response = stage.respond(outgoing(_cloudevent()).attributes, _cloudevent()["data"])
    assert response.status == 200 and response.event is not None, response
    return response.event


@cache
def rendered_event() -> OutgoingEvent:
    """What the renderer replies to :func:`matched_event`: the TaskRun to create."""
    cache_ = TemplateCache()
    cache_.reset(templates())
    matched = matched_event()
    response = TemplateRenderer(cache_).respond(dict(matched.attributes), matched.data)
    assert response.status == 200 and response.event is not None, response
    return response.event


def run_name() -> str:
    """The name of the TaskRun in :func:`rendered_event`; its last 10 characters are a hash."""
    return str(rendered_event().data["resource"]["metadata"]["name"])
