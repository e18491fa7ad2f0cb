"""PingSources as ``kubectl apply -k knative/`` would create them, and the pings they send.

A Knative PingSource (``sources.knative.dev/v1``) sends a ``dev.knative.sources.ping``
CloudEvent to its sink on a cron ``schedule``: ``source``
``/apis/v1/namespaces/<namespace>/pingsources/<name>``, ``time`` the tick, ``data`` the
spec's ``data`` as ``contentType``. The router reads them from the same manifests as the
Triggers and delivers a ping on request (:meth:`EventRouter.ping`), into the broker when the
sink is the Broker (then the Triggers route it, with their retries), so the demo and the
tests wake the scheduler the way a cluster does, at the moments they choose (the clock they
fast-forward). Not emulated: firing on the schedule by itself, ``timezone``, ``dataBase64``,
``ceOverrides``, sinks other than the Broker.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from tekton_notifications import wire
from tekton_notifications.devtools.router.manifests import load_objects

SOURCES_API: Final = "sources.knative.dev/v1"
PING_TYPE: Final = "dev.knative.sources.ping"
#: One cron field: *, */n, a number, a range, or comma lists of those.
_CRON_FIELD: Final = re.compile(r"^(\*|\d+(-\d+)?)(/\d+)?(,(\*|\d+(-\d+)?)(/\d+)?)*$")


@dataclass(frozen=True)
class PingSource:
    name: str
    namespace: str
    schedule: str
    data: str
    content_type: str
    #: The Broker's name (the only sink supported).
    broker: str

    @property
    def source(self) -> str:
        return f"/apis/v1/namespaces/{self.namespace}/pingsources/{self.name}"

    def ping(self, at: datetime, *, event_id: str | None = None) -> wire.Message:
        """The CloudEvent this PingSource sends at ``at`` (a fresh id unless given: the
        broker's retries of one ping keep its id, a new tick has a new one)."""
        attributes = {
            "specversion": "1.0",
            "id": event_id or str(uuid.uuid4()),
            "type": PING_TYPE,
            "source": self.source,
            "time": at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "datacontenttype": self.content_type,
        }
        return wire.Message(attributes, self.data.encode())


def load_ping_sources(manifest_dir: Path) -> dict[str, PingSource]:
    """The PingSources under ``manifest_dir`` by name; ValueError naming the file for one the
    router cannot emulate faithfully."""
    found: dict[str, PingSource] = {}
    for path, obj in load_objects(manifest_dir):
        if (obj["apiVersion"], obj["kind"]) != (SOURCES_API, "PingSource"):
            continue
        metadata = obj.get("metadata")
        spec = obj.get("spec")
        if not isinstance(metadata, Mapping) or not isinstance(spec, Mapping):
            raise ValueError(f"{path}: PingSource needs metadata and spec")
        name = str(metadata.get("name") or "")
        where = f"{path}: PingSource {name}"
        schedule = spec.get("schedule")
        fields = schedule.split() if isinstance(schedule, str) else []
        if len(fields) != 5 or not all(_CRON_FIELD.match(f) for f in fields):
            raise ValueError(f"{where}: schedule must be a 5-field cron, not {schedule!r}")
        sink = spec.get("sink")
        ref = sink.get("ref") if isinstance(sink, Mapping) else None
        if not isinstance(ref, Mapping) or ref.get("kind") != "Broker":
            raise ValueError(f"{where}: only a Broker sink (sink.ref kind Broker) is emulated")
        found[name] = PingSource(
            name=name,
            namespace=str(metadata.get("namespace") or "default"),
            schedule=str(schedule),
            data=str(spec.get("data") or ""),
            content_type=str(spec.get("contentType") or "text/plain"),
            broker=str(ref.get("name")),
        )
    return found
