"""Specification of the Kubernetes API emulator, driven only through the official client.

Every behaviour is observed the way project code will observe it: ``kubernetes.client`` APIs,
``kubernetes.watch.Watch`` and ``kubernetes.config``; raw ``urllib`` only where the client cannot
express the request (a malformed body, an unknown path, a POST to an object).
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import urllib3
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from tekton_notifications import kube, subscribing
from tekton_notifications.devtools.kubeapi import KubeAPIServer, ObjectStore, plural_for_kind

G, V, NS, TR = "tekton.dev", "v1", "default", "taskruns"


@pytest.fixture
def server() -> Iterator[KubeAPIServer]:
    with KubeAPIServer() as srv:
        yield srv


@pytest.fixture
def api(server: KubeAPIServer) -> Iterator[client.ApiClient]:
    with client.ApiClient(client.Configuration(host=server.url)) as api_client:
        yield api_client


@pytest.fixture
def custom(api: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api)


@pytest.fixture
def core(api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api)


def taskrun(name: str, labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": f"{G}/{V}", "kind": "TaskRun", "metadata": meta, "spec": spec}


def create(custom: client.CustomObjectsApi, name: str, ns: str = NS, **kw: Any) -> dict[str, Any]:
    obj = custom.create_namespaced_custom_object(G, V, ns, TR, taskrun(name, **kw))
    return cast(dict[str, Any], obj)


def names(objs: list[dict[str, Any]]) -> list[str]:
    return [o["metadata"]["name"] for o in objs]


def status_of(exc: pytest.ExceptionInfo[ApiException]) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(exc.value.body)
    return body


# --------------------------------------------------------------------------- create and read


def test_the_store_stamps_objects_with_its_injected_clock() -> None:
    """A demo that fast-forwards time (issue 17) gives the emulator the same clock."""
    now = [1_790_000_000.0]
    store = ObjectStore(clock=lambda: now[0])
    first = store.create(G, V, TR, NS, taskrun("early", pipeline="p"))
    now[0] += 3600
    later = store.create(G, V, TR, NS, taskrun("late", pipeline="p"))
    assert (first["metadata"]["creationTimestamp"], later["metadata"]["creationTimestamp"]) == (
        "2026-09-21T14:13:20Z",
        "2026-09-21T15:13:20Z",
    )


def test_create_answers_201_with_the_stored_object_and_server_filled_metadata(
    custom: client.CustomObjectsApi,
) -> None:
    body, code, _ = custom.create_namespaced_custom_object_with_http_info(
        G, V, NS, TR, taskrun("build-1", pipeline="p")
    )

    assert code == 201
    meta = body["metadata"]
    assert uuid.UUID(meta["uid"]).version == 4
    assert meta["resourceVersion"].isdigit()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", meta["creationTimestamp"])
    assert (meta["generation"], meta["namespace"]) == (1, NS)
    assert custom.get_namespaced_custom_object(G, V, NS, TR, "build-1") == body


def test_resource_version_is_one_global_increasing_counter(
    custom: client.CustomObjectsApi, core: client.CoreV1Api
) -> None:
    first = create(custom, "a")["metadata"]["resourceVersion"]
    cm = core.create_namespaced_config_map(NS, {"metadata": {"name": "cm"}, "data": {"k": "v"}})
    second = create(custom, "b")["metadata"]["resourceVersion"]

    assert int(first) < int(cm.metadata.resource_version) < int(second)


def test_creating_an_existing_name_is_409_already_exists(custom: client.CustomObjectsApi) -> None:
    create(custom, "dup")

    with pytest.raises(ApiException) as exc:
        create(custom, "dup")

    assert exc.value.status == 409
    assert status_of(exc) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'taskruns.tekton.dev "dup" already exists',
        "reason": "AlreadyExists",
        "details": {"name": "dup", "group": G, "kind": TR},
        "code": 409,
    }


def test_generate_name_appends_a_random_five_character_suffix(
    custom: client.CustomObjectsApi,
) -> None:
    body = {"metadata": {"generateName": "notify-"}, "spec": {}}

    made = [custom.create_namespaced_custom_object(G, V, NS, TR, body) for _ in range(3)]

    assert all(re.fullmatch(r"notify-[a-z0-9]{5}", n) for n in names(made))
    assert len(set(names(made))) == 3


Call = Callable[[client.CustomObjectsApi, client.CoreV1Api], object]
ERRORS: list[tuple[str, Call, int, str, str]] = [
    (
        "get-missing",
        lambda c, _: c.get_namespaced_custom_object(G, V, NS, TR, "nope"),
        404,
        "NotFound",
        'taskruns.tekton.dev "nope" not found',
    ),
    (
        "delete-missing",
        lambda c, _: c.delete_namespaced_custom_object(G, V, NS, TR, "nope"),
        404,
        "NotFound",
        'taskruns.tekton.dev "nope" not found',
    ),
    (
        "core-missing",
        lambda _, k: k.read_namespaced_config_map("nope", NS),
        404,
        "NotFound",
        'configmaps "nope" not found',
    ),
    (
        "no-name",
        lambda c, _: c.create_namespaced_custom_object(G, V, NS, TR, {"spec": {}}),
        422,
        "Invalid",
        "name or generateName is required",
    ),
    (
        "bad-name",
        lambda c, _: c.create_namespaced_custom_object(G, V, NS, TR, taskrun("Not_DNS")),
        422,
        "Invalid",
        "RFC 1123",
    ),
    (
        "namespace-mismatch",
        lambda c, _: c.create_namespaced_custom_object(
            G, V, NS, TR, {"metadata": {"name": "x", "namespace": "other"}}
        ),
        400,
        "BadRequest",
        "does not match the namespace",
    ),
    (
        "bad-label-selector",
        lambda c, _: c.list_namespaced_custom_object(G, V, NS, TR, label_selector="a in b"),
        400,
        "BadRequest",
        "unable to parse requirement",
    ),
    (
        "unsupported-field-selector",
        lambda c, _: c.list_namespaced_custom_object(G, V, NS, TR, field_selector="spec.x=1"),
        400,
        "BadRequest",
        "field label not supported",
    ),
]


@pytest.mark.parametrize(
    ("call", "code", "reason", "message"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS]
)
def test_errors_answer_a_kubernetes_status_body(
    custom: client.CustomObjectsApi,
    core: client.CoreV1Api,
    call: Call,
    code: int,
    reason: str,
    message: str,
) -> None:
    with pytest.raises(ApiException) as exc:
        call(custom, core)

    status = status_of(exc)
    assert (exc.value.status, status["code"], status["reason"]) == (code, code, reason)
    assert message in status["message"]
    assert status["kind"] == "Status" and status["status"] == "Failure"


@pytest.mark.parametrize(
    ("method", "path", "body", "code", "reason"),
    [
        ("POST", f"/apis/{G}/{V}/namespaces/{NS}/{TR}", b"{not json", 400, "BadRequest"),
        ("GET", "/healthz", None, 404, "NotFound"),
        ("POST", f"/apis/{G}/{V}/namespaces/{NS}/{TR}/x", b"{}", 405, "MethodNotAllowed"),
    ],
    ids=["malformed-json", "unknown-path", "post-to-an-object"],
)
def test_requests_the_client_cannot_express_get_a_status_too(
    server: KubeAPIServer, method: str, path: str, body: bytes | None, code: int, reason: str
) -> None:
    headers = {"Content-Type": "application/json"}
    request = urllib.request.Request(server.url + path, body, headers, method=method)

    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(request, timeout=5)

    with exc.value:
        assert exc.value.code == code
        assert json.loads(exc.value.read())["reason"] == reason


# --------------------------------------------------------------------------- list and selectors


def test_list_is_per_namespace_or_across_all_namespaces(custom: client.CustomObjectsApi) -> None:
    create(custom, "a", ns="team-a")
    create(custom, "b", ns="team-b")
    last = create(custom, "c", ns="team-b")["metadata"]["resourceVersion"]

    team_b = custom.list_namespaced_custom_object(G, V, "team-b", TR)
    everywhere = custom.list_cluster_custom_object(G, V, TR)

    assert names(team_b["items"]) == ["b", "c"]
    assert names(everywhere["items"]) == ["a", "b", "c"]
    assert everywhere["kind"] == "TaskRunList" and everywhere["apiVersion"] == f"{G}/{V}"
    assert everywhere["metadata"]["resourceVersion"] == last
    assert everywhere["items"][0]["kind"] == "TaskRun"


def test_objects_are_stored_by_group_and_plural_so_any_version_reads_them(
    custom: client.CustomObjectsApi,
) -> None:
    create(custom, "a")

    got = custom.get_namespaced_custom_object(G, "v1beta1", NS, TR, "a")

    assert got["apiVersion"] == f"{G}/{V}"


def test_list_pages_with_limit_and_continue(custom: client.CustomObjectsApi) -> None:
    for name in ("a", "b", "c"):
        create(custom, name)

    page1 = custom.list_namespaced_custom_object(G, V, NS, TR, limit=2)
    token = page1["metadata"]["continue"]
    page2 = custom.list_namespaced_custom_object(G, V, NS, TR, limit=2, _continue=token)

    assert names(page1["items"]) == ["a", "b"]
    assert names(page2["items"]) == ["c"] and "continue" not in page2["metadata"]


LABELLED = {
    "web-front": {"app": "web", "tier": "front"},
    "web-plain": {"app": "web"},
    "db-back": {"app": "db", "tier": "back"},
    "bare": {},
}


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("app=web", ["web-front", "web-plain"]),
        ("app==web", ["web-front", "web-plain"]),
        ("app!=web", ["bare", "db-back"]),
        ("tier in (front,back)", ["db-back", "web-front"]),
        ("tier notin (front)", ["bare", "db-back", "web-plain"]),
        ("tier", ["db-back", "web-front"]),
        ("!tier", ["bare", "web-plain"]),
        ("app=web,!tier", ["web-plain"]),
        ("app in (web, db),tier!=back", ["web-front", "web-plain"]),
    ],
    ids=["eq", "eqeq", "neq", "in", "notin", "exists", "not-exists", "and", "set-and-neq"],
)
def test_label_selector(
    custom: client.CustomObjectsApi, selector: str, expected: list[str]
) -> None:
    for name, labels in LABELLED.items():
        create(custom, name, labels=labels)

    found = custom.list_namespaced_custom_object(G, V, NS, TR, label_selector=selector)

    assert names(found["items"]) == expected


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("metadata.name=a", ["a", "a"]),
        ("metadata.name==b", ["b"]),
        ("metadata.namespace=ns2", ["a"]),
        ("metadata.namespace!=ns2,metadata.name!=b", ["a"]),
    ],
    ids=["name-eq", "name-eqeq", "namespace-eq", "both-neq"],
)
def test_field_selector_on_name_and_namespace(
    custom: client.CustomObjectsApi, selector: str, expected: list[str]
) -> None:
    create(custom, "a", ns="ns1")
    create(custom, "b", ns="ns1")
    create(custom, "a", ns="ns2")

    found = custom.list_cluster_custom_object(G, V, TR, field_selector=selector)

    assert names(found["items"]) == expected


# --------------------------------------------------------------------------- updates


@pytest.mark.parametrize(
    ("patch", "content_type", "generation", "labels", "spec"),
    [
        ({"metadata": {"labels": {"x": "1"}}}, None, 1, {"x": "1"}, {"a": 1}),
        ({"spec": {"a": 2}}, None, 2, None, {"a": 2}),
        ({"spec": {"a": None, "b": 3}}, None, 2, None, {"b": 3}),
        ([{"op": "replace", "path": "/spec/a", "value": 5}], "json", 2, None, {"a": 5}),
        (
            [{"op": "add", "path": "/metadata/labels", "value": {"y": "2"}}],
            "json",
            1,
            {"y": "2"},
            {"a": 1},
        ),
    ],
    ids=[
        "merge-labels",
        "merge-spec",
        "merge-null-deletes",
        "json-patch-spec",
        "json-patch-labels",
    ],
)
def test_patch_bumps_generation_only_when_spec_changes(
    custom: client.CustomObjectsApi,
    patch: Any,
    content_type: str | None,
    generation: int,
    labels: dict[str, str] | None,
    spec: dict[str, Any],
) -> None:
    before = create(custom, "a", a=1)["metadata"]["resourceVersion"]
    ctype = "application/json-patch+json" if content_type == "json" else None

    after = custom.patch_namespaced_custom_object(G, V, NS, TR, "a", patch, _content_type=ctype)

    assert after["metadata"]["generation"] == generation
    assert after["metadata"].get("labels") == labels and after["spec"] == spec
    assert int(after["metadata"]["resourceVersion"]) > int(before)


def test_a_patch_that_changes_nothing_keeps_the_resource_version(
    custom: client.CustomObjectsApi,
) -> None:
    before = create(custom, "a", a=1)

    after = custom.patch_namespaced_custom_object(G, V, NS, TR, "a", {"spec": {"a": 1}})

    assert after == before


def test_failed_json_patch_test_operation_is_422_and_changes_nothing(
    custom: client.CustomObjectsApi,
) -> None:
    create(custom, "a", a=1)
    ops = [{"op": "test", "path": "/spec/a", "value": 2}, {"op": "remove", "path": "/spec/a"}]

    with pytest.raises(ApiException) as exc:
        custom.patch_namespaced_custom_object(
            G, V, NS, TR, "a", ops, _content_type="application/json-patch+json"
        )

    assert exc.value.status == 422
    assert custom.get_namespaced_custom_object(G, V, NS, TR, "a")["spec"] == {"a": 1}


def test_replace_with_a_stale_resource_version_is_409_conflict(
    custom: client.CustomObjectsApi,
) -> None:
    stale = create(custom, "a", a=1)
    custom.patch_namespaced_custom_object(G, V, NS, TR, "a", {"spec": {"a": 2}})
    stale["spec"] = {"a": 3}

    with pytest.raises(ApiException) as exc:
        custom.replace_namespaced_custom_object(G, V, NS, TR, "a", stale)

    assert (exc.value.status, status_of(exc)["reason"]) == (409, "Conflict")
    assert "the object has been modified" in status_of(exc)["message"]
    fresh = custom.get_namespaced_custom_object(G, V, NS, TR, "a")
    fresh["spec"] = {"a": 3}
    replaced = custom.replace_namespaced_custom_object(G, V, NS, TR, "a", fresh)
    assert (replaced["spec"], replaced["metadata"]["generation"]) == ({"a": 3}, 3)


def test_custom_resource_replace_needs_a_resource_version(custom: client.CustomObjectsApi) -> None:
    create(custom, "a")

    with pytest.raises(ApiException) as exc:
        custom.replace_namespaced_custom_object(G, V, NS, TR, "a", taskrun("a", a=2))

    assert (exc.value.status, status_of(exc)["reason"]) == (422, "Invalid")


def test_status_subresource_changes_only_status(custom: client.CustomObjectsApi) -> None:
    created = custom.create_namespaced_custom_object(
        G, V, NS, TR, {**taskrun("a", a=1), "status": {"ignored": True}}
    )
    assert "status" not in created  # status is reset on create

    done = {"conditions": [{"type": "Succeeded", "status": "True"}]}
    patched = custom.patch_namespaced_custom_object_status(
        G, V, NS, TR, "a", {"status": done, "spec": {"a": 99}}
    )
    assert (patched["status"], patched["spec"], patched["metadata"]["generation"]) == (
        done,
        {"a": 1},
        1,
    )

    main = custom.patch_namespaced_custom_object(
        G, V, NS, TR, "a", {"status": {"conditions": []}, "spec": {"a": 2}}
    )
    assert (main["status"], main["spec"], main["metadata"]["generation"]) == (done, {"a": 2}, 2)

    main["status"] = {"podName": "p"}
    main["spec"] = {"a": 100}
    replaced = custom.replace_namespaced_custom_object_status(G, V, NS, TR, "a", main)
    assert (replaced["status"], replaced["spec"]) == ({"podName": "p"}, {"a": 2})
    assert custom.get_namespaced_custom_object_status(G, V, NS, TR, "a") == replaced


def test_delete_removes_the_object_and_returns_it(custom: client.CustomObjectsApi) -> None:
    created = create(custom, "a")

    deleted = custom.delete_namespaced_custom_object(G, V, NS, TR, "a")

    assert deleted["metadata"]["uid"] == created["metadata"]["uid"]
    assert custom.list_namespaced_custom_object(G, V, NS, TR)["items"] == []


def test_delete_collection_honours_the_label_selector(custom: client.CustomObjectsApi) -> None:
    create(custom, "keep", labels={"app": "keep"})
    create(custom, "drop-1", labels={"app": "drop"})
    create(custom, "drop-2", labels={"app": "drop"})

    custom.delete_collection_namespaced_custom_object(G, V, NS, TR, label_selector="app=drop")

    assert names(custom.list_namespaced_custom_object(G, V, NS, TR)["items"]) == ["keep"]


# --------------------------------------------------------------------------- core and cluster scope


def test_core_configmaps_round_trip_through_core_v1_api(core: client.CoreV1Api) -> None:
    made = core.create_namespaced_config_map(NS, {"metadata": {"name": "cfg"}, "data": {"a": "1"}})
    core.patch_namespaced_config_map("cfg", NS, {"data": {"b": "2"}})  # strategic merge patch
    current = core.read_namespaced_config_map("cfg", NS)
    current.data["c"] = "3"
    replaced = core.replace_namespaced_config_map("cfg", NS, current)

    assert replaced.data == {"a": "1", "b": "2", "c": "3"}
    assert replaced.metadata.uid == made.metadata.uid
    assert [c.metadata.name for c in core.list_namespaced_config_map(NS).items] == ["cfg"]
    assert core.delete_namespaced_config_map("cfg", NS)["status"] == "Success"
    assert core.list_config_map_for_all_namespaces().items == []


def test_namespaces_and_cluster_scoped_custom_objects_have_no_namespace(
    core: client.CoreV1Api, custom: client.CustomObjectsApi
) -> None:
    core.create_namespace({"metadata": {"name": "team-a"}})
    policy = {"kind": "ClusterNotificationPolicy", "metadata": {"name": "all"}, "spec": {}}
    group, plural = "notifications.tekton.dev", "clusternotificationpolicies"
    custom.create_cluster_custom_object(group, "v1alpha1", plural, policy)

    assert core.read_namespace("team-a").metadata.namespace is None
    got = custom.get_cluster_custom_object(group, "v1alpha1", plural, "all")
    assert "namespace" not in got["metadata"]
    assert got["apiVersion"] == f"{group}/v1alpha1"
    assert names(custom.list_cluster_custom_object(group, "v1alpha1", plural)["items"]) == ["all"]


def test_events_k8s_io_events_use_the_generic_group_path(api: client.ApiClient) -> None:
    events = client.EventsV1Api(api)
    event = client.EventsV1Event(
        metadata=client.V1ObjectMeta(generate_name="taskrun-a."),
        event_time=time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime()),
        reason="NotificationSent",
        note="sent to slack",
        action="Notify",
        type="Normal",
        reporting_controller="tekton-notifications",
        reporting_instance="router",
    )

    created = events.create_namespaced_event(NS, event)

    assert created.metadata.name.startswith("taskrun-a.")
    assert [e.reason for e in events.list_namespaced_event(NS).items] == ["NotificationSent"]


def test_discovery_answers_version_api_and_apis(api: client.ApiClient) -> None:
    assert client.VersionApi(api).get_code().major == "1"
    assert client.CoreApi(api).get_api_versions().versions == ["v1"]
    groups = {g.name for g in client.ApisApi(api).get_api_versions().groups}
    assert {"tekton.dev", "events.k8s.io"} <= groups


# --------------------------------------------------------------------------- watch


def test_watch_from_a_list_resource_version_sees_every_later_change(
    custom: client.CustomObjectsApi,
) -> None:
    create(custom, "before")
    rv = custom.list_cluster_custom_object(G, V, TR)["metadata"]["resourceVersion"]
    create(custom, "a", a=1)
    custom.patch_namespaced_custom_object(G, V, NS, TR, "a", {"spec": {"a": 2}})
    custom.delete_namespaced_custom_object(G, V, NS, TR, "a")

    seen = []
    w = watch.Watch()
    for event in w.stream(
        custom.list_cluster_custom_object, G, V, TR, resource_version=rv, timeout_seconds=5
    ):
        seen.append((event["type"], event["object"]["metadata"]["name"]))
        if event["type"] == "DELETED":
            w.stop()

    assert seen == [("ADDED", "a"), ("MODIFIED", "a"), ("DELETED", "a")]


def test_watch_streams_live_changes_in_its_namespace_only(custom: client.CustomObjectsApi) -> None:
    rv = custom.list_namespaced_custom_object(G, V, NS, TR)["metadata"]["resourceVersion"]

    def later() -> None:
        create(custom, "elsewhere", ns="other")
        create(custom, "here")

    timer = threading.Timer(0.2, later)
    timer.start()
    w = watch.Watch()
    stream = w.stream(
        custom.list_namespaced_custom_object, G, V, NS, TR, resource_version=rv, timeout_seconds=5
    )
    first = next(iter(stream))
    w.stop()
    timer.join()

    assert (first["type"], first["object"]["metadata"]["name"]) == ("ADDED", "here")


def test_watch_without_resource_version_starts_with_synthetic_added_events(
    api: client.ApiClient, core: client.CoreV1Api
) -> None:
    core.create_namespaced_config_map(NS, {"metadata": {"name": "existing"}})

    w = watch.Watch()
    stream = w.stream(core.list_namespaced_config_map, NS, timeout_seconds=5)
    first = next(iter(stream))
    w.stop()

    assert first["type"] == "ADDED"
    assert isinstance(first["object"], client.V1ConfigMap)
    assert first["object"].metadata.name == "existing"


def test_watch_label_selector_turns_label_changes_into_added_and_deleted(
    custom: client.CustomObjectsApi,
) -> None:
    rv = custom.list_namespaced_custom_object(G, V, NS, TR)["metadata"]["resourceVersion"]
    create(custom, "a")
    custom.patch_namespaced_custom_object(G, V, NS, TR, "a", {"metadata": {"labels": {"n": "y"}}})
    custom.patch_namespaced_custom_object(G, V, NS, TR, "a", {"spec": {"x": 1}})
    custom.patch_namespaced_custom_object(G, V, NS, TR, "a", {"metadata": {"labels": None}})

    seen = []
    w = watch.Watch()
    for event in w.stream(
        custom.list_namespaced_custom_object,
        *(G, V, NS, TR),
        label_selector="n=y",
        resource_version=rv,
        timeout_seconds=5,
    ):
        seen.append(event["type"])
        if len(seen) == 3:
            w.stop()

    assert seen == ["ADDED", "MODIFIED", "DELETED"]


def test_raw_watch_streams_json_lines_and_ends_after_timeout_seconds(
    custom: client.CustomObjectsApi,
) -> None:
    rv = create(custom, "a")["metadata"]["resourceVersion"]
    create(custom, "b")
    started = time.monotonic()

    response = custom.list_namespaced_custom_object(
        G, V, NS, TR, watch=True, resource_version=rv, timeout_seconds=1, _preload_content=False
    )
    lines = response.read().decode().splitlines()
    response.release_conn()

    assert 0.9 < time.monotonic() - started < 3
    assert response.headers["Transfer-Encoding"] == "chunked"
    events = [json.loads(line) for line in lines]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "b")]


@pytest.mark.parametrize("how", ["compaction", "history-limit"])
def test_watch_from_a_resource_version_older_than_the_history_is_410_expired(
    server: KubeAPIServer, custom: client.CustomObjectsApi, how: str
) -> None:
    old = create(custom, "a")["metadata"]["resourceVersion"]
    server.store.history_limit = 2 if how == "history-limit" else 1000
    for i in range(3):
        create(custom, f"later-{i}")
    if how == "compaction":
        server.store.compact()

    with pytest.raises(ApiException) as exc:
        for _ in watch.Watch().stream(
            custom.list_cluster_custom_object, G, V, TR, resource_version=old, timeout_seconds=5
        ):
            pass

    assert exc.value.status == 410
    assert "Expired: too old resource version" in exc.value.reason


def test_stop_ends_an_open_watch_promptly(server: KubeAPIServer) -> None:
    outcome: list[object] = []

    def watch_forever() -> None:
        with client.ApiClient(client.Configuration(host=server.url)) as api_client:
            custom = client.CustomObjectsApi(api_client)
            try:
                events = watch.Watch().stream(
                    custom.list_cluster_custom_object, G, V, TR, timeout_seconds=60
                )
                outcome.append(list(events))
            except Exception as exc:  # a cut connection is also an acceptable ending
                outcome.append(exc)

    thread = threading.Thread(target=watch_forever)
    thread.start()
    deadline = time.monotonic() + 5
    while not any(r.query.get("watch") == "true" for r in server.requests):
        assert time.monotonic() < deadline, "watch never reached the server"
        time.sleep(0.01)
    time.sleep(0.05)
    started = time.monotonic()

    server.stop()
    thread.join(timeout=3)

    assert not thread.is_alive()
    assert time.monotonic() - started < 2
    assert outcome


# --------------------------------------------------------------------------- faults


def test_an_injected_fault_fires_once_then_requests_succeed(
    server: KubeAPIServer, custom: client.CustomObjectsApi
) -> None:
    server.faults.add(500, method="POST", path=rf"/{TR}$")

    with pytest.raises(ApiException) as exc:
        create(custom, "a")
    created = create(custom, "a")

    assert (exc.value.status, status_of(exc)["reason"]) == (500, "InternalError")
    assert created["metadata"]["name"] == "a"
    assert [(f.method, f.status) for f in server.faults.fired] == [("POST", 500)]
    assert server.faults.pending == []


def test_faults_match_on_method_and_path_regex(
    server: KubeAPIServer, custom: client.CustomObjectsApi
) -> None:
    server.faults.add(503, method="POST", path=r"/pipelineruns$", count=2)

    create(custom, "taskruns-are-not-matched")
    custom.list_namespaced_custom_object(G, V, NS, "pipelineruns")  # GET is not matched

    for _ in range(2):
        with pytest.raises(ApiException):
            custom.create_namespaced_custom_object(G, V, NS, "pipelineruns", taskrun("p"))
    custom.create_namespaced_custom_object(G, V, NS, "pipelineruns", taskrun("p"))
    assert len(server.faults.fired) == 2


@pytest.mark.parametrize(
    ("code", "reason", "message", "want_reason"),
    [
        (403, None, None, "Forbidden"),
        (404, None, None, "NotFound"),
        (409, None, None, "Conflict"),
        (422, None, None, "Invalid"),
        (500, None, None, "InternalError"),
        (503, None, None, "ServiceUnavailable"),
        (403, "Forbidden", 'taskruns.tekton.dev is forbidden: User "x"', "Forbidden"),
    ],
    ids=["403", "404", "409", "422", "500", "503", "custom-message"],
)
def test_status_faults_answer_a_status_with_the_usual_reason(
    server: KubeAPIServer,
    custom: client.CustomObjectsApi,
    code: int,
    reason: str | None,
    message: str | None,
    want_reason: str,
) -> None:
    server.faults.add(code, reason=reason, message=message)

    with pytest.raises(ApiException) as exc:
        create(custom, "a")

    status = status_of(exc)
    assert (exc.value.status, status["code"], status["reason"]) == (code, code, want_reason)
    if message:
        assert status["message"] == message


def test_429_fault_sends_retry_after(
    server: KubeAPIServer, custom: client.CustomObjectsApi
) -> None:
    server.faults.add(429, method="POST")

    with pytest.raises(ApiException) as exc:
        create(custom, "a")

    assert exc.value.status == 429
    assert exc.value.headers["Retry-After"] == "1"
    assert status_of(exc)["reason"] == "TooManyRequests"
    assert status_of(exc)["details"] == {"retryAfterSeconds": 1}


def test_urllib3_silently_retries_a_get_answered_429_with_retry_after(
    server: KubeAPIServer, custom: client.CustomObjectsApi
) -> None:
    """Quirk of the real client: its default urllib3 Retry honours Retry-After on GET."""
    server.faults.add(429, method="GET")

    items = custom.list_namespaced_custom_object(G, V, NS, TR)["items"]

    assert items == []
    assert len(server.faults.fired) == 1
    assert [r.method for r in server.requests] == ["GET", "GET"]


def test_dropped_connection_is_a_client_side_error(
    server: KubeAPIServer, custom: client.CustomObjectsApi
) -> None:
    server.faults.add(mode="drop", method="POST")

    with pytest.raises(urllib3.exceptions.ProtocolError):
        create(custom, "a")

    assert create(custom, "a")["metadata"]["name"] == "a"


@pytest.mark.parametrize(("drops", "succeeds"), [(3, True), (4, False)], ids=["3", "4"])
def test_urllib3_retries_dropped_gets_three_times(
    server: KubeAPIServer, custom: client.CustomObjectsApi, drops: int, succeeds: bool
) -> None:
    server.faults.add(mode="drop", method="GET", count=drops)

    if succeeds:
        assert custom.list_namespaced_custom_object(G, V, NS, TR)["items"] == []
    else:
        with pytest.raises(urllib3.exceptions.MaxRetryError):
            custom.list_namespaced_custom_object(G, V, NS, TR)


def test_timeout_fault_holds_the_request_until_the_client_gives_up(
    server: KubeAPIServer, custom: client.CustomObjectsApi
) -> None:
    server.faults.add(mode="timeout", method="POST", delay=5)

    started = time.monotonic()
    with pytest.raises(urllib3.exceptions.ReadTimeoutError):
        custom.create_namespaced_custom_object(G, V, NS, TR, taskrun("a"), _request_timeout=0.3)

    assert time.monotonic() - started < 2
    assert server.faults.fired[0].mode == "timeout"


def outcomes(seed: int, requests: int = 40) -> tuple[list[str], int]:
    with KubeAPIServer() as srv:
        srv.faults.random(0.5, seed=seed, method="GET")
        cfg = client.Configuration(host=srv.url)
        cfg.retries = False  # count every outcome, no transparent urllib3 retries
        seen = []
        with client.ApiClient(cfg) as api_client:
            custom = client.CustomObjectsApi(api_client)
            for _ in range(requests):
                try:
                    custom.list_namespaced_custom_object(G, V, NS, TR)
                    seen.append("ok")
                except ApiException as exc:
                    seen.append(str(exc.status))
                except urllib3.exceptions.HTTPError:
                    seen.append("drop")
        return seen, len(srv.faults.fired)


def test_random_faults_are_reproducible_for_a_seed() -> None:
    first, fired = outcomes(seed=7)
    again, _ = outcomes(seed=7)
    other, _ = outcomes(seed=8)

    assert first == again != other
    assert set(first) == {"ok", "500", "429", "drop"}
    assert fired == sum(o != "ok" for o in first)
    assert 10 <= fired <= 30


def test_clear_forgets_pending_faults_and_history(
    server: KubeAPIServer, custom: client.CustomObjectsApi
) -> None:
    server.faults.add(500, method="GET")
    server.faults.random(1.0, seed=1)
    with pytest.raises(ApiException):
        custom.list_namespaced_custom_object(G, V, NS, TR)

    server.faults.clear()

    assert custom.list_namespaced_custom_object(G, V, NS, TR)["items"] == []
    assert (server.faults.pending, server.faults.fired) == ([], [])


def test_every_request_is_recorded(server: KubeAPIServer, custom: client.CustomObjectsApi) -> None:
    create(custom, "a")
    custom.list_namespaced_custom_object(G, V, NS, TR, label_selector="app=x")

    post, get = server.requests
    assert (post.method, post.path, post.body["metadata"]) == (
        "POST",
        f"/apis/{G}/{V}/namespaces/{NS}/{TR}",
        {"name": "a"},
    )
    assert (get.method, get.query, get.body) == ("GET", {"labelSelector": "app=x"}, None)


# --------------------------------------------------------------------------- manifests, config, CLI

MANIFESTS = """\
apiVersion: tekton.dev/v1
kind: TaskRun
metadata: {name: done, namespace: ci, labels: {app: demo}}
spec: {taskRef: {name: build}}
status: {conditions: [{type: Succeeded, status: "True"}]}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {channel: "#ci"}
---
apiVersion: v1
kind: Namespace
metadata: {name: ci}
---
apiVersion: v1
kind: List
items:
  - {apiVersion: v1, kind: Secret, metadata: {name: token}, stringData: {t: x}}
