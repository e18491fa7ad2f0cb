"""The annotations of a run's Pipeline or Task, read from the API for subscriptions.

Tekton copies a Pipeline's annotations onto its PipelineRuns and a Task's onto its TaskRuns,
so a subscription annotation on a run may have been written on either. Comparing with the
Pipeline or Task tells which (``subscriptions.find``: source ``pipeline``/``task`` or
``run``). Asked only for runs that carry a subscription annotation, cached per object for
:data:`TTL` seconds. Needs ``get`` on ``pipelines`` and ``tasks`` (tekton.dev), nothing more.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

from tekton_notifications import kube
from tekton_notifications.events import RunEvent

logger = logging.getLogger(__name__)

TTL: Final = 60.0
_PLURALS: Final = {
    "PipelineRun": ("pipelines", "tekton.dev/pipeline"),
    "TaskRun": ("tasks", "tekton.dev/task"),
}

Lookup = Callable[[RunEvent], Mapping[str, str] | None]


class Definitions:
    """``lookup(event)``: the annotations of the event run's Pipeline or Task; ``{}`` when it
    has none (an embedded spec, a remote one, a CustomRun); None when the API did not say."""

    def __init__(self, api: Any, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._api = api
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str, str], tuple[float, Mapping[str, str]]] = {}

    def __call__(self, event: RunEvent) -> Mapping[str, str] | None:
        plural, label = _PLURALS.get(event.kind, ("", ""))
        name = event.labels.get(label, "") if label else ""
        if not name or name == event.name:  # no reference, or an embedded spec
            return {}
        key = (event.namespace, plural, name)
        now = self._clock()
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and now - cached[0] < TTL:
            return cached[1]
        try:
            obj = kube.get_object(
                self._api, plural, event.namespace, name, group="tekton.dev", version="v1"
            )
        except kube.ApiError as error:
            if error.status != 404:
                logger.warning("%s: subscription sources read as the run's: %s", key, error)
                return None
            obj = {}
        metadata = obj.get("metadata") or {}
        annotations = {str(k): str(v) for k, v in (metadata.get("annotations") or {}).items()}
        with self._lock:
            if len(self._cache) > 4096:
                self._cache.clear()
            self._cache[key] = (now, annotations)
        return annotations
