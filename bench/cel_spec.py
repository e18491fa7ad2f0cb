"""The CEL specification's conformance data, read from a local cel-spec checkout.

``tests/simple/testdata/*.textproto`` is protocol-buffer text format; protobuf is not a
dependency here, so :func:`parse_textproto` reads the little of the format those files use.
Values come out as plain Python values (:class:`Uint` and :class:`TypeName` where Python has
no equivalent); a test that needs what the engines are not given here (protobuf messages,
containers, extension functions) is reported as not applicable, with the reason.
"""

from __future__ import annotations

import datetime
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

#: The spec files read, in this order (the features policies use; the rest need protobuf
#: messages or extensions).
SPEC_FILES: Final = (
    "basic",
    "comparisons",
    "logic",
    "macros",
    "string",
    "timestamps",
    "fields",
    "conversions",
    "integer_math",
    "lists",
)
ERROR: Final = "error"

# -- values ---------------------------------------------------------------------------------


class Uint(int):
    """A CEL ``uint`` (Python has one int type)."""


@dataclass(frozen=True)
class TypeName:
    """A CEL type value, by name (``int``, ``google.protobuf.Timestamp``)."""

    name: str


class NotApplicable(Exception):
    """A spec test that needs what no engine here is given (protobuf messages, extensions)."""


