"""The functions' Kubernetes client: plain REST over urllib3, for the few calls they make.

Used only through :mod:`tekton_notifications.kube` (the import contract says so), which keeps
the official ``kubernetes`` client for the CLI and the dev tools and as an option
(``NOTIFICATIONS_KUBE_CLIENT=official``). Importing ``kubernetes`` costs a function 0.3-0.45 s
of every cold start and ~38 MB of memory (``kubernetes.config`` pulls in google-auth,
oauthlib and requests; ``kubernetes.client`` every API model) for what is, here, get, list,
watch, create and a merge patch on a handful of resources: JSON in, JSON out.

Configuration is resolved as kubectl does, for what functions meet: the in-cluster service
account (token re-read as it rotates, the cluster CA), or a kubeconfig's current context
with a bearer token or client certificate files. Anything else (exec plugins, auth
providers, merged kubeconfigs, inline certificates) raises :class:`Unsupported`, and
:mod:`kube` uses the official client instead. ``tests/devtools/test_kube_clients.py`` holds
both clients to the same answers on the same calls against the emulator.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote, urlencode

import urllib3
import yaml

#: In-cluster credentials, as every Pod with a service account has them.
SERVICE_ACCOUNT: Final = Path("/var/run/secrets/kubernetes.io/serviceaccount")
#: A projected token is rotated by the kubelet; client-go re-reads it about every minute.
TOKEN_REREAD_SECONDS: Final = 60.0
_USER_AGENT: Final = "tekton-notifications"
#: What this client reads from a kubeconfig's user and cluster; anything else is Unsupported.
_USER_FIELDS: Final = frozenset({"token", "tokenFile", "client-certificate", "client-key"})
_CLUSTER_FIELDS: Final = frozenset({"server", "certificate-authority", "insecure-skip-tls-verify"})


class Unsupported(Exception):
    """A configuration this client does not handle (the official client is used instead)."""


class StatusError(Exception):
    """The API answered with a status outside 2xx; ``body`` is its Status object as text."""

    def __init__(self, status: int, reason: str, body: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status, self.reason, self.body = status, reason, body


@dataclass(frozen=True)
class Settings:
    """Where the API is and how to authenticate: what a kubeconfig or the Pod provides."""

    server: str
    namespace: str = "default"
    token: str | None = None
    token_file: Path | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify: bool = True


def in_cluster(environ: Mapping[str, str], root: Path = SERVICE_ACCOUNT) -> Settings:
    """The Pod's service account; :class:`Unsupported` outside a cluster."""
    host, port = environ.get("KUBERNETES_SERVICE_HOST"), environ.get("KUBERNETES_SERVICE_PORT")
    token = root / "token"
    if not host or not port or not token.is_file():
        raise Unsupported("not in a cluster: no KUBERNETES_SERVICE_HOST/PORT or no token")
    host = f"[{host}]" if ":" in host else host
    try:
        namespace = (root / "namespace").read_text(encoding="utf-8").strip() or "default"
    except OSError:
        namespace = "default"
    ca = root / "ca.crt"
    return Settings(
        server=f"https://{host}:{port}",
        namespace=namespace,
        token_file=token,
        ca_file=str(ca) if ca.is_file() else None,
    )


def from_kubeconfig(path: str) -> Settings:
    """The current context of one kubeconfig file; :class:`Unsupported` for what it needs
    that this client does not do."""
    if os.pathsep in path:
        raise Unsupported("KUBECONFIG lists several files (merged by the official client)")
    config = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    contexts = {c["name"]: c.get("context") or {} for c in config.get("contexts") or []}
    current = contexts.get(config.get("current-context") or "")
    if current is None:
        raise Unsupported(f"{path}: no current context")
    clusters = {c["name"]: c.get("cluster") or {} for c in config.get("clusters") or []}
    users = {u["name"]: u.get("user") or {} for u in config.get("users") or []}
    cluster, user = (
        clusters.get(current.get("cluster", ""), {}),
        users.get(current.get("user", ""), {}),
    )
    unhandled = (set(user) - _USER_FIELDS) | (set(cluster) - _CLUSTER_FIELDS)
    if unhandled:
        raise Unsupported(f"{path}: the current context uses {', '.join(sorted(unhandled))}")
    if not cluster.get("server"):
        raise Unsupported(f"{path}: the current context's cluster has no server")
    base = Path(path).parent

    def relative(name: str | None) -> str | None:  # kubectl reads them relative to the file
        return None if name is None else str(base / os.path.expanduser(name))

    return Settings(
        server=str(cluster["server"]),
        namespace=str(current.get("namespace") or "default"),
        token=user.get("token"),
        token_file=Path(relative(user["tokenFile"]) or "") if user.get("tokenFile") else None,
        ca_file=relative(cluster.get("certificate-authority")),
        cert_file=relative(user.get("client-certificate")),
        key_file=relative(user.get("client-key")),
        verify=not cluster.get("insecure-skip-tls-verify", False),
    )


