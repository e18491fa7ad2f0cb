"""The emulator as a whole: ``KubeAPIServer`` (start, stop, kubeconfig, manifests) and ``main``."""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import sys
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

from tekton_notifications.devtools.kubeapi.errors import KubeError
from tekton_notifications.devtools.kubeapi.faults import FaultInjector
from tekton_notifications.devtools.kubeapi.handler import RecordedRequest, _HTTPServer
from tekton_notifications.devtools.kubeapi.kinds import Obj
from tekton_notifications.devtools.kubeapi.podlogs import PodLogs
from tekton_notifications.devtools.kubeapi.store import ObjectStore


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
        #: Container logs served at pods/{name}/log (store a Pod object too).
        self.pod_logs = PodLogs()
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
