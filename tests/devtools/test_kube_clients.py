"""kube's two clients give the same answers to the same calls (the contract of kuberest).

The functions talk to the API through :mod:`tekton_notifications.kuberest` (no ``kubernetes``
import at start-up); the CLI and the dev tools through the official client. Each scenario
below runs every public call of :mod:`kube` once per client, each against its own fresh
emulator over HTTP, and the two transcripts must be equal: results, errors (status, reason,
retryable) and what an informer sees.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tekton_notifications import kube, kuberest, vocabulary
from tekton_notifications.devtools.kubeapi import KubeAPIServer
from tekton_notifications.events import ChildRun
from tests.conftest import policy_object

ROOT = Path(__file__).resolve().parents[2]
CRDS = [
    ROOT / "crds" / f"{name}.yaml" for name in ("notificationpolicy", "clusternotificationpolicy")
]
#: Fields the emulator fills differently on every run (ids, clocks, versions).
VOLATILE = {"uid", "creationTimestamp", "resourceVersion", "managedFields", "generation"}

Transcript = list[tuple[str, Any]]


def _stable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = dataclasses.asdict(value)
        return {**_stable(fields), **({"uid": bool(fields["uid"])} if "uid" in fields else {})}
    if isinstance(value, tuple):
        return tuple(_stable(v) for v in value)
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


def _outcome(call: Callable[[], Any]) -> Any:
    try:
        return ("ok", _stable(call()))
    except kube.ApiError as error:
        return ("ApiError", error.verb, error.status, error.reason, error.retryable, error.answered)


def taskrun(name: str, namespace: str = "ci", **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "tekton.dev/v1",
        "kind": "TaskRun",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"taskRef": {"name": "notify"}},
    }


class Recorder:
    """An informer's watcher that keeps what it was told, in order."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, Any]] = []
        self.changed = threading.Event()

    def reset(self, objects: list[dict[str, Any]]) -> None:
        self.seen.append(("reset", sorted(o["metadata"]["name"] for o in objects)))
        self.changed.set()

    def upsert(self, obj: dict[str, Any]) -> None:
        self.seen.append(("upsert", obj["metadata"]["name"]))
        self.changed.set()

    def delete(self, obj: dict[str, Any]) -> None:
        self.seen.append(("delete", obj["metadata"]["name"]))
        self.changed.set()


def _informer_sees(server: KubeAPIServer, api: kube.Api) -> list[tuple[str, Any]]:
    recorder = Recorder()
    informer = kube.Informer(api, plural=vocabulary.POLICY_PLURAL, watcher=recorder)
    informer.start()
    try:
        assert informer.wait_synced(10)
        for name in ("later", "deleted"):
            recorder.changed.clear()
            server.store.create(
                vocabulary.GROUP, vocabulary.VERSION, vocabulary.POLICY_PLURAL, "ci",
                policy_object(name),
            )  # fmt: skip
            assert recorder.changed.wait(10)
        recorder.changed.clear()
        server.store.delete(vocabulary.GROUP, vocabulary.POLICY_PLURAL, "ci", "deleted")
        assert recorder.changed.wait(10)
    finally:
        informer.stop()
    return recorder.seen


