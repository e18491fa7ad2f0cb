"""``tkn-notify schema``: the JSON Schema of the variables ``when`` expressions and templates
read (``event``, ``policy``, ``run``), for editors and for writing policies.

It is printed from the same tables the load-time check of ``when`` reads
(``celcheck.VARIABLES``), so it says exactly what a policy is checked against.
"""

from __future__ import annotations

import json

import click

from tekton_notifications import celcheck


@click.command("schema")
def schema() -> None:
    """Print the JSON Schema of the CEL and template variables: event, policy, run.

    `event` and `policy` are closed (a field they do not list is refused when a policy
    loads); `run` is Tekton's object, known only to its top-level keys.
    """
    click.echo(json.dumps(celcheck.schema(), indent=2))
