"""The caches every stage keeps: one key for namespaced and cluster-scoped objects, each
object parsed once per change, and a re-list that forgets what is gone (and only that)."""

from __future__ import annotations

from typing import Any

import pytest

from tekton_notifications.caches import Key, ParsedCache, flavours, key_of


def obj(name: str, namespace: str | None = "ci", **spec: Any) -> dict[str, Any]:
    metadata = {"name": name} if namespace is None else {"name": name, "namespace": namespace}
    return {"metadata": metadata, "spec": spec}


@pytest.mark.parametrize(
    ("item", "cluster", "key"),
    [
        pytest.param(obj("p"), False, ("ci", "p"), id="namespaced"),
        pytest.param(obj("p", None), True, ("", "p"), id="cluster-scoped"),
        # A cluster-scoped object is keyed by name only, whatever its metadata says.
        pytest.param(obj("p", "ci"), True, ("", "p"), id="cluster-scoped with a namespace"),
    ],
)
def test_one_key_for_both_scopes(item: dict[str, Any], cluster: bool, key: Key) -> None:
    assert key_of(item, cluster=cluster) == key


class Counting(ParsedCache[str]):
    """Parses ``spec.value``; None (kept out) when it is missing. Records the hooks."""

    def __init__(self) -> None:
        self.parsed: list[str] = []
        self.forgot: list[Key] = []
        super().__init__(self._count)

    def _count(self, item: dict[str, Any]) -> str | None:
        self.parsed.append(item["metadata"]["name"])
        value = item["spec"].get("value")
        return None if value is None else str(value)

    def forgotten(self, key: Key) -> None:
        self.forgot.append(key)


def test_each_object_is_parsed_once_per_change_and_looked_up_by_key() -> None:
    cache = Counting()
    cache.reset([obj("a", value="1"), obj("b", value="2")])
    assert [cache.get("ci", "a"), cache.get("ci", "b"), cache.get("ci", "c")] == ["1", "2", None]
    for _ in range(3):
        cache.get("ci", "a")
    assert cache.parsed == ["a", "b"]
    cache.upsert(obj("a", value="3"))
    assert cache.get("ci", "a") == "3"
    assert cache.parsed == ["a", "b", "a"]


@pytest.mark.parametrize(
    ("change", "left", "forgot"),
    [
        pytest.param(lambda c: c.delete(obj("a")), {"b"}, [("ci", "a")], id="deleted"),
        pytest.param(
            lambda c: c.reset([obj("b", value="2")]), {"b"}, [("ci", "a")], id="gone from a list"
        ),
        # Kept out of lookups, but still listed: its state (strikes, say) is not forgotten.
        pytest.param(lambda c: c.upsert(obj("a")), {"b"}, [], id="no longer parses"),
    ],
)
def test_what_is_gone_is_forgotten_and_only_that(
    change: Any, left: set[str], forgot: list[Key]
) -> None:
    cache = Counting()
    cache.reset([obj("a", value="1"), obj("b", value="2")])
    change(cache)
    assert {name for (_, name), _ in cache.items()} == left
    assert cache.forgot == forgot


def test_both_policy_kinds_are_fed_through_one_callback_shape() -> None:
    calls: list[tuple[str, bool]] = []

    class View:
        def reset(self, objects: list[dict[str, Any]], *, cluster: bool = False) -> None:
            calls.append(("reset", cluster))

        def upsert(self, item: dict[str, Any], *, cluster: bool = False) -> None:
            calls.append(("upsert", cluster))

        def delete(self, item: dict[str, Any], *, cluster: bool = False) -> None:
            calls.append(("delete", cluster))

    namespaced, cluster = flavours(View())
    namespaced.reset([])
    cluster.upsert(obj("p", None))
    cluster.delete(obj("p", None))
    assert calls == [("reset", False), ("upsert", True), ("delete", True)]
