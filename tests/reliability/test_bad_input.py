"""Bad input, served: every case in tests/reliability/data/ gets its exact answer, nothing
crashes, nothing that can never succeed is retried, and the next good event still works.

The functions run as deployed (func-python as ``kn func`` serves them, and the portable
adapter on functions-framework), against the API emulator through a kubeconfig. One set of
functions per server serves the whole module; after every bad request the same good request
is sent again and must get the same good answer. Params that try to break out of shell or
JSON quoting are covered by tests/core/test_catalog_templates.py, sandbox escapes by
tests/core/test_sandbox.py.
"""

from __future__ import annotations

import base64
import copy
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tekton_notifications import notifications, vocabulary
from tekton_notifications.devtools import router
from tekton_notifications.devtools.kubeapi import KubeAPIServer
from tekton_notifications.devtools.serving import SERVERS, UNSIGNED, ServedFunction, serve_function
from tekton_notifications.stages.base import MAX_EVENT_BYTES
from tests.conftest import skip_unless_servable
from tests.functions import serving
from tests.reliability.forgery import refit

DATA = Path(__file__).parent / "data"
GOOD: dict[str, Any] = json.loads((DATA / "good-event.json").read_text())
HTTP_CASES: list[dict[str, Any]] = yaml.safe_load((DATA / "http.yaml").read_text())
TEKTON_CASES: list[dict[str, Any]] = yaml.safe_load((DATA / "tekton-events.yaml").read_text())
POLICY_CASES: list[dict[str, Any]] = yaml.safe_load((DATA / "policies.yaml").read_text())
TEMPLATE_CASES: list[dict[str, Any]] = yaml.safe_load((DATA / "templates.yaml").read_text())
FUNCTIONS = ("policy-filter", "template-renderer", "task-launcher", "status-recorder")
#: The good answer of each function: status and reply event type (None: no reply event).
GOOD_ANSWER: dict[str, tuple[int, str | None]] = {
    "policy-filter": (200, notifications.MATCHED),
    "template-renderer": (200, notifications.RENDERED),
    "task-launcher": (200, notifications.LAUNCHED),
    "status-recorder": (202, None),
}
DNS_1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

pytestmark = pytest.mark.slow


def resource(kind: str, name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{vocabulary.GROUP}/{vocabulary.VERSION}",
        "kind": kind,
        "metadata": {"name": name, "namespace": "ci"},
        "spec": dict(spec),
    }


CONTROL_POLICY = resource(
    "NotificationPolicy", "all-failed", {"events": ["failed"], "templateRefs": [{"name": "plain"}]}
)


#: Uses every bad template, so a matched event naming one passes the renderer's claim check
#: (claims.py) and meets the template itself; never matches the control event.
def template_user(names: list[str]) -> dict[str, Any]:
    return resource(
        "NotificationPolicy",
        "bad-templates",
        {"events": ["queued"], "templateRefs": [{"name": name} for name in names]},
    )


CONTROL_TEMPLATE = resource(
    "NotificationTemplate",
    "plain",
    {
        "taskRef": {"name": "send-to-webhook-slack"},
        "params": {"message": "{{ event.kind }} {{ event.name }} {{ event.outcome }}"},
    },
)


@dataclass
class Message:
    """A CloudEvent as attributes and JSON data: what the good requests are made of."""

    attributes: dict[str, str]
    data: Any


class Reply(serving.Reply):
    def message(self) -> Message:
        attributes = {k[3:]: v for k, v in self.headers.items() if k.startswith("ce-")}
        return Message(attributes, json.loads(self.body))


@dataclass
class Served:
    server: str
    api: KubeAPIServer
    functions: dict[str, ServedFunction]
    #: The good request for each function, and the type of its good answer.
    good: dict[str, Message] = field(default_factory=dict)

    def url(self, function: str) -> str:
        return self.functions[function].url

    def log(self, function: str) -> str:
        return self.functions[function].log()


def post(
    url: str,
    headers: Mapping[str, str | bytes],
    body: bytes,
    *,
    method: str = "POST",
    chunked: bool = False,
) -> Reply:
    content: Any = body
    if chunked:
        content = iter([body[i : i + 65536] for i in range(0, len(body), 65536)])
    encoded = [
        (name.encode(), v if isinstance(v, bytes) else v.encode()) for name, v in headers.items()
    ]
    response = httpx.request(method, url, headers=encoded, content=content, timeout=30)
    return Reply(response.status_code, response.headers, response.content)


