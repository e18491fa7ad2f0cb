"""Selector checks: kinds, name globs, label selectors, annotations.

Each check returns a :class:`Check` that says what was wanted and what was found, so the same
code answers "does it match?" on the hot path and "why not?" in troubleshooting.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase

from tekton_notifications.models import LabelRequirement, Selector


@dataclass(frozen=True)
class Check:
    """One field of a policy compared with one run."""

    field: str
    ok: bool
    wanted: str
    got: str


def check_selector(
    selector: Selector,
    *,
    kind: str,
    name: str,
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
) -> list[Check]:
    """Every selector check, in the order a user reads the policy; stops at the first miss."""
    checks: list[Check] = []
    if selector.kinds:
        checks.append(
            Check("kind", kind in selector.kinds, " or ".join(sorted(selector.kinds)), kind)
        )
    if selector.names and all(check.ok for check in checks):
        ok = any(fnmatchcase(name, pattern) for pattern in selector.names)
        checks.append(Check("name", ok, " or ".join(selector.names), name))
    for key, value in selector.match_labels.items():
        if not all(check.ok for check in checks):
            break
        checks.append(_equals(f"label {key}", labels.get(key), value))
    for requirement in selector.match_expressions:
        if not all(check.ok for check in checks):
            break
        checks.append(check_requirement(requirement, labels))
    for key, value in selector.match_annotations.items():
        if not all(check.ok for check in checks):
            break
        checks.append(_equals(f"annotation {key}", annotations.get(key), value))
    return checks


def selector_matches(
    selector: Selector,
    *,
    kind: str,
    name: str,
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
) -> bool:
    """``all(check.ok for check in check_selector(...))`` without building the checks: the
    hot path (:meth:`matching.PolicyIndex.match`), where nobody reads why."""
    if selector.kinds and kind not in selector.kinds:
        return False
    if selector.names and not any(fnmatchcase(name, pattern) for pattern in selector.names):
        return False
    for key, value in selector.match_labels.items():
        if labels.get(key) != value:
            return False
    for requirement in selector.match_expressions:
        if not requirement_holds(requirement, labels):
            return False
    return all(annotations.get(key) == value for key, value in selector.match_annotations.items())


def requirement_holds(requirement: LabelRequirement, labels: Mapping[str, str]) -> bool:
    """:func:`check_requirement`'s ``ok`` alone."""
    operator, value = requirement.operator, labels.get(requirement.key)
    if operator == "In":
        return value is not None and value in requirement.values
    if operator == "NotIn":
        return value is None or value not in requirement.values
    if operator == "Exists":
        return requirement.key in labels
    return requirement.key not in labels


def check_requirement(requirement: LabelRequirement, labels: Mapping[str, str]) -> Check:
    """Kubernetes label-selector semantics for one matchExpressions entry."""
    key, operator = requirement.key, requirement.operator
    present = key in labels
    got = labels[key] if present else "<absent>"
    values = ", ".join(sorted(requirement.values))
    if operator == "In":
        return Check(
            f"label {key}", present and labels[key] in requirement.values, f"in ({values})", got
        )
    if operator == "NotIn":
        ok = not present or labels[key] not in requirement.values
        return Check(f"label {key}", ok, f"not in ({values})", got)
    if operator == "Exists":
        return Check(f"label {key}", present, "exists", got)
    return Check(f"label {key}", not present, "does not exist", got)


def _equals(field: str, got: str | None, wanted: str) -> Check:
    return Check(field, got == wanted, wanted, "<absent>" if got is None else got)
