"""Knative Trigger filters: the `filters` dialects and the older `filter.attributes`."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, TypeAlias, assert_never

_ATTRIBUTE_NAME = re.compile(r"^[a-z][a-z0-9]*$")
# Context attributes Knative always finds (as "" when unset); anything else is an extension.
_CORE_ATTRIBUTES: Final = frozenset(
    {
        "specversion",
        "id",
        "source",
        "type",
        "subject",
        "time",
        "dataschema",
        "schemaurl",
        "datacontenttype",
        "datamediatype",
        "datacontentencoding",
    }
)

# --- filters -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExactFilter:
    attribute: str
    value: str


@dataclass(frozen=True)
class PrefixFilter:
    attribute: str
    value: str


@dataclass(frozen=True)
class SuffixFilter:
    attribute: str
    value: str


@dataclass(frozen=True)
class AllFilter:
    filters: tuple[Filter, ...]


@dataclass(frozen=True)
class AnyFilter:
    filters: tuple[Filter, ...]


@dataclass(frozen=True)
class NotFilter:
    filter: Filter


@dataclass(frozen=True)
class AttributesFilter:
    """``filter.attributes``: exact matches; a ``""`` value accepts any non-empty value."""

    attributes: tuple[tuple[str, str], ...]


Filter: TypeAlias = (
    ExactFilter | PrefixFilter | SuffixFilter | AllFilter | AnyFilter | NotFilter | AttributesFilter
)
_DIALECTS: Final = ("exact", "prefix", "suffix", "all", "any", "not", "cesql")


def parse_filters(trigger_spec: Mapping[str, object]) -> tuple[Filter, ...]:
    """The filters of a Trigger ``spec``, AND-ed; ``()`` lets every event through.

    As in Knative, a non-empty ``filters`` wins over ``filter.attributes``. Raises ValueError
    for anything Knative's webhook would reject, and for ``cesql``, which this tool lacks.
    """
    filters = trigger_spec.get("filters")
    if filters is not None and not isinstance(filters, list):
        raise ValueError("filters: must be a list")
    if filters:
        return tuple(_parse_filter(item, f"filters[{i}]") for i, item in enumerate(filters))
    legacy = trigger_spec.get("filter")
    if legacy is None:
        return ()
    if not isinstance(legacy, Mapping) or set(legacy) - {"attributes"}:
        raise ValueError("filter: only `attributes` is allowed")
    attributes = legacy.get("attributes") or {}
    if not isinstance(attributes, Mapping):
        raise ValueError("filter.attributes: must be a mapping")
    pairs: list[tuple[str, str]] = []
    for name, value in attributes.items():
        _check_attribute_name(name, "filter.attributes")
        if not isinstance(value, str):
            raise ValueError(f"filter.attributes.{name}: must be a string, got {value!r}")
        pairs.append((name, value))
    return (AttributesFilter(tuple(sorted(pairs))),) if pairs else ()


def _parse_filter(item: object, where: str) -> Filter:
    if not isinstance(item, Mapping):
        raise ValueError(f"{where}: a filter must be a mapping")
    unknown = sorted(str(key) for key in item if key not in _DIALECTS)
    if unknown:
        raise ValueError(f"{where}: unknown filter dialect(s) {unknown}")
    present = [key for key in _DIALECTS if item.get(key) not in (None, "", {}, [])]
    if len(present) != 1:
        raise ValueError(f"{where}: a filter needs exactly one dialect, found {present or 'none'}")
    (dialect,) = present
    value = item[dialect]
    match dialect:
        case "exact":
            return ExactFilter(*_single_attribute(value, f"{where}.exact"))
        case "prefix":
            return PrefixFilter(*_single_attribute(value, f"{where}.prefix"))
        case "suffix":
            return SuffixFilter(*_single_attribute(value, f"{where}.suffix"))
        case "all" | "any":
            if not isinstance(value, list):
                raise ValueError(f"{where}.{dialect}: must be a non-empty list of filters")
            nested = tuple(_parse_filter(f, f"{where}.{dialect}[{i}]") for i, f in enumerate(value))
            return AllFilter(nested) if dialect == "all" else AnyFilter(nested)
        case "not":
            return NotFilter(_parse_filter(value, f"{where}.not"))
        case _:  # "cesql"
            raise ValueError(
                f"{where}: cesql filters are not supported by the development router; "
                "express the Trigger with exact/prefix/suffix/all/any/not"
            )


def _single_attribute(value: object, where: str) -> tuple[str, str]:
    if not isinstance(value, Mapping) or len(value) != 1:
        raise ValueError(f"{where}: must map exactly one attribute to a value")
    ((name, expected),) = value.items()
    _check_attribute_name(name, where)
    if not isinstance(expected, str) or not expected:
        raise ValueError(f"{where}.{name}: value must be a non-empty string")
    return name, expected


def _check_attribute_name(name: object, where: str) -> None:
    if not isinstance(name, str) or not _ATTRIBUTE_NAME.match(name):
        raise ValueError(f"{where}: invalid attribute name {name!r} (lowercase letters, digits)")


def matches(trigger_filters: Sequence[Filter], attributes: Mapping[str, str]) -> bool:
    """Whether an event with these context attributes (and extensions) passes all filters."""
    return all(_passes(f, attributes) for f in trigger_filters)


def _lookup(attributes: Mapping[str, str], name: str) -> str | None:
    if name in attributes:
        return attributes[name]
    if name == "datamediatype":
        return attributes.get("datacontenttype", "").split(";")[0].strip()
    if name == "schemaurl":
        return attributes.get("dataschema", "")
    return "" if name in _CORE_ATTRIBUTES else None


def _passes(f: Filter, attributes: Mapping[str, str]) -> bool:
    match f:
        case ExactFilter(name, expected):
            return _lookup(attributes, name) == expected
        case PrefixFilter(name, expected):
            return (_lookup(attributes, name) or "").startswith(expected)
        case SuffixFilter(name, expected):
            return (_lookup(attributes, name) or "").endswith(expected)
        case AllFilter(nested):
            return all(_passes(n, attributes) for n in nested)
        case AnyFilter(nested):
            return any(_passes(n, attributes) for n in nested)
        case NotFilter(inner):
            return not _passes(inner, attributes)
        case AttributesFilter(pairs):
            for name, expected in pairs:
                value = _lookup(attributes, name)
                if not value or (expected and value != expected):
                    return False
            return True
        case _:
            assert_never(f)
