"""``tkn-notify``: troubleshoot tekton-notifications (also ``tkn notify`` as a tkn plugin).

One module per command; each only loads its inputs (files, or the cluster through the
official client), calls the core and formats the answer. The answers themselves come from the
core the functions run (``diagnosis``, ``matching``, ``rendering``, ``taskruns``), so the CLI
says what the functions would do, not an approximation.

tkn runs a ``tkn-<name>`` executable from its plugin directory (``~/.config/tkn/plugins`` or
``$TKN_PLUGINS_DIR``) as ``tkn <name>``: link the installed ``tkn-notify`` script there and
``tkn notify explain ...`` works (docs/troubleshooting.md).
"""

from __future__ import annotations

import os

import click

from tekton_notifications import cel
from tekton_notifications.cli import variables
from tekton_notifications.cli._output import EXIT_CODES_HELP
from tekton_notifications.cli.explain import explain
from tekton_notifications.cli.history import history
from tekton_notifications.cli.lint import lint
from tekton_notifications.cli.render import render

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=CONTEXT_SETTINGS, epilog=EXIT_CODES_HELP)
@click.version_option(package_name="tekton-notifications", prog_name="tkn-notify")
def cli() -> None:
    """Troubleshoot and track Tekton notifications (tekton-notifications, TEP-0032).

    Run `tkn-notify COMMAND --help` for each command's options and examples.
    """


cli.add_command(explain)
cli.add_command(render)
cli.add_command(lint)
cli.add_command(history)
cli.add_command(variables.schema)  # a module name clash: cli.schema checks CRDs


def main() -> None:
    """The ``tkn-notify`` console script; it evaluates CEL with the engine the functions are
    configured with (``NOTIFICATIONS_CEL_ENGINE``), so explain decides as the filter does."""
    cel.configure(os.environ)
    cli(prog_name="tkn-notify")


__all__ = ["cli", "main"]
