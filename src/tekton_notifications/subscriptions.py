"""Subscription annotations: which notifications a run, its Pipeline or Task, or its Namespace
asks for, read from ``notifications.tekton.dev/subscribe.<event>.<template>: "<recipients>"``.

Owns the annotation grammar (:func:`parse_key`, :func:`parse_recipients`), the opt-outs
(``notifications.tekton.dev/unsubscribe`` and ``unsubscribe.<event>``), and telling where an
annotation that arrives on a run came from (:func:`find`). Whether a subscription is *allowed*
is a policy's decision (:mod:`tekton_notifications.subscribing`), not this module's.

Where an annotation comes from. Tekton copies a Pipeline's annotations onto its PipelineRuns,
a Task's onto its TaskRuns, and a PipelineRun's onto the TaskRuns and CustomRuns it creates
(tektoncd/pipeline ``pkg/reconciler/pipelinerun/pipelinerun.go``
``storePipelineSpecAndMergeMeta`` and ``createChildResourceAnnotations``,
``pkg/reconciler/taskrun/taskrun.go`` ``storeTaskSpecAndMergeMeta``; the run's own value
wins). So every annotation of a Pipeline or Task is already on the event's run; the rule:

- on a PipelineRun: ``pipeline`` when its Pipeline (given as ``definition``) carries the same
  key and value, else ``run``;
- on a TaskRun: ``task`` when its Task carries the same key and value; else, for a TaskRun of
  a PipelineRun (label ``tekton.dev/pipelineRun``), the annotation was copied from the
  PipelineRun and is *ignored* there: it notifies once, for the PipelineRun, not once per
  task; else ``run``;
- on a CustomRun: ``run``, or ignored when it belongs to a PipelineRun (copied as above);
- on the Namespace: ``namespace``, for every run in it, unless the run (or its Pipeline)
  opts out with ``unsubscribe``.

Pure: annotations in, subscriptions out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from tekton_notifications import vocabulary
from tekton_notifications.events import RunEvent

PREFIX: Final = f"{vocabulary.GROUP}/"
SUBSCRIBE: Final = f"{PREFIX}subscribe."
UNSUBSCRIBE: Final = f"{PREFIX}unsubscribe"
#: Kubernetes limits an annotation key's name (the part after ``<prefix>/``) to 63 characters:
#: ``subscribe.<event>.<template>`` must fit, so a template name is at most 63 - 11 - len(event).
MAX_NAME: Final = 63
PIPELINE_RUN_LABEL: Final = "tekton.dev/pipelineRun"

Source = Literal["run", "pipeline", "task", "namespace"]
SOURCES: Final[tuple[Source, ...]] = ("run", "pipeline", "task", "namespace")

_TEMPLATE: Final = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_SPLIT: Final = re.compile(r"[,;]")
#: Recipients kept per subscription: a list for a template param, not a mailing list.
MAX_RECIPIENTS: Final = 50

_STRING: Final[Mapping[str, Any]] = {"type": "string"}
#: The ``subscription`` variable templates see (:meth:`Subscription.view`), as JSON Schema.
#: A notification of a policy's templateRefs sees it empty: recipients ``[]``, the rest "".
SUBSCRIPTION_FIELDS: Final[Mapping[str, Mapping[str, Any]]] = {
    "recipients": {
        "type": "array",
        "items": {"type": "string"},
        "description": "the annotation's value, split on , or ; (may be empty)",
    },
    "event": {**_STRING, "description": "the policy event subscribed to"},
    "template": {**_STRING, "description": "the NotificationTemplate subscribed"},
    "source": {
        "type": "string",
        "enum": [*SOURCES, ""],
        "description": "where the annotation was written; empty for a policy's templateRefs",
    },
    "annotation": {**_STRING, "description": "the annotation's key"},
}
EMPTY_VIEW: Final[Mapping[str, Any]] = {
    "recipients": [],
    "event": "",
    "template": "",
    "source": "",
    "annotation": "",
}


class SubscriptionError(ValueError):
    """An annotation under our prefix that is not a valid subscription; says why."""


@dataclass(frozen=True)
class Subscription:
    """One subscription annotation, read where it applies."""

    annotation: str
    event: str
    template: str
    recipients: tuple[str, ...]
    source: Source
    #: The object it was read from, for messages: ``Pipeline ci/build``, ``Namespace ci``.
    where: str

    @property
    def identity(self) -> tuple[str, str, tuple[str, ...]]:
        """What is notified once per run: the event, the template and the recipients."""
        return (self.event, self.template, tuple(sorted(self.recipients)))

    def view(self) -> dict[str, Any]:
        """The ``subscription`` variable templates see (:data:`SUBSCRIPTION_FIELDS`); also
        what a notification payload carries."""
        return {
            "recipients": list(self.recipients),
            "event": self.event,
            "template": self.template,
            "source": self.source,
            "annotation": self.annotation,
        }


@dataclass(frozen=True)
class Problem:
    """An annotation that looks like ours but is not a valid subscription or opt-out."""

    annotation: str
    where: str
    message: str


@dataclass(frozen=True)
class Ignored:
    """A valid subscription that does not apply to this run, and why."""

    subscription: Subscription
    why: str


@dataclass(frozen=True)
class Found:
    subscriptions: tuple[Subscription, ...] = ()
    ignored: tuple[Ignored, ...] = ()
    problems: tuple[Problem, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.subscriptions or self.ignored or self.problems)


def parse_key(key: str) -> tuple[str, str]:
    """``(event, template)`` of ``notifications.tekton.dev/subscribe.<event>.<template>``."""
    if not key.startswith(SUBSCRIBE):
        raise SubscriptionError(f"not a subscription annotation (they start with {SUBSCRIBE})")
    name = key.removeprefix(PREFIX)
    if len(name) > MAX_NAME:
        raise SubscriptionError(
            f"the key after {PREFIX} has {len(name)} characters; Kubernetes allows {MAX_NAME} "
            "(shorten the template name)"
        )
    event, _, template = key.removeprefix(SUBSCRIBE).partition(".")
    if event not in vocabulary.POLICY_EVENTS:
        expected = ", ".join(vocabulary.POLICY_EVENTS)
        raise SubscriptionError(f"unknown event {event!r}; expected one of {expected}")
    if not template or not _TEMPLATE.match(template):
        raise SubscriptionError(
            f"{template!r} is not a NotificationTemplate name (subscribe.<event>.<template>)"
        )
    return event, template


def parse_recipients(value: str) -> tuple[str, ...]:
    """The recipients of a subscription: comma or semicolon separated, blanks dropped, each
    once, in the order written; may be empty (the template's own default applies)."""
    seen: dict[str, None] = {}
    for part in _SPLIT.split(value):
        if part.strip():
            seen.setdefault(part.strip(), None)
    recipients = tuple(seen)
    if len(recipients) > MAX_RECIPIENTS:
        raise SubscriptionError(f"{len(recipients)} recipients; at most {MAX_RECIPIENTS}")
    return recipients


def opt_out(key: str, value: str) -> str | None:
    """For an ``unsubscribe`` annotation: ``"*"`` (every event) or the event it opts out of;
    None for other keys. Raises :class:`SubscriptionError` for a malformed one."""
    if key != UNSUBSCRIBE and not key.startswith(f"{UNSUBSCRIBE}."):
        return None
    event = key.removeprefix(UNSUBSCRIBE).removeprefix(".") or "*"
    if event != "*" and event not in vocabulary.POLICY_EVENTS:
        raise SubscriptionError(f"unknown event {event!r} to unsubscribe from")
    if value.strip().lower() != "true":
        raise SubscriptionError(f'must be "true" to opt out, not {value!r}')
    return event


def problems(annotations: Mapping[str, str]) -> list[tuple[str, str]]:
    """(annotation, message) for every malformed subscription or opt-out: for ``lint``."""
    found: list[tuple[str, str]] = []
    for key, value in sorted(annotations.items()):
        try:
            if key.startswith(SUBSCRIBE):
                parse_key(key)
                parse_recipients(str(value))
            else:
                opt_out(key, str(value))
        except SubscriptionError as error:
            found.append((key, str(error)))
    return found


def declared(annotations: Mapping[str, str], *, source: Source, where: str) -> Found:
    """The subscriptions written in one object's annotations, and the malformed ones."""
    subscriptions: list[Subscription] = []
    bad: list[Problem] = []
    for key, value in sorted(annotations.items()):
        if not key.startswith(SUBSCRIBE):
            continue
        try:
            event, template = parse_key(key)
            recipients = parse_recipients(str(value))
        except SubscriptionError as error:
            bad.append(Problem(key, where, str(error)))
            continue
        subscriptions.append(Subscription(key, event, template, recipients, source, where))
    return Found(tuple(subscriptions), (), tuple(bad))


def _opt_outs(annotations: Mapping[str, str], where: str) -> tuple[set[str], list[Problem]]:
    events: set[str] = set()
    bad: list[Problem] = []
    for key, value in annotations.items():
        try:
            event = opt_out(key, str(value))
        except SubscriptionError as error:
            bad.append(Problem(key, where, str(error)))
            continue
        if event is not None:
            events.add(event)
    return events, bad


def find(
    event: RunEvent,
    *,
    namespace: Mapping[str, str] | None = None,
    definition: Mapping[str, str] | None = None,
) -> Found:
    """Every subscription that concerns ``event``'s run, with those ignored and malformed.

    ``namespace``: the annotations of the run's Namespace (None: not known). ``definition``:
    those of its Pipeline (for a PipelineRun) or Task (for a TaskRun), None when not known;
    they only tell ``pipeline``/``task`` from ``run`` (see the module docstring). The events
    of the subscriptions are not compared with ``event`` here.
    """
    run_where = f"{event.kind} {event.namespace}/{event.name}"
    child_of = event.labels.get(PIPELINE_RUN_LABEL, "") if event.kind != "PipelineRun" else ""
    subscriptions: list[Subscription] = []
    ignored: list[Ignored] = []
    on_run = declared(event.annotations, source="run", where=run_where)
    definition = definition or {}
    for subscription in on_run.subscriptions:
        value = event.annotations[subscription.annotation]
        inherited = definition.get(subscription.annotation) == value
        if inherited:
            defined_in: Source = "pipeline" if event.kind == "PipelineRun" else "task"
            name = event.labels.get(f"tekton.dev/{defined_in}", "")
            where = f"{defined_in.capitalize()} {event.namespace}/{name}"
            subscriptions.append(_moved(subscription, defined_in, where))
        elif child_of:
            ignored.append(
                Ignored(
                    subscription,
                    f"copied from PipelineRun {child_of} (Tekton copies a PipelineRun's "
                    "annotations onto its TaskRuns): it notifies for the PipelineRun",
                )
            )
        else:
            subscriptions.append(subscription)
    opted_out, opt_problems = _opt_outs(event.annotations, run_where)
    bad = [
        problem
        for problem in (*on_run.problems, *opt_problems)
        # A child run's copy of its PipelineRun's mistake is reported on the PipelineRun.
        if not child_of
        or definition.get(problem.annotation) == event.annotations[problem.annotation]
    ]
    if namespace is not None:
        ns_where = f"Namespace {event.namespace}"
        defaults = declared(namespace, source="namespace", where=ns_where)
        bad.extend(defaults.problems)
        taken = {s.identity for s in subscriptions}
        for subscription in defaults.subscriptions:
            if "*" in opted_out or subscription.event in opted_out:
                which = UNSUBSCRIBE + ("" if "*" in opted_out else f".{subscription.event}")
                ignored.append(Ignored(subscription, f"the run opts out with {which}"))
            elif subscription.identity in taken:
                ignored.append(Ignored(subscription, "the run subscribes to the same already"))
            else:
                subscriptions.append(subscription)
    return Found(tuple(subscriptions), tuple(ignored), tuple(bad))


def _moved(subscription: Subscription, source: Source, where: str) -> Subscription:
    return Subscription(
        subscription.annotation,
        subscription.event,
        subscription.template,
        subscription.recipients,
        source,
        where,
    )


def has_any(annotations: Mapping[str, str]) -> bool:
    """Whether any annotation is a subscription or an opt-out (cheap: one prefix scan)."""
    return any(key.startswith(PREFIX) for key in annotations)
