"""Kinds, their plurals and scopes, API groups and versions: how the emulator names objects."""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]

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
