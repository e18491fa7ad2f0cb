"""`tkn-notify schema` publishes the variables a ``when`` and a template read, from the same
tables the load-time check of ``when`` reads."""

from __future__ import annotations

import json

from tekton_notifications import celcheck
from tests.cli.conftest import Invoke
from tests.conftest import load_event


def test_schema_prints_the_json_schema_the_check_reads(invoke: Invoke) -> None:
    result = invoke("schema")

    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document == celcheck.schema()
    assert set(document["properties"]) == {"event", "policy", "run", "subscription"}
    subscription = document["properties"]["subscription"]
    assert subscription["properties"]["recipients"]["type"] == "array"
    event = load_event("08-pipelinerun-failed.json").view()
    assert list(document["properties"]["event"]["properties"]) == list(event)
    run = document["properties"]["run"]
    assert list(run["properties"]) == ["apiVersion", "kind", "metadata", "spec", "status"]
    assert run["properties"]["metadata"] == {"type": "object"}  # open below the top level


def test_text_lists_one_variable_or_field_per_line(invoke: Invoke) -> None:
    result = invoke("schema", "-o", "text")

    assert result.exit_code == 0, result.output
    lines = [" ".join(line.split()) for line in result.stdout.splitlines()]
    assert "event.duration number or null" in lines
    assert "event.kind string (TaskRun, PipelineRun, CustomRun)" in lines
    assert "event.children[].pipelineTaskName string" in lines
    assert "run.metadata object" in lines