def binary(message: Message, content_type: str | None = None) -> dict[str, str]:
    headers = {f"ce-{k}": v for k, v in message.attributes.items() if k != "datacontenttype"}
    headers["content-type"] = content_type or message.attributes.get(
        "datacontenttype", "application/json"
    )
    return headers


def post_good(served: Served, function: str) -> Reply:
    good = served.good[function]
    return post(served.url(function), binary(good), json.dumps(good.data).encode())


@pytest.fixture(scope="module", params=SERVERS)
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    server = str(request.param)
    skip_unless_servable(server)
    workdir = tmp_path_factory.mktemp(f"bad-input-{server}")
    with KubeAPIServer() as api:
        templates = bad_templates()
        user = template_user([str(t["metadata"]["name"]) for t in templates])
        for obj in (CONTROL_POLICY, CONTROL_TEMPLATE, user, *bad_policies(), *templates):
            api.store.create_manifest(copy.deepcopy(obj))
        kubeconfig = workdir / "kubeconfig"
        api.write_kubeconfig(kubeconfig)
        functions: dict[str, ServedFunction] = {}
        try:
            for name in FUNCTIONS:
                functions[name] = serve_function(
                    name, {"KUBECONFIG": str(kubeconfig), **UNSIGNED}, workdir, server=server
                )
            yield with_good_requests(Served(server, api, functions))
        finally:
            for function in functions.values():
                function.stop()


def with_good_requests(served: Served) -> Served:
    """The good event, and what the policy filter and the renderer answer to it."""
    attributes = {k: str(v) for k, v in GOOD.items() if k != "data"}
    served.good["policy-filter"] = Message(attributes, GOOD["data"])
    for function, following in (
        ("policy-filter", "template-renderer"),
        ("template-renderer", "task-launcher"),
        ("task-launcher", "status-recorder"),
    ):
        reply = post_good(served, function)
        assert (reply.status, reply.type) == GOOD_ANSWER[function], reply
        served.good[following] = reply.message()
    return served


def assert_still_works(served: Served, function: str) -> None:
    reply = post_good(served, function)
    assert (reply.status, reply.type) == GOOD_ANSWER[function], (
        f"the good event stopped working after a bad one:\n{served.log(function)[-3000:]}"
    )


def assert_answer(reply: Reply, expect: Mapping[str, Any]) -> None:
    """The exact answer, and that the broker would handle it without a retry storm."""
    assert reply.status == expect["status"], (reply.status, reply.body[:500], reply.detail)
    if "reply" in expect:
        assert reply.type == expect["reply"]
    else:
        assert reply.type is None
        if 200 <= reply.status < 300:
            assert reply.body == b"", "a 2xx body that is not an event is a bad reply (502)"
    if "detail" in expect:
        assert reply.detail == expect["detail"]
        if reply.status >= 400:
            assert json.loads(reply.body) == {"message": expect["detail"]}
    if "body" in expect:
        assert reply.body == expect["body"].encode()
    if reply.status >= 400:
        # 4xx that Knative does not retry: the event is dead-lettered at once.
        assert reply.status < 500 and reply.status not in router.RETRYABLE_STATUSES


def expectation(case: Mapping[str, Any], server: str) -> dict[str, Any]:
    return {**case["expect"], **case.get(server, {})}


def case_ids(cases: list[dict[str, Any]]) -> list[Any]:
    return [pytest.param(case, id=case["id"]) for case in cases]


def xfail_where_still_wrong(request: pytest.FixtureRequest, case: Mapping[str, Any]) -> None:
    """A case a server still answers wrongly is a strict xfail there (XPASS fails)."""
    reason = (case.get("xfail") or {}).get(request.node.callspec.params["served"])
    if reason:
        request.applymarker(pytest.mark.xfail(strict=True, reason=reason))


# --- malformed CloudEvents over HTTP -----------------------------------------------------


def padded(data: Any, size: int, render: Callable[[Any], bytes]) -> bytes:
    """``data`` with an ASCII padding field grown until ``render`` makes exactly ``size`` bytes."""
    data = copy.deepcopy(data)
    if isinstance(data, dict) and len(data) == 1 and "pipelineRun" in data:
        holder = data["pipelineRun"]["metadata"].setdefault("annotations", {})
    else:
        holder = data
    holder["example.com/padding"] = ""
    missing = size - len(render(data))
    assert missing >= 0, "the case's size is below the good event's"
    holder["example.com/padding"] = "x" * missing
    body = render(data)
    assert len(body) == size
    return body


