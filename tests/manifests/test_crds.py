"""The NotificationPolicy and NotificationTemplate CRDs, and the examples written against them.

Without a cluster, these tests stand in for the API server:

* each CRD is checked as a ``CustomResourceDefinition`` (kubernetes-validate, strict) and for
  the structural-schema rules the API server enforces on top;
* examples are validated like ``kubectl apply`` would: defaults applied, the OpenAPI schema
  (with kubectl's strict field validation: unknown fields are errors), list-type set/map
  uniqueness, and every ``x-kubernetes-validations`` CEL rule evaluated with cel-python at the
  schema node that declares it. Errors are worded like the API server's
  (``spec.events[0]: Unsupported value: "failure"``).
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import celpy
import kubernetes_validate
import pytest
import yaml
from celpy import celtypes
from celpy.adapter import json_to_cel

from tekton_notifications import causes, vocabulary
from tekton_notifications.cli import schema
from tekton_notifications.cli.schema import with_defaults

ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = ROOT / "crds"
EXAMPLES = ROOT / "examples"

#: The newest Kubernetes version kubernetes-validate ships schemas for (as of 1.37.0).
KUBERNETES_VERSION = "1.37"
GROUP = "notifications.tekton.dev"
VERSION = "v1alpha1"
CRD_FILES = {
    "NotificationPolicy": CRD_DIR / "notificationpolicy.yaml",
    "NotificationTemplate": CRD_DIR / "notificationtemplate.yaml",
    "ClusterNotificationPolicy": CRD_DIR / "clusternotificationpolicy.yaml",
}
EXPECT = re.compile(r"^#\s*expect:\s*(?P<text>.+?)\s*$", re.MULTILINE)
Object = dict[str, Any]


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def documents(path: Path) -> list[Object]:
    with path.open(encoding="utf-8") as stream:
        return [doc for doc in yaml.safe_load_all(stream) if doc is not None]


@functools.cache
def crd(kind: str) -> Object:
    (only,) = documents(CRD_FILES[kind])
    return only


def crd_version(kind: str) -> Object:
    (version,) = [v for v in crd(kind)["spec"]["versions"] if v["name"] == VERSION]
    return cast(Object, version)


def openapi_schema(kind: str) -> Object:
    return cast(Object, crd_version(kind)["schema"]["openAPIV3Schema"])


def example_files(folder: str) -> list[Path]:
    return sorted((EXAMPLES / folder).glob("*.yaml"))


def file_id(path: Path) -> str:
    return str(path.relative_to(EXAMPLES))


def schema_nodes(node: Object, path: str = "") -> Iterator[tuple[str, Object]]:
    """Every schema node with a readable path, depth first."""
    yield path or "<root>", node
    for name, child in node.get("properties", {}).items():
        yield from schema_nodes(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from schema_nodes(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from schema_nodes(node["additionalProperties"], f"{path}{{}}")


def all_rules() -> Iterator[tuple[str, str, Object]]:
    """(kind, schema path, rule) for every x-kubernetes-validations rule of both CRDs."""
    for kind in CRD_FILES:
        for path, node in schema_nodes(openapi_schema(kind)):
            for rule in node.get("x-kubernetes-validations", []):
                yield kind, path, rule


# --------------------------------------------------------------------------------------------
# An offline stand-in for the API server's validation of custom resources
# --------------------------------------------------------------------------------------------

_CEL = celpy.Environment()


@functools.cache
def cel_program(rule: str) -> celpy.Runner:
    return _CEL.program(_CEL.compile(rule))


#: The same offline stand-in `tkn-notify lint` uses: the CRDs' schemas with the API server's
#: wording, defaults and CEL rules (tekton_notifications.cli.schema).
VALIDATOR = schema.load(CRD_DIR)


def rejections(obj: Object) -> list[str]:
    """What the API server would say about ``obj`` (empty when it would be accepted)."""
    api_version, kind = obj.get("apiVersion", ""), obj.get("kind", "")
    if api_version.split("/")[0] == GROUP:
        if api_version != f"{GROUP}/{VERSION}" or kind not in CRD_FILES:
            return [f"no matches for kind {kind!r} in version {api_version!r}"]
        return [f"{path or '<root>'}: {message}" for path, message in VALIDATOR.problems(obj)]
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        return [f"{'.'.join(map(str, error.path)) or '<root>'}: {error.message}"]
    except kubernetes_validate.SchemaNotFoundError as error:
        return [f"no schema to validate {kind} {api_version} against: {error.message}"]
    return []


# --------------------------------------------------------------------------------------------
# The CRDs themselves
# --------------------------------------------------------------------------------------------

CRD_KINDS = pytest.mark.parametrize("kind", list(CRD_FILES), ids=lambda k: CRD_FILES[k].name)


@CRD_KINDS
def test_crd_is_a_valid_customresourcedefinition(kind: str) -> None:
    kubernetes_validate.validate(crd(kind), KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize(
    ("kind", "plural", "short_names"),
    [
        pytest.param(
            "NotificationPolicy",
            "notificationpolicies",
            ["np", "notifypolicy"],
            id="notificationpolicy.yaml",
        ),
        pytest.param(
            "NotificationTemplate",
            "notificationtemplates",
            ["nt", "notifytemplate"],
            id="notificationtemplate.yaml",
        ),
    ],
)
def test_crd_serves_the_namespaced_v1alpha1_api_with_a_status_subresource(
    kind: str, plural: str, short_names: list[str]
) -> None:
    definition = crd(kind)
    spec = definition["spec"]
    assert definition["apiVersion"] == "apiextensions.k8s.io/v1"
    assert definition["metadata"]["name"] == f"{plural}.{GROUP}"
    assert spec["group"] == GROUP
    assert spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == kind
    assert spec["names"]["plural"] == plural
    assert spec["names"]["singular"] == kind.lower()
    assert spec["names"]["shortNames"] == short_names
    assert spec["names"]["categories"] == ["tekton", "tekton-notifications"]
    assert [(v["name"], v["served"], v["storage"]) for v in spec["versions"]] == [
        (VERSION, True, True)
    ]
    assert crd_version(kind)["subresources"] == {"status": {}}


@CRD_KINDS
def test_crd_schema_is_structural(kind: str) -> None:
    schema = openapi_schema(kind)
    forbidden = {
        "$ref",
        "$schema",
        "definitions",
        "dependencies",
        "id",
        "patternProperties",
        "additionalItems",
    }
    problems = []
    for path, node in schema_nodes(schema):
        open_node = node.get("x-kubernetes-preserve-unknown-fields") or node.get(
            "x-kubernetes-int-or-string"
        )
        if "type" not in node and not open_node:
            problems.append(f"{path}: has no type")
        has_fields = "properties" in node or "additionalProperties" in node
        if has_fields and node.get("type") != "object":
            problems.append(f"{path}: has properties but is not of type object")
        if "properties" in node and "additionalProperties" in node:
            problems.append(f"{path}: sets both properties and additionalProperties")
        if isinstance(node.get("additionalProperties"), bool):
            problems.append(f"{path}: additionalProperties must be a schema, not a bool")
        if node.get("uniqueItems"):
            problems.append(f"{path}: uniqueItems is not allowed; use x-kubernetes-list-type")
        if node.get("x-kubernetes-preserve-unknown-fields") not in (None, True):
            problems.append(f"{path}: x-kubernetes-preserve-unknown-fields must be true or absent")
        problems += [f"{path}: uses forbidden keyword {key}" for key in forbidden & node.keys()]
    assert schema["properties"]["metadata"] == {"type": "object"}
    assert schema["required"] == ["spec"]
    assert problems == []


@CRD_KINDS
def test_every_field_has_a_description_for_users(kind: str) -> None:
    missing = [
        f"{path}.{name}"
        for path, node in schema_nodes(openapi_schema(kind))
        for name, child in node.get("properties", {}).items()
        if name != "metadata" and not str(child.get("description", "")).strip()
    ]
    missing += [
        f"printer column {column['name']}"
        for column in crd_version(kind)["additionalPrinterColumns"]
        if not column.get("description")
    ]
    assert missing == []


@CRD_KINDS
def test_list_map_keys_are_required_scalar_fields(kind: str) -> None:
    problems = []
    for path, node in schema_nodes(openapi_schema(kind)):
        is_map = node.get("x-kubernetes-list-type") == "map"
        keys = node.get("x-kubernetes-list-map-keys", [])
        if is_map != bool(keys):
            problems.append(f"{path}: list-type map and list-map-keys go together")
        for key in keys:
            item = node["items"]
            key_type = item.get("properties", {}).get(key, {}).get("type")
            if key not in item.get("required", []) or key_type not in ("string", "integer"):
                problems.append(f"{path}: map key {key} must be a required scalar field")
    assert problems == []


@CRD_KINDS
def test_spec_lists_maps_and_strings_are_bounded_so_cel_cost_can_be_estimated(kind: str) -> None:
    unbounded = []
    for path, node in schema_nodes(openapi_schema(kind)["properties"]["spec"], ".spec"):
        if node.get("type") == "array" and "maxItems" not in node:
            unbounded.append(f"{path}: array without maxItems")
        if isinstance(node.get("additionalProperties"), dict) and "maxProperties" not in node:
            unbounded.append(f"{path}: map without maxProperties")
        if node.get("type") == "string" and not {"maxLength", "enum"} & node.keys():
            unbounded.append(f"{path}: string without maxLength or enum")
    assert unbounded == []


RULES = list(all_rules())


@pytest.mark.parametrize(
    ("kind", "path", "rule"),
    RULES,
    ids=[f"{kind}{path}: {rule['message'][:60]}" for kind, path, rule in RULES],
)
def test_cel_rule_compiles_and_has_a_one_line_message(kind: str, path: str, rule: Object) -> None:
    cel_program(rule["rule"])  # raises CELParseError when the rule does not compile
    assert "oldSelf" not in rule["rule"], "transition rules are not evaluated by these tests"
    assert rule.get("message", "").strip(), "every rule needs a message a user can act on"
    assert "\n" not in rule["message"]


def schema_at(kind: str, json_path: str) -> Object | None:
    """The schema node a printer column's JSONPath points at (None if there is none)."""
    node = openapi_schema(kind)
    for part in re.sub(r"\[[^\]]*\]", "[]", json_path).strip(".").split("."):
        name = part.removesuffix("[]")
        node = node.get("properties", {}).get(name)
        if node is None:
            return None
        if part.endswith("[]"):
            node = node["items"]
    return node


