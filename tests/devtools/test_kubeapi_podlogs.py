"""The emulator's pods/log, read through the official client as the template renderer does:
tailLines then limitBytes, 404 for a missing pod, 400 for a container the pod lacks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tekton_notifications import kube
from tekton_notifications.devtools.kubeapi import KubeAPIServer

LOG = "collecting ...\n\x1b[31mFAILED\x1b[0m test_checkout\n1 failed in 2.1s\n"


@pytest.fixture(scope="module")
def core(tmp_path_factory: pytest.TempPathFactory) -> Iterator[client.CoreV1Api]:
    with KubeAPIServer() as api:
        api.store.create(
            "",
            "v1",
            "pods",
            "ci",
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "run-pod", "namespace": "ci"},
                "spec": {"containers": [{"name": "step-clone"}, {"name": "step-test"}]},
            },
        )
        api.pod_logs.put("ci", "run-pod", "step-test", LOG)
        path = Path(tmp_path_factory.mktemp("kube")) / "kubeconfig"
        api.write_kubeconfig(path)
        yield client.CoreV1Api(kube.connect(str(path)).api)


@pytest.mark.parametrize(
    ("options", "log"),
    [
        pytest.param({}, LOG, id="whole-log"),
        pytest.param({"tail_lines": 2}, LOG.split("\n", 1)[1], id="tail-lines"),
        pytest.param({"tail_lines": 2, "limit_bytes": 6}, "\x1b[31mF", id="limit-keeps-the-start"),
        pytest.param({"container": "step-clone"}, "", id="a-container-without-output"),
    ],
)
def test_a_containers_log_is_served(
    core: client.CoreV1Api, options: dict[str, Any], log: str
) -> None:
    options = {"container": "step-test", **options}
    assert core.read_namespaced_pod_log("run-pod", "ci", **options) == log


@pytest.mark.parametrize(
    ("pod", "container", "status", "message"),
    [
        pytest.param("no-pod", "step-test", 404, 'pods \\"no-pod\\" not found', id="no-pod"),
        pytest.param(
            "run-pod", "step-lint", 400, 'container \\"step-lint\\" in pod', id="no-container"
        ),
        pytest.param("run-pod", None, 400, "a container name must be specified", id="unnamed"),
    ],
)
def test_what_the_api_server_refuses_is_refused(
    core: client.CoreV1Api, pod: str, container: str | None, status: int, message: str
) -> None:
    with pytest.raises(ApiException) as refused:
        core.read_namespaced_pod_log(pod, "ci", container=container)
    assert refused.value.status == status
    assert message in str(refused.value.body)
