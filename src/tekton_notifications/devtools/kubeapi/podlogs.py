"""Pod logs: ``GET /api/v1/namespaces/{ns}/pods/{pod}/log``, served from logs stored here.

A test or the demo stores a container's log with :meth:`PodLogs.put` next to a Pod object in
the store; the read answers as the API server does: 404 for a missing pod, 400 for a
container the pod does not have (or none named when it has several), ``tailLines`` keeps the
last lines, then ``limitBytes`` the first bytes of those, as ``text/plain``.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

from tekton_notifications.devtools.kubeapi.errors import KubeError
from tekton_notifications.devtools.kubeapi.store import ObjectStore


class PodLogs:
    """Container logs by (namespace, pod, container)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._logs: dict[tuple[str, str, str], bytes] = {}

    def put(self, namespace: str, pod: str, container: str, log: str | bytes) -> None:
        data = log.encode() if isinstance(log, str) else bytes(log)
        with self._lock:
            self._logs[(namespace, pod, container)] = data

    def read(self, store: ObjectStore, namespace: str, pod: str, query: Mapping[str, str]) -> bytes:
        obj = store.get("", "pods", namespace, pod)  # 404 as the API server says it
        containers = [
            str(c.get("name"))
            for c in (obj.get("spec") or {}).get("containers") or []
            if isinstance(c, Mapping)
        ]
        container = query.get("container") or ""
        if not container:
            if len(containers) != 1:
                raise KubeError(
                    400,
                    f"a container name must be specified for pod {pod}, choose one of: "
                    f"[{' '.join(containers)}]",
                    "BadRequest",
                )
            container = containers[0]
        if container not in containers:
            raise KubeError(
                400, f'container "{container}" in pod "{pod}" is not valid', "BadRequest"
            )
        with self._lock:
            data = self._logs.get((namespace, pod, container), b"")
        tail = _int(query, "tailLines")
        if tail is not None:
            lines = data.splitlines(keepends=True)
            data = b"".join(lines[-tail:]) if tail else b""
        limit = _int(query, "limitBytes")
        if limit is not None:
            data = data[:limit]
        return data


def _int(query: Mapping[str, str], name: str) -> int | None:
    if name not in query:
        return None
    try:
        value = int(query[name])
    except ValueError:
        raise KubeError(400, f"{name}: invalid value {query[name]!r}", "BadRequest") from None
    if value < 0 or (name == "limitBytes" and value == 0):
        raise KubeError(400, f"{name}: must be greater than 0", "BadRequest")
    return value
