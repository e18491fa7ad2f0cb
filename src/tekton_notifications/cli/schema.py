"""Offline validation of NotificationPolicy/NotificationTemplate objects against the CRDs.

Stands in for the API server the way ``tests/manifests/test_crds.py`` does: the CRD's
``openAPIV3Schema`` becomes a JSON Schema (unknown fields are errors, as with kubectl's strict
field validation), defaults are applied first, list-type set/map uniqueness is checked and
every ``x-kubernetes-validations`` CEL rule is evaluated with cel-python at the node that
declares it. Messages are worded like the API server's (``spec.events[0]: Unsupported value:
"failure"``).

Needs ``jsonschema`` (installed with the ``dev`` extra); without it, :func:`load` says so and
``tkn-notify lint`` skips the schema check rather than failing.
"""

from __future__ import annotations

import copy
import functools
import importlib
import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Final

import celpy
import yaml
from celpy import celtypes
from celpy.adapter import json_to_cel
from celpy.evaluation import CELEvalError

from tekton_notifications import vocabulary

#: ``<repo>/crds`` when running from a source checkout (src/tekton_notifications/cli/schema.py),
#: else the copy the wheel ships in ``tekton_notifications/crds``.
SOURCE_CRDS: Final = next(
    (
        path
        for path in (
            Path(__file__).resolve().parents[3] / "crds",
            Path(__file__).resolve().parents[1] / "crds",
        )
        if path.is_dir()
    ),
    Path(__file__).resolve().parents[3] / "crds",
)

Object = dict[str, Any]


class SchemaUnavailable(Exception):
    """The CRDs or the jsonschema package cannot be found: the schema is not checked."""


def load(crd_dir: Path | None = None) -> CrdValidator:
    """A validator for the CRDs in ``crd_dir`` (default: the source checkout's ``crds/``)."""
    directory = crd_dir or SOURCE_CRDS
    if not directory.is_dir():
        raise SchemaUnavailable(f"no CRD directory at {directory}; give --crds DIR")
    files = tuple((path, path.stat().st_mtime_ns) for path in sorted(directory.glob("*.y*ml")))
    schemas = _crd_schemas(files)
    if not schemas:
        raise SchemaUnavailable(f"no {vocabulary.GROUP}/{vocabulary.VERSION} CRDs in {directory}")
    try:
        _jsonschema()
    except ImportError:
        raise SchemaUnavailable("the jsonschema package is not installed") from None
    return CrdValidator(schemas)


@functools.cache
def _crd_schemas(files: tuple[tuple[Path, int], ...]) -> dict[str, Object]:
    """Our CRDs' schemas by kind; parsed once per file version (pure-Python YAML took 1.5 s
    for the CRDs, and every lint and test reads them)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    schemas: dict[str, Object] = {}
    for path, _ in files:
        for doc in yaml.load_all(path.read_text(encoding="utf-8"), Loader=loader):
            if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc.get("spec") or {}
            if spec.get("group") != vocabulary.GROUP:
                continue
            for version in spec.get("versions") or []:
                if version.get("name") == vocabulary.VERSION:
                    schemas[spec["names"]["kind"]] = version["schema"]["openAPIV3Schema"]
    return schemas


class CrdValidator:
    def __init__(self, schemas: Mapping[str, Object]) -> None:
        self.schemas = dict(schemas)
        self._validators: dict[str, Any] = {}

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(sorted(self.schemas))

    def problems(self, obj: Mapping[str, Any]) -> list[tuple[str, str]]:
        """(field path, message) for everything the API server would reject in ``obj``."""
        api_version, kind = str(obj.get("apiVersion") or ""), str(obj.get("kind") or "")
        if api_version != f"{vocabulary.GROUP}/{vocabulary.VERSION}" or kind not in self.schemas:
            return [("", f"no matches for kind {kind!r} in version {api_version!r}")]
        schema = self.schemas[kind]
        errors = self._validator(kind).iter_errors(with_defaults(schema, dict(obj)))
        found = {(field_path(error), str(error.message)) for error in errors}
        return sorted(found)

    def _validator(self, kind: str) -> Any:
        if kind not in self._validators:
            self._validators[kind] = _validator_class()(
                to_json_schema(self.schemas[kind]), format_checker=_format_checker()
            )
        return self._validators[kind]


def to_json_schema(node: Object) -> Object:
    """A Kubernetes structural schema as JSON Schema, with kubectl's strict field validation."""
    out = {key: value for key, value in node.items() if key not in ("properties", "items")}
    if node.get("nullable") and "type" in node:
        out["type"] = [node["type"], "null"]
    if node.get("x-kubernetes-int-or-string"):
        out["type"] = ["integer", "string"]
    if "properties" in node:
        out["properties"] = {k: to_json_schema(v) for k, v in node["properties"].items()}
        if not node.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    if isinstance(node.get("items"), dict):
        out["items"] = to_json_schema(node["items"])
    if isinstance(node.get("additionalProperties"), dict):
        out["additionalProperties"] = to_json_schema(node["additionalProperties"])
    return out


