"""``tkn-notify schema``: the JSON Schema of the variables ``when`` expressions and templates
read (``event``, ``policy``, ``run``), for editors and for writing policies.

It is printed from the same tables the load-time check of ``when`` reads
(``celcheck.VARIABLES``), so it says exactly what a policy is checked against.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import click

from tekton_notifications import celcheck
from tekton_notifications.cli import _output, templatefields


@click.command(short_help="The JSON Schema of the CEL and template variables.")
@click.option(
    "--for",
    "audience",
    type=click.Choice(["when", "templates"]),
    default="when",
    show_default=True,
    help="The variables of a policy's `when`, or those a template sees (more event fields, "
    "and `template`).",
)
@_output.output_option(default="json")
def schema(audience: str, output: str) -> None:
    """Print the JSON Schema of the variables a `when` and a template read: event, policy, run.

    `event` and `policy` are closed: a `when` that reads a field they do not list is refused
    when the policy loads (Ready False, CELCheckFailed) and by `tkn-notify lint`. `run` is the
    run as Tekton sent it, known only to its top-level keys. Templates also see `template`,
    `subscription` (the subscription annotation that made the notification, empty for a
    policy's templateRefs) and the event fields of the rendering (`event.url`, `links`,
    `failed`, `transition`, `previous`, and in what the scheduler sends, `event.reminder` and
    `digest`): `--for templates` prints those. Fields only some run kinds fill list them in
    `x-run-kinds`.

    \b
    Examples:
      tkn-notify schema > variables.schema.json
      tkn-notify schema --for templates -o text

    Exit codes: 0 printed.
    """
    document = celcheck.schema()
    if audience == "templates":
        document["title"] = "tekton-notifications template variables"
        document["properties"] = templatefields.variables()
    _output.emit(document, output, lambda: _text(document))


def _text(document: Mapping[str, Any]) -> str:
    rows = [["VARIABLE", "TYPE"]]
    for name, variable in document["properties"].items():
        rows.extend(_rows(name, variable))
    for name, variable in document["$defs"]["templateOnly"].items():
        rows.extend([[path, f"{kind} (templates only)"] for path, kind in _rows(name, variable)])
    return _output.table(rows)


def _rows(path: str, node: Mapping[str, Any]) -> list[list[str]]:
    kind = node.get("type", "any")
    words = kind if isinstance(kind, str) else " or ".join(kind)
    if "enum" in node:
        words += f" ({', '.join(str(value) for value in node['enum'])})"
    rows = [[path, words]]
    for name, child in (node.get("properties") or {}).items():
        rows.extend(_rows(f"{path}.{name}", child))
    items = node.get("items")
    if isinstance(items, Mapping):
        for name, child in (items.get("properties") or {}).items():
            rows.extend(_rows(f"{path}[].{name}", child))
    return rows