def api_path(
    group: str,
    version: str,
    plural: str,
    namespace: str | None = None,
    name: str | None = None,
    subresource: str | None = None,
) -> str:
    """``/api/v1/...`` for the core group (``""``), ``/apis/<group>/<version>/...`` else."""
    path = f"/api/{version}" if not group else f"/apis/{group}/{version}"
    if namespace:
        path += f"/namespaces/{quote(namespace, safe='')}"
    path += f"/{plural}"
    if name:
        path += f"/{quote(name, safe='')}"
    if subresource:
        path += f"/{subresource}"
    return path


class Client:
    """JSON requests to one API server, from any thread (urllib3's pool is thread-safe)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        tls: dict[str, Any] = {}
        if settings.server.startswith("https:"):
            tls = {
                "cert_reqs": "CERT_REQUIRED" if settings.verify else "CERT_NONE",
                "ca_certs": settings.ca_file,
                "cert_file": settings.cert_file,
                "key_file": settings.key_file,
            }
        # urllib3's default Retry (3), as the official client's pool has it.
        self._pool = urllib3.PoolManager(num_pools=2, maxsize=8, **tls)
        self._server = settings.server.rstrip("/")
        self._token_lock = threading.Lock()
        self._token: tuple[float, str | None] = (0.0, settings.token)

    @property
    def namespace(self) -> str:
        return self.settings.namespace

    def _bearer(self) -> str | None:
        if self.settings.token_file is None:
            return self.settings.token
        with self._token_lock:
            read_at, token = self._token
            if token is None or time.monotonic() - read_at > TOKEN_REREAD_SECONDS:
                token = self.settings.token_file.read_text(encoding="utf-8").strip()
                self._token = (time.monotonic(), token)
            return token

    def _headers(self, content_type: str | None) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": _USER_AGENT}
        token = self._bearer()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    def _url(self, path: str, query: Mapping[str, Any] | None) -> str:
        wanted = {k: v for k, v in (query or {}).items() if v not in (None, "")}
        return self._server + path + (f"?{urlencode(wanted)}" if wanted else "")

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float,
    ) -> Any:
        """The answer's JSON; :class:`StatusError` for a non-2xx answer, urllib3's
        ``HTTPError`` (or ``OSError``) when the server cannot be reached."""
        response = self._pool.request(
            method,
            self._url(path, query),
            body=None if body is None else json.dumps(body).encode(),
            headers=self._headers(content_type if body is not None else None),
            timeout=urllib3.Timeout(total=timeout),
        )
        if not 200 <= response.status < 300:
            raise StatusError(
                response.status, response.reason or "", response.data.decode("utf-8", "replace")
            )
        return json.loads(response.data) if response.data else None

    def read(
        self, path: str, *, query: Mapping[str, Any] | None = None, timeout: float, limit: int
    ) -> bytes:
        """The raw body of a GET (a container log need not be JSON, or UTF-8), at most
        ``limit`` bytes of it; errors as :meth:`request`."""
        response = self._pool.request(
            "GET",
            self._url(path, query),
            headers=self._headers(None),
            timeout=urllib3.Timeout(total=timeout),
            preload_content=False,
        )
        try:
            if not 200 <= response.status < 300:
                body = response.read().decode("utf-8", "replace")
                raise StatusError(response.status, response.reason or "", body)
            return bytes(response.read(limit + 1)[:limit])
        finally:
            response.release_conn()

    def watch(self, path: str, *, query: Mapping[str, Any], timeout: float) -> Watch:
        """A watch stream (``watch=true`` added); iterate it for the change events."""
        response = self._pool.request(
            "GET",
            self._url(path, {**query, "watch": "true"}),
            headers=self._headers(None),
            timeout=urllib3.Timeout(connect=timeout, read=timeout),
            preload_content=False,
        )
        if not 200 <= response.status < 300:
            body = response.data.decode("utf-8", "replace")
            response.release_conn()
            raise StatusError(response.status, response.reason or "", body)
        return Watch(response)


class Watch:
    """One watch request's events, one JSON object per line, until the server ends it or
    :meth:`stop` is called (from another thread)."""

    def __init__(self, response: urllib3.BaseHTTPResponse) -> None:
        self._response = response
        self._stopped = False

    def __iter__(self) -> Iterator[dict[str, Any]]:
        pending = b""
        try:
            for chunk in self._response.stream(64 * 1024, decode_content=True):
                if self._stopped:
                    return
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield json.loads(line)
            if pending.strip() and not self._stopped:
                yield json.loads(pending)
        finally:
            self._response.release_conn()

    def stop(self) -> None:
        self._stopped = True
        shutdown = getattr(self._response, "shutdown", None)  # urllib3 >= 2.3: wakes a read
        # The stream may have ended (and its socket closed) meanwhile: nothing left to wake.
        if shutdown is not None:
            with contextlib.suppress(OSError, ValueError):
                shutdown()