def scenario(server: KubeAPIServer, api: kube.Api) -> Transcript:
    """Every public call of kube, answered and refused."""
    store = server.store
    group, version = vocabulary.GROUP, vocabulary.VERSION
    store.create(group, version, vocabulary.POLICY_PLURAL, "ci", policy_object("notify"))
    policy = store.get(group, vocabulary.POLICY_PLURAL, "ci", "notify")
    stale = "1"  # any version but the current one
    store.create_manifest(
        {
            **taskrun("done"),
            "status": {
                "conditions": [{"type": "Succeeded", "status": "False", "reason": "Failed"}]
            },
        }
    )
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "notify.1", "namespace": "ci"},
        "reason": "CELCostExceeded",
        "message": "too costly",
        "type": "Warning",
        "involvedObject": {"kind": "NotificationPolicy", "name": "notify", "namespace": "ci"},
    }
    transcript: Transcript = [
        ("create run", _outcome(lambda: kube.create_run(api, taskrun("a", team="web")))),
        ("create it again", _outcome(lambda: kube.create_run(api, taskrun("a")))),
        ("create another", _outcome(lambda: kube.create_run(api, taskrun("b", team="api")))),
        ("get run", _outcome(lambda: kube.get_run(api, "TaskRun", "ci", "a"))),
        ("get missing run", _outcome(lambda: kube.get_run(api, "TaskRun", "ci", "zz"))),
        (
            "list by label",
            _outcome(
                lambda: kube.list_objects(
                    api,
                    "taskruns",
                    None,
                    group="tekton.dev",
                    version="v1",
                    label_selector="team=web",
                )
            ),
        ),
        (
            "list a namespace",
            _outcome(lambda: kube.list_objects(api, "notificationpolicies", "ci")),
        ),
        (
            "get policy",
            _outcome(lambda: kube.get_object(api, "notificationpolicies", "ci", "notify")),
        ),
        (
            "patch status",
            _outcome(
                lambda: kube.patch_status(
                    api,
                    "notificationpolicies",
                    "ci",
                    "notify",
                    {"status": {"matched": 1}},
                    resource_version=policy["metadata"]["resourceVersion"],
                )
            ),
        ),
        (
            "patch a stale version",
            _outcome(
                lambda: kube.patch_status(
                    api,
                    "notificationpolicies",
                    "ci",
                    "notify",
                    {"status": {"matched": 2}},
                    resource_version=stale,
                )
            ),
        ),
        ("create event", _outcome(lambda: kube.create_event(api, event))),
        ("create event again", _outcome(lambda: kube.create_event(api, event))),
        (
            "list events",
            _outcome(
                lambda: [(e["metadata"]["name"], e["reason"]) for e in kube.list_events(api, "ci")]
            ),
        ),
        (
            "child outcomes",
            _outcome(
                lambda: kube.child_outcomes(
                    api, "ci", (ChildRun("done", "TaskRun", "x"), ChildRun("gone", "TaskRun", "y"))
                )
            ),
        ),
    ]
    server.faults.add(500, method="POST", path=r"/taskruns$")
    transcript.append(("a 500", _outcome(lambda: kube.create_run(api, taskrun("c")))))
    server.faults.add(403, method="GET", path=r"/taskruns/a$")
    transcript.append(("a 403", _outcome(lambda: kube.get_run(api, "TaskRun", "ci", "a"))))
    transcript.append(("informer", _informer_sees(server, api)))
    return transcript


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[tuple[KubeAPIServer, Path]]:
    with KubeAPIServer() as server:
        kubeconfig = tmp_path / "kubeconfig"
        server.write_kubeconfig(kubeconfig, namespace="ci")
        yield server, kubeconfig


def _official(kubeconfig: Path) -> kube.Api:
    return kube.api_client({"KUBECONFIG": str(kubeconfig), kube.CLIENT_SWITCH: "official"})


def _rest(kubeconfig: Path) -> kube.Api:
    return kube.api_client({"KUBECONFIG": str(kubeconfig)})


def test_both_clients_give_the_same_answers_to_the_same_calls(tmp_path: Path) -> None:
    transcripts = []
    for make in (_official, _rest):
        with KubeAPIServer() as server:
            server.load_manifests(*CRDS)
            kubeconfig = tmp_path / f"kubeconfig-{make.__name__}"
            server.write_kubeconfig(kubeconfig, namespace="ci")
            transcripts.append(scenario(server, make(kubeconfig)))
    official, rest = transcripts
    for (step, theirs), (_, ours) in zip(official, rest, strict=True):
        assert ours == theirs, step
    # Not vacuous: the scenario saw answers and refusals of each kind.
    outcomes = dict(rest)
    assert outcomes["create it again"][1]["created"] is False
    assert outcomes["get missing run"][:3] == ("ApiError", "get", 404)
    assert outcomes["patch a stale version"][2] == 409
    assert outcomes["a 500"][4] is True and outcomes["a 403"][4] is False
    assert [child["reason"] for child in outcomes["child outcomes"][1]] == ["Failed", ""]
    assert outcomes["informer"] == [
        ("reset", ["notify"]),
        ("upsert", "later"),
        ("upsert", "deleted"),
        ("delete", "deleted"),
    ]


def test_an_unreachable_api_is_a_retryable_503_for_both(tmp_path: Path) -> None:
    with KubeAPIServer() as server:
        kubeconfig = tmp_path / "kubeconfig"
        server.write_kubeconfig(kubeconfig)
    # The server is gone: nothing listens on its port any more.
    for make in (_official, _rest):
        with pytest.raises(kube.ApiError) as error:
            kube.get_run(make(kubeconfig), "TaskRun", "ci", "a")
        assert (error.value.status, error.value.retryable, error.value.answered) == (
            503,
            True,
            False,
        )


