"""The sample events templates are rendered against by ``tkn-notify lint``.

The built-in ones (``tekton_notifications/samples/events.json``) cover every run kind and
event; their runs carry only the labels Tekton sets. For a policy, the samples are those of a
kind and event it selects, given the labels and annotations its selector requires.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from importlib import resources
from types import MappingProxyType

from tekton_notifications import diagnosis, models
from tekton_notifications.events import RunEvent


def builtin() -> list[RunEvent]:
    """The built-in sample events."""
    text = resources.files("tekton_notifications").joinpath("samples/events.json").read_text()
    return [diagnosis.event_from_document(doc) for doc in json.loads(text)]


def for_policy(policy: models.Policy | None, samples: Sequence[RunEvent]) -> list[RunEvent]:
    """The samples of a kind and event the policy selects, given the labels and annotations
    its selector requires (names and ``when`` aside)."""
    if policy is None:
        return list(samples)
    return [
        selected_by(policy.selector, sample)
        for sample in samples
        if (not policy.selector.kinds or sample.kind in policy.selector.kinds)
        and policy.events & sample.policy_events
    ]


def selected_by(selector: models.Selector, event: RunEvent) -> RunEvent:
    labels, annotations = dict(event.labels), dict(event.annotations)
    labels.update(selector.match_labels)
    for requirement in selector.match_expressions:
        key, values = requirement.key, requirement.values
        if requirement.operator == "In" and labels.get(key) not in values:
            labels[key] = sorted(values)[0]
        elif requirement.operator == "Exists":
            labels.setdefault(key, "sample")
        elif requirement.operator in ("NotIn", "DoesNotExist") and (
            requirement.operator == "DoesNotExist" or labels.get(key) in values
        ):
            labels.pop(key, None)
    annotations.update(selector.match_annotations)
    if labels == event.labels and annotations == event.annotations:
        return event
    metadata = {**(event.run.get("metadata") or {}), "labels": labels, "annotations": annotations}
    return dataclasses.replace(
        event,
        labels=MappingProxyType(labels),
        annotations=MappingProxyType(annotations),
        run={**event.run, "metadata": metadata},
    )
