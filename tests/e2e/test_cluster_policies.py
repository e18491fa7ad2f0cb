"""ClusterNotificationPolicy end to end: a platform policy sees runs in the namespaces it
selects, renders templates from its templateNamespace, and creates runs there only."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest

from tekton_notifications import notifications, signing, taskruns
from tekton_notifications.devtools.chain import LocalChain
from tekton_notifications.events import parse_event
from tekton_notifications.models import TemplateRef, parse_template
from tekton_notifications.notifications import Notification
from tests.conftest import EXAMPLES, load_cloudevent
from tests.functions.serving import post_event

pytestmark = pytest.mark.slow
PLATFORM = "tekton-notifications"


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalChain]:
    manifests = (EXAMPLES / "policies", EXAMPLES / "templates", EXAMPLES / "cluster")
    with LocalChain(tmp_path_factory.mktemp("cluster"), manifests=manifests, time_scale=0.05) as c:
        yield c


def in_namespace(namespace: str, uid: str) -> dict[str, Any]:
    cloudevent = copy.deepcopy(load_cloudevent("08-pipelinerun-failed.json"))
    run = cloudevent["data"]["pipelineRun"]
    run["metadata"].update(namespace=namespace, uid=uid)
    cloudevent["source"] = f"/apis///namespaces/{namespace}//{run['metadata']['name']}"
    return cloudevent


def runs_from(chain: LocalChain, uid: str) -> list[dict[str, Any]]:
    return [
        r
        for r in chain.notification_runs()
        if r["metadata"]["labels"]["notifications.tekton.dev/source-uid"] == uid
    ]


def test_a_run_in_a_selected_namespace_notifies_from_the_platform_namespace(
    chain: LocalChain,
) -> None:
    chain.send(in_namespace("team-payments", "uid-payments"))
    chain.wait_idle()
    (run,) = runs_from(chain, "uid-payments")
    assert run["metadata"]["namespace"] == PLATFORM
    labels = run["metadata"]["labels"]
    assert labels["notifications.tekton.dev/policy"] == "platform-failures"
    assert labels["notifications.tekton.dev/policy-kind"] == "ClusterNotificationPolicy"
    assert run["metadata"]["annotations"]["notifications.tekton.dev/source-namespace"] == (
        "team-payments"
    )
    assert "ownerReferences" not in run["metadata"]  # owners never cross namespaces
    assert not chain.emulator or not chain.emulator.store.list(
        "tekton.dev", "taskruns", "team-payments"
    )


def test_a_run_outside_the_selected_namespaces_does_not_notify(chain: LocalChain) -> None:
    chain.send(in_namespace("staging", "uid-staging"))
    chain.wait_idle()
    assert runs_from(chain, "uid-staging") == []


def test_namespaced_and_cluster_policies_both_match_without_sharing_a_run(
    chain: LocalChain,
) -> None:
    chain.send(in_namespace("ci", "uid-ci"))
    chain.wait_idle()
    (namespaced,) = runs_from(chain, "uid-ci")  # team-* does not select ci
    assert namespaced["metadata"]["namespace"] == "ci"


def test_the_cluster_policy_status_counts_its_matches(chain: LocalChain) -> None:
    import time

    time.sleep(0.5)
    (platform,) = [p for p in chain.policies() if p["metadata"]["name"] == "platform-failures"]
    assert platform["status"]["matchCount"] >= 1
    ready = next(c for c in platform["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True"


def test_a_forged_rendered_event_cannot_launch_into_a_tenant_namespace(
    chain: LocalChain,
) -> None:
    event = parse_event(in_namespace("team-x", "uid-forged"), in_namespace("team-x", "u")["data"])
    template = parse_template(
        {
            "metadata": {"name": "platform-slack", "namespace": PLATFORM},
            "spec": {"taskRef": {"name": "send-to-webhook-slack"}},
        }
    )
    resource = taskruns.build_run(
        event=event,
        template=template,
        params={},
        policy_namespace=PLATFORM,
        policy="platform-failures",
        policy_kind="ClusterNotificationPolicy",
    )
    resource["metadata"]["namespace"] = "team-x"  # the forgery
    forged = Notification(
        # The key is no secret: a forger computes the one the launcher checks.
        key=taskruns.notification_key(
            event,
            policy_namespace=PLATFORM,
            policy="platform-failures",
            template="platform-slack",
            policy_kind="ClusterNotificationPolicy",
        ),
        event=event,
        policy_name="platform-failures",
        policy_namespace=PLATFORM,
        template_ref=TemplateRef("platform-slack"),
        resource=resource,
        policy_kind="ClusterNotificationPolicy",
    )
    # Signed with the installation's key: the launcher's own checks refuse it all the same.
    assert chain.signing_key is not None
    outgoing = signing.sign(forged.to_event(notifications.RENDERED), chain.signing_key)
    reply = post_event(
        chain.functions["task-launcher"].url, dict(outgoing.attributes), dict(outgoing.data)
    )
    assert reply.type == "dev.tekton.notification.failed.v1"
    assert reply.data["error"]["reason"] == "Refused"
    assert chain.emulator is not None
    assert chain.emulator.store.list("tekton.dev", "taskruns", "team-x") == []
