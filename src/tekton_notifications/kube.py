"""The only module that talks to the Kubernetes API.

Two jobs: keep a local cache of our custom resources (list, then watch, re-list on errors,
so matching never calls the API per event) and create notification runs, mapping the API's
answers to "done", "not retryable" and "retry".

Two clients behind the same functions: the official ``kubernetes`` client (the CLI, the dev
tools, and functions with ``NOTIFICATIONS_KUBE_CLIENT=official``), imported only when used,
and :mod:`kuberest` (the functions' default: a cold start without ``kubernetes`` is ~0.4 s
shorter and ~38 MB smaller). Every function here takes either as ``api``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeAlias, cast

import yaml
from urllib3.exceptions import HTTPError

from tekton_notifications import kuberest
from tekton_notifications.caches import KindWatcher, Watcher, flavours
from tekton_notifications.events import ChildRun

if TYPE_CHECKING:
    from kubernetes import client

#: Either client: the official one's ``ApiClient`` or :class:`kuberest.Client`.
Api: TypeAlias = "client.ApiClient | kuberest.Client"
#: Which client a function uses: ``rest`` (default) or ``official``.
CLIENT_SWITCH: Final = "NOTIFICATIONS_KUBE_CLIENT"

logger = logging.getLogger(__name__)

#: Seconds a single API request may take before it counts as failed (and retryable).
REQUEST_TIMEOUT: Final = 10.0
#: Watches are restarted this often, as client-go does, to survive silent connection loss.
WATCH_SECONDS: Final = 300
#: How often an optional resource that is not installed is looked for again.
ABSENT_RECHECK_SECONDS: Final = 60.0
RETRYABLE_STATUSES: Final = frozenset({408, 429, 500, 502, 503, 504})
_SERVICE_ACCOUNT_NAMESPACE: Final = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


@dataclass(frozen=True)
class Connection:
    """An API client and the namespace its configuration names (kubectl's "current")."""

    api: Api
    namespace: str


def connect(
    kubeconfig: str | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    retries: int | None = None,
) -> Connection:
    """The one way this project builds a Kubernetes client, resolved as kubectl does.

    ``kubeconfig``, else ``KUBECONFIG``, else ``~/.kube/config`` when it exists, else the
    in-cluster service account (what the functions use). Raises :class:`ConfigError` when none
    of them is usable.
    """
    from kubernetes import client, config

    environ = os.environ if environ is None else environ
    configuration = client.Configuration()
    path = kubeconfig or environ.get("KUBECONFIG") or None
    default_file = Path(os.path.expanduser(config.KUBE_CONFIG_DEFAULT_LOCATION))
    try:
        if path or default_file.is_file():
            config.load_kube_config(config_file=path, client_configuration=configuration)
            _, current = config.list_kube_config_contexts(config_file=path)
            namespace = str((current or {}).get("context", {}).get("namespace") or "default")
        else:
            config.load_incluster_config(client_configuration=configuration)
            namespace = _in_cluster_namespace()
    except (
        config.ConfigException,
        OSError,
        ValueError,
        TypeError,
        KeyError,
        yaml.YAMLError,
    ) as error:
        where = path or "~/.kube/config or the in-cluster service account"
        raise ConfigError(f"no usable Kubernetes configuration ({where}): {error}") from None
    if retries is not None:
        configuration.retries = retries
    return Connection(client.ApiClient(configuration), namespace)


def api_client(environ: Mapping[str, str] | None = None) -> Api:
    """The client a function uses: :mod:`kuberest` configured as :func:`connect` resolves
    it, or the official client where ``NOTIFICATIONS_KUBE_CLIENT=official`` or the
    configuration needs what only the official client does (exec plugins, merged files)."""
    environ = os.environ if environ is None else environ
    choice = (environ.get(CLIENT_SWITCH) or "rest").strip().lower()
    if choice not in ("rest", "official"):
        raise ConfigError(f"{CLIENT_SWITCH}={choice!r}: 'rest' (the default) or 'official'")
    if choice == "rest":
        try:
            return kuberest.Client(_rest_settings(environ))
        except kuberest.Unsupported as why:
            logger.info("Kubernetes client: the official one (%s)", why)
        except (OSError, ValueError, TypeError, KeyError, yaml.YAMLError) as error:
            raise ConfigError(f"no usable Kubernetes configuration: {error}") from None
    return connect(environ=environ).api


def _rest_settings(environ: Mapping[str, str]) -> kuberest.Settings:
    """The same choice as :func:`connect`: KUBECONFIG, ~/.kube/config, the service account."""
    path = environ.get("KUBECONFIG") or None
    default_file = Path(os.path.expanduser("~/.kube/config"))
    if path or default_file.is_file():
        return kuberest.from_kubeconfig(path or str(default_file))
    return kuberest.in_cluster(environ)


class ConfigError(Exception):
    """No kubeconfig and no in-cluster service account to build a client from."""


def _in_cluster_namespace() -> str:
    try:
        return _SERVICE_ACCOUNT_NAMESPACE.read_text(encoding="utf-8").strip() or "default"
    except OSError:
        return "default"


class Informer:
    """A list+watch cache of one of our custom resources across all namespaces.

    ``watcher.reset`` receives the full list after every (re-)list; ``upsert``/``delete``
    receive watch events (:class:`caches.Watcher`, the one callback shape every stage's caches
    take). Readiness is "listed successfully at least once".
    """

    def __init__(
        self,
        api: Api,
        *,
        plural: str,
        watcher: Watcher,
        group: str | None = None,
        version: str | None = None,
        retry_delay: float = 1.0,
        optional: bool = False,
        core: bool = False,
    ) -> None:
        from tekton_notifications import vocabulary

        if core:  # the core API: /api/v1
            group, version = "", "v1"
        else:
            group, version = group or vocabulary.GROUP, version or vocabulary.VERSION
        self._client = api
        #: Core (``/api/v1``) Namespaces instead of a custom resource: the only core kind
        #: watched (subscription defaults, :func:`namespace_informer`).
        self._core = core
        if core and plural != "namespaces":
            raise ValueError(f"only namespaces are watched from the core API, not {plural}")
        self._resource = (group, version, plural)
        self._watcher = watcher
        self._retry_delay = retry_delay
        #: A resource whose CRD may not be installed: 404 means "none", checked again later.
        self._optional = optional
        self._stopping = threading.Event()
        self._synced = threading.Event()
        self._watch: Any = None  # the running watch (either client's), stopped by stop()
        self._thread = threading.Thread(target=self._run, name=f"informer-{plural}", daemon=True)
        self.last_error: str | None = None

    @property
    def ready(self) -> bool:
        return self._synced.is_set()

    @property
    def plural(self) -> str:
        return self._resource[2]

    def start(self) -> None:
        self._thread.start()

    def wait_synced(self, timeout: float) -> bool:
        return self._synced.wait(timeout)

    def stop(self) -> None:
        self._stopping.set()
        if self._watch is not None:
            self._watch.stop()

    def _run(self) -> None:
        delay = self._retry_delay
        while not self._stopping.is_set():
            try:
                version = self._list()
                delay = self._retry_delay
                while not self._stopping.is_set():
                    version = self._watch_from(version)
            except Exception as error:
                status = _status_of(error)
                if status is None and not isinstance(error, HTTPError | OSError | ValueError):
                    raise
                if self._optional and status == 404:
                    self._watcher.reset([])
                    self.last_error = None
                    self._synced.set()
                    self._stopping.wait(ABSENT_RECHECK_SECONDS)
                    continue
                delay = self._backoff(error, delay)

    def _backoff(self, error: BaseException, delay: float) -> float:
        self.last_error = _describe(error)
        logger.warning("%s: %s; re-listing in %.1fs", self._resource[2], self.last_error, delay)
        self._stopping.wait(delay)
        return min(delay * 2, 30.0)

    def _list(self) -> str:
        group, version, plural = self._resource
        if isinstance(self._client, kuberest.Client):
            path = kuberest.api_path(group, version, plural)
            listing = self._client.request("GET", path, timeout=REQUEST_TIMEOUT)
        elif self._core:  # as plain JSON, like the custom objects below
            from kubernetes import client

            response: Any = client.CoreV1Api(self._client).list_namespace(
                _preload_content=False, _request_timeout=REQUEST_TIMEOUT
            )
            listing = json.loads(response.data)
        else:
            from kubernetes import client

            listing = client.CustomObjectsApi(self._client).list_cluster_custom_object(
                group, version, plural, _request_timeout=REQUEST_TIMEOUT
            )
        listing = cast(dict[str, Any], listing)
        self._watcher.reset(list(listing.get("items") or []))
        self.last_error = None
        self._synced.set()
        return str(listing.get("metadata", {}).get("resourceVersion") or "")

    def _watch_from(self, resource_version: str) -> str:
        """Watch until the server ends the stream; return the last version seen."""
        group, version, plural = self._resource
        stream: Iterable[dict[str, Any]]
        if isinstance(self._client, kuberest.Client):
            self._watch = stream = self._client.watch(
                kuberest.api_path(group, version, plural),
                query={
                    "resourceVersion": resource_version,
                    "timeoutSeconds": WATCH_SECONDS,
                    "allowWatchBookmarks": "true",
                },
                timeout=WATCH_SECONDS + REQUEST_TIMEOUT,
            )
        else:
            from kubernetes import client, watch

            lister: Any
            arguments: tuple[str, ...]
            if self._core:  # objects as dicts, as for custom objects
                self._watch = watch.Watch(return_type="object")
                lister, arguments = client.CoreV1Api(self._client).list_namespace, ()
            else:
                self._watch = watch.Watch()
                lister = client.CustomObjectsApi(self._client).list_cluster_custom_object
                arguments = (group, version, plural)
            stream = self._watch.stream(
                lister,
                *arguments,
                resource_version=resource_version,
                timeout_seconds=WATCH_SECONDS,
                allow_watch_bookmarks=True,
                _request_timeout=WATCH_SECONDS + REQUEST_TIMEOUT,
            )
        for change in stream:
            kind, obj = change.get("type"), change.get("object")
            if kind == "ERROR":
                # 410 Gone and friends: the only way back is a fresh list.
                raise ValueError(f"watch error: {obj}")
            if not isinstance(obj, dict):
                continue
            resource_version = str(
                obj.get("metadata", {}).get("resourceVersion") or resource_version
            )
            if kind in ("ADDED", "MODIFIED"):
                self._watcher.upsert(obj)
            elif kind == "DELETED":
                self._watcher.delete(obj)
        return resource_version


@dataclass(frozen=True)
class Created:
    kind: str
    name: str
    namespace: str
    uid: str
    #: False when the run already existed (a retry or a repeated Tekton event).
    created: bool


class ApiError(Exception):
    """What every call here raises when the API refuses or cannot be reached.

    ``verb`` and ``what`` say what was being done ("create", "TaskRun ci/x"); ``retryable``
    tells the caller whether to ask for a retry (5xx) or give up (4xx, ``failed``).
    """

    def __init__(
        self,
        *,
        verb: str,
        what: str,
        status: int,
        reason: str,
        message: str,
        retryable: bool,
        answered: bool = True,
    ) -> None:
        super().__init__(f"{verb} {what}: {status} {reason}: {message}")
        self.verb, self.what = verb, what
        self.status, self.reason, self.message, self.retryable = status, reason, message, retryable
        #: False when the API could not be reached at all (``status`` is then 503).
        self.answered = answered


def _call(verb: str, what: str, request: Callable[[], Any]) -> Any:
    """Run one API request, mapping every failure to :class:`ApiError` the same way."""
    try:
        return request()
    except (HTTPError, OSError) as error:
        raise ApiError(
            verb=verb,
            what=what,
            status=503,
            reason="Unavailable",
            message=_describe(error),
            retryable=True,
            answered=False,
        ) from None
    except Exception as error:
        if _status_of(error) is None:
            raise
        raise _api_error(verb, what, error) from None


def _status_of(error: BaseException) -> int | None:
    """The HTTP status of an answer either client refused, None for any other exception."""
    if isinstance(error, kuberest.StatusError):
        return error.status
    # Only the official client raises its ApiException, and only once it is imported.
    exceptions = sys.modules.get("kubernetes.client.exceptions")
    if exceptions is not None and isinstance(error, exceptions.ApiException):
        return int(error.status or 0)
    return None


def create_run(api: Api, body: Mapping[str, Any]) -> Created:
    """Create a TaskRun/PipelineRun; an existing one with the same name counts as success."""
    kind = str(body["kind"])
    metadata = body["metadata"]
    namespace, name = str(metadata["namespace"]), str(metadata["name"])
    try:
        created = _call(
            "create",
            f"{kind} {namespace}/{name}",
            lambda: _create(api, "tekton.dev", "v1", namespace, f"{kind.lower()}s", body),
        )
    except ApiError as error:
        if error.status != 409:
            raise
        # Already created by an earlier delivery. Its uid would need `get`, which the
        # launcher's least-privilege role does not have: the name identifies it.
        return Created(kind, name, namespace, "", False)
    uid = str((created or {}).get("metadata", {}).get("uid") or "")
    return Created(kind, name, namespace, uid, True)


def child_outcomes(
    api: Api, namespace: str, children: tuple[ChildRun, ...]
) -> tuple[ChildRun, ...]:
    """Fill in the outcome of children that current Tekton only references by name.

    Since Tekton v0.45 a PipelineRun's status lists ``childReferences`` without their status,
    so "which tasks failed, and why" needs one GET per child. Best effort: a child that can't
    be read keeps its reference only.
    """
    filled: list[ChildRun] = []
    for child in children:
        plural = {"TaskRun": "taskruns", "CustomRun": "customruns"}.get(child.kind)
        if child.status or plural is None:
            filled.append(child)
            continue
        try:
            obj = get_object(api, plural, namespace, child.name, group="tekton.dev", version="v1")
        except ApiError as error:
            logger.info("child %s/%s not read: %s", namespace, child.name, _describe(error))
            filled.append(child)
            continue
        conditions = (obj.get("status") or {}).get("conditions") or []
        condition: dict[str, Any] = next(
            (c for c in conditions if c.get("type") == "Succeeded"), {}
        )
        filled.append(
            replace(
                child,
                status=str(condition.get("status") or ""),
                reason=str(condition.get("reason") or ""),
                message=str(condition.get("message") or "").strip(),
            )
        )
    return tuple(filled)


#: Where each Tekton run kind is read: CustomRun has only ``v1beta1``.
RUN_RESOURCES: Final = {
    "TaskRun": ("v1", "taskruns"),
    "PipelineRun": ("v1", "pipelineruns"),
    "CustomRun": ("v1beta1", "customruns"),
}


def get_run(api: Api, kind: str, namespace: str, name: str) -> dict[str, Any]:
    """GET one Tekton run; failures as :class:`ApiError` (404: no such run)."""
    version, plural = RUN_RESOURCES[kind]
    return get_object(api, plural, namespace, name, group="tekton.dev", version=version)


def _api_error(verb: str, what: str, error: Any) -> ApiError:
    """From either client's refusal (both carry ``status``, ``reason`` and ``body``)."""
    status = int(error.status or 0)
    reason, message = str(error.reason or ""), str(error.body or error)
    try:
        payload = json.loads(error.body or "{}")
        reason = str(payload.get("reason") or reason)
        message = str(payload.get("message") or message)
    except (ValueError, AttributeError):
        pass
    retryable = status == 0 or status in RETRYABLE_STATUSES or status >= 500
    return ApiError(
        verb=verb, what=what, status=status, reason=reason, message=message, retryable=retryable
    )


def _describe(error: BaseException) -> str:
    if isinstance(error, ApiError):
        return f"API answered {error.status} {error.reason}"
    if _status_of(error) is not None:
        return f"API answered {_status_of(error)} {getattr(error, 'reason', '')}"
    return f"{type(error).__name__}: {error}"


def poll(condition: Callable[[], bool], *, timeout: float, interval: float = 0.05) -> bool:
    """Wait until ``condition()`` holds or ``timeout`` passes (for start-up checks)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


def create_event(api: Api, body: Mapping[str, Any]) -> bool:
    """Record a Kubernetes Event; False when it already exists (a redelivered outcome)."""
    metadata = body["metadata"]
    namespace = str(metadata["namespace"])

    def request() -> Any:
        if isinstance(api, kuberest.Client):
            return _create(api, "", "v1", namespace, "events", body)
        from kubernetes import client

        return client.CoreV1Api(api).create_namespaced_event(
            namespace,
            dict(body),  # type: ignore[arg-type]  # the client accepts dicts
            _request_timeout=REQUEST_TIMEOUT,
        )

    try:
        _call("create", f"Event {namespace}/{metadata.get('name', '')}", request)
    except ApiError as error:
        if error.status == 409:
            return False
        raise
    return True


def namespace_annotations(api: Api, name: str) -> dict[str, str] | None:
    """A Namespace's annotations; None when it does not exist."""

    def request() -> Any:
        if isinstance(api, kuberest.Client):
            path = kuberest.api_path("", "v1", "namespaces", name=name)
            return api.request("GET", path, timeout=REQUEST_TIMEOUT)
        from kubernetes import client

        response: Any = client.CoreV1Api(api).read_namespace(
            name, _preload_content=False, _request_timeout=REQUEST_TIMEOUT
        )
        return json.loads(response.data)

    try:
        namespace = cast(dict[str, Any], _call("get", f"namespaces {name}", request))
    except ApiError as error:
        if error.status == 404:
            return None
        raise
    metadata = namespace.get("metadata") or {}
    return {str(k): str(v) for k, v in (metadata.get("annotations") or {}).items()}


def namespace_informer(api: Api, watcher: Watcher) -> Informer:
    """Namespaces (list + watch, cluster-wide): their subscription annotations are defaults
    for every run in them. Needs ``namespaces`` list/watch, nothing else."""
    return Informer(api, plural="namespaces", watcher=watcher, core=True)


def policy_informers(api: Api, view: KindWatcher) -> tuple[Informer, Informer]:
    """Informers keeping ``view`` (the policy filter's index, :mod:`claims`) current:
    NotificationPolicies, and ClusterNotificationPolicies where their CRD is installed."""
    from tekton_notifications import vocabulary

    namespaced, cluster = flavours(view)
    return (
        Informer(api, plural=vocabulary.POLICY_PLURAL, watcher=namespaced),
        # A cluster without the ClusterNotificationPolicy CRD just has none.
        Informer(api, plural=vocabulary.CLUSTER_POLICY_PLURAL, watcher=cluster, optional=True),
    )


def patch_status(
    api: Api,
    plural: str,
    namespace: str,
    name: str,
    patch: Mapping[str, Any],
    *,
    resource_version: str | None = None,
) -> dict[str, Any]:
    """Merge-patch the ``status`` subresource of one of our custom resources; the object after.

    ``namespace`` "" is a cluster-scoped one. With ``resource_version`` the write only
    succeeds on that version of the object: the API answers 409 (``ApiError.status``) when
    someone wrote in between.
    """
    from tekton_notifications import vocabulary

    if resource_version is not None:
        patch = {**patch, "metadata": {"resourceVersion": resource_version}}
    body = dict(patch)
    group, version = vocabulary.GROUP, vocabulary.VERSION

    def request() -> Any:
        if isinstance(api, kuberest.Client):
            return api.request(
                "PATCH",
                kuberest.api_path(group, version, plural, namespace, name, "status"),
                body=body,
                content_type="application/merge-patch+json",
                timeout=REQUEST_TIMEOUT,
            )
        from kubernetes import client

        objects = client.CustomObjectsApi(api)
        if namespace:
            return objects.patch_namespaced_custom_object_status(
                group, version, namespace, plural, name, body, _request_timeout=REQUEST_TIMEOUT
            )
        return objects.patch_cluster_custom_object_status(
            group, version, plural, name, body, _request_timeout=REQUEST_TIMEOUT
        )

    return cast(dict[str, Any], _call("patch status of", _where(plural, namespace, name), request))


def get_object(
    api: Api,
    plural: str,
    namespace: str,
    name: str,
    *,
    group: str | None = None,
    version: str | None = None,
) -> dict[str, Any]:
    """GET one object of a custom resource: ours unless ``group``/``version`` say otherwise
    (Tekton's runs); ``namespace`` "" for a cluster-scoped one."""
    from tekton_notifications import vocabulary

    group, version = group or vocabulary.GROUP, version or vocabulary.VERSION

    def request() -> Any:
        if isinstance(api, kuberest.Client):
            path = kuberest.api_path(group, version, plural, namespace, name)
            return api.request("GET", path, timeout=REQUEST_TIMEOUT)
        from kubernetes import client

        objects = client.CustomObjectsApi(api)
        if namespace:
            return objects.get_namespaced_custom_object(
                group, version, namespace, plural, name, _request_timeout=REQUEST_TIMEOUT
            )
        return objects.get_cluster_custom_object(
            group, version, plural, name, _request_timeout=REQUEST_TIMEOUT
        )

    return cast(dict[str, Any], _call("get", _where(plural, namespace, name), request))


def list_objects(
    api: Api,
    plural: str,
    namespace: str | None,
    *,
    group: str | None = None,
    version: str | None = None,
    label_selector: str = "",
) -> list[dict[str, Any]]:
    """Every object of a custom resource in ``namespace``, or (None) in all namespaces."""
    from tekton_notifications import vocabulary

    group, version = group or vocabulary.GROUP, version or vocabulary.VERSION

    def request() -> Any:
        if isinstance(api, kuberest.Client):
            path = kuberest.api_path(group, version, plural, namespace)
            query = {"labelSelector": label_selector}
            return api.request("GET", path, query=query, timeout=REQUEST_TIMEOUT)
        from kubernetes import client

        objects = client.CustomObjectsApi(api)
        if namespace is None:
            return objects.list_cluster_custom_object(
                group,
                version,
                plural,
                label_selector=label_selector,
                _request_timeout=REQUEST_TIMEOUT,
            )
        return objects.list_namespaced_custom_object(
            group,
            version,
            namespace,
            plural,
            label_selector=label_selector,
            _request_timeout=REQUEST_TIMEOUT,
        )

    where = f"{plural}.{group} in " + (f"namespace {namespace}" if namespace else "all namespaces")
    listing = cast(dict[str, Any], _call("list", where, request))
    return list(listing.get("items") or [])


def list_events(api: Api, namespace: str) -> list[dict[str, Any]]:
    """The Kubernetes Events of a namespace, as plain dicts."""
    if isinstance(api, kuberest.Client):
        path = kuberest.api_path("", "v1", "events", namespace)
        found = _call(
            "list",
            f"events in namespace {namespace}",
            lambda: api.request("GET", path, timeout=REQUEST_TIMEOUT),
        )
        return list(found.get("items") or [])
    from kubernetes import client

    core = client.CoreV1Api(api)
    listing = _call(
        "list",
        f"events in namespace {namespace}",
        lambda: core.list_namespaced_event(namespace, _request_timeout=REQUEST_TIMEOUT),
    )
    return [api.sanitize_for_serialization(item) for item in listing.items]


def _where(plural: str, namespace: str, name: str) -> str:
    return f"{plural} {namespace}/{name}" if namespace else f"{plural} {name}"


def read_pod_log(
    api: Api,
    namespace: str,
    pod: str,
    container: str,
    *,
    tail_lines: int,
    limit_bytes: int,
) -> bytes:
    """The last ``tail_lines`` lines of a container's log, at most ``limit_bytes`` bytes (the
    API stops there, keeping the start of the tail). Needs ``pods/log`` get (the
    failure-logs overlay). Failures as :class:`ApiError`."""

    def request() -> bytes:
        if isinstance(api, kuberest.Client):
            return api.read(
                kuberest.api_path("", "v1", "pods", namespace, pod, "log"),
                query={
                    "container": container,
                    "tailLines": tail_lines,
                    "limitBytes": limit_bytes,
                },
                timeout=REQUEST_TIMEOUT,
                limit=limit_bytes,
            )
        from kubernetes import client

        response: Any = client.CoreV1Api(api).read_namespaced_pod_log(
            pod,
            namespace,
            container=container,
            tail_lines=tail_lines,
            limit_bytes=limit_bytes,
            _preload_content=False,  # raw bytes: a log need not be UTF-8
            _request_timeout=REQUEST_TIMEOUT,
        )
        try:
            return bytes(response.read(limit_bytes + 1)[:limit_bytes])
        finally:
            response.release_conn()

    return cast(
        bytes, _call("read log of", f"pod {namespace}/{pod} container {container}", request)
    )


def _create(
    api: Api, group: str, version: str, namespace: str, plural: str, body: Mapping[str, Any]
) -> Any:
    """POST one object (a custom resource, or a core one when ``group`` is "")."""
    if isinstance(api, kuberest.Client):
        path = kuberest.api_path(group, version, plural, namespace)
        return api.request("POST", path, body=dict(body), timeout=REQUEST_TIMEOUT)
    from kubernetes import client

    return client.CustomObjectsApi(api).create_namespaced_custom_object(
        group, version, namespace, plural, dict(body), _request_timeout=REQUEST_TIMEOUT
    )
