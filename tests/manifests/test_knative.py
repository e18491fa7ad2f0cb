"""The Knative manifests in knative/: schema-valid, wired together, least privilege.

- Core kinds are checked with kubernetes-validate in strict mode.
- Broker, Trigger and SinkBinding are checked with the CRD schemas in ../shared/schemas/knative.
- The event-display Services get a structural check; their pod template goes through
  kubernetes-validate.
- Then the wiring: Triggers → Broker, subscribers → functions/*/func.yaml, RBAC verbs, SinkBinding,
  dead-letter sinks, and the Tekton sink URL.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tekton_notifications.devtools.router import load_objects, manifest_files
from tests.conftest import SCHEMAS

ROOT = Path(__file__).resolve().parents[2]
KNATIVE = ROOT / "knative"
OLDER = KNATIVE / "older"
SENDER_IDENTITY = KNATIVE / "overlays" / "sender-identity"
OVERLAYS = {
    "knative": KNATIVE,
    "knative/older": OLDER,
    "knative/overlays/sender-identity": SENDER_IDENTITY,
    "knative/overlays/failure-logs": KNATIVE / "overlays" / "failure-logs",
}
TEKTON_PATCHES = KNATIVE / "tekton"
FUNCTIONS = ROOT / "functions"
CRD_SCHEMAS = SCHEMAS / "knative"

NAMESPACE = "tekton-notifications"
BROKER = "tekton-notifications"
BROKER_INGRESS = f"http://broker-ingress.knative-eventing.svc.cluster.local/{NAMESPACE}/{BROKER}"
FUNCTION_NAMES = {
    "policy-filter",
    "template-renderer",
    "task-launcher",
    "status-recorder",
    "delivery-tracker",
    "scheduler",
}
DISPLAYS = {"notification-failures", "notification-dead-letters"}
EVENT_DISPLAY_IMAGE = "gcr.io/knative-releases/knative.dev/eventing/cmd/event_display"
KSVC = "serving.knative.dev/v1"
TEKTON_TYPES = [
    f"dev.tekton.event.{kind}.{event}.v1"
    for kind in ("taskrun", "pipelinerun")
    for event in ("queued", "started", "running", "unknown", "successful", "failed")
] + [
    f"dev.tekton.event.customrun.{event}.v1"
    for event in ("started", "running", "successful", "failed")
]

needs_crd_schemas = pytest.mark.reference("schemas/knative")

Obj = dict[str, Any]


def loaded(overlay: Path) -> list[tuple[Path, Obj]]:
    return [(path, dict(obj)) for path, obj in load_objects(overlay)]


def objects(overlay: Path = KNATIVE) -> list[Obj]:
    return [obj for _, obj in loaded(overlay)]


def all_objects() -> list[tuple[str, Obj]]:
    """Every distinct object of every overlay, with an id naming file and object."""
    seen: dict[str, Obj] = {}
    for overlay in OVERLAYS.values():
        for path, obj in loaded(overlay):
            ident = f"{path.relative_to(KNATIVE)}:{obj['kind']}/{obj['metadata']['name']}"
            seen.setdefault(ident, obj)
    return sorted(seen.items())


def of_kind(kind: str, overlay: Path = KNATIVE) -> dict[str, Obj]:
    return {o["metadata"]["name"]: o for o in objects(overlay) if o["kind"] == kind}


def key(obj: Obj) -> tuple[str, str, str, str]:
    group = obj["apiVersion"].rpartition("/")[0]
    return group, obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"]


# --- kustomizations ------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", list(OVERLAYS.values()), ids=list(OVERLAYS))
def test_kustomization_resources_exist_once(overlay: Path) -> None:
    files = manifest_files(overlay)  # follows resources recursively; raises on a missing one
    assert files and all(f.is_file() for f in files)
    assert len({f.resolve() for f in files}) == len(files)


@pytest.mark.parametrize("overlay", list(OVERLAYS.values()), ids=list(OVERLAYS))
def test_no_object_is_defined_twice(overlay: Path) -> None:
    keys = [key(obj) for obj in objects(overlay)]
    assert len(keys) == len(set(keys))


def test_every_manifest_is_listed_by_a_kustomization() -> None:
    listed = {f.resolve() for overlay in OVERLAYS.values() for f in manifest_files(overlay)}
    on_disk = {
        p.resolve()
        for p in KNATIVE.rglob("*")
        if p.suffix in {".yaml", ".yml"}
        and p.stem != "kustomization"
        and TEKTON_PATCHES not in p.parents
    }
    assert sorted(map(str, on_disk - listed)) == []
    assert not any(TEKTON_PATCHES in p.parents for p in listed), "tekton/ patches stay out"


def test_older_overlay_only_swaps_the_policy_filter_trigger() -> None:
    def rest(overlay: Path) -> list[Obj]:
        return sorted(
            (
                o
                for o in objects(overlay)
                if not o["metadata"]["name"].startswith("policy-filter") or o["kind"] != "Trigger"
            ),
            key=key,
        )

    assert rest(KNATIVE) == rest(OLDER)


def test_namespaced_objects_live_in_the_project_namespace() -> None:
    cluster_scoped = {"Namespace", "ClusterRole", "ClusterRoleBinding"}
    for _, obj in all_objects():
        namespace = obj["metadata"].get("namespace")
        assert namespace == (None if obj["kind"] in cluster_scoped else NAMESPACE), key(obj)
        assert obj["metadata"].get("labels", {}).get("app.kubernetes.io/part-of") == NAMESPACE
    assert set(of_kind("Namespace")) == {NAMESPACE}


# --- schema validation ---------------------------------------------------------------------

CORE_API_VERSIONS = {"v1", "rbac.authorization.k8s.io/v1", "apps/v1", "networking.k8s.io/v1"}
CRD_FILES = {
    "Broker": "broker.yaml",
    "Trigger": "trigger.yaml",
    "SinkBinding": "sinkbindings.yaml",
    "EventPolicy": "eventpolicy.yaml",
}
CORE_OBJECTS = [(i, o) for i, o in all_objects() if o["apiVersion"] in CORE_API_VERSIONS]
KNATIVE_OBJECTS = [(i, o) for i, o in all_objects() if o["kind"] in CRD_FILES]


PING_SOURCE = ("sources.knative.dev/v1", "PingSource")
#: PingSource v1's spec fields (knative/eventing pkg/apis/sources/v1/ping_types.go); no schema
#: of it is vendored here, so its shape is checked field by field.
PING_SPEC_FIELDS = {
    "schedule",
    "timezone",
    "contentType",
    "data",
    "dataBase64",
    "sink",
    "ceOverrides",
}


def test_the_ping_source_wakes_the_scheduler_through_the_broker_every_five_minutes() -> None:
    """Issue 17: a cron schedule of five fields, JSON data, the Broker as sink; the
    scheduler's Trigger takes its own PingSource's pings (which carry nothing it trusts)."""
    pings = [o for _, o in all_objects() if (o["apiVersion"], o["kind"]) == PING_SOURCE]
    assert {p["metadata"]["name"] for p in pings} == {"scheduler", "delivery-retries"}
    ping = next(p for p in pings if p["metadata"]["name"] == "scheduler")
    assert set(ping["spec"]) <= PING_SPEC_FIELDS
    assert len(ping["spec"]["schedule"].split()) == 5
    assert ping["spec"]["schedule"] == "*/5 * * * *"
    assert ping["spec"]["sink"]["ref"]["kind"] == "Broker"
    triggers = [
        o
        for _, o in all_objects()
        if o["kind"] == "Trigger" and o["metadata"]["name"] == "scheduler"
    ]
    # Its own PingSource only: the delivery tracker's sweep pings the same Broker.
    source = "/apis/v1/namespaces/tekton-notifications/pingsources/scheduler"
    wanted = {"type": "dev.knative.sources.ping", "source": source}
    assert triggers
    for trigger in triggers:
        assert trigger["spec"]["filters"] == [{"exact": {k: v}} for k, v in wanted.items()]
        assert trigger["spec"]["filter"]["attributes"] == wanted


def test_every_object_is_validated_somewhere() -> None:
    for ident, obj in all_objects():
        kind = (obj["apiVersion"], obj["kind"])
        # test_event_display_services, the PingSource tests (scheduler, retry sweep)
        structural = kind in ((KSVC, "Service"), PING_SOURCE)
        validated = obj["apiVersion"] in CORE_API_VERSIONS or obj["kind"] in CRD_FILES
        assert validated or structural, f"{ident}: no validation for {kind}"


@pytest.mark.parametrize(("ident", "obj"), CORE_OBJECTS, ids=[i for i, _ in CORE_OBJECTS])
def test_core_objects_are_valid(ident: str, obj: Obj) -> None:
    kubernetes_validate.validate(obj, kubernetes_validate.latest_version(), strict=True)


# Fields Knative's Go types accept that the CRD schemas leave out or leave open (those objects
# carry x-kubernetes-preserve-unknown-fields, and Knative's webhook decodes strictly).
DELIVERY_EXTRAS = {"timeout": {"type": "string"}, "retryAfterMax": {"type": "string"}}
STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
OBJECT_META = {
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"},
        "namespace": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"},
        "labels": STRING_MAP,
        "annotations": STRING_MAP,
    },
}
DROPPED_KEYWORDS = {"description", "format", "nullable"}


def to_json_schema(node: Any) -> Any:
    """An OpenAPI v3 CRD schema as a strict JSON schema (Draft 4).

    Drops x-kubernetes-* and documentation keywords, turns `nullable` into a null type, and
    closes every object that lists `properties`, as the API server prunes unknown fields and
    Knative's webhook rejects them.
    """
    if isinstance(node, list):
        return [to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {
        k: to_json_schema(v)
        for k, v in node.items()
        if not k.startswith("x-kubernetes-") and k not in DROPPED_KEYWORDS
    }
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


def crd_schema(kind: str, api_version: str) -> Obj:
    crd = yaml.safe_load((CRD_SCHEMAS / CRD_FILES[kind]).read_text())
    group, _, version = api_version.partition("/")
    assert crd["spec"]["group"] == group and crd["spec"]["names"]["kind"] == kind
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version and v["served"]]
    schema: Obj = to_json_schema(served["schema"]["openAPIV3Schema"])
    spec = schema["properties"]["spec"]
    if "delivery" in spec["properties"]:
        spec["properties"]["delivery"]["properties"].update(DELIVERY_EXTRAS)
    if kind in ("Trigger", "EventPolicy"):  # filters nest: all/any hold filters, not one
        if kind == "Trigger":
            spec["properties"]["filter"]["properties"]["attributes"] = STRING_MAP
        one = spec["properties"]["filters"]["items"]
        for dialect in ("exact", "prefix", "suffix"):
            one["properties"][dialect] = STRING_MAP
        one["properties"]["all"]["items"] = one["properties"]["any"]["items"] = {
            "$ref": "#/definitions/filter"
        }
        one["properties"]["not"] = {"$ref": "#/definitions/filter"}
        schema["definitions"] = {"filter": one}
        spec["properties"]["filters"]["items"] = {"$ref": "#/definitions/filter"}
    schema["properties"].update(
        apiVersion={"enum": [api_version]}, kind={"enum": [kind]}, metadata=OBJECT_META
    )
    schema["required"] = ["apiVersion", "kind", "metadata", "spec"]
    schema["additionalProperties"] = False
    jsonschema.Draft4Validator.check_schema(schema)
    return schema


def crd_errors(obj: Obj) -> list[str]:
    validator = jsonschema.Draft4Validator(crd_schema(obj["kind"], obj["apiVersion"]))
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(obj)
    ]


@needs_crd_schemas
@pytest.mark.parametrize(("ident", "obj"), KNATIVE_OBJECTS, ids=[i for i, _ in KNATIVE_OBJECTS])
def test_knative_objects_match_their_crd_schema(ident: str, obj: Obj) -> None:
    assert crd_errors(obj) == []


def broken(kind: str, path: list[str | int], value: Any) -> Obj:
    obj = copy.deepcopy(next(o for _, o in KNATIVE_OBJECTS if o["kind"] == kind))
    target: Any = obj
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return obj


@needs_crd_schemas
@pytest.mark.parametrize(
    "obj",
    [
        broken("Broker", ["spec", "delivery", "retries"], 5),
        broken("Broker", ["spec", "delivery", "retry"], "5"),
        broken("Trigger", ["spec", "subscriber", "refs"], {}),
        broken("Trigger", ["spec", "filtres"], []),
        broken("Trigger", ["spec", "filter", "attributes", "type"], 3),
        broken("Trigger", ["spec", "filters"], [{"all": [{"prefx": {"type": "x"}}]}]),
        broken("Trigger", ["spec", "filters"], [{"not": {"exact": {"type": 1}}}]),
        broken("Trigger", ["metadata", "name"], "Policy_Filter"),
        broken("SinkBinding", ["spec", "subject", "nam"], "x"),
        broken("EventPolicy", ["spec", "form"], []),
        broken("EventPolicy", ["spec", "from", 0, "ref", "nme"], "x"),
        broken("EventPolicy", ["spec", "filters"], [{"any": [{"exactly": {"type": "x"}}]}]),
        broken("EventPolicy", ["spec", "to", 0], {"ref": {"kind": 1}}),
    ],
    ids=[
        "broker-retries",
        "broker-retry-string",
        "subscriber-refs",
        "trigger-filtres",
        "attribute-not-string",
        "nested-all-typo",
        "nested-not-number",
        "bad-name",
        "sinkbinding-typo",
        "eventpolicy-form",
        "eventpolicy-ref-typo",
        "eventpolicy-nested-typo",
        "eventpolicy-kind-number",
    ],
)
def test_crd_validation_catches_mistakes(obj: Obj) -> None:
    assert crd_errors(obj)


# --- event displays (Knative Serving: no schema here) --------------------------------------


@pytest.mark.parametrize("name", sorted(DISPLAYS))
def test_event_display_services(name: str) -> None:
    service = of_kind("Service")[name]
    assert service["apiVersion"] == KSVC
    assert set(service) == {"apiVersion", "kind", "metadata", "spec"}
    assert set(service["spec"]) == {"template"}
    labels = service["metadata"]["labels"]
    assert labels["networking.knative.dev/visibility"] == "cluster-local"
    template = service["spec"]["template"]
    assert set(template) <= {"metadata", "spec"}
    annotations = template.get("metadata", {}).get("annotations", {})
    assert annotations.get("autoscaling.knative.dev/min-scale") == "1"  # keep the logs
    (container,) = template["spec"]["containers"]
    assert container["image"] == EVENT_DISPLAY_IMAGE
    # Knative Serving's pod spec is a subset of Kubernetes': validate it as a PodTemplate
    # (Kubernetes requires container names; Knative does not).
    pod = copy.deepcopy(template)
    pod["spec"]["containers"] = [{"name": "user-container", **c} for c in pod["spec"]["containers"]]
    pod_template = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": name}}
    kubernetes_validate.validate(
        {**pod_template, "template": pod}, kubernetes_validate.latest_version(), strict=True
    )


# --- wiring --------------------------------------------------------------------------------


def triggers(overlay: Path = KNATIVE) -> dict[str, Obj]:
    return of_kind("Trigger", overlay)


def func_yamls() -> dict[str, Obj]:
    found = sorted(FUNCTIONS.glob("*/func.yaml")) if FUNCTIONS.is_dir() else []
    if not found:
        pytest.skip(f"no functions/*/func.yaml under {FUNCTIONS} yet")
    return {p.parent.name: yaml.safe_load(p.read_text()) for p in found}


@pytest.mark.parametrize("overlay", list(OVERLAYS.values()), ids=list(OVERLAYS))
def test_triggers_use_the_broker(overlay: Path) -> None:
    brokers = {(b["metadata"]["namespace"], n) for n, b in of_kind("Broker", overlay).items()}
    assert brokers == {(NAMESPACE, BROKER)}
    for name, trigger in triggers(overlay).items():
        assert (trigger["metadata"]["namespace"], trigger["spec"]["broker"]) in brokers, name


@pytest.mark.parametrize("overlay", list(OVERLAYS.values()), ids=list(OVERLAYS))
def test_trigger_subscribers_are_the_functions_and_the_failure_display(overlay: Path) -> None:
    subscribers = set()
    for name, trigger in triggers(overlay).items():
        ref = trigger["spec"]["subscriber"]["ref"]
        assert (ref["apiVersion"], ref["kind"]) == (KSVC, "Service"), name
        assert "uri" not in trigger["spec"]["subscriber"], name
        subscribers.add(ref["name"])
    assert subscribers == FUNCTION_NAMES | {"notification-failures"}


def test_function_subscribers_exist_in_functions() -> None:
    functions = func_yamls()
    names = {spec["name"] for spec in functions.values()}
    assert names == FUNCTION_NAMES | {"tekton-relay"}  # the relay: sender-identity overlay
    assert all(spec["name"] == directory for directory, spec in functions.items())
    for overlay in OVERLAYS.values():
        for name, trigger in triggers(overlay).items():
            subscriber = trigger["spec"]["subscriber"]["ref"]["name"]
            assert subscriber in names | DISPLAYS, f"{name} → {subscriber}: no such function"


def test_functions_run_as_their_service_accounts() -> None:
    accounts = of_kind("ServiceAccount", SENDER_IDENTITY)  # knative/'s, and the relay's
    for directory, spec in func_yamls().items():
        deploy = spec.get("deploy", {})
        assert deploy.get("namespace", spec.get("namespace")) == NAMESPACE, directory
        assert deploy.get("serviceAccountName") == spec["name"], directory
        assert spec["name"] in accounts


MAIN_FILTERS = {
    "policy-filter": [{"prefix": {"type": "dev.tekton.event."}}],
    "template-renderer": [{"exact": {"type": "dev.tekton.notification.matched.v1"}}],
    "task-launcher": [{"exact": {"type": "dev.tekton.notification.rendered.v1"}}],
    "notification-failures": [{"exact": {"type": "dev.tekton.notification.failed.v1"}}],
    "status-recorder-launched": [{"exact": {"type": "dev.tekton.notification.launched.v1"}}],
    "status-recorder-failed": [{"exact": {"type": "dev.tekton.notification.failed.v1"}}],
    "status-recorder-suppressed": [{"exact": {"type": "dev.tekton.notification.suppressed.v1"}}],
    "status-recorder-delivered": [{"exact": {"type": "dev.tekton.notification.delivered.v1"}}],
    "status-recorder-deliveryfailed": [
        {"exact": {"type": "dev.tekton.notification.deliveryfailed.v1"}}
    ],
    **{
        f"delivery-tracker-{kind}-{event}": [
            {"exact": {"type": f"dev.tekton.event.{kind}.{event}.v1"}}
        ]
        for kind in ("taskrun", "pipelinerun")
        for event in ("successful", "failed")
    },
    "delivery-tracker-sweep": [
        {"exact": {"type": "dev.knative.sources.ping"}},
        {
            "exact": {
                "source": "/apis/v1/namespaces/tekton-notifications/pingsources/delivery-retries"
            }
        },
    ],
}


def test_the_retry_sweep_pings_the_broker_every_minute() -> None:
    """No schema for PingSource here: its fields, checked by hand; its Trigger takes only its
    own pings (any PingSource sends the same type)."""
    ping = of_kind("PingSource")["delivery-retries"]
    name, namespace = ping["metadata"]["name"], ping["metadata"]["namespace"]
    source = triggers()["delivery-tracker-sweep"]["spec"]["filter"]["attributes"]["source"]
    assert source == f"/apis/v1/namespaces/{namespace}/pingsources/{name}"
    assert ping["apiVersion"] == PING_SOURCE[0]
    assert set(ping["spec"]) == {"schedule", "contentType", "data", "sink"}
    assert ping["spec"]["schedule"] == "* * * * *"
    assert ping["spec"]["sink"] == {
        "ref": {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": BROKER}
    }


@pytest.mark.parametrize(("name", "filters"), MAIN_FILTERS.items(), ids=list(MAIN_FILTERS))
def test_triggers_use_the_filters_dialect(name: str, filters: list[Obj]) -> None:
    assert triggers()[name]["spec"]["filters"] == filters


def test_older_overlay_has_one_exact_trigger_per_tekton_type() -> None:
    older = triggers(OLDER)
    policy = {
        t["spec"]["filter"]["attributes"]["type"]
        for t in older.values()
        if t["spec"]["subscriber"]["ref"]["name"] == "policy-filter"
    }
    assert sorted(policy) == sorted(TEKTON_TYPES)
    assert all("prefix" not in str(t["spec"].get("filters")) for t in older.values())
    assert all("attributes" in t["spec"].get("filter", {}) for t in older.values())


def test_both_dialects_say_the_same_thing() -> None:
    """Clusters without `filters` read `filter.attributes`: both must select the same events."""
    for overlay in OVERLAYS.values():
        for name, trigger in triggers(overlay).items():
            spec = trigger["spec"]
            if "filter" not in spec:
                continue
            attributes = spec["filter"]["attributes"]
            # An exact filter holds a single attribute; filters are ANDed, like attributes.
            assert spec["filters"] == [{"exact": {k: v}} for k, v in attributes.items()], name


def test_broker_delivery() -> None:
    (broker,) = of_kind("Broker").values()
    annotations = broker["metadata"]["annotations"]
    assert annotations["eventing.knative.dev/broker.class"] == "MTChannelBasedBroker"
    delivery = broker["spec"]["delivery"]
    assert {k: v for k, v in delivery.items() if k != "deadLetterSink"} == {
        "retry": 5,
        "backoffPolicy": "exponential",
        "backoffDelay": "PT0.5S",
    }
    assert delivery["deadLetterSink"] == {
        "ref": {"apiVersion": KSVC, "kind": "Service", "name": "notification-dead-letters"}
    }


@pytest.mark.parametrize("overlay", list(OVERLAYS.values()), ids=list(OVERLAYS))
def test_dead_letter_sinks_exist_and_triggers_keep_them(overlay: Path) -> None:
    """A Trigger's delivery replaces the Broker's as a whole: it must name the sink again."""
    services = of_kind("Service", overlay)
    deliveries = [b["spec"]["delivery"] for b in of_kind("Broker", overlay).values()]
    deliveries += [
        t["spec"]["delivery"] for t in triggers(overlay).values() if "delivery" in t["spec"]
    ]
    assert len(deliveries) >= 3
    for delivery in deliveries:
        ref = delivery["deadLetterSink"]["ref"]
        assert (ref["apiVersion"], ref["kind"]) == (KSVC, "Service")
        assert ref["name"] in services


@pytest.mark.parametrize("function", ["policy-filter", "delivery-tracker", "scheduler"])
def test_sinkbinding_points_the_fanning_out_functions_at_the_broker(function: str) -> None:
    """The functions that may have more than one event to send publish to K_SINK."""
    bindings = of_kind("SinkBinding")
    assert set(bindings) == {"policy-filter", "delivery-tracker", "scheduler"}
    binding = bindings[function]
    assert binding["spec"]["subject"] == {
        "apiVersion": KSVC,
        "kind": "Service",
        "name": function,
    }
    assert binding["spec"]["sink"] == {
        "ref": {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": BROKER}
    }


# --- RBAC ----------------------------------------------------------------------------------

#: Renderer and launcher check that a notification names a policy that exists (claims.py).
POLICY_READER = {
    ("notifications.tekton.dev", plural, verb)
    for plural in ("notificationpolicies", "clusternotificationpolicies")
    for verb in ("list", "watch")
}
LEAST_PRIVILEGE = {
    "policy-filter": {
        ("notifications.tekton.dev", plural, verb)
        for plural in ("notificationpolicies", "clusternotificationpolicies")
        for verb in ("get", "list", "watch")
    }
    | {  # storm state: status.outcomes and status.rateLimit
        ("notifications.tekton.dev", f"{plural}/status", verb)
        for plural in ("notificationpolicies", "clusternotificationpolicies")
        for verb in ("get", "patch")
    }
    | {  # a run is confirmed before its event spends storm budget (runcheck.py)
        ("tekton.dev", plural, "get") for plural in ("taskruns", "pipelineruns", "customruns")
    }
    | {("", "events", "create")}  # CELCostExceeded, NotificationSubscriptionRefused
    # Subscription defaults from Namespace annotations: an informer lists and watches, no get.
    | {("", "namespaces", "list"), ("", "namespaces", "watch")}
    # The Pipeline or Task of a run with a subscription annotation: where it was written.
    | {("tekton.dev", "pipelines", "get"), ("tekton.dev", "tasks", "get")},
    "template-renderer": {
        ("notifications.tekton.dev", "notificationtemplates", verb)
        for verb in ("get", "list", "watch")
    }
    | {("tekton.dev", "taskruns", "get"), ("tekton.dev", "customruns", "get")}
    | POLICY_READER,
    "task-launcher": {
        ("tekton.dev", "taskruns", "create"),
        ("tekton.dev", "pipelineruns", "create"),
    }
    | POLICY_READER
    # It compares each run with the template it reads itself (taskruns.not_from_template).
    | {("notifications.tekton.dev", "notificationtemplates", verb) for verb in ("list", "watch")},
    "status-recorder": {
        ("notifications.tekton.dev", plural, verb)
        for plural in (
            "notificationpolicies",
            "clusternotificationpolicies",
            "notificationtemplates",
        )
        for verb in ("get", "list", "watch")
    }
    | {
        ("notifications.tekton.dev", f"{plural}/status", "patch")
        for plural in (
            "notificationpolicies",
            "clusternotificationpolicies",
            "notificationtemplates",
        )
    }
    | {(group, "events", verb) for group in ("", "events.k8s.io") for verb in ("create", "patch")},
    # Reads only: it confirms a finished run, reads its source run, lists the runs waiting
    # for a delayed retry; retries and fallbacks are created by the launcher.
    "delivery-tracker": {
        ("tekton.dev", plural, verb)
        for plural in ("taskruns", "pipelineruns")
        for verb in ("get", "list")
    }
    | POLICY_READER
    | {("notifications.tekton.dev", "notificationtemplates", verb) for verb in ("list", "watch")},
}


def granted(account: str) -> Iterator[tuple[str, str, str]]:
    roles = of_kind("ClusterRole")
    for binding in list(of_kind("ClusterRoleBinding").values()) + list(
        of_kind("RoleBinding").values()
    ):
        subjects = binding.get("subjects", [])
        if {"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE} not in subjects:
            continue
        assert binding["roleRef"]["kind"] == "ClusterRole"
        for rule in roles[binding["roleRef"]["name"]]["rules"]:
            assert set(rule) <= {"apiGroups", "resources", "verbs"}, rule  # no resourceNames…
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        yield group, resource, verb


@pytest.mark.parametrize(
    ("account", "expected"), LEAST_PRIVILEGE.items(), ids=list(LEAST_PRIVILEGE)
)
def test_rbac_is_least_privilege(account: str, expected: set[tuple[str, str, str]]) -> None:
    assert account in of_kind("ServiceAccount")
    assert set(granted(account)) == expected


def test_no_role_is_unbound_or_wildcard() -> None:
    bound = {b["roleRef"]["name"] for b in of_kind("ClusterRoleBinding").values()}
    assert bound == set(of_kind("ClusterRole"))
    assert of_kind("Role") == {} and of_kind("RoleBinding") == {}
    for role in of_kind("ClusterRole").values():
        assert "*" not in str(role["rules"])


# --- Tekton side ---------------------------------------------------------------------------

PATCHES = {
    "config-events-patch.yaml": ("config-events", "sink"),
    "config-defaults-patch.yaml": ("config-defaults", "default-cloud-events-sink"),
}


@pytest.mark.parametrize(("patch", "target"), PATCHES.items(), ids=list(PATCHES))
def test_tekton_patch_points_at_the_broker_ingress(patch: str, target: tuple[str, str]) -> None:
    configmap, data_key = target
    body = yaml.safe_load((TEKTON_PATCHES / patch).read_text())
    assert body == {"data": {data_key: BROKER_INGRESS}}  # a merge patch: only the sink changes
    (broker,) = of_kind("Broker").values()
    meta = broker["metadata"]
    assert BROKER_INGRESS.endswith(f"/{meta['namespace']}/{meta['name']}")
    merged = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": configmap, "namespace": "tekton-pipelines"},
        **body,
    }
    kubernetes_validate.validate(merged, kubernetes_validate.latest_version(), strict=True)
    command = (
        f"kubectl patch configmap {configmap} -n tekton-pipelines --type merge "
        f"--patch-file knative/tekton/{patch}"
    )
    assert command in (KNATIVE / "README.md").read_text()


# --- knative/overlays/sender-identity: who may send to the Broker ---------------------------

RELAY_URL = f"http://tekton-relay.{NAMESPACE}.svc.cluster.local"
EVENTING = "eventing.knative.dev/v1"
SOURCES = "sources.knative.dev/v1"
#: What each sender may post, as its function replies (stages/*.py) or publishes.
SENDERS = {
    "tekton-events": ({(SOURCES, "SinkBinding", "tekton-relay")}, "prefix dev.tekton.event."),
    "policy-filter": (
        {(EVENTING, "Trigger", "policy-filter"), (SOURCES, "SinkBinding", "policy-filter")},
        "dev.tekton.notification.matched.v1 dev.tekton.notification.suppressed.v1",
    ),
    "template-renderer": (
        {(EVENTING, "Trigger", "template-renderer")},
        "dev.tekton.notification.failed.v1 dev.tekton.notification.rendered.v1",
    ),
    "task-launcher": (
        {(EVENTING, "Trigger", "task-launcher")},
        "dev.tekton.notification.failed.v1 dev.tekton.notification.launched.v1",
    ),
    "scheduler-ping": ({(SOURCES, "PingSource", "scheduler")}, "dev.knative.sources.ping"),
    "scheduler": (
        {(SOURCES, "SinkBinding", "scheduler")},
        "dev.tekton.notification.matched.v1",
    ),
    "delivery-tracker": (
        {(EVENTING, "Trigger", name) for name in MAIN_FILTERS if name.startswith("delivery-")}
        | {(SOURCES, "SinkBinding", "delivery-tracker")},
        "dev.tekton.notification.delivered.v1 dev.tekton.notification.deliveryfailed.v1 "
        "dev.tekton.notification.matched.v1",
    ),
    "delivery-retries": ({(SOURCES, "PingSource", "delivery-retries")}, "dev.knative.sources.ping"),
}


def allowed_types(policy: Obj) -> str:
    """An EventPolicy's filters as one word list: `prefix <p>` or the exact types it admits."""
    (only,) = policy["spec"]["filters"]
    if "prefix" in only:
        return f"prefix {only['prefix']['type']}"
    return " ".join(sorted(one["exact"]["type"] for one in only["any"]))


