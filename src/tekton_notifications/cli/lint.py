"""``tkn-notify lint``: validate policies and templates offline, before a run event does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from tekton_notifications import rendering
from tekton_notifications.cli import _inputs, _output, checks, samples, schema, tasks
from tekton_notifications.cli._output import EXIT_NO, EXIT_OK, InputError, note


@click.command(short_help="Validate policies and templates offline.")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--crds",
    "crd_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    metavar="DIR",
    help="Directory of the CRDs to validate against (default: crds/ of the source checkout).",
)
@click.option(
    "--tasks",
    "task_paths",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    metavar="DIR_OR_FILE",
    help="Task/Pipeline YAML (e.g. a catalog checkout): check template params against them.",
)
@click.option(
    "--event",
    "event_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    metavar="FILE",
    help="Render templates against these events instead of the built-in samples (repeatable).",
)
@click.option(
    "--dashboard-url",
    envvar="TEKTON_DASHBOARD_URL",
    metavar="URL",
    help="Render with this Tekton Dashboard URL (event.url); without it event.url is None.",
)
@_output.output_option()
def lint(
    paths: tuple[Path, ...],
    crd_dir: Path | None,
    task_paths: tuple[Path, ...],
    event_files: tuple[Path, ...],
    dashboard_url: str | None,
    output: str,
) -> None:
    """Check NotificationPolicy and NotificationTemplate files for every known problem.

    PATH is a YAML file or a directory (searched recursively). Pipelines, Tasks, runs and
    Namespaces are checked for subscription annotations; other kinds are ignored.

    \b
    Checks, in order:
      schema    what the API server would refuse (the CRD's openAPIV3Schema and rules)
      spec      what the functions refuse when they load the object
      cel       a `when` that does not compile, or reads an unknown variable
      template  Jinja2 syntax errors, unknown filters, unknown variables
      render    params that fail to render for sample events the policy can match
                (built-in samples of every kind and event, or --event files)
      ref       templateRefs to a template that is not among the files
      task      params the --tasks Task does not declare, required ones left unset
      subscription  annotations notifications.tekton.dev/subscribe.<event>.<template> and
                unsubscribe[.<event>] on Pipelines, Tasks, runs and Namespaces: the form,
                the key's length (at most 63 characters after notifications.tekton.dev/),
                the event, the template among the files, a policy among the files
                allowing it (spec.subscriptions)

    Each problem is printed as FILE: OBJECT: FIELD: MESSAGE [CHECK].

    \b
    Example:
      tkn-notify lint examples/policies examples/templates --tasks ../shared/catalog

    Exit codes: 0 no problems, 1 problems found, 2 usage or input error.
    """
    try:
        validator: schema.CrdValidator | None = schema.load(crd_dir)
    except schema.SchemaUnavailable as error:
        note(f"note: schema not checked: {error}")
        validator = None
    definitions = None
    if task_paths:
        definitions = tasks.task_definitions(
            _inputs.objects_of_kind(task_paths, "Task", "ClusterTask", "Pipeline")
        )
        if not definitions:
            raise InputError("--tasks: no Task or Pipeline found")
    events = [_inputs.load_event_file(str(path)) for path in event_files] or samples.builtin()
    linter = checks.Linter(
        schema=validator,
        tasks=definitions,
        samples=events,
        settings=rendering.RenderSettings(dashboard_url=dashboard_url or None),
    )
    files = _inputs.files_under(paths)
    for path in files:
        shown = _shown(path)
        try:
            documents = _inputs.read_documents(path)
        except _inputs.BadFile as error:
            linter.add_file_problem(shown, error.message)
            continue
        for document in documents:
            linter.add_document(shown, document.obj)
    problems = linter.run()
    if not linter.entries and not linter.subscribers and not problems:
        raise InputError(
            f"no NotificationPolicy, NotificationTemplate or subscription annotation in "
            f"{len(files)} file(s) under " + ", ".join(map(str, paths))
        )
    report: dict[str, Any] = {
        "files": len(files),
        "objects": len(linter.entries) + len(linter.subscribers),
        "schemaChecked": validator is not None,
        "tasksChecked": definitions is not None,
        "problems": [problem.as_dict() for problem in problems],
    }
    _output.emit(report, output, lambda: _text(report, problems))
    click.get_current_context().exit(EXIT_NO if problems else EXIT_OK)


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _text(report: dict[str, Any], problems: list[checks.Problem]) -> str:
    lines = []
    for problem in problems:
        where = ": ".join(part for part in (problem.file, problem.object, problem.field) if part)
        lines.append(f"{where}: {problem.message} [{problem.check}]")
    objects, files = report["objects"], report["files"]
    if problems:
        affected = len({(p.file, p.object) for p in problems})
        lines.append(
            f"{len(problems)} problem(s) in {affected} of {objects} object(s), {files} file(s)."
        )
    else:
        lines.append(f"✓ {objects} object(s) in {files} file(s): no problems.")
    return "\n".join(lines) + "\n"