@CRD_KINDS
def test_printer_columns_point_at_schema_fields_of_the_right_type(kind: str) -> None:
    problems = []
    for column in crd_version(kind)["additionalPrinterColumns"]:
        json_path = column["jsonPath"]
        if json_path == ".metadata.creationTimestamp":
            assert column["type"] == "date"
            continue
        node = schema_at(kind, json_path)
        if node is None:
            problems.append(f"{column['name']}: {json_path} is not in the schema")
            continue
        expected = {
            "date": {"string"},
            "string": {"string", "array"},
            "integer": {"integer"},
            "boolean": {"boolean"},
            "number": {"number", "integer"},
        }[column["type"]]
        if node.get("type") not in expected:
            problems.append(f"{column['name']}: {json_path} is a {node.get('type')}")
        if column["type"] == "date" and node.get("format") != "date-time":
            problems.append(f"{column['name']}: {json_path} is not a date-time")
    assert problems == []


def test_printer_columns_show_what_an_operator_looks_for() -> None:
    def names(kind: str) -> list[str]:
        return [column["name"] for column in crd_version(kind)["additionalPrinterColumns"]]

    assert {"Events", "Template", "Suspended", "Ready", "Matches", "Last Matched", "Age"} <= set(
        names("NotificationPolicy")
    )
    assert {"Task", "Pipeline", "Ready", "Age"} <= set(names("NotificationTemplate"))