@pytest.mark.parametrize(("name", "expected"), SENDERS.items(), ids=list(SENDERS))
def test_each_sender_may_post_only_what_it_emits(name: str, expected: tuple[set[Any], str]) -> None:
    senders, types = expected
    policy = of_kind("EventPolicy", SENDER_IDENTITY)[name]
    assert policy["spec"]["to"] == [
        {"ref": {"apiVersion": EVENTING, "kind": "Broker", "name": BROKER}}
    ]
    refs = {
        (f["ref"]["apiVersion"], f["ref"]["kind"], f["ref"]["name"]) for f in policy["spec"]["from"]
    }
    assert refs == senders
    assert allowed_types(policy) == types
    for api_version, kind, ref in refs:  # every sender exists in the overlay
        assert ref in of_kind(kind, SENDER_IDENTITY), f"{kind} {ref}"
        assert of_kind(kind, SENDER_IDENTITY)[ref]["apiVersion"] == api_version


def test_every_routed_type_has_a_sender_and_no_sender_is_in_two_policies() -> None:
    """Knative applies the filters of the first policy naming a sender: one policy each."""
    policies = of_kind("EventPolicy", SENDER_IDENTITY)
    assert set(policies) == set(SENDERS)
    named = [
        (f["ref"]["kind"], f["ref"]["name"]) for p in policies.values() for f in p["spec"]["from"]
    ]
    assert len(named) == len(set(named))
    admitted = " ".join(allowed_types(p) for p in policies.values())
    for trigger in triggers(SENDER_IDENTITY).values():
        for condition in trigger["spec"]["filters"]:
            ((dialect, attributes),) = condition.items()
            if "type" not in attributes:
                continue  # e.g. the sweep's source: who sends it is its EventPolicy's business
            wanted = attributes["type"]
            words = admitted.split()
            prefixes = {words[i + 1] for i, word in enumerate(words) if word == "prefix"}
            assert (
                wanted in prefixes
                if dialect == "prefix"  # an exact type may be admitted by a prefix
                else wanted in words or any(wanted.startswith(p) for p in prefixes)
            ), wanted