def http_request(served: Served, case: Mapping[str, Any]) -> tuple[dict[str, Any], bytes]:
    good = served.good[case.get("function", "policy-filter")]
    attributes: dict[str, Any] = dict(good.attributes)
    for name, value in (case.get("attributes") or {}).items():
        if value is None:
            attributes.pop(name, None)
        else:
            attributes[name] = value
    data = copy.deepcopy(good.data)
    for name, value in (case.get("data_patch") or {}).items():
        if value is None:
            data.pop(name, None)
        else:
            data[name] = value
    for path, value in (case.get("data_set") or {}).items():
        *parents, last = path.split(".")
        holder = data
        for name in parents:
            holder = holder[name]
        if value is None:
            holder.pop(last, None)
        else:
            holder[last] = value
    if "data" in case:
        data = case["data"]
    mode = case.get("mode", "binary")

    def render(value: Any) -> bytes:
        if mode == "structured":
            envelope = {**attributes, "data": value}
            return json.dumps(envelope).encode()
        return json.dumps(value).encode()

    if "body" in case:
        body = str(case["body"]).encode()
    elif "body_base64" in case:
        body = base64.b64decode(case["body_base64"])
    elif "nested_json" in case:
        body = b"[" * case["nested_json"] + b"]" * case["nested_json"]
    elif "huge_int_digits" in case:
        body = b'{"pipelineRun": ' + b"1" * case["huge_int_digits"] + b"}"
    elif "pad_to" in case:
        body = padded(data, case["pad_to"], render)
    elif "data_base64" in case:
        envelope = {**attributes, "data_base64": case["data_base64"]}
        body = json.dumps(envelope).encode()
    else:
        body = render(data)
    if mode == "raw":
        return dict(case.get("headers") or {}), body
    if mode == "structured":
        return {"content-type": "application/cloudevents+json"}, body
    message = Message({k: str(v) for k, v in attributes.items()}, data)
    headers: dict[str, Any] = binary(message, case.get("content-type"))
    if mode == "raw-bytes-header":
        headers["ce-subject"] = "café".encode("latin-1")
    headers.update(case.get("headers") or {})
    return headers, body


@pytest.mark.parametrize("case", case_ids(HTTP_CASES))
def test_malformed_cloudevents_get_their_exact_answer(
    served: Served, case: dict[str, Any], request: pytest.FixtureRequest
) -> None:
    xfail_where_still_wrong(request, case)
    function = case.get("function", "policy-filter")
    headers, body = http_request(served, case)
    reply = post(
        served.url(function),
        headers,
        body,
        method=case.get("method", "POST"),
        chunked=bool(case.get("chunked")),
    )
    assert_answer(reply, expectation(case, served.server))
    assert served.functions[function].process.poll() is None, "the function died"
    assert_still_works(served, function)


def test_the_documented_size_limit_is_one_mebibyte() -> None:
    assert MAX_EVENT_BYTES == 1024 * 1024
    sizes = {case.get("pad_to") for case in HTTP_CASES if case["id"].startswith("body-")}
    assert sizes == {MAX_EVENT_BYTES, MAX_EVENT_BYTES + 1}


# --- Tekton events with missing or odd fields --------------------------------------------


def tekton_event(case: Mapping[str, Any]) -> tuple[dict[str, str], Any]:
    event = copy.deepcopy(GOOD)
    for name in ("type", "source"):
        if name in case:
            event[name] = case[name]
    run = event["data"]["pipelineRun"]
    for part, target in (("run", run), ("metadata", run["metadata"]), ("status", run["status"])):
        for name, value in (case.get(part) or {}).items():
            if value is None:
                target.pop(name, None)
            else:
                target[name] = value
    data = case["data"] if "data" in case else event["data"]
    return {k: str(v) for k, v in event.items() if k != "data"}, data


@pytest.mark.parametrize("case", case_ids(TEKTON_CASES))
def test_odd_tekton_events_get_their_exact_answer(served: Served, case: dict[str, Any]) -> None:
    attributes, data = tekton_event(case)
    message = Message(attributes, data)
    reply = post(served.url("policy-filter"), binary(message), json.dumps(data).encode())
    assert_answer(reply, expectation(case, served.server))
    assert_still_works(served, "policy-filter")


# --- invalid policies and templates, served through the emulator -------------------------


def bad_policies() -> list[dict[str, Any]]:
    return [resource("NotificationPolicy", case["id"], case["policy"]) for case in POLICY_CASES]


