"""``tkn-notify explain``: why one run event did (or did not) notify, policy by policy."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import click

from tekton_notifications import diagnosis, events, kube, rendering, taskruns, vocabulary
from tekton_notifications.cli import _inputs, _output, diagnosis_report, explain_subscriptions
from tekton_notifications.cli._output import EXIT_NO, EXIT_OK, InputError
from tekton_notifications.diagnosis import PolicyExplanation
from tekton_notifications.events import RunEvent

OK, NO = "✓", "✗"


@click.command(short_help="Why a run event did or did not notify, policy by policy.")
@click.argument("event_or_run", metavar="EVENT_FILE_OR_RUN")
@click.option(
    "--policies",
    "policy_paths",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    metavar="DIR_OR_FILE",
    help="NotificationPolicy files or directories (repeatable). Default: the cluster's.",
)
@click.option(
    "--templates",
    "template_paths",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    metavar="DIR_OR_FILE",
    help="NotificationTemplate files or directories (repeatable). Default: any in --policies "
    "paths, else the cluster's.",
)
@click.option(
    "--kubeconfig",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Read runs, policies and templates from this cluster (default: KUBECONFIG, "
    "~/.kube/config, in-cluster).",
)
@click.option(
    "-n", "--namespace", help="Namespace of a run given by name (default: the context's)."
)
@click.option(
    "--dashboard-url",
    envvar="TEKTON_DASHBOARD_URL",
    metavar="URL",
    help="Tekton Dashboard base URL for event.url, as the template-renderer is configured.",
)
@_output.output_option()
def explain(
    event_or_run: str,
    policy_paths: tuple[Path, ...],
    template_paths: tuple[Path, ...],
    kubeconfig: Path | None,
    namespace: str | None,
    dashboard_url: str | None,
    output: str,
) -> None:
    """Explain which policies one Tekton event matches, and why the others do not.

    EVENT_FILE_OR_RUN is a Tekton CloudEvent in structured JSON form (as in examples/events/;
    `-` reads stdin), a TaskRun/PipelineRun object saved with `kubectl get -o json`, or the
    name of a run in the cluster (NAME, pipelinerun/NAME, taskrun/NAME, pr/NAME, tr/NAME): its
    current status is turned into the event Tekton would send for it.

    Every policy in scope is compared field by field, in the order the policy filter checks
    them (loop guard, namespace, kind, name, labels, annotations, event, suspend, when). For
    each matching policy, every template ref is rendered as the template-renderer would, and
    the params of the run it would create are shown, or the render error.

    Then every subscription annotation (notifications.tekton.dev/subscribe.<event>.<template>)
    of the run, its Pipeline or Task and its Namespace: where it was found, and whether a
    policy's spec.subscriptions allows it (and renders it) or it is refused. Namespace,
    Pipeline and Task manifests are read from the --policies/--templates paths, or from the
    cluster.

    \b
    Examples:
      tkn-notify explain examples/events/03-pipelinerun-failed.json \\
          --policies examples/policies --templates examples/templates
      tkn-notify explain pipelinerun/build-and-test-run-8x2kq -n ci
      tkn notify explain tr/web-build-7hk2p-unit-tests -o json

    Exit codes: 0 a policy matched and all its templates render, 1 no policy matched or a
    matched template is missing or fails to render, 2 usage or input error, 3 Kubernetes API
    error.
    """
    cluster: _inputs.Cluster | None = None
    live = not _inputs.looks_like_file(event_or_run)
    if live or kubeconfig is not None:
        cluster = _inputs.connect(str(kubeconfig) if kubeconfig else None)
    if live:
        assert cluster is not None
        event = _live_event(cluster, event_or_run, namespace or cluster.namespace)
    else:
        event = _inputs.load_event_file(event_or_run)

    file_paths = policy_paths + template_paths
    if policy_paths:
        policies = _inputs.objects_of_kind(
            file_paths, "NotificationPolicy", "ClusterNotificationPolicy"
        )
        policy_source = "files"
    elif cluster is not None:
        policies = _inputs.notification_objects(cluster, event.namespace, vocabulary.POLICY_PLURAL)
        policies += [
            {**obj, "kind": "ClusterNotificationPolicy"}
            for obj in _inputs.cluster_policies(cluster)
        ]
        policy_source = f"cluster, namespace {event.namespace}"
    else:
        raise click.UsageError(
            "no policies to compare with: give --policies DIR_OR_FILE, or --kubeconfig to read "
            "them from the cluster"
        )
    templates: list[dict[str, Any]] | None = None
    if file_paths:
        templates = _inputs.objects_of_kind(file_paths, "NotificationTemplate")
    if not template_paths and not templates:
        templates = None
        if cluster is not None:
            templates = _inputs.notification_objects(
                cluster, event.namespace, vocabulary.TEMPLATE_PLURAL
            )

    settings = rendering.RenderSettings(dashboard_url=dashboard_url or None)
    explanations = diagnosis.explain_event(
        event, policies, templates, settings=settings, now=time.time()
    )
    namespace_annotations, definition = explain_subscriptions.sources(
        event, file_paths, None if policy_paths else cluster
    )
    subscribed = diagnosis.explain_subscriptions(
        event,
        policies,
        templates,
        namespace=namespace_annotations,
        definition=definition,
        settings=settings,
        now=time.time(),
    )
    created = _created(cluster, explanations) if cluster is not None else None
    report = diagnosis_report.report(
        event, explanations, policy_source, live, templates is not None, created
    )
    report["subscriptions"] = explain_subscriptions.report(subscribed)
    _output.emit(
        report,
        output,
        lambda: (
            diagnosis_report.text(event, explanations, report, created)
            + explain_subscriptions.text(subscribed)
        ),
    )
    matched = [item for item in explanations if item.matched]
    allowed = [item for item in subscribed.items if item.resolution.status == "allowed"]
    notifying = matched + allowed
    every = all(item.notifies for item in notifying)
    exit_code = EXIT_OK if notifying and every else EXIT_NO
    click.get_current_context().exit(exit_code)


def _created(
    cluster: _inputs.Cluster, explanations: list[PolicyExplanation]
) -> dict[str, dict[str, Any]]:
    """Whether each run a template renders exists (names are deterministic), and its status."""
    found: dict[str, dict[str, Any]] = {}
    for item in explanations:
        for outcome in item.templates:
            if outcome.run is None:
                continue
            metadata = outcome.run["metadata"]
            try:
                obj = _inputs.find_run(
                    cluster, outcome.run["kind"], metadata["namespace"], metadata["name"]
                )
            except _output.ClusterError as error:
                found[metadata["name"]] = {"exists": None, "error": error.message}
                continue
            if obj is None:
                found[metadata["name"]] = {"exists": False}
            else:
                run = diagnosis.summarize_run(obj)
                found[metadata["name"]] = {
                    "exists": True,
                    "status": run.status,
                    "reason": run.reason,
                    **_delivery(cluster, run),
                }
    return found


def _delivery(cluster: _inputs.Cluster, first: diagnosis.NotificationRun) -> dict[str, Any]:
    """How the notification of ``first`` (its first run) was delivered: its attempts, the
    last one's outcome, and the fallback's, read from the runs labelled like it."""
    selector = (
        f"{taskruns.SOURCE_UID_LABEL}={first.source_uid},{taskruns.POLICY_LABEL}={first.policy},"
        f"{taskruns.EVENT_LABEL}={first.event}"
    )
    try:
        runs = [
            diagnosis.summarize_run(obj)
            for plural in ("taskruns", "pipelineruns")
            for obj in _inputs.list_custom(
                cluster, "tekton.dev", "v1", plural, first.namespace, selector
            )
        ]
    except _output.ClusterError as error:
        return {"delivery": "unknown", "deliveryError": error.message}
    attempts = sorted(
        (r for r in runs if r.template == first.template and not r.fallback_of),
        key=lambda r: r.attempt,
    ) or [first]
    found: dict[str, Any] = {"attempts": len(attempts), "delivery": attempts[-1].delivery}
    for fallback in runs:
        if fallback.fallback_of == first.template:
            found["fallback"] = {
                "template": fallback.template,
                "name": fallback.name,
                "delivery": fallback.delivery,
            }
    return found


def _live_event(cluster: _inputs.Cluster, reference: str, namespace: str) -> RunEvent:
    obj = _inputs.get_run(cluster, reference, namespace)
    try:
        event = diagnosis.event_from_run(obj)
    except events.EventError as error:
        raise InputError(f"{reference}: {error}") from None
    # As the template-renderer does: current Tekton only references a PipelineRun's children,
    # so read their outcome for finished runs (best effort; needs get on taskruns).
    if event.tekton_event in ("failed", "successful") and any(not c.status for c in event.children):
        children = kube.child_outcomes(cluster.api, event.namespace, event.children)
        event = dataclasses.replace(event, children=children)
    return event
