"""``tkn-notify history``: the notification runs created so far, newest first."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from tekton_notifications import diagnosis
from tekton_notifications.cli import _inputs, _output
from tekton_notifications.cli._output import EXIT_NO, EXIT_OK, note
from tekton_notifications.diagnosis import NotificationRun

_PLURALS = ("taskruns", "pipelineruns")


@click.command(short_help="The notification runs created so far, newest first, with status.")
@click.option("-n", "--namespace", help="Namespace to list (default: the context's).")
@click.option(
    "-A", "--all-namespaces", is_flag=True, help="List notification runs in every namespace."
)
@click.option("--run", "run_name", metavar="NAME", help="Only notifications about this run.")
@click.option("--policy", "policy_name", metavar="NAME", help="Only runs from this policy.")
@click.option(
    "--limit", type=click.IntRange(min=1), metavar="N", help="Show at most N (the newest)."
)
@click.option(
    "--kubeconfig",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Kubeconfig file (default: KUBECONFIG, ~/.kube/config, in-cluster).",
)
@_output.output_option()
def history(
    namespace: str | None,
    all_namespaces: bool,
    run_name: str | None,
    policy_name: str | None,
    limit: int | None,
    kubeconfig: Path | None,
    output: str,
) -> None:
    """List the notification runs tekton-notifications created, newest first.

    These are the TaskRuns and PipelineRuns labelled
    app.kubernetes.io/managed-by=tekton-notifications. Each carries the policy, the template,
    the run it is about and the event (labels notifications.tekton.dev/*); its status is its
    Succeeded condition: Succeeded, Failed (with Tekton's reason), Running or Pending, and its
    delivery what that means for the message: delivered, failed, timedOut or pending. ATTEMPT
    is 1 for a first run, 2 and on for retries (NotificationTemplate spec.retries), and
    "fallback" for the fallback template's run once the delivery finally failed.

    A notification that was never created (no match, render error, refused by the API) is
    not here: use `tkn-notify explain` and the notification-failures log.

    \b
    Examples:
      tkn-notify history -n ci
      tkn-notify history -A --run build-and-test-run-8x2kq -o json
      tkn notify history --policy pipelinerun-failed-slack

    Exit codes: 0 runs found, 1 none found, 2 usage error, 3 Kubernetes API error.
    """
    if namespace and all_namespaces:
        raise click.UsageError("give either -n/--namespace or -A/--all-namespaces, not both")
    cluster = _inputs.connect(str(kubeconfig) if kubeconfig else None)
    scope = None if all_namespaces else (namespace or cluster.namespace)
    selector = diagnosis.label_selector(run=run_name, policy=policy_name)
    objects: list[dict[str, Any]] = []
    for plural in _PLURALS:
        objects.extend(_inputs.list_custom(cluster, "tekton.dev", "v1", plural, scope, selector))
    runs = diagnosis.newest_first(diagnosis.summarize_run(obj) for obj in objects)
    if limit is not None:
        runs = runs[:limit]
    where = "in any namespace" if scope is None else f"in namespace {scope}"
    if not runs:
        note(f"No notification runs {where} (label selector {selector}).")
    data = [run.as_dict() for run in runs]
    _output.emit(data, output, lambda: _text(runs, all_namespaces))
    click.get_current_context().exit(EXIT_OK if runs else EXIT_NO)


def _status(run: NotificationRun) -> str:
    if run.reason and run.reason != run.status:
        return f"{run.status} ({run.reason})"
    return run.status


def age(timestamp: str, now: datetime | None = None) -> str:
    """kubectl-style age (``42s``, ``5m``, ``3h``, ``2d``) of an RFC 3339 time."""
    try:
        then = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return "?"
    if then.tzinfo is None:
        then = then.replace(tzinfo=UTC)
    seconds = max(0, int(((now or datetime.now(UTC)) - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _text(runs: list[NotificationRun], all_namespaces: bool) -> str:
    if not runs:
        return ""
    header = [
        "NAME",
        "KIND",
        "SOURCE",
        "EVENT",
        "POLICY",
        "TEMPLATE",
        "ATTEMPT",
        "DELIVERY",
        "STATUS",
        "AGE",
    ]
    rows = [(["NAMESPACE"] if all_namespaces else []) + header]
    for run in runs:
        row = [
            run.name,
            run.kind,
            f"{run.source_kind}/{run.source_name}",
            run.event,
            run.policy,
            run.template,
            "fallback" if run.fallback_of else str(run.attempt),
            run.delivery,
            _status(run),
            age(run.created),
        ]
        rows.append(([run.namespace] if all_namespaces else []) + row)
    return _output.table(rows)