@pytest.mark.parametrize(
    ("environ", "client"),
    [
        pytest.param({}, kuberest.Client, id="default: the REST client"),
        pytest.param({kube.CLIENT_SWITCH: "rest"}, kuberest.Client, id="rest"),
        pytest.param({kube.CLIENT_SWITCH: "official"}, None, id="official: kubernetes' ApiClient"),
    ],
)
def test_the_switch_picks_the_client(
    emulator: tuple[KubeAPIServer, Path], environ: dict[str, str], client: type | None
) -> None:
    _, kubeconfig = emulator
    api = kube.api_client({"KUBECONFIG": str(kubeconfig), **environ})
    if client is None:
        from kubernetes.client import ApiClient

        client = ApiClient
    assert isinstance(api, client)


def test_an_unknown_switch_value_fails_at_start(emulator: tuple[KubeAPIServer, Path]) -> None:
    _, kubeconfig = emulator
    with pytest.raises(kube.ConfigError, match=kube.CLIENT_SWITCH):
        kube.api_client({"KUBECONFIG": str(kubeconfig), kube.CLIENT_SWITCH: "fast"})


def _kubeconfig(path: Path, cluster: dict[str, Any], user: dict[str, Any]) -> str:
    import yaml

    path.write_text(
        yaml.safe_dump(
            {
                "clusters": [{"name": "c", "cluster": cluster}],
                "users": [{"name": "u", "user": user}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    return str(path)


@pytest.mark.parametrize(
    ("cluster", "user", "expected"),
    [
        pytest.param(
            {"server": "https://k:6443", "certificate-authority": "ca.crt"},
            {"token": "t0k"},
            {"server": "https://k:6443", "token": "t0k", "namespace": "default", "verify": True},
            id="token and CA file",
        ),
        pytest.param(
            {"server": "https://k:6443", "insecure-skip-tls-verify": True},
            {"client-certificate": "c.crt", "client-key": "c.key"},
            {"verify": False, "token": None},
            id="client certificate files, no verification",
        ),
        pytest.param(
            {"server": "https://k:6443"},
            {"exec": {"command": "aws"}},
            kuberest.Unsupported,
            id="exec plugin: the official client's job",
        ),
        pytest.param(
            {"server": "https://k:6443", "certificate-authority-data": "LS0t"},
            {},
            kuberest.Unsupported,
            id="inline CA: the official client's job",
        ),
    ],
)
def test_kubeconfig_settings(
    tmp_path: Path,
    cluster: dict[str, Any],
    user: dict[str, Any],
    expected: dict[str, Any] | type[Exception],
) -> None:
    path = _kubeconfig(tmp_path / "kubeconfig", cluster, user)
    if isinstance(expected, type):
        with pytest.raises(expected):
            kuberest.from_kubeconfig(path)
        return
    settings = kuberest.from_kubeconfig(path)
    for name, value in expected.items():
        assert getattr(settings, name) == value, name
    if "certificate-authority" in cluster:  # read relative to the kubeconfig, as kubectl does
        assert settings.ca_file == str(tmp_path / "ca.crt")


def test_in_cluster_settings_read_the_service_account(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("first\n")
    (tmp_path / "namespace").write_text("notifications")
    (tmp_path / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    environ = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}

    settings = kuberest.in_cluster(environ, root=tmp_path)

    assert (settings.server, settings.namespace) == ("https://10.0.0.1:443", "notifications")
    assert settings.ca_file == str(tmp_path / "ca.crt")
    assert kuberest.Client(settings)._bearer() == "first"
    with pytest.raises(kuberest.Unsupported):
        kuberest.in_cluster({}, root=tmp_path)


def test_read_gives_the_raw_body_up_to_its_limit(emulator: tuple[KubeAPIServer, Path]) -> None:
    """What a raw GET (a container's log) needs: bytes as sent, cut at ``limit``, and the
    API's refusal as a StatusError like every other call."""
    _, kubeconfig = emulator
    api = _rest(kubeconfig)
    assert isinstance(api, kuberest.Client)
    kube.create_run(api, taskrun("raw"))
    path = kuberest.api_path("tekton.dev", "v1", "taskruns", "ci", "raw")
    whole = api.read(path, timeout=5, limit=1 << 20)

    assert api.read(path, timeout=5, limit=10) == whole[:10]
    assert json.loads(whole)["metadata"]["name"] == "raw"
    with pytest.raises(kuberest.StatusError) as refused:
        api.read(path + "-missing", timeout=5, limit=10)
    assert refused.value.status == 404