def test_kustomization_installs_both_crds() -> None:
    (kustomization,) = documents(CRD_DIR / "kustomization.yaml")
    assert kustomization["kind"] == "Kustomization"
    assert sorted(kustomization["resources"]) == sorted(p.name for p in CRD_FILES.values())


# --------------------------------------------------------------------------------------------
# Examples
# --------------------------------------------------------------------------------------------

VALID_EXAMPLES = example_files("policies") + example_files("templates")
INVALID_EXAMPLES = example_files("invalid")


def test_there_are_example_policies_and_invalid_examples() -> None:
    assert len(example_files("policies")) >= 5
    assert len(INVALID_EXAMPLES) >= 4


@pytest.mark.parametrize("path", VALID_EXAMPLES, ids=file_id)
def test_example_is_accepted_by_its_crd(path: Path) -> None:
    objects = documents(path)
    assert objects, f"{file_id(path)} holds no objects"
    for obj in objects:
        assert rejections(obj) == [], f"{obj['kind']} {obj['metadata'].get('name')}"


@pytest.mark.parametrize("path", example_files("policies") + INVALID_EXAMPLES, ids=file_id)
def test_example_starts_with_a_comment_saying_what_it_does(path: Path) -> None:
    first_line = path.read_text(encoding="utf-8").splitlines()[0]
    assert first_line.startswith("# ") and len(first_line) > 20


