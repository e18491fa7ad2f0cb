"""What every command shares: exit codes, errors, ``-o text|json|yaml`` and how data is printed.

Everything is written through ``click.echo`` (stdout for results, stderr for notes and errors),
so tests drive the commands with :class:`click.testing.CliRunner`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeVar

import click
import yaml

#: The command did what was asked and found what a script hopes for: the event matched, the
#: files are clean, notification runs were found, the template rendered.
EXIT_OK: Final = 0
#: The command ran, but the answer is "no": nothing matched (or a matched template failed to
#: render), lint found problems, no notification runs, a render error.
EXIT_NO: Final = 1
#: Usage or input error: bad option, unreadable file, not a Tekton event, run not found.
EXIT_INPUT: Final = 2
#: The Kubernetes API could not be used: unreachable, no kubeconfig, 401/403, 5xx.
EXIT_CLUSTER: Final = 3

EXIT_CODES_HELP: Final = (
    "Exit codes: 0 ok / matched, 1 no match or problems found, 2 usage or input error, "
    "3 Kubernetes API error."
)

FORMATS: Final = ("text", "json", "yaml")

F = TypeVar("F", bound=Callable[..., Any])


class InputError(click.ClickException):
    """A file, event or argument the command cannot use (exit 2)."""

    exit_code = EXIT_INPUT


class ClusterError(click.ClickException):
    """The Kubernetes API could not answer (exit 3)."""

    exit_code = EXIT_CLUSTER


def output_option(default: str = "text") -> Callable[[F], F]:
    return click.option(
        "-o",
        "--output",
        type=click.Choice(FORMATS),
        default=default,
        show_default=True,
        help="Output format.",
    )


def note(message: str) -> None:
    """A remark for the human on stderr; never part of the parsable output."""
    click.echo(message, err=True)


def emit(data: Any, output: str, text: Callable[[], str]) -> None:
    """Print ``data`` as JSON or YAML, or ``text()`` for ``-o text``."""
    if output == "json":
        click.echo(to_json(data))
    elif output == "yaml":
        click.echo(to_yaml(data), nl=False)
    else:
        click.echo(text(), nl=False)


def to_json(data: Any) -> str:
    return json.dumps(plain(data), indent=2, ensure_ascii=False)


class _Dumper(yaml.SafeDumper):
    """Multi-line strings as ``|`` blocks, so rendered messages stay readable."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def to_yaml(data: Any) -> str:
    return yaml.dump(
        plain(data), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=1 << 16
    )


def plain(value: Any) -> Any:
    """Plain dicts and lists (read-only mappings and tuples do not serialise)."""
    if isinstance(value, Mapping):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value


def indent(text: str, prefix: str) -> str:
    """Every line of ``text`` behind ``prefix`` (an empty value shows as ``""``)."""
    if text == "":
        return f'{prefix}""'
    return "\n".join(prefix + line for line in text.split("\n"))


def table(rows: list[list[str]]) -> str:
    """Columns padded to their widest cell, like kubectl's output."""
    if not rows:
        return ""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
    return "\n".join(line.rstrip() for line in lines) + "\n"
