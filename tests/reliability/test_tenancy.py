"""Tenancy: what lives in one namespace never acts on, reads or writes another.

Two tenants, ``team-a`` and ``team-b``, each with policies, templates and a Secret in the API
emulator; the three functions served as deployed. Policies and templates of ``team-a`` try to
reach ``team-b``: match its runs, render its template, launch into it, and read Secrets through
the template context. Forged events (anyone who can post to the broker can send one) try the
same from the other side. Everything is refused, and the API emulator's request log shows
nothing was read where it should not be. Jinja2 sandbox escapes are in tests/core/test_sandbox.py.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Iterator, Mapping
from typing import Any

import httpx
import pytest

from tekton_notifications import notifications, vocabulary
from tekton_notifications.devtools.kubeapi import KubeAPIServer
from tekton_notifications.devtools.serving import UNSIGNED, ServedFunction, serve_function
from tests.reliability.forgery import refit

pytestmark = pytest.mark.slow

GROUP_VERSION = f"{vocabulary.GROUP}/{vocabulary.VERSION}"
SECRET_VALUE = "xoxb-0123456789-do-not-leak"
FUNCTIONS = ("policy-filter", "template-renderer", "task-launcher")


def policy(namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": GROUP_VERSION,
        "kind": "NotificationPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def template(namespace: str, name: str, **params: str) -> dict[str, Any]:
    return {
        "apiVersion": GROUP_VERSION,
        "kind": "NotificationTemplate",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"taskRef": {"name": "send-to-webhook-slack"}, "params": params},
    }


#: Templates of team-a that go looking for a Secret; none may find anything.
SECRET_HUNTS = {
    "hunt-variable": "{{ secrets['slack-webhook'] }}",
    "hunt-run": "{{ run.secrets }}",
    "hunt-event": "{{ event.secret }}",
    "hunt-template": "{{ template.secrets }}",
    "hunt-policy": "{{ policy.secretRef }}",
    "hunt-filter": "{{ 'slack-webhook' | secret }}",
    "hunt-global": "{{ lookup('v1', 'Secret', 'team-a', 'slack-webhook') }}",
    "hunt-namespace": "{{ namespace().secrets }}",
    "hunt-environment": "{{ env.KUBECONFIG }}",
}

OBJECTS: list[dict[str, Any]] = [
    policy(
        "team-a",
        "a-everything",
        events=[e for e in vocabulary.POLICY_EVENTS if e not in vocabulary.TRANSITION_EVENTS],
        templateRefs=[{"name": "a-notify"}],
    ),
    policy(
        "team-a",
        "a-wants-b",
        events=["failed"],
        when='event.namespace == "team-b" || run.metadata.namespace == "team-b"',
        templateRefs=[{"name": "a-notify"}],
    ),
    policy("team-a", "a-borrows-b", events=["failed"], templateRefs=[{"name": "b-only"}]),
    # Uses every secret-hunting template, so notifications naming them pass the claim check
    # (claims.py) and reach the sandbox; suspended, so no real event ever launches them.
    policy(
        "team-a",
        "a-hunts",
        events=["failed"],
        suspend=True,
        templateRefs=[{"name": name} for name in ("a-secret-by-name", *SECRET_HUNTS)],
    ),
    template("team-a", "a-notify", message="{{ event.namespace }}/{{ event.name }}"),
    template("team-a", "a-secret-by-name", **{"webhook-secret": "slack-webhook"}),
    *(template("team-a", name, message=source) for name, source in SECRET_HUNTS.items()),
    policy("team-b", "b-failed", events=["failed"], templateRefs=[{"name": "b-notify"}]),
    template("team-b", "b-notify", message="{{ event.name }}: {{ event.message }}"),
    template("team-b", "b-only", message="only in team-b"),
    *(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "slack-webhook", "namespace": namespace},
            "type": "Opaque",
            "data": {"token": base64.b64encode(SECRET_VALUE.encode()).decode()},
        }
        for namespace in ("team-a", "team-b")
    ),
    # A TaskRun of team-a whose failure message is team-a's business only.
    {
        "apiVersion": "tekton.dev/v1",
        "kind": "TaskRun",
        "metadata": {"name": "release-a-sign", "namespace": "team-a"},
        "status": {
            "conditions": [
                {
                    "type": "Succeeded",
                    "status": "False",
                    "reason": "Failed",
                    "message": "signing key team-a/cosign rejected",
                }
            ]
        },
    },
]


def run_event(namespace: str, name: str, event: str = "failed", **status: Any) -> dict[str, Any]:
    """A Tekton PipelineRun event in structured view."""
    condition = {"type": "Succeeded", "status": "False", "reason": "Failed", "message": "boom"}
    return {
        "specversion": "1.0",
        "id": f"{namespace}-{name}-{event}",
        "source": f"/apis///namespaces/{namespace}//{name}",
        "type": f"dev.tekton.event.pipelinerun.{event}.v1",
        "datacontenttype": "application/json",
        "data": {
            "pipelineRun": {
                "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}"},
                "spec": {"pipelineRef": {"name": "release"}},
                "status": {"conditions": [condition], **status},
            }
        },
    }


class Tenants:
    def __init__(self, api: KubeAPIServer, functions: Mapping[str, ServedFunction]) -> None:
        self.api, self.functions = api, functions

    def post(self, function: str, attributes: Mapping[str, Any], data: Any) -> httpx.Response:
        headers = {f"ce-{k}": str(v) for k, v in attributes.items() if k != "datacontenttype"}
        headers["content-type"] = "application/json"
        return httpx.post(
            self.functions[function].url, headers=headers, content=json.dumps(data), timeout=30
        )

    def post_event(self, function: str, cloudevent: Mapping[str, Any]) -> httpx.Response:
        attributes = {k: v for k, v in cloudevent.items() if k != "data"}
        return self.post(function, attributes, cloudevent["data"])

    def runs(self, namespace: str) -> list[dict[str, Any]]:
        return [
            run
            for run in self.api.store.list("tekton.dev", "taskruns", namespace)
            if run["metadata"].get("labels", {}).get(vocabulary.MANAGED_BY_LABEL)
        ]

    def requests_to(self, fragment: str) -> list[str]:
        return [f"{r.method} {r.path}" for r in self.api.requests if fragment in r.path]


@pytest.fixture(scope="module")
def tenants(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tenants]:
    workdir = tmp_path_factory.mktemp("tenancy")
    with KubeAPIServer() as api:
        for obj in OBJECTS:
            api.store.create_manifest(copy.deepcopy(obj))
        kubeconfig = workdir / "kubeconfig"
        api.write_kubeconfig(kubeconfig)
        functions: dict[str, ServedFunction] = {}
        try:
            for name in FUNCTIONS:
                functions[name] = serve_function(
                    name, {"KUBECONFIG": str(kubeconfig), **UNSIGNED}, workdir
                )
            yield Tenants(api, functions)
        finally:
            for function in functions.values():
                function.stop()


def matched_for(
    tenants: Tenants, cloudevent: Mapping[str, Any]
) -> tuple[dict[str, str], dict[str, Any]]:
    """The policy filter's reply to a Tekton event: one matched event."""
    reply = tenants.post_event("policy-filter", cloudevent)
    assert (reply.status_code, reply.headers.get("ce-type")) == (200, notifications.MATCHED)
    attributes = {k[3:]: v for k, v in reply.headers.items() if k.startswith("ce-")}
    return attributes, reply.json()


