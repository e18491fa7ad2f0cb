"""The object store: objects, the resourceVersion counter, the event history and watches.

It knows no HTTP: the server turns its errors into responses.
"""

from __future__ import annotations

import bisect
import copy
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tekton_notifications.devtools.kubeapi.errors import (
    KubeError,
    _conflict,
    _invalid,
    _not_found,
    _resource,
    status_body,
)
from tekton_notifications.devtools.kubeapi.kinds import (
    _DEFAULT_GROUPS,
    _PLURALS,
    CLUSTER_SCOPED_KINDS,
    Obj,
    plural_for_kind,
    split_api_version,
)
from tekton_notifications.devtools.kubeapi.patches import json_patch, merge_patch
from tekton_notifications.devtools.kubeapi.selectors import Selector

_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # the one the real API server uses


def _now(clock: Callable[[], float] = time.time) -> str:
    return datetime.fromtimestamp(clock(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_Key = tuple[str, str, str, str]  # (group, plural, namespace or "", name)


@dataclass(frozen=True)
class _Event:
    rv: int
    type: str
    key: _Key
    obj: Obj
    old: Obj | None  # previous state, for MODIFIED (selector transitions)


class ObjectStore:
    """Thread-safe in-memory object store with a global resourceVersion and an event history.

    Objects are keyed by ``(group, plural, namespace or "", name)``; the version is ignored.
    Direct calls bypass HTTP semantics (``create`` keeps ``status``, for preloading fixtures).
    """

    def __init__(
        self, history_limit: int = 1000, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.history_limit = history_limit
        #: Seconds since the epoch for the timestamps it sets (a demo may fast-forward it).
        self.clock = clock
        self._cond = threading.Condition()
        self._objects: dict[_Key, Obj] = {}
        self._rv = 1  # never "0": watch semantics give resourceVersion=0 the meaning "any"
        self._history: list[_Event] = []
        self._floor = 0  # events with rv <= floor may have been discarded
        self._plurals: dict[str, str] = {}
        self._kinds: dict[tuple[str, str], str] = {}
        self._cluster_scoped = set(CLUSTER_SCOPED_KINDS)
        self._versions: dict[str, list[str]] = {g: list(v) for g, v in _DEFAULT_GROUPS.items()}

    # -- kinds ---------------------------------------------------------------------
    def plural_for(self, kind: str) -> str:
        return self._plurals.get(kind) or plural_for_kind(kind)

    def is_namespaced(self, kind: str) -> bool:
        return kind not in self._cluster_scoped

    def register_kind(self, group: str, kind: str, plural: str, namespaced: bool = True) -> None:
        """Teach the store a kind (done automatically when a CRD object is created)."""
        with self._cond:
            self._plurals[kind] = plural
            self._kinds[(group, plural)] = kind
            (self._cluster_scoped.discard if namespaced else self._cluster_scoped.add)(kind)

    def kind_for(self, group: str, plural: str) -> str:
        with self._cond:
            if (group, plural) in self._kinds:
                return self._kinds[(group, plural)]
            for kind, known in _PLURALS.items():
                if known == plural:
                    return kind
        stem = plural[:-3] + "y" if plural.endswith("ies") else plural.removesuffix("s")
        return stem[:1].upper() + stem[1:]

    def api_groups(self) -> dict[str, list[str]]:
        with self._cond:
            return {g: list(v) for g, v in self._versions.items()}

    @property
    def resource_version(self) -> int:
        with self._cond:
            return self._rv

    # -- reads -----------------------------------------------------------------------
    def get(self, group: str, plural: str, namespace: str | None, name: str) -> Obj:
        with self._cond:
            return copy.deepcopy(self._ref(group, plural, namespace, name)[1])

    def list(
        self,
        group: str,
        plural: str,
        namespace: str | None = None,
        label_selector: str | Selector | None = None,
    ) -> list[Obj]:
        """Objects sorted by (namespace, name); ``namespace=None`` means all namespaces."""
        sel = (
            label_selector
            if isinstance(label_selector, Selector)
            else Selector.parse(label_selector)
        )
        with self._cond:
            return [
                copy.deepcopy(obj)
                for (g, p, ns, _), obj in sorted(self._objects.items())
                if g == group and p == plural and namespace in (None, ns) and sel.matches(obj)
            ]

    # -- writes ----------------------------------------------------------------------
    def create(
        self,
        group: str,
        version: str,
        plural: str,
        namespace: str | None,
        obj: Obj,
        *,
        keep_uid: bool = False,
    ) -> Obj:
        """POST semantics. ``keep_uid``: keep ``metadata.uid`` as given, as a restore from a
        backup does (for mirroring a Tekton run whose events carry its uid)."""
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise KubeError(400, "metadata must be an object")
        ns = namespace or ""
        kind = obj.get("kind") or self.kind_for(group, plural)
        obj["apiVersion"] = obj.get("apiVersion") or (f"{group}/{version}" if group else version)
        obj["kind"] = kind
        if ns and meta.get("namespace") not in (None, "", ns):
            raise KubeError(
                400,
                "the namespace of the provided object does not match the "
                "namespace sent on the request",
            )
        with self._cond:
            name = meta.get("name")
            if not name and meta.get("generateName"):
                while not name or (group, plural, ns, name) in self._objects:
                    suffix = "".join(secrets.choice(_SUFFIX_ALPHABET) for _ in range(5))
                    name = str(meta["generateName"])[:58] + suffix
            if not name:
                raise _invalid(
                    kind,
                    group,
                    "",
                    "metadata.name",
                    "Required value: name or generateName is required",
                )
            if not isinstance(name, str) or not _NAME_RE.match(name):
                detail = f"Invalid value: {name!r}: a lowercase RFC 1123 subdomain is required"
                raise _invalid(kind, group, str(name), "metadata.name", detail)
            key = (group, plural, ns, name)
            if key in self._objects:
                msg = f'{_resource(group, plural)} "{name}" already exists'
                raise KubeError(409, msg, "AlreadyExists", name=name, group=group, kind=plural)
            self._rv += 1
            uid = meta.get("uid") if keep_uid and meta.get("uid") else uuid.uuid4()
            meta.update(name=name, uid=str(uid), resourceVersion=str(self._rv))
            meta.update(creationTimestamp=_now(self.clock), generation=1)
            if ns:
                meta["namespace"] = ns
            else:
                meta.pop("namespace", None)
            self._objects[key] = obj
            versions = self._versions.setdefault(group, []) if group else None
            if versions is not None and version not in versions:
                versions.append(version)
            if group == "apiextensions.k8s.io" and plural == "customresourcedefinitions":
                self._learn_crd(obj)
            self._record("ADDED", key, obj, None)
            return copy.deepcopy(obj)

    def create_manifest(self, obj: Obj, namespace: str = "default") -> Obj:
        """Create an object from a manifest: group/version/plural/scope from apiVersion + kind."""
        if not isinstance(obj, dict) or not obj.get("apiVersion") or not obj.get("kind"):
            raise ValueError(f"not a Kubernetes object (apiVersion and kind required): {obj!r}")
        group, version = split_api_version(str(obj["apiVersion"]))
        kind = str(obj["kind"])
        ns = None
        if self.is_namespaced(kind):
            ns = (obj.get("metadata") or {}).get("namespace") or namespace
        return self.create(group, version, self.plural_for(kind), ns, obj)

    def replace(
        self,
        group: str,
        plural: str,
        namespace: str | None,
        name: str,
        obj: Obj,
        *,
        subresource: str | None = None,
    ) -> Obj:
        """PUT semantics: the main resource ignores ``status``; ``status`` changes only status."""
        meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
        assert isinstance(meta, dict)
        if meta.get("name") not in (None, name):
            raise KubeError(
                400,
                f"the name of the object ({meta['name']}) does not match the "
                f"name on the URL ({name})",
            )
        with self._cond:
            key, cur = self._ref(group, plural, namespace, name)
            rv = meta.get("resourceVersion")
            if rv in (None, "") and group:
                raise _invalid(
                    cur["kind"],
                    group,
                    name,
                    "metadata.resourceVersion",
                    "Invalid value: 0x0: must be specified for an update",
                )
            if rv not in (None, "") and str(rv) != cur["metadata"]["resourceVersion"]:
                raise _conflict(group, plural, name)
            return self._commit(key, cur, obj, subresource)

    def patch(
        self,
        group: str,
        plural: str,
        namespace: str | None,
        name: str,
        patch: Any,
        content_type: str = "application/merge-patch+json",
        *,
        subresource: str | None = None,
    ) -> Obj:
        """PATCH: JSON patch, or JSON merge patch (also used for strategic merge patch)."""
        with self._cond:
            key, cur = self._ref(group, plural, namespace, name)
            if content_type == "application/json-patch+json":
                if not isinstance(patch, list):
                    raise KubeError(400, "a JSON patch must be a list of operations")
                patched = json_patch(cur, patch)
            elif content_type in (
                "application/merge-patch+json",
                "application/strategic-merge-patch+json",
            ):
                if not isinstance(patch, dict):
                    raise KubeError(400, "a merge patch must be a JSON object")
                patched = merge_patch(cur, patch)
            else:
                raise KubeError(
                    415,
                    f"the body of the request was in an unknown format - "
                    f"accepted media types include: application/json-patch+json, "
                    f"application/merge-patch+json ({content_type!r})",
                )
            if not isinstance(patched, dict):
                raise KubeError(422, "patch result is not an object")
            meta = patched.get("metadata") if isinstance(patched.get("metadata"), dict) else {}
            assert isinstance(meta, dict)
            if str(meta.get("resourceVersion")) != cur["metadata"]["resourceVersion"]:
                raise _conflict(group, plural, name)
            return self._commit(key, cur, patched, subresource)

    def delete(self, group: str, plural: str, namespace: str | None, name: str) -> Obj:
        """Delete at once (no finalizers); returns the object with its deletion rv."""
        with self._cond:
            key, _ = self._ref(group, plural, namespace, name)
            obj = self._objects.pop(key)
            self._rv += 1
            obj["metadata"]["resourceVersion"] = str(self._rv)
            self._record("DELETED", key, obj, None)
            return copy.deepcopy(obj)

    def compact(self) -> None:
        """Forget the whole event history (like etcd compaction): older rvs now get 410."""
        with self._cond:
            self._history.clear()
            self._floor = self._rv

    # -- internals -------------------------------------------------------------------
    def _ref(self, group: str, plural: str, namespace: str | None, name: str) -> tuple[_Key, Obj]:
        key = (group, plural, namespace or "", name)
        if key not in self._objects:
            raise _not_found(group, plural, name)
        return key, self._objects[key]

    def _commit(self, key: _Key, cur: Obj, new: Obj, subresource: str | None) -> Obj:
        if subresource == "status":
            new_status, new = new.get("status"), copy.deepcopy(cur)
            new.pop("status", None)
            if new_status is not None:
                new["status"] = copy.deepcopy(new_status)
        else:
            new = copy.deepcopy(new)
            new.pop("status", None)
            if "status" in cur:
                new["status"] = copy.deepcopy(cur["status"])
        meta = new["metadata"] = (
            dict(new["metadata"]) if isinstance(new.get("metadata"), dict) else {}
        )
        for f in ("name", "namespace", "uid", "creationTimestamp", "generation", "resourceVersion"):
            if f in cur["metadata"]:
                meta[f] = cur["metadata"][f]
            else:
                meta.pop(f, None)
        new.setdefault("apiVersion", cur["apiVersion"])
        new.setdefault("kind", cur["kind"])
        ignored = ("metadata", "status")
        if {k: v for k, v in new.items() if k not in ignored} != {
            k: v for k, v in cur.items() if k not in ignored
        }:
            meta["generation"] = int(meta.get("generation", 0)) + 1
        if new == cur:
            return copy.deepcopy(cur)  # no-op updates do not bump resourceVersion
        self._rv += 1
        meta["resourceVersion"] = str(self._rv)
        self._objects[key] = new
        self._record("MODIFIED", key, new, cur)
        return copy.deepcopy(new)

    def _learn_crd(self, crd: Obj) -> None:
        spec = crd.get("spec") or {}
        names = spec.get("names") or {}
        if spec.get("group") and names.get("kind") and names.get("plural"):
            namespaced = spec.get("scope", "Namespaced") == "Namespaced"
            self.register_kind(spec["group"], names["kind"], names["plural"], namespaced)
            versions = self._versions.setdefault(spec["group"], [])
            for v in spec.get("versions") or []:
                if v.get("name") and v["name"] not in versions:
                    versions.append(v["name"])

    def _record(self, type_: str, key: _Key, obj: Obj, old: Obj | None) -> None:
        self._history.append(_Event(self._rv, type_, key, copy.deepcopy(obj), old))
        excess = len(self._history) - max(self.history_limit, 1)
        if excess > 0:
            self._floor = self._history[excess - 1].rv
            del self._history[:excess]
        self._cond.notify_all()

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def watch(
        self,
        group: str,
        plural: str,
        namespace: str | None,
        selector: Selector,
        since: int | None,
        deadline: float,
        stopping: threading.Event,
    ) -> Iterator[Obj]:
        """Watch events as dicts; ``since=None`` starts with synthetic ADDED for what exists."""

        def wanted(key: _Key) -> bool:
            return key[:2] == (group, plural) and namespace in (None, key[2])

        with self._cond:
            cursor = self._rv if since is None else since
            initial = [
                {"type": "ADDED", "object": copy.deepcopy(o)}
                for k, o in (sorted(self._objects.items()) if since is None else ())
                if wanted(k) and selector.matches(o)
            ]
        yield from initial
        while True:
            with self._cond:
                while True:
                    remaining = deadline - time.monotonic()
                    if stopping.is_set() or remaining <= 0:
                        return
                    if cursor < self._floor:
                        msg = f"too old resource version: {cursor} ({self._floor + 1})"
                        batch: list[_Event] | None = None
                        break
                    if self._history and self._history[-1].rv > cursor:
                        start = bisect.bisect_right(self._history, cursor, key=lambda e: e.rv)
                        batch = self._history[start:]
                        cursor = batch[-1].rv
                        break
                    self._cond.wait(min(remaining, 1.0))
            if batch is None:
                yield {"type": "ERROR", "object": status_body(410, "Expired", msg)}
                return
            for ev in batch:
                if not wanted(ev.key):
                    continue
                now_in = selector.matches(ev.obj)
                was_in = now_in if ev.old is None else selector.matches(ev.old)
                if now_in or was_in:  # a MODIFIED across the selector is an ADDED/DELETED
                    type_ = ev.type if now_in == was_in else "ADDED" if now_in else "DELETED"
                    yield {"type": type_, "object": copy.deepcopy(ev.obj)}
