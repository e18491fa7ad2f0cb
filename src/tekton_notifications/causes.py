"""Who or what caused a run: ``event.cause``, read from the labels and annotations that
Pipelines-as-Code and Tekton Triggers put on the runs they create.

Owns the label and annotation keys of both projects and the precedence between them. Must
not: do I/O, or guess a cause from params or names (a wrong author is worse than none).

Pipelines-as-Code (``pkg/apis/pipelinesascode/keys/keys.go`` and
``pkg/kubeinteraction/labels.go``, checked at v0.43.0): every key below is an annotation
holding the value as the forge sent it; url-org, url-repository, sha, repository, event-type
and pull-request are also labels, cleaned to fit a label value. Older releases set sender,
branch and git-provider as labels too (their code announced dropping them in v0.20).
Annotations win; labels are the fallback.

Tekton Triggers (``pkg/resources/create.go``, ``AddLabels``) labels what an EventListener
creates with ``triggers.tekton.dev/eventlistener``, ``triggers.tekton.dev/trigger`` and
``triggers.tekton.dev/triggers-eventid`` only: it records no sender, commit or pull request.
A TriggerTemplate can set them from its TriggerBinding's params as annotations under
``notifications.tekton.dev/`` (:data:`TRIGGERS_ANNOTATIONS`), which this module reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

_PAC: Final = "pipelinesascode.tekton.dev/"
_TRIGGERS: Final = "triggers.tekton.dev/"
_OURS: Final = "notifications.tekton.dev/"

#: ``event.cause`` fields and their Pipelines-as-Code keys (annotation, then label).
PAC_KEYS: Final[Mapping[str, str]] = {
    "sender": f"{_PAC}sender",
    "sha": f"{_PAC}sha",
    "pullRequest": f"{_PAC}pull-request",
    "eventType": f"{_PAC}event-type",
    "branch": f"{_PAC}branch",
    "provider": f"{_PAC}git-provider",
    "repositoryUrl": f"{_PAC}repo-url",
}
#: The annotations a TriggerTemplate may set on the runs it creates (the convention this
#: project documents; Triggers itself records none of these).
TRIGGERS_ANNOTATIONS: Final[Mapping[str, str]] = {
    "sender": f"{_OURS}sender",
    "repository": f"{_OURS}repository",
    "repositoryUrl": f"{_OURS}repository-url",
    "sha": f"{_OURS}sha",
    "pullRequest": f"{_OURS}pull-request",
    "eventType": f"{_OURS}event-type",
    "branch": f"{_OURS}branch",
    "provider": f"{_OURS}provider",
}
TRIGGERS_EVENTLISTENER: Final = f"{_TRIGGERS}eventlistener"
TRIGGERS_TRIGGER: Final = f"{_TRIGGERS}trigger"
TRIGGERS_EVENT_ID: Final = f"{_TRIGGERS}triggers-eventid"


def _string(description: str) -> Mapping[str, Any]:
    return {"type": "string", "description": description}


#: The fields of ``event.cause``, as JSON Schema; every one is "" when not recorded.
CAUSE_FIELDS: Final[Mapping[str, Mapping[str, Any]]] = {
    "source": {
        "type": "string",
        "enum": ["pipelines-as-code", "triggers", ""],
        "description": "who created the run; empty when neither Pipelines-as-Code nor Triggers",
    },
    "sender": _string("the forge user whose event started the run"),
    "repository": _string("owner/name (organization/repository) of the repository"),
    "repositoryUrl": _string("the repository's web URL, e.g. https://github.com/owner/name"),
    "sha": _string("the commit the run built"),
    "pullRequest": _string("the pull/merge request number"),
    "eventType": _string("the forge event: pull_request, push, incoming, ..."),
    "branch": _string("the base (target) branch"),
    "provider": _string("the forge: github, gitlab, gitea, bitbucket-cloud, ..."),
    "eventId": _string("Triggers' event id (triggers.tekton.dev/triggers-eventid)"),
}


def cause_of(labels: Mapping[str, str], annotations: Mapping[str, str]) -> dict[str, str]:
    """``event.cause`` for a run with these labels and annotations (every field a string)."""
    cause = dict.fromkeys(CAUSE_FIELDS, "")
    if any(key.startswith(_PAC) for key in (*annotations, *labels)):
        cause["source"] = "pipelines-as-code"
        for field, key in PAC_KEYS.items():
            cause[field] = annotations.get(key) or labels.get(key) or ""
        org = annotations.get(f"{_PAC}url-org") or labels.get(f"{_PAC}url-org") or ""
        repo = annotations.get(f"{_PAC}url-repository") or labels.get(f"{_PAC}url-repository")
        cause["repository"] = "/".join(part for part in (org, repo or "") if part)
        return cause
    if TRIGGERS_EVENTLISTENER in labels or TRIGGERS_EVENT_ID in labels:
        cause["source"] = "triggers"
        cause["eventId"] = labels.get(TRIGGERS_EVENT_ID, "")
        for field, key in TRIGGERS_ANNOTATIONS.items():
            cause[field] = annotations.get(key, "")
    return cause