"""

CRD_AND_WIDGET = """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgetz.example.com}
spec:
  group: example.com
  scope: Cluster
  names: {kind: Widget, plural: widgetz}
  versions: [{name: v2, served: true, storage: true}]
---
apiVersion: example.com/v2
kind: Widget
metadata: {name: w1}
"""


def test_load_manifests_creates_every_document_of_files_and_directories(
    tmp_path: Path, server: KubeAPIServer, core: client.CoreV1Api, custom: client.CustomObjectsApi
) -> None:
    (tmp_path / "objects.yaml").write_text(MANIFESTS)
    (tmp_path / "nested").mkdir()
    (tmp_path / "nested" / "a-crd.yml").write_text(CRD_AND_WIDGET)
    (tmp_path / "nested" / "notes.txt").write_text("not a manifest")

    assert server.load_manifests(tmp_path) == 6

    done = custom.get_namespaced_custom_object(G, V, "ci", TR, "done")
    assert done["status"]["conditions"][0]["status"] == "True"  # preloaded status is kept
    assert core.read_namespaced_config_map("settings", NS).data == {"channel": "#ci"}
    assert core.read_namespaced_secret("token", NS).metadata.name == "token"
    assert core.read_namespace("ci").metadata.name == "ci"
    widget = custom.get_cluster_custom_object("example.com", "v2", "widgetz", "w1")
    assert widget["kind"] == "Widget"


def test_written_kubeconfig_works_with_load_kube_config(
    tmp_path: Path, server: KubeAPIServer
) -> None:
    path = tmp_path / "kubeconfig"
    server.write_kubeconfig(path, namespace="ci")
    server.store.create(G, V, TR, "ci", taskrun("preloaded"))

    cfg = client.Configuration()
    config.load_kube_config(config_file=str(path), client_configuration=cfg)
    _, active = config.list_kube_config_contexts(config_file=str(path))
    with client.ApiClient(cfg) as api_client:
        found = client.CustomObjectsApi(api_client).list_namespaced_custom_object(G, V, "ci", TR)

    assert cfg.host == server.url
    assert active["context"]["namespace"] == "ci"
    assert names(found["items"]) == ["preloaded"]


def test_cli_serves_loaded_manifests_until_interrupted(tmp_path: Path) -> None:
    (tmp_path / "objects.yaml").write_text(MANIFESTS)
    kubeconfig = tmp_path / "kubeconfig"
    command = [sys.executable, "-m", "tekton_notifications.devtools.kubeapi", "--port", "0"]
    command += ["--load", str(tmp_path), "--kubeconfig", str(kubeconfig)]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        try:
            cfg = client.Configuration()
            config.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)
            with client.ApiClient(cfg) as api_client:
                got = client.CoreV1Api(api_client).read_namespaced_config_map("settings", NS)
        finally:
            proc.send_signal(signal.SIGINT)
            _, stderr = proc.communicate(timeout=10)

    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url) and cfg.host == url
    assert got.data == {"channel": "#ci"}
    assert proc.returncode == 0
    assert "4 objects loaded" in stderr


@pytest.mark.parametrize(
    ("kind", "plural"),
    [
        ("NotificationPolicy", "notificationpolicies"),
        ("ClusterNotificationPolicy", "clusternotificationpolicies"),
        ("NotificationTemplate", "notificationtemplates"),
        ("TaskRun", "taskruns"),
        ("Event", "events"),
        ("Lease", "leases"),
        ("Ingress", "ingresses"),
        ("Gateway", "gateways"),
    ],
)
def test_plural_for_kind(kind: str, plural: str) -> None:
    assert plural_for_kind(kind) == plural


def test_store_learns_kind_plural_and_scope_from_a_crd() -> None:
    store = ObjectStore()
    crd: dict[str, Any] = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
    }
    crd["spec"] = {"group": "x.io", "scope": "Cluster", "names": {"kind": "Foo", "plural": "fooz"}}
    store.create_manifest({**crd, "metadata": {"name": "fooz.x.io"}})

    assert (store.plural_for("Foo"), store.is_namespaced("Foo")) == ("fooz", False)
    assert store.kind_for("x.io", "fooz") == "Foo"


# --------------------------------------------------------------------------- core Namespaces


def test_namespaces_are_served_for_the_subscription_defaults_informer(
    server: KubeAPIServer, api: client.ApiClient, core: client.CoreV1Api
) -> None:
    """The policy-filter's Namespace informer (kube.namespace_informer) lists, then watches:
    both through the official client's core API, as on a cluster."""
    key = "notifications.tekton.dev/subscribe.failed.slack"
    core.create_namespace({"metadata": {"name": "ci", "annotations": {key: "#ci"}}})
    defaults = subscribing.NamespaceDefaults()
    informer = kube.namespace_informer(api, defaults)
    informer.start()
    try:
        assert informer.wait_synced(5.0)
        assert defaults.annotations("ci") == {key: "#ci"}
        assert kube.namespace_annotations(api, "ci") == {key: "#ci"}  # GET, as explain reads
        core.create_namespace({"metadata": {"name": "web", "annotations": {key: "#web"}}})
        core.patch_namespace("ci", {"metadata": {"annotations": {key: "#ci-2"}}})
        core.delete_namespace("web")
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and (
            defaults.annotations("ci") != {key: "#ci-2"} or defaults.annotations("web")
        ):
            time.sleep(0.02)
        assert defaults.annotations("ci") == {key: "#ci-2"}
        assert defaults.annotations("web") == {}
        assert kube.namespace_annotations(api, "missing") is None
    finally:
        informer.stop()
