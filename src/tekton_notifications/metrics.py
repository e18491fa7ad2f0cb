"""Prometheus metrics of every function; the adapters serve them on their own port
(``METRICS_PORT``, :mod:`tekton_notifications.adapters.exposition`).

Knative Services expose one container port, so metrics listen on a second one that a
PodMonitor scrapes on the pod (docs/troubleshooting.md). Labels are bounded: event types,
stages, reasons and results are small sets; policies are per (namespace, name), which a
platform team keeps in the hundreds, not per run.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Iterable
from typing import Final, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

logger = logging.getLogger(__name__)

REGISTRY: Final = CollectorRegistry(auto_describe=True)

EVENTS: Final = Counter(
    "tekton_notifications_events_received_total",
    "CloudEvents received, by stage, CloudEvent type and HTTP answer.",
    ["stage", "type", "code"],
    registry=REGISTRY,
)
MATCHES: Final = Counter(
    "tekton_notifications_matches_total",
    "Notifications matched, by policy and template.",
    ["namespace", "policy", "template"],
    registry=REGISTRY,
)
CEL_ERRORS: Final = Counter(
    "tekton_notifications_cel_errors_total",
    "CEL `when` evaluations that failed (counted as no match), by policy.",
    ["namespace", "policy"],
    registry=REGISTRY,
)
CEL_COST: Final = Counter(
    "tekton_notifications_cel_cost_exceeded_total",
    "CEL `when` over its cost budget, by policy: `refused` per evaluation refused or stopped "
    "(no match), `disabled` when that disabled the policy until its spec changes.",
    ["namespace", "policy", "action"],
    registry=REGISTRY,
)
SUPPRESSED: Final = Counter(
    "tekton_notifications_suppressed_total",
    "Matches that sent nothing, by policy and reason (ratelimit, suspended).",
    ["namespace", "policy", "reason"],
    registry=REGISTRY,
)
SUBSCRIPTIONS_REFUSED: Final = Counter(
    "tekton_notifications_subscriptions_refused_total",
    "Subscription annotations no policy allows, or malformed, by the run's namespace.",
    ["namespace"],
    registry=REGISTRY,
)
TRANSITIONS: Final = Counter(
    "tekton_notifications_transitions_total",
    "Pipelines whose outcome changed, as seen by a policy, by transition (broken, fixed).",
    ["namespace", "policy", "transition"],
    registry=REGISTRY,
)
STATE_CONFLICTS: Final = Counter(
    "tekton_notifications_state_conflicts_total",
    "Writes of a policy's storm state that met a newer version (409) and were decided again.",
    registry=REGISTRY,
)
RUN_CHECKS: Final = Counter(
    "tekton_notifications_run_checks_total",
    "Tekton events whose run was confirmed with the API before spending storm budget, by "
    "result (Confirmed, NotFound, UIDMismatch, NotFinished, OutcomeMismatch, LabelMismatch, "
    "NoUID, Unavailable) and whether the cache answered. NotFinished and Unavailable are "
    "retried (503); the others were refused (422): a forgery, or a run deleted before its "
    "event arrived.",
    ["result", "cached"],
    registry=REGISTRY,
)
RENDER_FAILURES: Final = Counter(
    "tekton_notifications_render_failures_total",
    "Notifications that could not be rendered, by reason.",
    ["reason"],
    registry=REGISTRY,
)
LAUNCHES: Final = Counter(
    "tekton_notifications_launches_total",
    "Launch outcomes: created, existed (a redelivery), failed (not retried), retry (5xx), "
    "refused (a run its template cannot produce, 400).",
    ["result"],
    registry=REGISTRY,
)
SIGNING_ENABLED: Final = Gauge(
    "tekton_notifications_signing_enabled",
    "1 when this function signs and checks stage events, 0 when NOTIFICATIONS_SIGNING=disabled.",
    registry=REGISTRY,
)
DELIVERIES: Final = Counter(
    "tekton_notifications_deliveries",
    "Finished notification runs by outcome: delivered, failed, timedOut (status recorder, "
    "once per run however often its events are redelivered).",
    ["namespace", "policy", "template", "outcome"],
    registry=REGISTRY,
)
DELIVERY_SECONDS: Final = Histogram(
    "tekton_notifications_delivery_seconds",
    "Seconds from the Tekton event a notification is about to its notification run's finish.",
    registry=REGISTRY,
    buckets=(1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200),
)
LATENCY: Final = Histogram(
    "tekton_notifications_handle_seconds",
    "Time to handle one CloudEvent, by stage.",
    ["stage"],
    registry=REGISTRY,
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)


class InFlightSource(Protocol):
    """What :class:`InFlight` reads when scraped (a :class:`~.stages.fairness.Admission`)."""

    stage: str

    def by_namespace(self) -> dict[str, int]: ...


class InFlight:
    """Events holding a worker, by stage and namespace, read from the admissions when scraped.

    Counted per event, a labelled gauge made and removed its namespace's series on every
    request (~20 us at one request in flight, bench breakdown); read at scrape time, the
    request path does nothing and only namespaces with events in flight have a series.
    """

    NAME: Final = "tekton_notifications_in_flight"
    HELP: Final = (
        "Events holding a worker, by stage and namespace (series only while some are in flight)."
    )

    def __init__(self) -> None:
        self._sources: weakref.WeakSet[InFlightSource] = weakref.WeakSet()

    def watch(self, source: InFlightSource) -> None:
        self._sources.add(source)

    def describe(self) -> Iterable[Metric]:
        return [GaugeMetricFamily(self.NAME, self.HELP, labels=["stage", "namespace"])]

    def collect(self) -> Iterable[Metric]:
        counts: dict[tuple[str, str], int] = {}
        for source in list(self._sources):
            for namespace, held in source.by_namespace().items():
                key = (source.stage, namespace)
                counts[key] = counts.get(key, 0) + held
        family = GaugeMetricFamily(self.NAME, self.HELP, labels=["stage", "namespace"])
        for (stage, namespace), held in sorted(counts.items()):
            family.add_metric([stage, namespace], held)
        return [family]


IN_FLIGHT: Final = InFlight()
REGISTRY.register(IN_FLIGHT)
REFUSED: Final = Counter(
    "tekton_notifications_admission_refused_total",
    "Events refused a worker after waiting: reason namespace (its share spent, 429, namespace "
    "labelled) or workers (all busy, 503).",
    ["stage", "namespace", "reason"],
    registry=REGISTRY,
)
STUCK: Final = Gauge(
    "tekton_notifications_stuck_workers",
    "Workers busy with one event past the liveness deadline, at the last probe.",
    ["stage"],
    registry=REGISTRY,
)

SCHEDULED: Final = Counter(
    "tekton_notifications_scheduled_total",
    "What the scheduler sent, by policy, kind (reminder, digest) and result (sent, or "
    "run-gone: the run it is about was deleted, so it was recorded as sent without a message).",
    ["namespace", "policy", "kind", "result"],
    registry=REGISTRY,
)

FAILURE_CONTEXT: Final = Counter(
    "tekton_notifications_failure_context_total",
    "Reads the template renderer made for event.failedSteps, by what (taskrun: a PipelineRun's "
    "child; log: a failed step's log tail) and result (read, forbidden, not_found, "
    "unavailable, error, no_pod). A log not read is also in event.failedSteps[].logUnavailable.",
    ["what", "result"],
    registry=REGISTRY,
)
