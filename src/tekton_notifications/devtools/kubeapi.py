"""An in-memory emulator of the slice of the Kubernetes API that tekton-notifications uses.

What it is: a small HTTP/1.1 server (stdlib ``http.server``, keep-alive, one thread per
connection) that keeps objects in memory and speaks the wire protocol of the real API server
closely enough for the official ``kubernetes`` Python client: create/get/list/replace/patch/delete
of namespaced and cluster-scoped resources under ``/api/v1`` and ``/apis/{group}/{version}``, the
``status`` subresource, JSON merge and JSON patches, label and field selectors, watches that
resume from a ``resourceVersion`` (410 once it is older than the kept history), Kubernetes
``Status`` error bodies, minimal discovery, and a fault injector for tests of retries and error
mapping. Every request is recorded in ``KubeAPIServer.requests``.

What it is NOT: a real API server. There is no authentication or authorization, no admission
(namespaces need not exist, no defaulting, no webhooks), no schema/OpenAPI validation beyond
object names, no finalizers or garbage collection (deletes are immediate), no server-side apply,
no ``dryRun``, and strategic merge patches are applied as JSON merge patches (lists are replaced,
not merged). Objects are stored by group + plural, so an object created at one version is served
unchanged at any other version of the same group.

Behaviours worth knowing (all as in a real cluster): HTTP create drops ``status`` (preload status
with ``store.create``/``load_manifests`` instead); PUT of a custom resource needs
``metadata.resourceVersion``; an update that changes nothing keeps the resourceVersion;
``metadata.generation`` moves when anything outside ``metadata``/``status`` changes; a watch
without ``resourceVersion`` (or with "0") first replays the current objects as ADDED. The
resourceVersion counter starts at 1, so an empty store lists at "1", never at "0" ("any").
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import copy
import json
import logging
import os
import random
import re
import secrets
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

import yaml

log = logging.getLogger(__name__)

Obj = dict[str, Any]
FaultMode = Literal["status", "timeout", "drop"]

_PLURALS = {
    "NotificationPolicy": "notificationpolicies",
    "ClusterNotificationPolicy": "clusternotificationpolicies",
    "NotificationTemplate": "notificationtemplates",
    "TaskRun": "taskruns",
    "PipelineRun": "pipelineruns",
    "CustomRun": "customruns",
    "Event": "events",
    "ConfigMap": "configmaps",
    "Secret": "secrets",
    "Namespace": "namespaces",
    "Lease": "leases",
    "Endpoints": "endpoints",
}
CLUSTER_SCOPED_KINDS = frozenset(
    {
        "Namespace",
        "ClusterNotificationPolicy",
        "CustomResourceDefinition",
        "ClusterRole",
        "ClusterRoleBinding",
        "ClusterTask",
        "Node",
        "PersistentVolume",
        "StorageClass",
    }
)
_DEFAULT_GROUPS = {
    "tekton.dev": ["v1", "v1beta1"],
    "events.k8s.io": ["v1"],
    "coordination.k8s.io": ["v1"],
    "apiextensions.k8s.io": ["v1"],
}
_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Gone",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}
_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # the one the real API server uses


def plural_for_kind(kind: str) -> str:
    """Resource plural for a kind: the explicit table, else lowercase English plural."""
    if kind in _PLURALS:
        return _PLURALS[kind]
    low = kind.lower()
    if low.endswith(("s", "x", "ch", "sh")):
        return low + "es"
    if low.endswith("y") and low[-2:-1] not in ("a", "e", "i", "o", "u"):
        return low[:-1] + "ies"
    return low + "s"


def split_api_version(api_version: str) -> tuple[str, str]:
    """``"tekton.dev/v1"`` -> ``("tekton.dev", "v1")``; ``"v1"`` -> ``("", "v1")`` (core group)."""
    group, _, version = api_version.rpartition("/")
    return group, version


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _resource(group: str, plural: str) -> str:
    return f"{plural}.{group}" if group else plural


def status_body(code: int, reason: str, message: str, details: Obj | None = None) -> Obj:
    """A ``Status`` object as the real API server sends it on failure."""
    body: Obj = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure"}
    body["message"] = message
    body["reason"] = reason
    if details is not None:
        body["details"] = details
    body["code"] = code
    return body


class KubeError(Exception):
    """An API error: becomes an HTTP status with a Kubernetes ``Status`` body."""

    def __init__(self, code: int, message: str, reason: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.code, self.message = code, message
        self.reason = reason or _REASONS.get(code, "Unknown")
        self.details: Obj | None = details or None

    def status(self) -> Obj:
        return status_body(self.code, self.reason, self.message, self.details)


def _not_found(group: str, plural: str, name: str) -> KubeError:
    msg = f'{_resource(group, plural)} "{name}" not found'
    return KubeError(404, msg, name=name, group=group, kind=plural)


def _conflict(group: str, plural: str, name: str) -> KubeError:
    msg = (
        f'Operation cannot be fulfilled on {_resource(group, plural)} "{name}": the object has '
        "been modified; please apply your changes to the latest version and try again"
    )
    return KubeError(409, msg, "Conflict", name=name, group=group, kind=plural)


def _invalid(kind: str, group: str, name: str, field_path: str, detail: str) -> KubeError:
    qualified = f"{kind}.{group}" if group else kind
    cause = {"reason": "FieldValueInvalid", "message": detail, "field": field_path}
    msg = f'{qualified} "{name}" is invalid: {field_path}: {detail}'
    return KubeError(422, msg, name=name, group=group, kind=kind, causes=[cause])


# --------------------------------------------------------------------------- selectors

_LABEL_REQ = re.compile(
    r"^(?:!(?P<absent>[^\s=!,()]+)"
    r"|(?P<key>[^\s=!,()]+)(?:\s*(?P<op>==|=|!=)\s*(?P<val>[^\s=!,()]*)"
    r"|\s+(?P<setop>in|notin)\s*\((?P<set>[^()]*)\))?)$"
)
_FIELDS = {"metadata.name": "name", "metadata.namespace": "namespace"}


def _split_top_level(expr: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(expr):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            parts.append(expr[start:i])
            start = i + 1
    parts.append(expr[start:])
    return [p.strip() for p in parts]


@dataclass(frozen=True)
class Selector:
    """Parsed ``labelSelector`` + ``fieldSelector`` (AND of all requirements)."""

    labels: tuple[tuple[str, str, frozenset[str]], ...] = ()  # (key, in|notin|exists|absent, vals)
    fields: tuple[tuple[str, bool, str], ...] = ()  # (metadata key, equal?, value)

    @classmethod
    def parse(
        cls, label_selector: str | None = None, field_selector: str | None = None
    ) -> Selector:
        labels: list[tuple[str, str, frozenset[str]]] = []
        for part in _split_top_level(label_selector) if label_selector else []:
            m = _LABEL_REQ.match(part)
            if m is None:
                raise KubeError(400, f"unable to parse requirement: {part!r}")
            if m["absent"]:
                labels.append((m["absent"], "absent", frozenset()))
            elif m["op"]:
                labels.append(
                    (m["key"], "notin" if m["op"] == "!=" else "in", frozenset([m["val"]]))
                )
            elif m["setop"]:
                values = frozenset(v.strip() for v in m["set"].split(",") if v.strip())
                labels.append((m["key"], m["setop"], values))
            else:
                labels.append((m["key"], "exists", frozenset()))
        fields: list[tuple[str, bool, str]] = []
        for part in _split_top_level(field_selector) if field_selector else []:
            m = re.match(r"^([^=!]+?)\s*(==|=|!=)\s*(.*)$", part)
            if m is None:
                raise KubeError(400, f"invalid field selector: {part!r}")
            if m[1] not in _FIELDS:
                raise KubeError(400, f'field label not supported: "{m[1]}"')
            fields.append((_FIELDS[m[1]], m[2] != "!=", m[3]))
        return cls(tuple(labels), tuple(fields))

    def matches(self, obj: Obj) -> bool:
        meta = obj.get("metadata") or {}
        labels = meta.get("labels") or {}
        for key, op, values in self.labels:
            present = key in labels
            if op == "in" and not (present and labels[key] in values):
                return False
            if op == "notin" and present and labels[key] in values:
                return False
            if (op == "exists" and not present) or (op == "absent" and present):
                return False
        return all((meta.get(k, "") == v) == eq for k, eq, v in self.fields)


# --------------------------------------------------------------------------- patches


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise KubeError(422, f"invalid JSON pointer: {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _walk(doc: Any, tokens: list[str]) -> Any:
    for tok in tokens:
        if isinstance(doc, list) and tok.isdigit() and int(tok) < len(doc):
            doc = doc[int(tok)]
        elif isinstance(doc, dict) and tok in doc:
            doc = doc[tok]
        else:
            raise KubeError(422, f"JSON patch: path element {tok!r} not found")
    return doc


def json_patch(doc: Any, ops: list[Any]) -> Any:
    """RFC 6902 JSON patch (add, remove, replace, move, copy, test)."""
    doc = copy.deepcopy(doc)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise KubeError(400, f"invalid JSON patch operation: {op!r}")
        kind, tokens = op["op"], _pointer(op["path"])
        if kind in ("move", "copy"):
            src = _pointer(op.get("from", ""))
            value = copy.deepcopy(_walk(doc, src))
            if kind == "move":
                doc = json_patch(doc, [{"op": "remove", "path": op["from"]}])
            doc = json_patch(doc, [{"op": "add", "path": op["path"], "value": value}])
            continue
        if kind == "test":
            if _walk(doc, tokens) != op.get("value"):
                raise KubeError(422, f"JSON patch test failed at {op['path']}")
            continue
        if not tokens:
            if kind == "remove":
                raise KubeError(422, "JSON patch: cannot remove the whole document")
            doc = copy.deepcopy(op.get("value"))
            continue
        parent, last = _walk(doc, tokens[:-1]), tokens[-1]
        if kind not in ("add", "remove", "replace"):
            raise KubeError(400, f"unknown JSON patch operation {kind!r}")
        if kind != "add":
            _walk(parent, [last])  # must exist
        if isinstance(parent, list):
            idx = len(parent) if last == "-" else int(last) if last.isdigit() else -1
            if not 0 <= idx <= len(parent):
                raise KubeError(422, f"JSON patch: bad array index {last!r}")
            if kind != "add":
                del parent[idx]
            if kind != "remove":
                parent.insert(idx, copy.deepcopy(op.get("value")))
        elif isinstance(parent, dict):
            if kind == "remove":
                del parent[last]
            else:
                parent[last] = copy.deepcopy(op.get("value"))
        else:
            raise KubeError(422, f"JSON patch: cannot address into {op['path']!r}")
    return doc


# --------------------------------------------------------------------------- store

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

    def __init__(self, history_limit: int = 1000) -> None:
        self.history_limit = history_limit
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
            meta.update(creationTimestamp=_now(), generation=1)
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


# --------------------------------------------------------------------------- faults


@dataclass
class Fault:
    """A pending injected failure; ``count`` is how many more requests it will hit."""

    status: int | None
    method: str | None
    path: str | None
    count: int
    mode: FaultMode
    reason: str | None
    message: str | None
    delay: float

    def matches(self, method: str, path: str) -> bool:
        return _matches(self.method, self.path, method, path)


def _matches(want_method: str | None, pattern: str | None, method: str, path: str) -> bool:
    return (want_method is None or want_method.upper() == method) and (
        pattern is None or re.search(pattern, path) is not None
    )


@dataclass(frozen=True)
class FiredFault:
    method: str
    path: str
    mode: FaultMode
    status: int | None
    reason: str | None = None
    message: str | None = None
    delay: float = 0.0


@dataclass
class _RandomFaults:
    rate: float
    rng: random.Random
    statuses: tuple[int, ...]
    modes: tuple[FaultMode, ...]
    method: str | None
    path: str | None
    delay: float


class FaultInjector:
    """Failures to inject. Explicit faults fire first (in order added), then random rules."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._random: list[_RandomFaults] = []
        self.fired: list[FiredFault] = []

    def add(
        self,
        status: int | None = None,
        *,
        method: str | None = None,
        path: str | None = None,
        count: int = 1,
        mode: FaultMode = "status",
        reason: str | None = None,
        message: str | None = None,
        delay: float = 0.0,
    ) -> Fault:
        """``status``: answer ``status`` (after ``delay``); ``timeout``: hold the connection for
        ``delay`` s (30 s if 0) then close it unanswered; ``drop``: close it unanswered at once."""
        if mode == "status" and status is None:
            raise ValueError('mode="status" needs a status code')
        if mode not in ("status", "timeout", "drop") or count < 1:
            raise ValueError(f"bad fault: mode={mode!r} count={count}")
        fault = Fault(status, method, path, count, mode, reason, message, delay)
        with self._lock:
            self._faults.append(fault)
        return fault

    def random(
        self,
        rate: float,
        *,
        seed: int,
        statuses: Sequence[int] = (500, 429),
        modes: Sequence[FaultMode] = ("status", "drop"),
        method: str | None = None,
        path: str | None = None,
        delay: float = 0.0,
    ) -> None:
        """Fail about ``rate`` of matching requests, reproducibly for a given ``seed``."""
        if not 0.0 <= rate <= 1.0 or not statuses or not modes:
            raise ValueError("rate must be in [0, 1]; statuses and modes must not be empty")
        rule = _RandomFaults(
            rate, random.Random(seed), tuple(statuses), tuple(modes), method, path, delay
        )
        with self._lock:
            self._random.append(rule)

    def clear(self) -> None:
        """Drop every pending fault and random rule, and forget ``fired``."""
        with self._lock:
            self._faults.clear()
            self._random.clear()
            self.fired.clear()

    @property
    def pending(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    def take(self, method: str, path: str) -> FiredFault | None:
        """Consume and return the fault for this request, if any (called by the server)."""
        with self._lock:
            fired: FiredFault | None = None
            for f in self._faults:
                if f.matches(method, path):
                    f.count -= 1
                    if f.count <= 0:
                        self._faults.remove(f)
                    fired = FiredFault(method, path, f.mode, f.status, f.reason, f.message, f.delay)
                    break
            for rule in self._random if fired is None else ():
                if _matches(rule.method, rule.path, method, path) and rule.rng.random() < rule.rate:
                    mode = rule.rng.choice(rule.modes)
                    status = rule.rng.choice(rule.statuses) if mode == "status" else None
                    fired = FiredFault(method, path, mode, status, delay=rule.delay)
                    break
            if fired is not None:
                self.fired.append(fired)
            return fired


# --------------------------------------------------------------------------- HTTP


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    body: Any  # parsed JSON, or None (no body or not JSON)
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Route:
    group: str
    version: str
    plural: str
    namespace: str | None
    name: str | None
    subresource: str | None


def _parse_route(path: str) -> _Route | None:
    parts = [unquote(p) for p in path.strip("/").split("/")]
    if parts[:2] == ["api", "v1"]:
        group, version, rest = "", "v1", parts[2:]
    elif parts[0] == "apis" and len(parts) >= 4:
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    namespace = None
    if rest[0] == "namespaces" and len(rest) >= 3 and not (len(rest) == 3 and rest[2] == "status"):
        namespace, rest = rest[1], rest[2:]
    if not 1 <= len(rest) <= 3 or not all(rest) or (len(rest) == 3 and rest[2] != "status"):
        return None
    name = rest[1] if len(rest) > 1 else None
    return _Route(group, version, rest[0], namespace, name, rest[2] if len(rest) == 3 else None)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], api: KubeAPIServer) -> None:
        self.api = api
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("connection from %s ended with an error", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no 40 ms stalls
        with self.server.api._lock:
            self.server.api._conns.add(self.connection)

    def finish(self) -> None:
        with self.server.api._lock:
            self.server.api._conns.discard(self.connection)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        api = self.server.api
        split = urlsplit(self.path)
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body: Any = None
        try:
            body = json.loads(raw) if raw.strip() else None
            bad_json = None
        except ValueError as exc:
            bad_json = exc
        api._record(RecordedRequest(method, split.path, query, body, dict(self.headers.items())))
        fault = api.faults.take(method, split.path)
        if fault is not None and fault.mode != "status":
            api._stopping.wait(fault.delay or (30.0 if fault.mode == "timeout" else 0.0))
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        try:
            if fault is not None:
                api._stopping.wait(fault.delay)
                code = fault.status or 500
                reason = fault.reason or _REASONS.get(code, "Unknown")
                retry = {"retryAfterSeconds": 1} if code == 429 else None
                err = KubeError(code, fault.message or f"injected fault: {code} {reason}", reason)
                err.details = retry
                raise err
            if bad_json is not None and method in ("POST", "PUT", "PATCH"):
                raise KubeError(400, f"couldn't get version/kind; json parse error: {bad_json}")
            self._route(method, split.path, query, body)
        except KubeError as exc:
            extra = {"Retry-After": "1"} if exc.code == 429 else {}
            self._send_json(exc.code, exc.status(), extra)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:  # a bug in the emulator: still answer like an apiserver
            log.exception("kubeapi emulator failed on %s %s", method, self.path)
            self._send_json(500, status_body(500, "InternalError", f"emulator error: {exc!r}"))

    def _send_json(self, code: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _route(self, method: str, path: str, query: dict[str, str], body: Any) -> None:
        store = self.server.api.store
        if method == "GET" and path.rstrip("/") in ("/version", "/api", "/apis"):
            self._send_json(200, _discovery(path.rstrip("/"), store))
            return
        route = _parse_route(path)
        if route is None:
            raise KubeError(404, "the server could not find the requested resource")
        g, p, ns, name = route.group, route.plural, route.namespace, route.name
        if method in ("POST", "PUT", "PATCH") and not isinstance(body, dict | list):
            raise KubeError(400, "the request body must be a JSON object")
        if name is None:
            if method == "GET":
                sel = Selector.parse(query.get("labelSelector"), query.get("fieldSelector"))
                if query.get("watch") in ("true", "1"):
                    self._watch(route, sel, query)
                    return
                self._send_json(200, self._list(route, sel, query))
            elif method == "POST":
                if not isinstance(body, dict):
                    raise KubeError(400, "the request body must be a JSON object")
                body.pop("status", None)  # status is reset on create, as for CRDs
                self._send_json(201, store.create(g, route.version, p, ns, body))
            elif method == "DELETE":
                sel = Selector.parse(query.get("labelSelector"), query.get("fieldSelector"))
                deleted = [
                    store.delete(g, p, o["metadata"].get("namespace"), o["metadata"]["name"])
                    for o in store.list(g, p, ns, sel)
                ]
                self._send_json(200, self._list_body(route, deleted))
            else:
                raise KubeError(405, f"{method} is not supported on a collection")
        elif method == "GET":
            self._send_json(200, store.get(g, p, ns, name))
        elif method == "PUT":
            self._send_json(200, store.replace(g, p, ns, name, body, subresource=route.subresource))
        elif method == "PATCH":
            ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
            obj = store.patch(g, p, ns, name, body, ctype, subresource=route.subresource)
            self._send_json(200, obj)
        elif method == "DELETE" and route.subresource is None:
            obj = store.delete(g, p, ns, name)
            if g:
                self._send_json(200, obj)
            else:
                details = {"name": name, "kind": p, "uid": obj["metadata"].get("uid")}
                self._send_json(
                    200,
                    {
                        "kind": "Status",
                        "apiVersion": "v1",
                        "metadata": {},
                        "status": "Success",
                        "details": details,
                    },
                )
        else:
            raise KubeError(405, f"{method} is not supported here")

    def _list_body(self, route: _Route, items: list[Obj]) -> Obj:
        store = self.server.api.store
        kind = items[0]["kind"] if items else store.kind_for(route.group, route.plural)
        api_version = f"{route.group}/{route.version}" if route.group else route.version
        meta = {"resourceVersion": str(store.resource_version)}
        return {"apiVersion": api_version, "kind": f"{kind}List", "metadata": meta, "items": items}

    def _list(self, route: _Route, sel: Selector, query: dict[str, str]) -> Obj:
        items = self.server.api.store.list(route.group, route.plural, route.namespace, sel)
        after = query.get("continue")
        if after:
            items = [o for o in items if _sort_key(o) > tuple(json.loads(after))]
        limit = int(query.get("limit") or 0)
        body = self._list_body(route, items[:limit] if limit else items)
        if limit and len(items) > limit:
            body["metadata"]["continue"] = json.dumps(_sort_key(items[limit - 1]))
            body["metadata"]["remainingItemCount"] = len(items) - limit
        return body

    def _watch(self, route: _Route, sel: Selector, query: dict[str, str]) -> None:
        api = self.server.api
        rv = query.get("resourceVersion", "")
        if rv not in ("", "0") and not rv.isdigit():
            raise KubeError(400, f"invalid resourceVersion: {rv!r}")
        timeout = float(query.get("timeoutSeconds") or api.watch_timeout)
        events = api.store.watch(
            route.group,
            route.plural,
            route.namespace,
            sel,
            None if rv in ("", "0") else int(rv),
            time.monotonic() + timeout,
            api._stopping,
        )
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for event in events:
                data = json.dumps(event).encode() + b"\n"
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            self.close_connection = True
        if api._stopping.is_set():
            self.close_connection = True


def _sort_key(obj: Obj) -> tuple[str, str]:
    return (obj["metadata"].get("namespace", ""), obj["metadata"]["name"])


def _discovery(path: str, store: ObjectStore) -> Obj:
    if path == "/version":
        return {
            "major": "1",
            "minor": "31",
            "gitVersion": "v1.31.0-kubeapi-emulator",
            "gitCommit": "0" * 40,
            "gitTreeState": "clean",
            "buildDate": "2024-08-13T00:00:00Z",
            "goVersion": "none (python emulator)",
            "compiler": "python",
            "platform": f"{sys.platform}/python",
        }
    if path == "/api":
        return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
    groups = []
    for name, versions in sorted(store.api_groups().items()):
        gvs = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
        groups.append({"name": name, "versions": gvs, "preferredVersion": gvs[0]})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


class KubeAPIServer:
    """The emulator: ``with KubeAPIServer() as api: ...`` serves ``api.url`` until exit."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        store: ObjectStore | None = None,
        watch_timeout: float = 300.0,
    ) -> None:
        self.host, self.port = host, port
        self.store = store or ObjectStore()
        self.faults = FaultInjector()
        self.requests: list[RecordedRequest] = []
        self.watch_timeout = watch_timeout  # for watches without timeoutSeconds
        self._url: str | None = None
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("KubeAPIServer is not started")
        return self._url

    def start(self) -> str:
        if self._httpd is not None:
            return self.url
        self._stopping = threading.Event()
        self._httpd = _HTTPServer((self.host, self.port), self)
        host, port = self._httpd.server_address[:2]
        host = "127.0.0.1" if host == "0.0.0.0" else str(host)
        self._url = f"http://{host}:{port}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.02},
            name=f"kubeapi-{port}",
            daemon=True,
        )
        self._thread.start()
        return self._url

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()
        self.store._wake()
        httpd.shutdown()
        httpd.server_close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> KubeAPIServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def write_kubeconfig(self, path: str | os.PathLike[str], namespace: str = "default") -> None:
        """Write a kubeconfig for ``url`` (plain http, no credentials)."""
        name = "kubeapi-emulator"
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": name, "cluster": {"server": self.url}}],
            "users": [{"name": name, "user": {}}],
            "contexts": [
                {"name": name, "context": {"cluster": name, "user": name, "namespace": namespace}}
            ],
            "current-context": name,
            "preferences": {},
        }
        Path(path).write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")

    def load_manifests(self, *paths: str | os.PathLike[str], namespace: str = "default") -> int:
        """Create every object in YAML files/directories (recursive, multi-doc, ``kind: List``).

        Goes through the store directly, so ``status`` in a manifest is kept. Returns the count.
        """
        count = 0
        for root in map(Path, paths):
            files = (
                sorted(f for f in root.rglob("*") if f.suffix in (".yaml", ".yml") and f.is_file())
                if root.is_dir()
                else [root]
            )
            for file in files:
                with file.open(encoding="utf-8") as fh:
                    docs = [d for d in yaml.safe_load_all(fh) if d is not None]
                for doc in _expand_lists(docs):
                    try:
                        self.store.create_manifest(doc, namespace)
                    except KubeError as exc:
                        raise ValueError(f"{file}: {exc.message}") from exc
                    count += 1
        return count


def _expand_lists(docs: Iterable[Any]) -> Iterator[Obj]:
    for doc in docs:
        if isinstance(doc, dict) and str(doc.get("kind", "")).endswith("List") and "items" in doc:
            yield from _expand_lists(doc["items"] or [])
        else:
            yield doc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tekton_notifications.devtools.kubeapi",
        description="Serve an in-memory Kubernetes API emulator (no auth, no admission).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001, help="0 picks a free port")
    parser.add_argument(
        "--load",
        action="append",
        default=[],
        metavar="DIR_OR_FILE",
        help="YAML manifests to create at startup (repeatable)",
    )
    parser.add_argument("--kubeconfig", metavar="PATH", help="write a kubeconfig for the server")
    parser.add_argument("--namespace", default="default", help="default namespace")
    args = parser.parse_args(argv)
    server = KubeAPIServer(args.host, args.port)
    url = server.start()
    try:
        loaded = server.load_manifests(*args.load, namespace=args.namespace)
        if args.kubeconfig:
            server.write_kubeconfig(args.kubeconfig, args.namespace)
        print(url, flush=True)
        print(f"kubeapi emulator: {loaded} objects loaded; Ctrl-C stops", file=sys.stderr)
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