def with_defaults(node: Object, value: Any) -> Any:
    """Apply the schema's defaults the way the API server does before validating."""
    if isinstance(value, dict):
        properties = node.get("properties", {})
        extra = node.get("additionalProperties")
        result = {
            key: with_defaults(properties.get(key, extra if isinstance(extra, dict) else {}), item)
            for key, item in value.items()
        }
        for key, child in properties.items():
            if key not in result and "default" in child:
                result[key] = copy.deepcopy(child["default"])
        return result
    if isinstance(value, list) and isinstance(node.get("items"), dict):
        return [with_defaults(node["items"], item) for item in value]
    return value


def field_path(error: Any) -> str:
    path = ""
    for part in error.absolute_path:
        if isinstance(part, int):
            path += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(part)):
            path += f".{part}"
        else:
            path += f"[{part}]"
    return path.lstrip(".")


# --------------------------------------------------------------------------------------------
# Keywords with the API server's wording, and the Kubernetes extensions


def _json_type(value: object) -> str:
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return "null" if value is None else "string"


def _jsonschema() -> Any:
    """The jsonschema module (untyped, and optional at run time: imported when needed)."""
    return importlib.import_module("jsonschema")


def _error(message: str, path: list[Any] | None = None) -> Any:
    return _jsonschema().ValidationError(message, path=path or [])


def _enum(validator: Any, enums: list[Any], instance: Any, schema: Object) -> Iterator[Any]:
    if instance not in enums:
        supported = ", ".join(json.dumps(value) for value in enums)
        yield _error(f"Unsupported value: {json.dumps(instance)}: supported values: {supported}")


def _required(validator: Any, required: list[str], instance: Any, schema: Object) -> Iterator[Any]:
    if isinstance(instance, dict):
        for name in required:
            if name not in instance:
                yield _error("Required value", [name])


def _pattern(validator: Any, pattern: str, instance: Any, schema: Object) -> Iterator[Any]:
    if isinstance(instance, str) and not re.search(pattern, instance):
        yield _error(f"Invalid value: {json.dumps(instance)}: in body should match '{pattern}'")


def _min_items(validator: Any, minimum: int, instance: Any, schema: Object) -> Iterator[Any]:
    if isinstance(instance, list) and len(instance) < minimum:
        yield _error(
            f"Invalid value: {len(instance)}: in body should have at least {minimum} items"
        )


def _additional_properties(
    validator: Any, additional: Any, instance: Any, schema: Object
) -> Iterator[Any]:
    if additional is not False:
        keyword = _jsonschema().Draft202012Validator.VALIDATORS["additionalProperties"]
        yield from keyword(validator, additional, instance, schema)
    elif isinstance(instance, dict):
        for name in instance:
            if name not in schema.get("properties", {}):
                yield _error("unknown field", [name])


def _list_type(validator: Any, list_type: str, instance: Any, schema: Object) -> Iterator[Any]:
    if not isinstance(instance, list) or list_type not in ("set", "map"):
        return
    keys = schema.get("x-kubernetes-list-map-keys", [])
    seen: set[str] = set()
    for index, item in enumerate(instance):
        if list_type == "map" and isinstance(item, dict):
            identity: Any = {key: item.get(key) for key in keys}
        else:
            identity = item
        encoded = json.dumps(identity, sort_keys=True)
        if encoded in seen:
            yield _error(f"Duplicate value: {encoded}", [index])
        seen.add(encoded)


@functools.cache
def _rule_program(rule: str) -> Any:
    environment = celpy.Environment()
    return environment.program(environment.compile(rule))


def _cel_rules(validator: Any, rules: list[Object], instance: Any, schema: Object) -> Iterator[Any]:
    for rule in rules:
        invalid = f"Invalid value: {json.dumps(_json_type(instance))}"
        try:
            result = _rule_program(rule["rule"]).evaluate({"self": json_to_cel(instance)})
        except CELEvalError as error:
            yield _error(f"{invalid}: evaluating rule {rule['rule']!r}: {error}")
            continue
        if not isinstance(result, celtypes.BoolType):
            yield _error(f"{invalid}: rule {rule['rule']!r} gave {result!r}, not a bool")
        elif not result:
            yield _error(f"{invalid}: {rule.get('message') or 'failed rule: ' + rule['rule']}")


@functools.cache
def _validator_class() -> Any:
    jsonschema = _jsonschema()
    return jsonschema.validators.extend(
        jsonschema.Draft202012Validator,
        {
            "enum": _enum,
            "required": _required,
            "pattern": _pattern,
            "minItems": _min_items,
            "additionalProperties": _additional_properties,
            "x-kubernetes-list-type": _list_type,
            "x-kubernetes-validations": _cel_rules,
        },
    )


def _format_checker() -> Any:
    return _jsonschema().Draft202012Validator.FORMAT_CHECKER
