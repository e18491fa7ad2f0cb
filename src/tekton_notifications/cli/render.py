"""``tkn-notify render``: the TaskRun one template would create for one event (not created)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from tekton_notifications import models, rendering, taskruns
from tekton_notifications.cli import _inputs, _output
from tekton_notifications.cli._output import EXIT_NO, InputError, note

#: The policy name used when no --policy is given (it only shows in labels and `policy`).
NO_POLICY = "tkn-notify"


@click.command(short_help="The TaskRun a template would create for an event (not created).")
@click.argument("template_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("event_file", metavar="EVENT_FILE")
@click.option(
    "--policy",
    "policy_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A NotificationPolicy file: its templateRef param overrides, name and namespace apply.",
)
@click.option(
    "--name",
    "template_name",
    help="Which NotificationTemplate, when TEMPLATE_FILE holds several.",
)
@click.option(
    "--dashboard-url",
    envvar="TEKTON_DASHBOARD_URL",
    metavar="URL",
    help="Tekton Dashboard base URL for event.url, as the template-renderer is configured.",
)
@_output.output_option(default="yaml")
def render(
    template_file: Path,
    event_file: str,
    policy_file: Path | None,
    template_name: str | None,
    dashboard_url: str | None,
    output: str,
) -> None:
    """Render one template against one event and print the run it would create.

    Nothing is created: the output is the TaskRun (or PipelineRun) the task-launcher would
    send to the API, built exactly as the template-renderer builds it, so it can be read,
    diffed or piped to `kubectl create -f -` to test the catalog task by hand.

    EVENT_FILE is a Tekton CloudEvent in structured JSON form or a run object saved with
    `kubectl get -o json` (`-` reads stdin). Without --policy, the run is labelled with
    policy "tkn-notify" in the template's namespace.

    \b
    Example:
      tkn-notify render examples/templates/slack-webhook.yaml \\
          examples/events/03-pipelinerun-failed.json \\
          --policy examples/policies/pipelinerun-failed-slack.yaml

    Exit codes: 0 rendered, 1 render error, 2 usage or input error.
    """
    template = _template(template_file, template_name)
    event = _inputs.load_event_file(event_file)
    policy = _policy(policy_file, template) if policy_file else None
    policy_namespace = policy.namespace if policy else template.namespace
    policy_name = policy.name if policy else NO_POLICY
    overrides: dict[str, str] = {}
    if policy is not None:
        ref = next((r for r in policy.template_refs if r.name == template.name), None)
        if ref is None:
            note(
                f"note: NotificationPolicy {policy.namespace}/{policy.name} does not reference "
                f"template {template.name!r}; rendering without param overrides"
            )
        else:
            overrides = dict(ref.params)
        if policy.namespace != template.namespace:
            note(
                f"note: the policy is in namespace {policy.namespace!r} and the template in "
                f"{template.namespace!r}: the renderer only looks in the policy's namespace"
            )
    if event.namespace != policy_namespace:
        note(
            f"note: the event is from namespace {event.namespace!r}; a policy in "
            f"{policy_namespace!r} never matches it"
        )
    settings = rendering.RenderSettings(dashboard_url=dashboard_url or None)
    try:
        compiled = rendering.compile_template(template)
        params = compiled.render(
            event=event,
            policy={"name": policy_name, "namespace": policy_namespace},
            overrides=overrides,
            settings=settings,
        )
    except rendering.RenderError as error:
        click.echo(f"Error: {error}", err=True)
        click.get_current_context().exit(EXIT_NO)
    run = taskruns.build_run(
        event=event,
        template=template,
        params=params,
        policy_namespace=policy_namespace,
        policy=policy_name,
    )
    _output.emit(run, output, lambda: _text(run))


def _template(path: Path, name: str | None) -> models.Template:
    objects = _inputs.objects_of_kind((path,), "NotificationTemplate")
    if name is not None:
        objects = [obj for obj in objects if (obj.get("metadata") or {}).get("name") == name]
    if not objects:
        wanted = f" named {name!r}" if name else ""
        raise InputError(f"{path}: no NotificationTemplate{wanted}")
    if len(objects) > 1:
        names = ", ".join(str((obj.get("metadata") or {}).get("name")) for obj in objects)
        raise InputError(f"{path} holds several NotificationTemplates ({names}): use --name")
    try:
        return models.parse_template(objects[0])
    except models.SpecError as error:
        raise InputError(f"{path}: invalid NotificationTemplate: {error}") from None


def _policy(path: Path, template: models.Template) -> models.Policy:
    objects = _inputs.objects_of_kind((path,), "NotificationPolicy")
    if not objects:
        raise InputError(f"{path}: no NotificationPolicy")
    try:
        policies = [models.parse_policy(obj) for obj in objects]
    except models.SpecError as error:
        raise InputError(f"{path}: invalid NotificationPolicy: {error}") from None
    referencing = [p for p in policies if any(r.name == template.name for r in p.template_refs)]
    return (referencing or policies)[0]


def _text(run: dict[str, Any]) -> str:
    metadata, spec = run["metadata"], run["spec"]
    ref = spec.get("taskRef") or spec.get("pipelineRef") or {}
    lines = [
        f"{run['kind']} {metadata['namespace']}/{metadata['name']}",
        f"  ref: {ref.get('name') or ref.get('resolver')}",
    ]
    for key, value in metadata["labels"].items():
        lines.append(f"  label {key}: {value}")
    lines.append("  params:")
    for param in spec["params"]:
        value = param["value"]
        if "\n" in value:
            lines.append(f"    {param['name']}: |")
            lines.append(_output.indent(value, "      "))
        else:
            lines.append(_output.indent(value, f"    {param['name']}: "))
    return "\n".join(lines) + "\n"
