"""The only module that talks to the Kubernetes API (official ``kubernetes`` client).

Two jobs: keep a local cache of our custom resources (list, then watch, re-list on errors,
so matching never calls the API per event) and create notification runs, mapping the API's
answers to "done", "not retryable" and "retry".
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final, Protocol, cast

from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from tekton_notifications.events import ChildRun

logger = logging.getLogger(__name__)

#: Seconds a single API request may take before it counts as failed (and retryable).
REQUEST_TIMEOUT: Final = 10.0
#: Watches are restarted this often, as client-go does, to survive silent connection loss.
WATCH_SECONDS: Final = 300
#: How often an optional resource that is not installed is looked for again.
ABSENT_RECHECK_SECONDS: Final = 60.0
RETRYABLE_STATUSES: Final = frozenset({408, 429, 500, 502, 503, 504})


def api_client(environ: Mapping[str, str] | None = None) -> client.ApiClient:
    """A client from ``KUBECONFIG`` when set (local runs, tests), else the in-cluster account."""
    environ = os.environ if environ is None else environ
    configuration = client.Configuration()
    kubeconfig = environ.get("KUBECONFIG")
    if kubeconfig:
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    else:
        config.load_incluster_config(client_configuration=configuration)
    return client.ApiClient(configuration)


class Informer:
    """A list+watch cache of one custom resource across all namespaces.

    ``on_reset`` receives the full list after every (re-)list; ``on_upsert``/``on_delete``
    receive watch events. Readiness is "listed successfully at least once".
    """

    def __init__(
        self,
        api: client.ApiClient,
        *,
        group: str,
        version: str,
        plural: str,
        on_reset: Callable[[list[dict[str, Any]]], None],
        on_upsert: Callable[[dict[str, Any]], None],
        on_delete: Callable[[dict[str, Any]], None],
        retry_delay: float = 1.0,
        optional: bool = False,
    ) -> None:
        self._api = client.CustomObjectsApi(api)
        self._resource = (group, version, plural)
        self._on_reset, self._on_upsert, self._on_delete = on_reset, on_upsert, on_delete
        self._retry_delay = retry_delay
        #: A resource whose CRD may not be installed: 404 means "none", checked again later.
        self._optional = optional
        self._stopping = threading.Event()
        self._synced = threading.Event()
        self._watch: watch.Watch | None = None
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
            except ApiException as error:
                if self._optional and error.status == 404:
                    self._on_reset([])
                    self.last_error = None
                    self._synced.set()
                    self._stopping.wait(ABSENT_RECHECK_SECONDS)
                    continue
                delay = self._backoff(error, delay)
            except (HTTPError, OSError, ValueError) as error:
                delay = self._backoff(error, delay)

    def _backoff(self, error: BaseException, delay: float) -> float:
        self.last_error = _describe(error)
        logger.warning("%s: %s; re-listing in %.1fs", self._resource[2], self.last_error, delay)
        self._stopping.wait(delay)
        return min(delay * 2, 30.0)

    def _list(self) -> str:
        group, version, plural = self._resource
        listing = cast(
            dict[str, Any],
            self._api.list_cluster_custom_object(
                group, version, plural, _request_timeout=REQUEST_TIMEOUT
            ),
        )
        self._on_reset(list(listing.get("items") or []))
        self.last_error = None
        self._synced.set()
        return str(listing.get("metadata", {}).get("resourceVersion") or "")

    def _watch_from(self, resource_version: str) -> str:
        """Watch until the server ends the stream; return the last version seen."""
        group, version, plural = self._resource
        self._watch = watch.Watch()
        stream = self._watch.stream(
            self._api.list_cluster_custom_object,
            group,
            version,
            plural,
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
                self._on_upsert(obj)
            elif kind == "DELETED":
                self._on_delete(obj)
        return resource_version


@dataclass(frozen=True)
class Created:
    kind: str
    name: str
    namespace: str
    uid: str
    #: False when the run already existed (a retry or a repeated Tekton event).
    created: bool


class CreateError(Exception):
    """The API refused or failed; ``retryable`` tells the caller whether to ask for a retry."""

    def __init__(self, *, status: int, reason: str, message: str, retryable: bool) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status, self.reason, self.message, self.retryable = status, reason, message, retryable


def create_run(api: client.ApiClient, body: Mapping[str, Any]) -> Created:
    """Create a TaskRun/PipelineRun; an existing one with the same name counts as success."""
    kind = str(body["kind"])
    metadata = body["metadata"]
    namespace, name = str(metadata["namespace"]), str(metadata["name"])
    plural = f"{kind.lower()}s"
    objects = client.CustomObjectsApi(api)
    try:
        created = cast(
            dict[str, Any] | None,
            objects.create_namespaced_custom_object(
                "tekton.dev", "v1", namespace, plural, dict(body), _request_timeout=REQUEST_TIMEOUT
            ),
        )
    except ApiException as error:
        if error.status == 409:
            # Already created by an earlier delivery. Its uid would need `get`, which the
            # launcher's least-privilege role does not have: the name identifies it.
            return Created(kind, name, namespace, "", False)
        raise _create_error(error) from None
    except (HTTPError, OSError) as error:
        raise CreateError(
            status=503, reason="Unavailable", message=_describe(error), retryable=True
        ) from None
    uid = str((created or {}).get("metadata", {}).get("uid") or "")
    return Created(kind, name, namespace, uid, True)


def child_outcomes(
    api: client.ApiClient, namespace: str, children: tuple[ChildRun, ...]
) -> tuple[ChildRun, ...]:
    """Fill in the outcome of children that current Tekton only references by name.

    Since Tekton v0.45 a PipelineRun's status lists ``childReferences`` without their status,
    so "which tasks failed, and why" needs one GET per child. Best effort: a child that can't
    be read keeps its reference only.
    """
    objects = client.CustomObjectsApi(api)
    filled: list[ChildRun] = []
    for child in children:
        plural = {"TaskRun": "taskruns", "CustomRun": "customruns"}.get(child.kind)
        if child.status or plural is None:
            filled.append(child)
            continue
        try:
            obj = cast(
                dict[str, Any],
                objects.get_namespaced_custom_object(
                    "tekton.dev",
                    "v1",
                    namespace,
                    plural,
                    child.name,
                    _request_timeout=REQUEST_TIMEOUT,
                ),
            )
        except (ApiException, HTTPError, OSError) as error:
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


def get_run(api: client.ApiClient, kind: str, namespace: str, name: str) -> dict[str, Any]:
    """GET one Tekton run; failures as :class:`CreateError` (404: no such run)."""
    version, plural = RUN_RESOURCES[kind]
    try:
        return cast(
            dict[str, Any],
            client.CustomObjectsApi(api).get_namespaced_custom_object(
                "tekton.dev", version, namespace, plural, name, _request_timeout=REQUEST_TIMEOUT
            ),
        )
    except ApiException as error:
        raise _create_error(error) from None
    except (HTTPError, OSError) as error:
        raise CreateError(
            status=503, reason="Unavailable", message=_describe(error), retryable=True
        ) from None


def _create_error(error: ApiException) -> CreateError:
    status = int(error.status or 0)
    reason, message = str(error.reason or ""), str(error.body or error)
    try:
        payload = json.loads(error.body or "{}")
        reason = str(payload.get("reason") or reason)
        message = str(payload.get("message") or message)
    except ValueError:
        pass
    retryable = status == 0 or status in RETRYABLE_STATUSES or status >= 500
    return CreateError(status=status, reason=reason, message=message, retryable=retryable)


def _describe(error: BaseException) -> str:
    if isinstance(error, ApiException):
        return f"API answered {error.status} {error.reason}"
    return f"{type(error).__name__}: {error}"


def poll(condition: Callable[[], bool], *, timeout: float, interval: float = 0.05) -> bool:
    """Wait until ``condition()`` holds or ``timeout`` passes (for start-up checks)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


