"""Reading what the commands work on: YAML/JSON files, Tekton events, and the cluster.

The cluster is reached with the official ``kubernetes`` client, configured from
``--kubeconfig``, else ``KUBECONFIG`` or ``~/.kube/config``, else the in-cluster service
account, like kubectl. API failures become :class:`ClusterError` (exit 3).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, cast

import click
import yaml

from tekton_notifications import diagnosis, events, kube, vocabulary
from tekton_notifications.cli._output import ClusterError, InputError
from tekton_notifications.events import RunEvent

YAML_SUFFIXES: Final = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class Document:
    """One YAML document of a file, with where it came from."""

    path: Path
    index: int
    obj: Any

    @property
    def kind(self) -> str:
        return str(self.obj.get("kind") or "") if isinstance(self.obj, Mapping) else ""


class BadFile(Exception):
    """A file that exists but cannot be read or parsed."""

    def __init__(self, path: Path, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


def files_under(paths: tuple[Path, ...] | list[Path]) -> list[Path]:
    """The YAML/JSON files named, or found (recursively, sorted) under directories."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(
                sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in YAML_SUFFIXES)
            )
        elif path.is_file():
            found.append(path)
        else:
            raise InputError(f"{path}: no such file or directory")
    return found


def read_documents(path: Path) -> list[Document]:
    """Every non-empty document of a YAML (or JSON) file; ``kind: List`` is expanded."""
    try:
        text = path.read_text(encoding="utf-8")
        loaded = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except (OSError, UnicodeDecodeError) as error:
        raise BadFile(path, f"cannot read: {error}") from None
    except yaml.YAMLError as error:
        raise BadFile(path, f"not valid YAML: {' '.join(str(error).split())}") from None
    documents: list[Document] = []
    for index, doc in enumerate(_expand_lists(loaded)):
        documents.append(Document(path, index, doc))
    return documents


def _expand_lists(docs: list[Any]) -> Iterator[Any]:
    for doc in docs:
        if isinstance(doc, Mapping) and str(doc.get("kind", "")).endswith("List"):
            yield from _expand_lists(list(doc.get("items") or []))
        else:
            yield doc


def objects_of_kind(paths: tuple[Path, ...], *kinds: str) -> list[dict[str, Any]]:
    """The objects of the given kinds in files/directories; an unreadable file is an error."""
    objects: list[dict[str, Any]] = []
    for path in files_under(paths):
        try:
            documents = read_documents(path)
        except BadFile as error:
            raise InputError(str(error)) from None
        objects.extend(cast(dict[str, Any], doc.obj) for doc in documents if doc.kind in kinds)
    return objects


def load_event_file(path: str) -> RunEvent:
    """A Tekton event from a file (``-`` is stdin): a structured CloudEvent or a run object."""
    try:
        with click.open_file(path, encoding="utf-8") as stream:
            text = stream.read()
        doc = yaml.safe_load(text)
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: cannot read: {error}") from None
    except yaml.YAMLError as error:
        raise InputError(
            f"{path}: not valid JSON or YAML: {' '.join(str(error).split())}"
        ) from None
    try:
        return diagnosis.event_from_document(doc)
    except events.EventError as error:
        raise InputError(f"{path}: {error}") from None


def looks_like_file(argument: str) -> bool:
    return argument == "-" or Path(argument).is_file() or argument.endswith(YAML_SUFFIXES)


# --------------------------------------------------------------------------------------------
# The cluster


#: A connection to the cluster: the API client and kubectl's current namespace.
Cluster = kube.Connection


def connect(kubeconfig: str | None) -> Cluster:
    """An API client as kubectl would build it; ClusterError when there is no configuration."""
    try:
        return kube.connect(kubeconfig, retries=1)
    except kube.ConfigError as error:
        raise ClusterError(str(error)) from None


def cluster_error(error: kube.ApiError, doing: str) -> ClusterError:
    """A ClusterError that says what was being done and what the API answered."""
    if not error.answered:
        return ClusterError(f"{doing}: cannot reach the Kubernetes API: {error.message}")
    return ClusterError(f"{doing}: the API answered {error.status}: {error.message}")