def bad_templates() -> list[dict[str, Any]]:
    return [resource("NotificationTemplate", case["id"], case["spec"]) for case in TEMPLATE_CASES]


LOG_PREFIX = re.compile(r"^[A-Z]+:[\w.]+:")


def log_messages(log: str) -> list[str]:
    """The message of each log line: JSON objects (LOG_FORMAT=json) or ``LEVEL:logger:``."""
    messages = []
    for line in log.splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            obj = None
        if isinstance(obj, dict) and "message" in obj:
            messages.append(str(obj["message"]))
        else:
            messages.append(LOG_PREFIX.sub("", line))
    return messages


def test_invalid_policies_are_logged_and_skipped_and_the_others_match(served: Served) -> None:
    reply = post_good(served, "policy-filter")
    # One match (the reply, not a fan-out): only the valid policy.
    assert (reply.status, reply.type) == (200, notifications.MATCHED)
    assert reply.headers["ce-source"].endswith("/namespaces/ci/notificationpolicies/all-failed")
    messages = log_messages(served.log("policy-filter"))
    missing = [
        case["id"]
        for case in POLICY_CASES
        if not any(
            message == case["log"] if "log" in case else message.startswith(case["log_starts"])
            for message in messages
        )
    ]
    assert missing == [], "\n".join(messages)


@pytest.mark.parametrize("case", case_ids(TEMPLATE_CASES))
def test_bad_templates_are_failed_events_with_their_reason(
    served: Served, case: dict[str, Any]
) -> None:
    good = served.good["template-renderer"]
    data = copy.deepcopy(good.data)
    data["templateRef"] = {"name": case["id"], "params": {}}
    data["policy"]["name"] = "bad-templates"
    refit(data)
    reply = post(served.url("template-renderer"), binary(good), json.dumps(data).encode())
    assert (reply.status, reply.type) == (200, notifications.FAILED), reply
    error = json.loads(reply.body)["error"]
    expect = dict(case["expect"])
    if "message_starts" in expect:
        assert error["message"].startswith(expect.pop("message_starts"))
        error.pop("message")
    assert error == {"stage": "render", **expect}
    assert_still_works(served, "template-renderer")


# --- run names longer than a Kubernetes label --------------------------------------------


def test_a_253_character_run_name_gives_a_short_deterministic_notification_name(
    served: Served,
) -> None:
    name = ".".join(["build-and-test-run-8x2kq", "x" * 63, "y" * 63, "z" * 63, "w" * 36])
    assert len(name) == 253
    event = copy.deepcopy(GOOD)
    event["source"] = f"/apis///namespaces/ci//{name}"
    event["data"]["pipelineRun"]["metadata"]["name"] = name
    attributes = {k: str(v) for k, v in event.items() if k != "data"}
    body = json.dumps(event["data"]).encode()

    names = []
    for _ in range(2):  # the same event twice: the same name
        matched = post(served.url("policy-filter"), binary(Message(attributes, {})), body)
        assert matched.type == notifications.MATCHED
        rendered = post(served.url("template-renderer"), binary(matched.message()), matched.body)
        assert rendered.type == notifications.RENDERED, rendered.body
        launched = post(served.url("task-launcher"), binary(rendered.message()), rendered.body)
        assert launched.type == notifications.LAUNCHED, launched.body
        names.append(json.loads(launched.body)["launched"]["name"])
    assert names[0] == names[1]
    assert len(names[0]) <= 63 and DNS_1123_LABEL.match(names[0]), names[0]
    assert names[0].startswith("build-and-test-run-8x2kq-xxx") and "-failed-" in names[0]
    run = served.api.store.get("tekton.dev", "taskruns", "ci", names[0])
    labels = run["metadata"]["labels"]
    assert all(len(value) <= 63 for value in labels.values())
    assert labels[f"{vocabulary.LABEL_PREFIX}source-name"] == name[:63].rstrip(".-")

    # Another run whose name shares the first 63 characters gets a name of its own.
    other = name[:-1] + "v"
    event["source"] = f"/apis///namespaces/ci//{other}"
    event["data"]["pipelineRun"]["metadata"].update(name=other, uid="another-uid")
    attributes = {k: str(v) for k, v in event.items() if k != "data"}
    matched = post(
        served.url("policy-filter"),
        binary(Message(attributes, {})),
        json.dumps(event["data"]).encode(),
    )
    rendered = post(served.url("template-renderer"), binary(matched.message()), matched.body)
    other_name = json.loads(rendered.body)["resource"]["metadata"]["name"]
    assert other_name != names[0] and len(other_name) <= 63
