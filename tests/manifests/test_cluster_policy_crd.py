"""ClusterNotificationPolicy is NotificationPolicy, cluster-scoped, plus two fields."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

CRDS = Path(__file__).resolve().parents[2] / "crds"


def schema(name: str) -> dict[str, Any]:
    crd = yaml.safe_load((CRDS / name).read_text())
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]  # type: ignore[no-any-return]


def test_the_cluster_policy_spec_is_the_namespaced_one_plus_namespaces_and_template_namespace() -> (
    None
):
    namespaced = schema("notificationpolicy.yaml")["properties"]["spec"]
    cluster = copy.deepcopy(schema("clusternotificationpolicy.yaml")["properties"]["spec"])
    assert cluster["properties"].pop("templateNamespace")["type"] == "string"
    assert cluster["properties"]["selector"]["properties"].pop("namespaces")["type"] == "array"
    assert sorted(cluster.pop("required")) == sorted(
        [*namespaced.pop("required", []), "templateNamespace"]
    )
    assert cluster == namespaced


def test_the_cluster_policy_is_cluster_scoped_and_listed_in_the_kustomization() -> None:
    crd = yaml.safe_load((CRDS / "clusternotificationpolicy.yaml").read_text())
    assert crd["spec"]["scope"] == "Cluster"
    assert crd["spec"]["names"]["kind"] == "ClusterNotificationPolicy"
    assert "clusternotificationpolicy.yaml" in (CRDS / "kustomization.yaml").read_text()