def test_policies_never_see_runs_of_another_namespace(tenants: Tenants) -> None:
    # team-b's failed run: only team-b's policy, although a-everything selects everything and
    # a-wants-b's CEL asks for team-b by name.
    reply = tenants.post_event("policy-filter", run_event("team-b", "release-b"))
    assert reply.status_code == 200
    assert reply.headers["ce-source"].endswith("/namespaces/team-b/notificationpolicies/b-failed")
    # A run event only team-a's catch-all would want: nothing.
    reply = tenants.post_event("policy-filter", run_event("team-b", "release-b", "started"))
    assert (reply.status_code, reply.headers["x-notifications-detail"]) == (
        202,
        "no policy matched",
    )
    # A namespace with no policy of its own: nothing either.
    reply = tenants.post_event("policy-filter", run_event("team-c", "release-c"))
    assert (reply.status_code, reply.headers["x-notifications-detail"]) == (
        202,
        "no policy matched",
    )


def test_a_template_of_another_namespace_is_never_rendered(tenants: Tenants) -> None:
    # a-borrows-b names b-only, which exists in team-b only.
    attributes, data = matched_for(tenants, run_event("team-b", "release-b"))
    data["policy"] = {"name": "a-borrows-b", "namespace": "team-a"}
    data["templateRef"] = {"name": "b-only", "params": {}}
    wire = data["runEvent"]
    wire["data"]["pipelineRun"]["metadata"]["namespace"] = "team-a"
    wire["attributes"]["source"] = "/apis///namespaces/team-a//release-b"
    reply = tenants.post("template-renderer", attributes, refit(data))
    assert reply.headers["ce-type"] == notifications.FAILED
    assert reply.json()["error"] == {
        "stage": "render",
        "reason": "TemplateNotFound",
        "message": "NotificationTemplate team-a/b-only does not exist",
    }


