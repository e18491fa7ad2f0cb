"""In-memory views of watched Kubernetes objects: one key, one callback shape, parsed once.

Every stage keeps some custom resources in memory (policies, templates), fed by a
:class:`kube.Informer`. They share three things, kept here so no stage writes them again:

- :func:`key_of`: an object's key, ``(namespace, name)``, or ``("", name)`` for a
  cluster-scoped one (a ClusterNotificationPolicy, whatever its metadata says);
- :class:`Watcher`: what an informer feeds: the full list after every (re-)list, then each
  change;
- :class:`ParsedCache`: objects by key, parsed on change and never per event, so a broken
  object is reported once per change and a lookup is a dict read.

Pure: no I/O, no Kubernetes client.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

Key = tuple[str, str]
Obj = dict[str, Any]
T = TypeVar("T")


def key_of(obj: Mapping[str, Any], *, cluster: bool = False) -> Key:
    """``(namespace, name)`` of ``obj``; a cluster-scoped object's namespace is ``""``."""
    metadata = obj.get("metadata") or {}
    namespace = "" if cluster else str(metadata.get("namespace"))
    return (namespace, str(metadata.get("name")))


class Watcher(Protocol):
    """What an informer feeds: ``reset`` after every (re-)list, then watch events."""

    def reset(self, objects: list[Obj]) -> None: ...
    def upsert(self, obj: Obj) -> None: ...
    def delete(self, obj: Obj) -> None: ...


class KindWatcher(Protocol):
    """A view of both policy kinds, told which one each call is about."""

    def reset(self, objects: list[Obj], *, cluster: bool = False) -> None: ...
    def upsert(self, obj: Obj, *, cluster: bool = False) -> None: ...
    def delete(self, obj: Obj, *, cluster: bool = False) -> None: ...


@dataclass(frozen=True)
class Bound:
    """A :class:`Watcher` made of three functions (one flavour of a wider view)."""

    reset: Callable[[list[Obj]], None]
    upsert: Callable[[Obj], None]
    delete: Callable[[Obj], None]


def flavours(view: KindWatcher) -> tuple[Watcher, Watcher]:
    """``view`` as two watchers: namespaced policies, then cluster policies."""

    def bound(cluster: bool) -> Watcher:
        return Bound(
            reset=lambda objects: view.reset(objects, cluster=cluster),
            upsert=lambda obj: view.upsert(obj, cluster=cluster),
            delete=lambda obj: view.delete(obj, cluster=cluster),
        )

    return bound(False), bound(True)


class ParsedCache(Generic[T]):
    """Objects of one resource by :func:`key_of`, each parsed once per change.

    ``parse`` turns an object into what lookups need; None means "keep nothing for it" (an
    invalid policy never matches). Subclasses may override :meth:`observed` and
    :meth:`forgotten` to keep state beside the entries (under the same lock).
    """

    def __init__(self, parse: Callable[[Obj], T | None], *, cluster: bool = False) -> None:
        self._parse = parse
        self.cluster = cluster
        self._lock = threading.Lock()
        self._entries: dict[Key, T] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def key(self, obj: Mapping[str, Any]) -> Key:
        return key_of(obj, cluster=self.cluster)

    def reset(self, objects: list[Obj]) -> None:
        parsed = [(obj, self._parse(obj)) for obj in objects]
        listed = {self.key(obj) for obj in objects}
        with self._lock:
            for key in [key for key in self._entries if key not in listed]:
                self.forgotten(key)
            self._entries = {self.key(obj): entry for obj, entry in parsed if entry is not None}
            for obj, _ in parsed:
                self.observed(obj)

    def upsert(self, obj: Obj) -> None:
        entry = self._parse(obj)
        key = self.key(obj)
        with self._lock:
            if entry is None:
                self._entries.pop(key, None)
            else:
                self._entries[key] = entry
            self.observed(obj)

    def delete(self, obj: Obj) -> None:
        key = self.key(obj)
        with self._lock:
            self._entries.pop(key, None)
            self.forgotten(key)

    def get(self, namespace: str, name: str) -> T | None:
        with self._lock:
            return self._entries.get((namespace, name))

    def items(self) -> Iterator[tuple[Key, T]]:
        """A snapshot of the entries (safe to iterate while the informer writes)."""
        with self._lock:
            return iter(list(self._entries.items()))

    def observed(self, obj: Obj) -> None:
        """Called with the lock held for every object listed or changed."""

    def forgotten(self, key: Key) -> None:
        """Called with the lock held for every key deleted or missing from a new listing."""