def create_event(api: client.ApiClient, body: Mapping[str, Any]) -> bool:
    """Record a Kubernetes Event; False when it already exists (a redelivered outcome)."""
    namespace = str(body["metadata"]["namespace"])
    try:
        client.CoreV1Api(api).create_namespaced_event(
            namespace,
            dict(body),  # type: ignore[arg-type]  # the client accepts dicts
            _request_timeout=REQUEST_TIMEOUT,
        )
    except ApiException as error:
        if error.status == 409:
            return False
        raise _create_error(error) from None
    except (HTTPError, OSError) as error:
        raise CreateError(
            status=503, reason="Unavailable", message=_describe(error), retryable=True
        ) from None
    return True


class PolicyWatcher(Protocol):
    """What keeps a view of both policy kinds: the policy filter's index, ``claims``."""

    def reset(self, objects: list[dict[str, Any]]) -> None: ...
    def upsert(self, obj: dict[str, Any]) -> None: ...
    def delete(self, obj: dict[str, Any]) -> None: ...
    def reset_cluster(self, objects: list[dict[str, Any]]) -> None: ...
    def upsert_cluster(self, obj: dict[str, Any]) -> None: ...
    def delete_cluster(self, obj: dict[str, Any]) -> None: ...


def policy_informers(api: client.ApiClient, directory: PolicyWatcher) -> tuple[Informer, Informer]:
    """Informers keeping ``directory`` current: NotificationPolicies, and
    ClusterNotificationPolicies where their CRD is installed."""
    from tekton_notifications import types

    return (
        Informer(
            api,
            group=types.GROUP,
            version=types.VERSION,
            plural=types.POLICY_PLURAL,
            on_reset=directory.reset,
            on_upsert=directory.upsert,
            on_delete=directory.delete,
        ),
        # A cluster without the ClusterNotificationPolicy CRD just has none.
        Informer(
            api,
            group=types.GROUP,
            version=types.VERSION,
            plural=types.CLUSTER_POLICY_PLURAL,
            on_reset=directory.reset_cluster,
            on_upsert=directory.upsert_cluster,
            on_delete=directory.delete_cluster,
            optional=True,
        ),
    )