def example_templates() -> dict[tuple[str, str], Object]:
    return {
        (obj["metadata"].get("namespace", "default"), obj["metadata"]["name"]): obj
        for path in example_files("templates")
        for obj in documents(path)
        if obj.get("kind") == "NotificationTemplate"
    }


@pytest.mark.parametrize("path", example_files("policies"), ids=file_id)
def test_example_policy_refers_to_example_templates_in_its_namespace(path: Path) -> None:
    """Checked once examples/templates/ holds templates (they are written separately)."""
    templates = example_templates()
    for obj in documents(path):
        assert obj["kind"] == "NotificationPolicy"
        namespace = obj["metadata"]["namespace"]
        assert namespace == "ci"
        names = [ref["name"] for ref in obj["spec"].get("templateRefs", [])]
        if templates:
            missing = [name for name in names if (namespace, name) not in templates]
            assert missing == [], f"{obj['metadata']['name']} refers to unknown templates"


# The ``event`` variable as the policy filter builds it (see tekton_notifications.events).
def activation(kind: str, labels: dict[str, str] | None, *, reason: str = "Failed") -> Object:
    metadata: Object = {"name": "build-and-test-x7k2p-unit-tests", "namespace": "ci", "uid": "u1"}
    if labels is not None:
        metadata["labels"] = labels
    condition = {"type": "Succeeded", "status": "False", "reason": reason, "message": "boom"}
    run = {"metadata": metadata, "spec": {}, "status": {"conditions": [condition]}}
    event = {
        "type": f"dev.tekton.event.{kind.lower()}.failed.v1",
        "kind": kind,
        "event": "failed",
        "outcome": "failed",
        "name": metadata["name"],
        "namespace": "ci",
        "uid": "u1",
        "labels": labels or {},
        "annotations": {},
        "reason": reason,
        "message": "boom",
        "startTime": "2024-05-01T10:00:00Z",
        "completionTime": "2024-05-01T10:01:00Z",
        "duration": 60.0,
        "results": {},
        "children": [],
        "cause": causes.cause_of(labels or {}, {}),
        "failedSteps": [],
    }
    policy = {"name": "p", "namespace": "ci"}
    return {
        name: json_to_cel(value)
        for name, value in {"run": run, "event": event, "policy": policy}.items()
    }


def evaluate_when(policy: Object, variables: Object) -> bool:
    """The policy's ``when`` expression; anything but a bool (or an error) fails the test."""
    result = cel_program(policy["spec"]["when"]).evaluate(variables)
    assert isinstance(result, celtypes.BoolType), f"when gave {result!r}"
    return bool(result)


WHEN_POLICIES = [
    pytest.param(policy, id=f"{file_id(path)}:{policy['metadata']['name']}")
    for path in example_files("policies")
    for policy in documents(path)
    if "when" in policy["spec"]
]


@pytest.mark.parametrize("policy", WHEN_POLICIES)
@pytest.mark.parametrize(
    "labels", [None, {}, {"tekton.dev/pipelineTask": "lint"}], ids=["no-labels", "empty", "other"]
)
@pytest.mark.parametrize("kind", ["TaskRun", "PipelineRun"])
def test_example_when_expression_evaluates_to_a_bool_for_any_run(
    policy: Object, labels: dict[str, str] | None, kind: str
) -> None:
    evaluate_when(policy, activation(kind, labels))


def test_unit_tests_discord_policy_matches_only_the_unit_tests_pipeline_task() -> None:
    (policy,) = documents(EXAMPLES / "policies" / "taskrun-failed-discord.yaml")
    label = "tekton.dev/pipelineTask"
    assert evaluate_when(policy, activation("TaskRun", {label: "unit-tests"}))
    assert not evaluate_when(policy, activation("TaskRun", {label: "lint"}))
    assert not evaluate_when(policy, activation("TaskRun", None))


@pytest.mark.parametrize("path", INVALID_EXAMPLES, ids=file_id)
def test_invalid_example_is_rejected_with_the_message_it_expects(path: Path) -> None:
    expected = EXPECT.findall(path.read_text(encoding="utf-8"))
    assert len(expected) == 1, "each invalid example has exactly one '# expect: ...' line"
    (obj,) = documents(path)
    errors = rejections(obj)
    assert errors, "the API server would accept this"
    assert any(expected[0] in error for error in errors), errors


# --------------------------------------------------------------------------------------------
# Every rule, proven to accept what it should and reject what it must
# --------------------------------------------------------------------------------------------


def a_policy(**spec: Any) -> Object:
    base: Object = {"events": ["failed"], "templateRefs": [{"name": "slack-webhook"}]}
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "NotificationPolicy",
        "metadata": {"name": "p", "namespace": "ci"},
        "spec": {**base, **spec},
    }


