"""An in-memory emulator of the slice of the Kubernetes API that tekton-notifications uses.

What it is: a small HTTP/1.1 server (stdlib ``http.server``, keep-alive, one thread per
connection) that keeps objects in memory and speaks the wire protocol of the real API server
closely enough for the official ``kubernetes`` Python client: create/get/list/replace/patch/delete
of namespaced and cluster-scoped resources under ``/api/v1`` and ``/apis/{group}/{version}``, the
``status`` subresource, pod logs (``pods/log``, from ``KubeAPIServer.pod_logs``), JSON merge
and JSON patches, label and field selectors, watches that resume from a ``resourceVersion``
(410 once it is older than the kept history), Kubernetes ``Status`` error bodies, minimal
discovery, and a fault injector for tests of retries and error mapping. Every request is
recorded in ``KubeAPIServer.requests``.

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

from tekton_notifications.devtools.kubeapi.errors import KubeError, status_body
from tekton_notifications.devtools.kubeapi.faults import Fault, FaultInjector, FaultMode, FiredFault
from tekton_notifications.devtools.kubeapi.handler import RecordedRequest
from tekton_notifications.devtools.kubeapi.kinds import (
    CLUSTER_SCOPED_KINDS,
    Obj,
    plural_for_kind,
    split_api_version,
)
from tekton_notifications.devtools.kubeapi.patches import json_patch, merge_patch
from tekton_notifications.devtools.kubeapi.podlogs import PodLogs
from tekton_notifications.devtools.kubeapi.selectors import Selector
from tekton_notifications.devtools.kubeapi.server import KubeAPIServer, main
from tekton_notifications.devtools.kubeapi.store import ObjectStore

__all__ = [
    "CLUSTER_SCOPED_KINDS",
    "Fault",
    "FaultInjector",
    "FaultMode",
    "FiredFault",
    "KubeAPIServer",
    "KubeError",
    "Obj",
    "ObjectStore",
    "PodLogs",
    "RecordedRequest",
    "Selector",
    "json_patch",
    "main",
    "merge_patch",
    "plural_for_kind",
    "split_api_version",
    "status_body",
]