def canonical(value: Any, *, uint: bool = True) -> Any:
    """A form that compares CEL values by type and value (``1``, ``1u`` and ``1.0`` differ;
    NaN equals NaN). ``uint=False`` folds uint into int, for engines that do not tell them
    apart in results."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, Uint):
        return ("uint" if uint else "int", int(value))
    if isinstance(value, int):
        return ("int", value)
    if isinstance(value, float):
        return ("double", "nan" if math.isnan(value) else value)
    if isinstance(value, str):
        return ("string", value)
    if isinstance(value, bytes):
        return ("bytes", value)
    if value is None:
        return ("null",)
    if isinstance(value, list | tuple):
        return ("list", tuple(canonical(item, uint=uint) for item in value))
    if isinstance(value, dict):
        return (
            "map",
            frozenset((canonical(k, uint=uint), canonical(v, uint=uint)) for k, v in value.items()),
        )
    if isinstance(value, datetime.datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=datetime.UTC)
        return ("timestamp", aware.astimezone(datetime.UTC))
    if isinstance(value, datetime.timedelta):
        return ("duration", value)
    if isinstance(value, TypeName):
        return ("type", value.name)
    return ("other", repr(value))


# -- the CEL specification's conformance data ------------------------------------------------

_TOKEN = re.compile(
    r"""\s+|\#[^\n]*
    |(?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
    |(?P<extension>\[[A-Za-z0-9_./]+\])
    |(?P<punct>[{}<>:,;\[\]])
    |(?P<word>[A-Za-z0-9_.+\-]+)""",
    re.X,
)
_ESCAPES: Final = {
    "n": b"\n",
    "t": b"\t",
    "r": b"\r",
    "a": b"\a",
    "b": b"\b",
    "f": b"\f",
    "v": b"\v",
    "\\": b"\\",
    "'": b"'",
    '"': b'"',
    "?": b"?",
}


def _unescape(quoted: str) -> bytes:
    body, out, i = quoted[1:-1], bytearray(), 0
    while i < len(body):
        char = body[i]
        if char != "\\":
            out += char.encode()
            i += 1
            continue
        code = body[i + 1]
        if code in _ESCAPES:
            out += _ESCAPES[code]
            i += 2
        elif code in "xX":
            digits = re.match(r"[0-9A-Fa-f]{1,2}", body[i + 2 :])
            assert digits is not None
            out.append(int(digits.group(0), 16))
            i += 2 + len(digits.group(0))
        elif code in "uU":
            width = 4 if code == "u" else 8
            out += chr(int(body[i + 2 : i + 2 + width], 16)).encode()
            i += 2 + width
        else:
            digits = re.match(r"[0-7]{1,3}", body[i + 1 :])
            assert digits is not None, quoted
            out.append(int(digits.group(0), 8))
            i += 1 + len(digits.group(0))
    return bytes(out)


Message = dict[str, list[Any]]


def parse_textproto(text: str) -> Message:
    """Protocol-buffer text format into nested dicts of lists (every field repeated);
    strings are bytes (text format strings are byte strings), other scalars words."""
    tokens: list[tuple[str, Any]] = []
    for found in _TOKEN.finditer(text):
        kind = found.lastgroup
        if kind is None:
            continue
        value = found.group(kind)
        if kind == "string":
            if tokens and tokens[-1][0] == "string":  # adjacent literals concatenate
                tokens[-1] = ("string", tokens[-1][1] + _unescape(value))
                continue
            tokens.append((kind, _unescape(value)))
        else:
            tokens.append((kind, value))
    position = 0

    def message(closing: str | None) -> Message:
        nonlocal position
        fields: Message = {}
        while position < len(tokens):
            kind, value = tokens[position]
            if closing is not None and (kind, value) == ("punct", closing):
                position += 1
                return fields
            if (kind, value) in {("punct", ","), ("punct", ";")}:
                position += 1
                continue
            name = value
            position += 1
            if tokens[position] == ("punct", ":"):
                position += 1
            fields.setdefault(name, []).extend(values())
        return fields

    def values() -> list[Any]:
        nonlocal position
        kind, value = tokens[position]
        if (kind, value) == ("punct", "["):
            position += 1
            items: list[Any] = []
            while tokens[position] != ("punct", "]"):
                if tokens[position] == ("punct", ","):
                    position += 1
                    continue
                items.extend(values())
            position += 1
            return items
        position += 1
        if (kind, value) in {("punct", "{"), ("punct", "<")}:
            return [message("}" if value == "{" else ">")]
        return [value]

    return message(None)


def _one(fields: Message, name: str, default: Any = None) -> Any:
    found = fields.get(name)
    return found[0] if found else default


def spec_value(fields: Message) -> Any:
    """A ``cel.expr.Value`` as a plain value."""
    for name, items in fields.items():
        item = items[0]
        if name == "int64_value":
            return int(item)
        if name == "uint64_value":
            return Uint(int(item))
        if name == "double_value":
            return float(item)
        if name == "string_value":
            return item.decode()
        if name == "bytes_value":
            return item
        if name == "bool_value":
            return item == "true"
        if name == "null_value":
            return None
        if name == "type_value":
            return TypeName(item.decode())
        if name == "list_value":
            return [spec_value(v) for v in item.get("values", [])]
        if name == "map_value":
            return {
                _hashable(spec_value(_one(e, "key"))): spec_value(_one(e, "value"))
                for e in item.get("entries", [])
            }
        raise NotApplicable(f"{name} values")
    return None  # an empty Value message: null


def _hashable(value: Any) -> Any:
    if isinstance(value, list | dict):
        raise NotApplicable("unhashable map key")
    return value


_PRIMITIVES: Final = {
    "BOOL": "bool",
    "INT64": "int",
    "UINT64": "uint",
    "DOUBLE": "double",
    "STRING": "string",
    "BYTES": "bytes",
}


def spec_type(fields: Message) -> Any:
    if "primitive" in fields:
        return _PRIMITIVES.get(_one(fields, "primitive"), "dyn")
    if "list_type" in fields:
        return ("list", spec_type(_one(_one(fields, "list_type"), "elem_type")))
    if "map_type" in fields:
        entry = _one(fields, "map_type")
        return ("map", spec_type(_one(entry, "key_type")), spec_type(_one(entry, "value_type")))
    if "well_known" in fields:
        return {"TIMESTAMP": "timestamp", "DURATION": "duration"}.get(
            _one(fields, "well_known"), "dyn"
        )
    if "null" in fields:
        return "null"
    if "message_type" in fields or "abstract_type" in fields:
        raise NotApplicable("message-typed variable")
    return "dyn"


@dataclass(frozen=True)
class SpecTest:
    group: str
    id: str
    source: str
    expected: Any
    variables: Mapping[str, Any] = field(default_factory=dict)
    declarations: Mapping[str, Any] = field(default_factory=dict)
    checked: bool = True


_PROTO_WORDS = re.compile(r"TestAllTypes|google\.protobuf\.|\.proto|NestedEnum|GlobalEnum")


def spec_tests(directory: Path, files: Sequence[str] = SPEC_FILES) -> Iterator[SpecTest | str]:
    """Each applicable test, or for each other one the reason it is not applicable."""
    for name in files:
        path = directory / "tests" / "simple" / "testdata" / f"{name}.textproto"
        document = parse_textproto(path.read_text())
        for section in document.get("section", []):
            for test in section.get("test", []):
                test_id = f"{name}/{_one(section, 'name').decode()}/{_one(test, 'name').decode()}"
                try:
                    yield _spec_test(name, test_id, test)
                except NotApplicable as reason:
                    yield f"{test_id}: {reason}"


def _spec_test(group: str, test_id: str, test: Message) -> SpecTest:
    source = _one(test, "expr").decode()
    for unsupported in ("container", "disable_macros", "check_only", "unknown", "any_unknowns"):
        if unsupported in test:
            raise NotApplicable(unsupported)
    if _PROTO_WORDS.search(source):
        raise NotApplicable("protobuf messages")
    if "value" in test:
        expected = spec_value(_one(test, "value"))
    elif "typed_result" in test:
        expected = spec_value(_one(_one(test, "typed_result"), "result"))
    elif "eval_error" in test or "any_eval_errors" in test:
        expected = ERROR
    else:
        expected = True  # the format's default: a true bool
    declarations: dict[str, Any] = {}
    for declaration in test.get("type_env", []):
        if "function" in declaration:
            raise NotApplicable("function declarations")
        ident = _one(declaration, "ident", {})
        declarations[_one(declaration, "name").decode()] = spec_type(_one(ident, "type", {}))
    variables: dict[str, Any] = {}
    for binding in test.get("bindings", []):
        key = _one(binding, "key").decode()
        inner = _one(_one(binding, "value"), "value")
        if inner is None:
            raise NotApplicable("non-value binding")
        variables[key] = spec_value(inner)
        declarations.setdefault(key, "dyn")
    checked = _one(test, "disable_check") != "true"
    return SpecTest(group, test_id, source, expected, variables, declarations, checked)