def a_template(**spec: Any) -> Object:
    base: Object = {"taskRef": {"name": "send-to-webhook-slack"}}
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "NotificationTemplate",
        "metadata": {"name": "t", "namespace": "ci"},
        "spec": {**base, **spec},
    }


def without(obj: Object, field: str) -> Object:
    obj = copy.deepcopy(obj)
    del obj["spec"][field]
    return obj


HUB_REF = {
    "resolver": "hub",
    "params": [
        {"name": "kind", "value": "task"},
        {"name": "name", "value": "send-to-webhook-slack"},
        {"name": "version", "value": "0.1"},
    ],
}


def a_cluster_policy(**spec: Any) -> Object:
    policy = a_policy(templateNamespace="tekton-notifications", **spec)
    policy["kind"] = "ClusterNotificationPolicy"
    del policy["metadata"]["namespace"]
    return policy


ACCEPTED: dict[str, Object] = {
    "policy with only events and templateRefs": a_policy(),
    "policy with reminders, a threshold and a digest (issue 17)": a_policy(
        events=["broken", "fixed"],
        rateLimit={"limit": 3, "window": "10m"},
        remind={"after": "4h", "every": "24h", "max": 5},
        threshold={"failures": 3},
        digest={"every": "1h", "templateRef": {"name": "digest"}},
    ),
    "cluster policy with a digest": a_cluster_policy(
        rateLimit={"limit": 3, "window": "10m"},
        digest={"every": "1h", "templateRef": {"name": "digest"}},
    ),
    "policy with a fallback template": a_policy(
        templateRefs=[{"name": "slack-webhook", "fallback": {"name": "email"}}]
    ),
    "cluster policy with a fallback template": a_cluster_policy(
        templateRefs=[{"name": "slack-webhook", "fallback": {"name": "email"}}]
    ),
    "template retried 5 times, 30s apart then more": a_template(retries=5, retryDelay="30s"),
    "cluster policy for some namespaces": a_cluster_policy(
        selector={"namespaces": ["team-*", "ci"]}
    ),
    "policy with every selector field": a_policy(
        selector={
            "kinds": ["PipelineRun", "TaskRun", "CustomRun"],
            "names": ["build-*", "release-v?.[0-9]*", "deploy-[!x]*", "nightly"],
            "matchLabels": {"team": "web", "tekton.dev/pipeline": "build-and-test", "empty": ""},
            "matchExpressions": [
                {"key": "tekton.dev/pipeline", "operator": "In", "values": ["a", "b"]},
                {"key": "env", "operator": "NotIn", "values": ["dev"]},
                {"key": "triggers.tekton.dev/eventlistener", "operator": "Exists"},
                {"key": "skip-notify", "operator": "DoesNotExist", "values": []},
            ],
            "matchAnnotations": {"example.com/notify": "true", "owner": "Jane Doe <j@x.io>"},
        }
    ),
    "policy with every event": a_policy(events=list(vocabulary.POLICY_EVENTS)),
    "policy with fixed and a per-pipeline rate limit": a_policy(
        events=["failed", "fixed"], rateLimit={"limit": 5, "window": "1h30m", "per": "pipeline"}
    ),
    "policy with the smallest rate limit": a_policy(rateLimit={"limit": 1, "window": "1s"}),
    "policy with the largest rate limit": a_policy(
        rateLimit={"limit": 100, "window": "168h", "per": "policy"}
    ),
    "cluster policy with a rate limit": a_cluster_policy(
        events=["fixed"], rateLimit={"limit": 10, "window": "10m"}
    ),
    "policy with when, param overrides and suspend": a_policy(
        when='event.reason != "Cancelled" && run.metadata.name.startsWith("build-")',
        templateRefs=[
            {"name": "slack-webhook", "params": {"bot-name": "CI", "_x.y-z": "{{ event.name }}"}},
            {"name": "email.v2"},
        ],
        suspend=True,
    ),
    "policy with a status": {
        **a_policy(),
        "status": {
            "observedGeneration": 3,
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "Accepted",
                    "message": "",
                    "lastTransitionTime": "2024-05-01T10:00:00Z",
                    "observedGeneration": 3,
                }
            ],
            "matchCount": 12,
            "lastMatchedTime": "2024-05-01T10:00:00Z",
            "suppressedCount": 0,
        },
    },
    "policy with storm state in its status": {
        **a_policy(events=["failed", "fixed"], rateLimit={"limit": 3, "window": "10m"}),
        "status": {
            "suppressedCount": 4,
            "lastSuppressedTime": "2024-05-01T10:05:00Z",
            "outcomes": [
                {
                    "kind": "PipelineRun",
                    "pipeline": "build-and-test",
                    "outcome": "failed",
                    "previousOutcome": "succeeded",
                    "run": "build-and-test-x7k2p",
                    "uid": "u1",
                    "completionTime": "2024-05-01T10:01:00Z",
                },
                {
                    "kind": "TaskRun",
                    "pipeline": "build-and-test/unit-tests",
                    "outcome": "succeeded",
                    "run": "build-and-test-x7k2p-unit-tests",
                },
            ],
            "rateLimit": {
                "sent": [
                    {"occurrence": "3f2a9c1d0b7e6a54", "time": "2024-05-01T10:01:00.123Z"},
                    {
                        "occurrence": "9b8c7d6e5f4a3b2c",
                        "time": "2024-05-01T10:02:00Z",
                        "pipeline": "build-and-test",
                    },
                ]
            },
        },
    },
    "template with a taskRef by name and everything else": a_template(
        taskRef={"name": "send-to-webhook-slack", "kind": "Task"},
        params={"message": "{{ event.name }} {{ event.outcome }}", "bot-name": "Tekton"},
        serviceAccountName="notifier",
        workspaces=[
            {"name": "secrets", "secret": {"secretName": "slack"}},
            {"name": "scratch", "emptyDir": {}},
        ],
        podTemplate={"nodeSelector": {"kubernetes.io/os": "linux"}},
        timeout="1h30m",
    ),
    "template with a hub-resolved taskRef": a_template(taskRef=HUB_REF, timeout="500ms"),
    "template with an array resolver param": a_template(
        taskRef={"resolver": "my-resolver", "params": [{"name": "args", "value": ["a", "b"]}]},
        timeout="1.5h",
    ),
    "template with a pipelineRef by name": without(
        a_template(pipelineRef={"name": "notify-everyone"}), "taskRef"
    ),
    "template with a resolved pipelineRef": without(
        a_template(pipelineRef={"resolver": "git", "params": [{"name": "url", "value": "u"}]}),
        "taskRef",
    ),
}

