"""The variables' tables in docs/templates.md and docs/policies.md, generated from the schema.

The fields a template and a ``when`` read are declared once, as JSON Schema next to the code
that produces them (``events.EVENT_FIELDS``, ``models.POLICY_FIELDS``,
``rendering.context.RENDER_FIELDS``); the check of ``when`` expressions, lint's check of
templates and ``tkn-notify schema`` read them. So do the docs: after adding or changing a
variable, run

    python -m tekton_notifications.cli.variablesdoc

which rewrites each table between its ``<!-- BEGIN generated: NAME ... -->`` and
``<!-- END generated: NAME -->`` markers; ``--check`` only says which files are stale (exit 1),
as tests/cli/test_variables_doc.py does. Examples are the values of the built-in sample events
(``tekton_notifications/samples``), rendered with a Dashboard at ``https://tekton.example.com``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from tekton_notifications import celcheck, rendering
from tekton_notifications.cli import samples, templatefields

#: The source checkout these docs belong to (src/tekton_notifications/cli/variablesdoc.py).
ROOT: Final = Path(__file__).resolve().parents[3]
COMMAND: Final = "python -m tekton_notifications.cli.variablesdoc"
DASHBOARD: Final = "https://tekton.example.com"
_EXAMPLE_CHARS: Final = 70
#: The sample whose values are shown first; others fill in where it has none.
_FIRST_SAMPLE: Final = "sample-pipelinerun-failed"

Schema = Mapping[str, Any]


def begin(name: str) -> str:
    return f"<!-- BEGIN generated: {name} (by `{COMMAND}`: edit the schema, not this table) -->"


def end(name: str) -> str:
    return f"<!-- END generated: {name} -->"


def template_variables_table() -> str:
    """Every field of every variable a template sees but ``run`` (Tekton's object, open below
    its top-level keys: docs/templates.md shows examples)."""
    return _table(templatefields.variables())


def when_variables_table() -> str:
    """Every field of every variable a ``when`` reads but ``run``."""
    return _table(celcheck.VARIABLES)


#: (file under ROOT, marker name, what goes between the markers).
TABLES: Final[Sequence[tuple[str, str, Callable[[], str]]]] = (
    ("docs/templates.md", "template-variables", template_variables_table),
    ("docs/policies.md", "when-variables", when_variables_table),
)


def replaced(text: str, name: str, content: str) -> str:
    """``text`` with what is between ``name``'s markers replaced by ``content``."""
    start, stop = text.find(begin(name)), text.find(end(name))
    if start < 0 or stop < start:
        raise ValueError(f"no {begin(name)!r} ... {end(name)!r} markers")
    head = text[: start + len(begin(name))]
    return f"{head}\n{content.rstrip()}\n{text[stop:]}"


def stale(root: Path = ROOT) -> list[str]:
    """The files whose generated tables differ from what the schema gives."""
    return [
        file
        for file, name, content in TABLES
        if replaced(_read(root / file), name, content()) != _read(root / file)
    ]


def write(root: Path = ROOT) -> list[str]:
    """Regenerate every table; the files that changed."""
    changed = []
    for file, name, content in TABLES:
        path = root / file
        text = _read(path)
        new = replaced(text, name, content())
        if new != text:
            path.write_text(new, encoding="utf-8")
            changed.append(file)
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args not in ([], ["--check"]):
        print(f"usage: {COMMAND} [--check]", file=sys.stderr)
        return 2
    if not (ROOT / "docs").is_dir():
        print(f"no docs/ at {ROOT}: run {COMMAND} from a source checkout", file=sys.stderr)
        return 2
    if args == ["--check"]:
        files = stale()
        for file in files:
            print(f"{file}: the variables' table is stale; run {COMMAND}", file=sys.stderr)
        return 1 if files else 0
    for file in write():
        print(f"wrote {file}")
    return 0


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


# -- the table ---------------------------------------------------------------------------------


def _table(variables: Mapping[str, Schema]) -> str:
    examples = _examples()
    lines = ["| Field | Type | Meaning | Example |", "| --- | --- | --- | --- |"]
    for name, schema in variables.items():
        if name == "run":
            continue
        for path, node in _fields(name, schema):
            lines.append(
                "| "
                + " | ".join(
                    (
                        f"`{path}`",
                        _type(node),
                        _cell(_meaning(node)),
                        _cell(_example(examples, path)),
                    )
                )
                + " |"
            )
    return "\n".join(lines)


def _fields(path: str, node: Schema) -> Iterator[tuple[str, Schema]]:
    """Each field below ``path``, depth first; list items as ``path[].field``."""
    for name, child in (node.get("properties") or {}).items():
        yield f"{path}.{name}", child
        yield from _fields(f"{path}.{name}", child)
    items = node.get("items")
    if isinstance(items, Mapping):
        yield from _fields(f"{path}[]", items)


def _type(node: Schema) -> str:
    kind = node.get("type", "any")
    words = kind if isinstance(kind, str) else " or ".join(kind)
    if node.get("type") == "object" and isinstance(node.get("additionalProperties"), Mapping):
        words = "map of " + str(node["additionalProperties"].get("type", "any"))
    return words


def _meaning(node: Schema) -> str:
    parts = [str(node.get("description", ""))]
    if "enum" in node:
        parts.append("one of " + ", ".join(f"`{json.dumps(value)}`" for value in node["enum"]))
    kinds = node.get("x-run-kinds")
    if kinds:
        parts.append(f"set for {' and '.join(kinds)} events only (`x-run-kinds`)")
    return "; ".join(part for part in parts if part)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;").replace("\n", " ")


def _examples() -> list[dict[str, Any]]:
    """The variables of each built-in sample, the first sample's first."""
    settings = rendering.RenderSettings(dashboard_url=DASHBOARD)
    found = []
    for event in sorted(samples.builtin(), key=lambda sample: sample.id != _FIRST_SAMPLE):
        policy = {"name": "notify-failures", "namespace": "ci", "kind": "NotificationPolicy"}
        template = {"name": "slack-webhook", "namespace": "ci"}
        context = rendering.render_context(
            event, policy=policy, template=template, settings=settings
        )
        found.append(context)
    return found


def _example(contexts: list[dict[str, Any]], path: str) -> str:
    """The first non-empty value at ``path`` among the samples, as JSON, shortened."""
    found = [_lookup(context, path) for context in contexts]
    filled = [value for value in found if value not in (None, "", [], {})]
    known = [value for value in found if value is not None]
    value = (filled or known or [None])[0]
    text = json.dumps(value, sort_keys=False)
    if len(text) > _EXAMPLE_CHARS:
        text = text[: _EXAMPLE_CHARS - 1] + "…"
    return f"`{text}`"


def _lookup(value: Any, path: str) -> Any:
    for key in path.split("."):
        many = key.endswith("[]")
        key = key.removesuffix("[]")
        value = value.get(key) if isinstance(value, Mapping) else None
        if many:
            value = value[0] if isinstance(value, list) and value else None
    return value


if __name__ == "__main__":
    raise SystemExit(main())
