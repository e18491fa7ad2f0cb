"""The variables' tables in the docs are generated from the schema the checks read, so they
cannot drift from the code; and `tkn-notify schema --for templates` publishes the same."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest

from tekton_notifications import rendering
from tekton_notifications.cli import templatefields, variablesdoc
from tests.cli.conftest import Invoke
from tests.conftest import ROOT


def test_the_docs_tables_are_what_the_schema_gives() -> None:
    stale = variablesdoc.stale(ROOT)

    assert stale == [], (
        f"{', '.join(stale)}: the variables' table is out of date with the schema; "
        f"regenerate it with `{variablesdoc.COMMAND}`"
    )


def _fields(path: str, node: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    found = []
    for name, child in (node.get("properties") or {}).items():
        found.append((f"{path}.{name}", child))
        found.extend(_fields(f"{path}.{name}", child))
    items = node.get("items")
    if isinstance(items, Mapping):
        found.extend(_fields(f"{path}[]", items))
    return found


FIELDS = [
    pytest.param(node, id=path)
    for name, variable in templatefields.variables().items()
    if name != "run"
    for path, node in _fields(name, variable)
]


@pytest.mark.parametrize("node", FIELDS)
def test_every_field_says_what_it_holds(node: Mapping[str, Any]) -> None:
    """A new field without a description would be a bare name in the docs and in editors."""
    assert node.get("description") or node.get("enum")


def test_every_variable_a_template_sees_is_declared() -> None:
    """A variable without a schema is neither checked, nor in the docs, nor in editors."""
    undeclared = set(rendering.CONTEXT_NAMES) - set(templatefields.variables())

    assert not undeclared, (
        f"declare {', '.join(sorted(undeclared))} in celcheck.VARIABLES (when and templates) "
        "or templatefields.variables() (templates only)"
    )


def test_only_what_is_between_the_markers_is_replaced() -> None:
    begin, end = variablesdoc.begin("x"), variablesdoc.end("x")
    text = f"before\n{begin}\nold table\n{end}\nafter"

    once = variablesdoc.replaced(text, "x", "new table")

    assert once == f"before\n{begin}\nnew table\n{end}\nafter"
    assert variablesdoc.replaced(once, "x", "new table") == once


def test_a_file_without_markers_is_an_error_not_a_silent_skip() -> None:
    with pytest.raises(ValueError, match="no '<!-- BEGIN generated: x"):
        variablesdoc.replaced("no markers here", "x", "new")


def test_schema_for_templates_publishes_what_lint_checks_templates_against(
    invoke: Invoke,
) -> None:
    result = invoke("schema", "--for", "templates")

    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["properties"] == json.loads(json.dumps(templatefields.variables()))
    event = document["properties"]["event"]["properties"]
    assert {"url", "failed", "transition", "previous"} <= set(event)
    assert event["children"]["x-run-kinds"] == ["PipelineRun"]
