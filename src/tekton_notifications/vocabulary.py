"""Domain names shared by every layer: run kinds, Tekton event names, policy event names.

Only vocabulary lives here; no behaviour, no imports from the rest of the package.
"""

from __future__ import annotations

from typing import Final, Literal, NewType, get_args

RunKind = Literal["TaskRun", "PipelineRun", "CustomRun"]
RUN_KINDS: Final[tuple[RunKind, ...]] = ("TaskRun", "PipelineRun", "CustomRun")

#: The last segment of a Tekton CloudEvent type: ``dev.tekton.event.taskrun.<name>.v1``.
TektonEventName = Literal["queued", "started", "running", "unknown", "successful", "failed"]

#: What a NotificationPolicy selects in ``spec.events``. ``cancelled`` and ``timedOut`` are
#: refinements of ``failed``: Tekton reports both as ``failed`` with a condition reason.
#: ``broken`` and ``fixed`` are transitions, not Tekton events: the first failure of a pipeline
#: that was not failing, the first success after failures (:mod:`tekton_notifications.transitions`).
PolicyEvent = Literal[
    "queued",
    "started",
    "running",
    "unknown",
    "succeeded",
    "failed",
    "cancelled",
    "timedOut",
    "broken",
    "fixed",
]
POLICY_EVENTS: Final[tuple[PolicyEvent, ...]] = get_args(PolicyEvent)
#: Policy events that depend on the previous outcome of the same pipeline, not only this event.
TRANSITION_EVENTS: Final[frozenset[str]] = frozenset({"broken", "fixed"})

Namespace = NewType("Namespace", str)
PolicyName = NewType("PolicyName", str)
TemplateName = NewType("TemplateName", str)

GROUP: Final = "notifications.tekton.dev"
VERSION: Final = "v1alpha1"
POLICY_PLURAL: Final = "notificationpolicies"
CLUSTER_POLICY_PLURAL: Final = "clusternotificationpolicies"
TEMPLATE_PLURAL: Final = "notificationtemplates"

#: Labels put on every run this project creates; the policy filter ignores runs carrying them.
MANAGED_BY_LABEL: Final = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE: Final = "tekton-notifications"
LABEL_PREFIX: Final = f"{GROUP}/"