def rendered_for(tenants: Tenants, cloudevent: Mapping[str, Any]) -> tuple[dict[str, str], Any]:
    attributes, data = matched_for(tenants, cloudevent)
    reply = tenants.post("template-renderer", attributes, data)
    assert reply.headers["ce-type"] == notifications.RENDERED, reply.content
    return {k[3:]: v for k, v in reply.headers.items() if k.startswith("ce-")}, reply.json()


def test_a_rendered_run_aimed_at_another_namespace_is_refused(tenants: Tenants) -> None:
    attributes, data = rendered_for(tenants, run_event("team-b", "release-b"))
    forged = copy.deepcopy(data)
    forged["policy"] = {"name": "a-everything", "namespace": "team-a"}
    forged["runEvent"]["data"]["pipelineRun"]["metadata"]["namespace"] = "team-a"
    forged["runEvent"]["attributes"]["source"] = "/apis///namespaces/team-a//release-b"
    # The resource still says team-b: the launcher must not create it there.
    before = len(tenants.runs("team-b"))
    reply = tenants.post("task-launcher", attributes, refit(forged))
    # Refused as a forgery: team-a's policy does not use team-b's template (claims.py).
    assert reply.status_code == 400, reply.content
    assert "NotificationPolicy 'a-everything' does not use template" in reply.json()["message"]
    assert len(tenants.runs("team-b")) == before

    # Even naming a template the policy does use, the run must stay in the policy's namespace.
    forged["templateRef"]["name"] = "a-notify"
    reply = tenants.post("task-launcher", attributes, refit(forged))
    assert reply.headers["ce-type"] == notifications.FAILED
    assert reply.json()["error"] == {
        "stage": "launch",
        "reason": "Refused",
        "message": "run namespace 'team-b' differs from the policy's 'team-a'",
    }
    assert len(tenants.runs("team-b")) == before


def test_a_notification_about_a_run_outside_its_policys_namespace_is_refused(
    tenants: Tenants,
) -> None:
    """A forged matched event: team-b's policy and template, team-a's run.

    Rendering it would make the renderer read team-a's TaskRuns (the outcome of the
    PipelineRun's children) with its own service account, and hand their messages to
    team-b's template, in a run created in team-b.
    """
    attributes, data = matched_for(tenants, run_event("team-b", "release-b"))
    child = {"kind": "TaskRun", "name": "release-a-sign", "pipelineTaskName": "sign"}
    forged = copy.deepcopy(data)
    run = forged["runEvent"]["data"]["pipelineRun"]
    run["metadata"].update(namespace="team-a", name="release-a", uid="uid-release-a")
    run["status"]["childReferences"] = [child]
    forged["runEvent"]["attributes"]["source"] = "/apis///namespaces/team-a//release-a"
    requests_before = len(tenants.api.requests)

    reply = tenants.post("template-renderer", attributes, forged)
    assert reply.status_code == 400, reply.content
    assert reply.json()["message"] == (
        f"{attributes['id']}: notification data: the run is in namespace 'team-a', "
        "not in its policy's namespace 'team-b'"
    )
    read = [r.path for r in tenants.api.requests[requests_before:]]
    assert not [path for path in read if "/namespaces/team-a/" in path], read

    # The same forgery one step later: a rendered event for team-b about team-a's run.
    attributes, data = rendered_for(tenants, run_event("team-b", "release-b"))
    data["runEvent"] = forged["runEvent"]
    reply = tenants.post("task-launcher", attributes, data)
    assert reply.status_code == 400, reply.content
    assert "not in its policy's namespace 'team-b'" in reply.json()["message"]


