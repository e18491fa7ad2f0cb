"""The HTTP side: routes, the request handler, lists and watches on the wire, discovery."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import sys
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

from tekton_notifications.devtools.kubeapi.errors import _REASONS, KubeError, status_body
from tekton_notifications.devtools.kubeapi.kinds import Obj
from tekton_notifications.devtools.kubeapi.selectors import Selector
from tekton_notifications.devtools.kubeapi.store import ObjectStore

if TYPE_CHECKING:
    from tekton_notifications.devtools.kubeapi.server import KubeAPIServer

log = logging.getLogger(__name__)


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
    subresources = ("status", "log") if (group, rest[0]) == ("", "pods") else ("status",)
    if not 1 <= len(rest) <= 3 or not all(rest) or (len(rest) == 3 and rest[2] not in subresources):
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

    def _send_text(self, code: int, data: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
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
        if route.subresource == "log" and name is not None and ns is not None:
            if method != "GET":
                raise KubeError(405, f"{method} is not supported on pods/log")
            self._send_text(200, self.server.api.pod_logs.read(store, ns, name, query))
            return
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