def list_custom(
    cluster: Cluster,
    group: str,
    version: str,
    plural: str,
    namespace: str | None,
    label_selector: str = "",
) -> list[dict[str, Any]]:
    """Every object of a custom resource, in one namespace or (None) all of them."""
    where = f"in namespace {namespace}" if namespace else "in all namespaces"
    try:
        return kube.list_objects(
            cluster.api,
            plural,
            namespace,
            group=group,
            version=version,
            label_selector=label_selector,
        )
    except kube.ApiError as error:
        raise cluster_error(error, f"listing {plural}.{group} {where}") from None


def notification_objects(cluster: Cluster, namespace: str, plural: str) -> list[dict[str, Any]]:
    return list_custom(cluster, vocabulary.GROUP, vocabulary.VERSION, plural, namespace)


def cluster_policies(cluster: Cluster) -> list[dict[str, Any]]:
    """ClusterNotificationPolicies; none where their CRD is not installed."""
    try:
        return list_custom(
            cluster, vocabulary.GROUP, vocabulary.VERSION, vocabulary.CLUSTER_POLICY_PLURAL, None
        )
    except ClusterError as error:
        if "the API answered 404" in str(error):
            return []
        raise


#: Run kinds as users type them, to (kind, plural, versions to try in order). The v1beta1
#: form is what Tekton puts in its events; v1 is the fallback where v1beta1 is not served.
RUN_KINDS: Final[Mapping[str, tuple[str, str, tuple[str, ...]]]] = {
    "pipelinerun": ("PipelineRun", "pipelineruns", ("v1beta1", "v1")),
    "taskrun": ("TaskRun", "taskruns", ("v1beta1", "v1")),
    "customrun": ("CustomRun", "customruns", ("v1beta1",)),
}
_KIND_ALIASES: Final = {
    "pr": "pipelinerun",
    "pipelineruns": "pipelinerun",
    "tr": "taskrun",
    "taskruns": "taskrun",
    "customruns": "customrun",
}


def get_run(cluster: Cluster, reference: str, namespace: str) -> dict[str, Any]:
    """A run by ``NAME`` or ``KIND/NAME`` (``pipelinerun``, ``pr``, ``taskrun``, ``tr``...)."""
    kind_part, _, name = reference.rpartition("/")
    if kind_part:
        key = _KIND_ALIASES.get(kind_part.lower(), kind_part.lower())
        if key not in RUN_KINDS:
            raise InputError(
                f"{reference!r}: unknown run kind {kind_part!r}; use pipelinerun/NAME, "
                "taskrun/NAME or customrun/NAME (or pr/, tr/)"
            )
        kinds = [key]
    else:
        kinds = list(RUN_KINDS)
    found = [obj for key in kinds if (obj := _get_run(cluster, key, name, namespace)) is not None]
    if not found:
        wanted = " or ".join(RUN_KINDS[key][0] for key in kinds)
        raise InputError(
            f"no {wanted} named {name!r} in namespace {namespace!r} "
            "(and no such file: give an event file or a run name)"
        )
    if len(found) > 1:
        kinds_found = ", ".join(f"{obj['kind'].lower()}/{name}" for obj in found)
        raise InputError(f"{name!r} names several runs; say which: {kinds_found}")
    return found[0]


def find_run(cluster: Cluster, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    """A tekton.dev/v1 TaskRun or PipelineRun, or None when it does not exist."""
    return _read_run(cluster, kind, f"{kind.lower()}s", "v1", namespace, name)


def _get_run(cluster: Cluster, key: str, name: str, namespace: str) -> dict[str, Any] | None:
    kind, plural, versions = RUN_KINDS[key]
    for version in versions:
        obj = _read_run(cluster, kind, plural, version, namespace, name)
        if obj is not None:
            obj.setdefault("kind", kind)
            obj.setdefault("apiVersion", f"tekton.dev/{version}")
            return obj
    return None


def _read_run(
    cluster: Cluster, kind: str, plural: str, version: str, namespace: str, name: str
) -> dict[str, Any] | None:
    try:
        return kube.get_object(
            cluster.api, plural, namespace, name, group="tekton.dev", version=version
        )
    except kube.ApiError as error:
        if error.status == 404 and error.answered:
            return None
        raise cluster_error(error, f"reading {kind} {namespace}/{name}") from None