def test_the_overlay_adds_the_relay_and_policies_and_changes_nothing_else() -> None:
    added = {key(o) for o in objects(SENDER_IDENTITY)} - {key(o) for o in objects(KNATIVE)}
    assert sorted((kind, name) for _, kind, _, name in added) == sorted(
        [("ServiceAccount", "tekton-relay"), ("Deployment", "tekton-relay")]
        + [("Service", "tekton-relay"), ("SinkBinding", "tekton-relay")]
        + [("NetworkPolicy", "tekton-relay")]
        + [("EventPolicy", name) for name in SENDERS]
    )
    base = {key(o): o for o in objects(KNATIVE)}
    assert all(base[key(o)] == o for o in objects(SENDER_IDENTITY) if key(o) in base)


def test_the_relay_is_reached_only_by_tekton_and_posts_with_its_sinkbinding() -> None:
    (deployment,) = of_kind("Deployment", SENDER_IDENTITY).values()
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"] == labels
    assert pod["spec"]["serviceAccountName"] == "tekton-relay"
    assert pod["spec"]["automountServiceAccountToken"] is False  # no API access, no RBAC
    assert "tekton-relay" not in {
        s["name"]
        for b in of_kind("ClusterRoleBinding", SENDER_IDENTITY).values()
        for s in b["subjects"]
    }
    (container,) = pod["spec"]["containers"]
    (port,) = container["ports"]

    (policy,) = of_kind("NetworkPolicy", SENDER_IDENTITY).values()
    assert policy["spec"]["podSelector"] == {"matchLabels": labels}
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": port["containerPort"]}]
    (peer,) = rule["from"]  # namespace AND pods in one peer; two peers would be OR
    assert peer["namespaceSelector"] == {
        "matchLabels": {"kubernetes.io/metadata.name": "tekton-pipelines"}
    }
    assert peer["podSelector"]["matchLabels"] == {"app.kubernetes.io/part-of": "tekton-pipelines"}
    assert peer["podSelector"]["matchExpressions"] == [
        {"key": "app.kubernetes.io/name", "operator": "In", "values": ["controller", "events"]}
    ]

    service = of_kind("Service", SENDER_IDENTITY)["tekton-relay"]
    assert service["spec"]["selector"] == labels
    assert service["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": port["name"]}]
    binding = of_kind("SinkBinding", SENDER_IDENTITY)["tekton-relay"]
    assert binding["spec"]["subject"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert binding["spec"]["sink"] == {
        "ref": {"apiVersion": EVENTING, "kind": "Broker", "name": BROKER}
    }


def test_tekton_relay_patch_points_at_the_relay_service() -> None:
    patch = "config-events-relay-patch.yaml"
    body = yaml.safe_load((TEKTON_PATCHES / patch).read_text())
    assert body == {"data": {"sink": RELAY_URL}}
    command = (
        "kubectl patch configmap config-events -n tekton-pipelines --type merge "
        f"--patch-file knative/tekton/{patch}"
    )
    assert command in (SENDER_IDENTITY / "README.md").read_text()


def test_the_overlay_readme_states_versions_and_flags() -> None:
    text = (SENDER_IDENTITY / "README.md").read_text()
    for needed in (
        "Knative Eventing",
        "v1.16",
        "authentication-oidc",
        "default-authorization-mode",
        "transport-encryption",
        "Tekton Pipelines",
    ):
        assert needed in text, needed