REJECTED: list[tuple[str, Object, str]] = [
    (
        "first reminder after a month",
        a_policy(remind={"after": "1000h", "every": "24h"}),
        "must be a duration from 0s to 720h",
    ),
    (
        "reminders every 30 seconds",
        a_policy(remind={"after": "1h", "every": "30s"}),
        "must be a duration from 1m to 720h",
    ),
    (
        "cluster policy digest every 30 seconds",
        a_cluster_policy(digest={"every": "30s", "templateRef": {"name": "d"}}),
        "must be a duration from 1m to 720h",
    ),
    ("threshold of zero", a_policy(threshold={"failures": 0}), "spec.threshold.failures"),
    (
        "cluster policy namespace glob with capitals",
        a_cluster_policy(selector={"namespaces": ["Team-*"]}),
        "namespaces must be namespace names or shell globs over them",
    ),
    (
        "cluster policy without a template namespace",
        {
            **a_cluster_policy(),
            "spec": {"events": ["failed"], "templateRefs": [{"name": "slack-webhook"}]},
        },
        "spec.templateNamespace: Required value",
    ),
    (
        "unknown kind",
        a_policy(selector={"kinds": ["Pod"]}),
        'spec.selector.kinds[0]: Unsupported value: "Pod"',
    ),
    (
        "uppercase name glob",
        a_policy(selector={"names": ["Build-*"]}),
        "names must be run names or shell globs",
    ),
    (
        "bad label key",
        a_policy(selector={"matchLabels": {"-team": "web"}}),
        "matchLabels keys must be Kubernetes label keys",
    ),
    (
        "bad label value",
        a_policy(selector={"matchLabels": {"team": "web team"}}),
        "spec.selector.matchLabels.team: Invalid value",
    ),
    (
        "bad annotation key",
        a_policy(selector={"matchAnnotations": {"example.com/": "x"}}),
        "matchAnnotations keys must be Kubernetes annotation keys",
    ),
    (
        "NotIn with empty values",
        a_policy(selector={"matchExpressions": [{"key": "a", "operator": "NotIn", "values": []}]}),
        "values must be non-empty when operator is In or NotIn",
    ),
    (
        "Exists with values",
        a_policy(
            selector={"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}
        ),
        "values must be empty when operator is Exists or DoesNotExist",
    ),
    (
        "unknown operator",
        a_policy(selector={"matchExpressions": [{"key": "a", "operator": "Equals"}]}),
        'spec.selector.matchExpressions[0].operator: Unsupported value: "Equals"',
    ),
    (
        "no events",
        a_policy(events=[]),
        "spec.events: Invalid value: 0: in body should have at least",
    ),
    (
        "same event twice",
        a_policy(events=["failed", "failed"]),
        "events must not list the same event twice",
    ),
    ("blank when", a_policy(when="  "), "when must not be blank"),
    (
        "rate limit of 0",
        a_policy(rateLimit={"limit": 0, "window": "10m"}),
        "spec.rateLimit.limit: 0 is less than the minimum of 1",
    ),
    (
        "rate limit over 100",
        a_policy(rateLimit={"limit": 101, "window": "10m"}),
        "spec.rateLimit.limit: 101 is greater than the maximum of 100",
    ),
    (
        "rate limit window that is not a duration",
        a_policy(rateLimit={"limit": 5, "window": "soon"}),
        'spec.rateLimit.window: Invalid value: "soon"',
    ),
    (
        "rate limit window under a second",
        a_policy(rateLimit={"limit": 5, "window": "500ms"}),
        "window must be a duration from 1s to 168h",
    ),
    (
        "rate limit window over a week",
        a_policy(rateLimit={"limit": 5, "window": "168h1s"}),
        "window must be a duration from 1s to 168h",
    ),
    (
        "rate limit per team",
        a_policy(rateLimit={"limit": 5, "window": "10m", "per": "team"}),
        'spec.rateLimit.per: Unsupported value: "team"',
    ),
    (
        "rate limit without a window",
        a_policy(rateLimit={"limit": 5}),
        "spec.rateLimit.window: Required value",
    ),
    (
        "recorded outcome that is not final",
        {
            **a_policy(),
            "status": {
                "outcomes": [
                    {"kind": "TaskRun", "pipeline": "p", "outcome": "cancelled", "run": "r"}
                ]
            },
        },
        'status.outcomes[0].outcome: Unsupported value: "cancelled"',
    ),
    (
        "sent notification without a time",
        {**a_policy(), "status": {"rateLimit": {"sent": [{"occurrence": "abc"}]}}},
        "status.rateLimit.sent[0].time: Required value",
    ),
    ("missing events", without(a_policy(), "events"), "events and templateRefs go together"),
    ("no templateRefs", a_policy(templateRefs=[]), "spec.templateRefs: Invalid value: 0"),
    (
        "template referenced twice",
        a_policy(templateRefs=[{"name": "a"}, {"name": "a"}]),
        'spec.templateRefs[1]: Duplicate value: {"name": "a"}',
    ),
    (
        "template name with capitals",
        a_policy(templateRefs=[{"name": "Slack"}]),
        'spec.templateRefs[0].name: Invalid value: "Slack"',
    ),
    (
        "param override with a space",
        a_policy(templateRefs=[{"name": "a", "params": {"bot name": "x"}}]),
        "param names must start with a letter or '_'",
    ),
    (
        "param override that is not a string",
        a_policy(templateRefs=[{"name": "a", "params": {"retries": 3}}]),
        "3 is not of type 'string'",
    ),
    (
        "misspelt field",
        {**a_policy(), "spec": {**a_policy()["spec"], "templateRef": [{"name": "a"}]}},
        "spec.templateRef: unknown field",
    ),
    ("suspend as a string", a_policy(suspend="yes"), "'yes' is not of type 'boolean'"),
    (
        "unknown condition status",
        {**a_policy(), "status": {"conditions": [{"type": "Ready", "status": "Yes"}]}},
        'status.conditions[0].status: Unsupported value: "Yes"',
    ),
    (
        "taskRef with name and resolver",
        a_template(taskRef={"name": "x", **HUB_REF}),
        "taskRef needs exactly one of name (a Task in this namespace) or resolver",
    ),
    ("empty taskRef", a_template(taskRef={}), "taskRef needs exactly one of name"),
    (
        "taskRef params without resolver",
        a_template(taskRef={"name": "x", "params": [{"name": "a", "value": "b"}]}),
        "taskRef.params are resolver params and need taskRef.resolver",
    ),
    (
        "resolver param without value",
        a_template(taskRef={"resolver": "hub", "params": [{"name": "a"}]}),
        "spec.taskRef.params[0].value: Required value",
    ),
    (
        "pipelineRef with name and resolver",
        without(a_template(pipelineRef={"name": "x", "resolver": "git"}), "taskRef"),
        "pipelineRef needs exactly one of name (a Pipeline in this namespace) or resolver",
    ),
    (
        "pipelineRef params without resolver",
        without(
            a_template(pipelineRef={"name": "x", "params": [{"name": "a", "value": "b"}]}),
            "taskRef",
        ),
        "pipelineRef.params are resolver params and need pipelineRef.resolver",
    ),
    (
        "template param name with a slash",
        a_template(params={"a/b": "x"}),
        "param names must start with a letter or '_'",
    ),
    (
        "workspace without a name",
        a_template(workspaces=[{"emptyDir": {}}]),
        "spec.workspaces[0].name: Required value",
    ),
    (
        "workspace bound twice",
        a_template(workspaces=[{"name": "w"}, {"name": "w"}]),
        'spec.workspaces[1]: Duplicate value: {"name": "w"}',
    ),
    ("timeout in days", a_template(timeout="1d"), 'spec.timeout: Invalid value: "1d"'),
    ("timeout without a unit", a_template(timeout="30"), 'spec.timeout: Invalid value: "30"'),
    (
        "podTemplate that is not an object",
        a_template(podTemplate="fast"),
        "'fast' is not of type 'object'",
    ),
    ("six retries", a_template(retries=6), "spec.retries: 6 is greater than the maximum of 5"),
    ("negative retries", a_template(retries=-1), "spec.retries: -1 is less than the minimum of 0"),
    (
        "retryDelay without a unit",
        a_template(retryDelay="30"),
        'spec.retryDelay: Invalid value: "30"',
    ),
    (
        "fallback without a name",
        a_policy(templateRefs=[{"name": "slack-webhook", "fallback": {}}]),
        "spec.templateRefs[0].fallback.name: Required value",
    ),
    (
        "fallback that is not a template name",
        a_policy(templateRefs=[{"name": "slack-webhook", "fallback": {"name": "Email!"}}]),
        "spec.templateRefs[0].fallback.name: Invalid value",
    ),
]


@pytest.mark.parametrize("obj", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_api_server_would_accept(obj: Object) -> None:
    assert rejections(obj) == []


@pytest.mark.parametrize(
    ("obj", "message"), [case[1:] for case in REJECTED], ids=[case[0] for case in REJECTED]
)
def test_api_server_would_reject_with_a_clear_message(obj: Object, message: str) -> None:
    errors = rejections(obj)
    assert any(message in error for error in errors), errors


def test_a_window_that_is_not_a_duration_gets_one_error_not_two() -> None:
    """The range rule steps aside for the pattern: duration() cannot parse "soon"."""
    errors = rejections(a_policy(rateLimit={"limit": 5, "window": "soon"}))
    assert [error.split(":")[0] for error in errors] == ["spec.rateLimit.window"]


@pytest.mark.parametrize("make", [a_policy, a_cluster_policy], ids=["namespaced", "cluster"])
def test_rate_limit_is_per_policy_unless_it_says_per_pipeline(make: Any) -> None:
    policy = make(rateLimit={"limit": 5, "window": "10m"})
    defaulted = with_defaults(openapi_schema(policy["kind"]), policy)
    assert defaulted["spec"]["rateLimit"] == {"limit": 5, "window": "10m", "per": "policy"}


@pytest.mark.parametrize("kind", ["NotificationPolicy", "ClusterNotificationPolicy"])
def test_events_enum_is_what_the_policy_filter_understands(kind: str) -> None:
    events = openapi_schema(kind)["properties"]["spec"]["properties"]["events"]
    assert events["items"]["enum"] == list(vocabulary.POLICY_EVENTS)
    assert events["maxItems"] == len(vocabulary.POLICY_EVENTS)


def test_every_cel_rule_is_shown_to_reject_something() -> None:
    expected = [message for _, _, message in REJECTED] + [
        EXPECT.findall(path.read_text(encoding="utf-8"))[0] for path in INVALID_EXAMPLES
    ]
    unproven = [
        f"{kind}{path}: {rule['message']}"
        for kind, path, rule in RULES
        if not any(text in rule["message"] or rule["message"] in text for text in expected)
    ]
    assert unproven == []


def test_validator_reports_unknown_kinds_in_our_group() -> None:
    obj = {**a_policy(), "kind": "NotificationRoute"}
    assert rejections(obj) == [
        f"no matches for kind 'NotificationRoute' in version '{GROUP}/{VERSION}'"
    ]