def patch_status(
    api: client.ApiClient,
    plural: str,
    namespace: str,
    name: str,
    patch: Mapping[str, Any],
    *,
    resource_version: str | None = None,
) -> dict[str, Any]:
    """Merge-patch the ``status`` subresource of one of our custom resources; the object after.

    With ``resource_version`` the write only succeeds on that version of the object: the API
    answers 409 (``CreateError.status``) when someone wrote in between.
    """
    if resource_version is not None:
        patch = {**patch, "metadata": {"resourceVersion": resource_version}}
    return _ours(api, "patch", "_status", plural, namespace, name, dict(patch))


def get_object(api: client.ApiClient, plural: str, namespace: str, name: str) -> dict[str, Any]:
    """GET one of our custom resources (``namespace`` "" for cluster-scoped ones)."""
    return _ours(api, "get", "", plural, namespace, name)


def _ours(
    api: client.ApiClient,
    verb: str,
    suffix: str,
    plural: str,
    namespace: str,
    name: str,
    *body: Any,
) -> dict[str, Any]:
    """Call ``CustomObjectsApi.<verb>_{namespaced,cluster}_custom_object<suffix>`` on one of
    our resources, mapping failures to :class:`CreateError` like every call here."""
    from tekton_notifications import types

    objects = client.CustomObjectsApi(api)
    scope = "namespaced" if namespace else "cluster"  # "" = ClusterNotificationPolicy
    method = getattr(objects, f"{verb}_{scope}_custom_object{suffix}")
    where = (namespace,) if namespace else ()
    try:
        result = method(
            types.GROUP,
            types.VERSION,
            *where,
            plural,
            name,
            *body,
            _request_timeout=REQUEST_TIMEOUT,
        )
    except ApiException as error:
        raise _create_error(error) from None
    except (HTTPError, OSError) as error:
        raise CreateError(
            status=503, reason="Unavailable", message=_describe(error), retryable=True
        ) from None
    return cast(dict[str, Any], result)