def test_a_notification_claiming_a_cluster_policy_that_does_not_exist_is_refused(
    tenants: Tenants,
) -> None:
    attributes, data = matched_for(tenants, run_event("team-b", "release-b"))
    forged = copy.deepcopy(data)
    forged["policy"] = {
        "name": "no-such",
        "namespace": "team-b",
        "kind": "ClusterNotificationPolicy",
    }
    run = forged["runEvent"]["data"]["pipelineRun"]
    run["metadata"].update(namespace="team-a", name="release-a", uid="uid-release-a")
    run["status"]["childReferences"] = [
        {"kind": "TaskRun", "name": "release-a-sign", "pipelineTaskName": "sign"}
    ]
    forged["runEvent"]["attributes"]["source"] = "/apis///namespaces/team-a//release-a"
    requests_before = len(tenants.api.requests)
    reply = tenants.post("template-renderer", attributes, forged)
    read = [r.path for r in tenants.api.requests[requests_before:]]
    assert not [path for path in read if "/namespaces/team-a/" in path], read
    refused = reply.status_code == 400 or reply.headers.get("ce-type") == notifications.FAILED
    assert refused, reply.content


def test_a_rendered_run_with_inline_steps_is_refused(tenants: Tenants) -> None:
    attributes, data = rendered_for(tenants, run_event("team-b", "release-b"))
    forged = copy.deepcopy(data)
    spec = forged["resource"]["spec"]
    spec.pop("taskRef")
    spec["taskSpec"] = {
        "steps": [{"name": "exfiltrate", "image": "alpine", "script": "cat /var/run/secrets/*"}]
    }
    forged["resource"]["metadata"]["name"] += "-inline"
    reply = tenants.post("task-launcher", attributes, forged)
    assert reply.headers["ce-type"] == notifications.FAILED
    assert reply.json()["error"]["reason"] == "Refused"


@pytest.mark.parametrize("name", sorted(SECRET_HUNTS))
def test_no_template_variable_or_filter_reaches_a_secret(tenants: Tenants, name: str) -> None:
    attributes, data = matched_for(tenants, run_event("team-b", "release-b"))
    data["policy"] = {"name": "a-hunts", "namespace": "team-a"}
    data["templateRef"] = {"name": name, "params": {}}
    wire = data["runEvent"]
    wire["data"]["pipelineRun"]["metadata"]["namespace"] = "team-a"
    wire["attributes"]["source"] = "/apis///namespaces/team-a//release-b"
    reply = tenants.post("template-renderer", attributes, refit(data))
    assert reply.headers["ce-type"] == notifications.FAILED, reply.content
    error = reply.json()["error"]
    assert error["reason"] in ("UndefinedVariable", "InvalidTemplate"), error
    assert SECRET_VALUE not in reply.text
    assert tenants.requests_to("/secrets") == []


def test_a_secret_is_passed_by_name_only(tenants: Tenants) -> None:
    attributes, data = matched_for(tenants, run_event("team-b", "release-b"))
    data["policy"] = {"name": "a-hunts", "namespace": "team-a"}
    data["templateRef"] = {"name": "a-secret-by-name", "params": {}}
    wire = data["runEvent"]
    wire["data"]["pipelineRun"]["metadata"]["namespace"] = "team-a"
    wire["attributes"]["source"] = "/apis///namespaces/team-a//release-b"
    reply = tenants.post("template-renderer", attributes, refit(data))
    assert reply.headers["ce-type"] == notifications.RENDERED
    params = reply.json()["resource"]["spec"]["params"]
    assert params == [{"name": "webhook-secret", "value": "slack-webhook"}]
    assert SECRET_VALUE not in reply.text
    assert tenants.requests_to("/secrets") == []


def test_nothing_was_ever_read_or_written_across_namespaces(tenants: Tenants) -> None:
    """After everything above: no Secret read, no run created in a namespace not its own."""
    assert tenants.requests_to("/secrets") == []
    for namespace in ("team-a", "team-b"):
        for run in tenants.runs(namespace):
            annotations = run["metadata"]["annotations"]
            assert annotations[f"{vocabulary.LABEL_PREFIX}policy-namespace"] == namespace
