"""Where the policy filter keeps storm state: in each policy's ``status``.

Reads come from the filter's policy informer (no API call per event); writes are merge patches
of the status subresource carrying the ``resourceVersion`` the decision was computed from. A
409 means another replica (or the status recorder) wrote first: re-read, decide again. Within
one replica, decisions for one policy are serialized so they don't conflict with each other.
The decision itself is :func:`tekton_notifications.storm.decide`; this module only makes it
atomic.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any, Final

from tekton_notifications import kube, metrics, schedule, vocabulary
from tekton_notifications.models import Policy
from tekton_notifications.storm import Decision, PolicyState

logger = logging.getLogger(__name__)

#: Decide-and-write attempts before giving up with a retryable error (the broker retries).
MAX_ATTEMPTS: Final = 5

Key = tuple[str, str]
#: (plural, namespace, name) -> the object.
Reader = Callable[[str, str, str], Mapping[str, Any]]
#: (plural, namespace, name, status fields, resourceVersion) -> the object after the write.
Writer = Callable[[str, str, str, Mapping[str, Any], str], Mapping[str, Any]]


class PolicyGone(Exception):
    """The policy was deleted between matching and recording its state."""


class PolicyStates:
    def __init__(self, read: Reader, write: Writer) -> None:
        self._read, self._write = read, write
        self._lock = threading.Lock()
        self._cached: dict[Key, tuple[str, Mapping[str, Any]]] = {}
        #: Parsed once per resourceVersion: every event of a busy policy reads the same state.
        self._parsed: dict[Key, tuple[str, PolicyState]] = {}
        self._policy_locks: dict[Key, threading.Lock] = {}
        #: Writes that met a conflict, for tests and metrics.
        self.conflicts = 0

    @classmethod
    def on_api(cls, api: Any) -> PolicyStates:
        return cls(
            read=lambda plural, ns, name: kube.get_object(api, plural, ns, name),
            write=lambda plural, ns, name, status, rv: kube.patch_status(
                api, plural, ns, name, {"status": dict(status)}, resource_version=rv
            ),
        )

    # Fed by the policy informer ----------------------------------------------------------
    def observe(self, obj: Mapping[str, Any], *, cluster: bool) -> None:
        metadata = obj.get("metadata") or {}
        key = ("" if cluster else str(metadata.get("namespace")), str(metadata.get("name")))
        with self._lock:
            self._cached[key] = (
                str(metadata.get("resourceVersion") or ""),
                obj.get("status") or {},
            )

    def forget(self, key: Key) -> None:
        with self._lock:
            self._cached.pop(key, None)
            self._parsed.pop(key, None)

    def state(self, policy: Policy) -> PolicyState:
        """The state as last seen (for ``explain``); empty when never seen."""
        with self._lock:
            cached = self._cached.get(policy.key)
        return PolicyState.from_status(cached[1] if cached else None)

    def fresh(self, policy: Policy) -> PolicyState:
        """The state as the API has it now (one GET), for a decision that must not act on a
        stale copy; raises :class:`PolicyGone` or :class:`kube.ApiError`."""
        version, status = self._current(policy, fresh=True)
        with self._lock:
            return self._state_at(policy.key, version, status)

    # Deciding --------------------------------------------------------------------------
    def decide(self, policy: Policy, decide: Callable[[PolicyState], Decision]) -> Decision:
        """Run ``decide`` on the policy's current state and write the state it returns.

        Raises :class:`kube.ApiError` when the API fails (the caller answers "retry") and
        :class:`PolicyGone` when the policy no longer exists.
        """
        with self._policy_lock(policy.key):
            fresh = False
            for _ in range(MAX_ATTEMPTS):
                version, status = self._current(policy, fresh=fresh)
                decision = decide(self._state_at(policy.key, version, status))
                if decision.state is None:
                    return decision
                try:
                    written = self._write(
                        *_address(policy), _status(policy, decision.state), version
                    )
                except kube.ApiError as error:
                    if error.status == 404:
                        raise PolicyGone(f"{policy.kind} {_name(policy)} was deleted") from None
                    if error.status != 409:
                        raise
                    self.conflicts += 1
                    metrics.STATE_CONFLICTS.inc()
                    fresh = True
                    continue
                self.observe(written, cluster=policy.cluster)
                return decision
        raise kube.ApiError(
            verb="patch status of",
            what=f"{policy.kind} {_name(policy)}",
            status=503,
            reason="Conflict",
            message=f"status of {policy.kind} {_name(policy)} kept changing; "
            f"{MAX_ATTEMPTS} attempts",
            retryable=True,
        )

    def _current(self, policy: Policy, *, fresh: bool) -> tuple[str, Mapping[str, Any]]:
        if not fresh:
            with self._lock:
                cached = self._cached.get(policy.key)
            if cached is not None and cached[0]:
                return cached
        try:
            obj = self._read(*_address(policy))
        except kube.ApiError as error:
            if error.status == 404:
                raise PolicyGone(f"{policy.kind} {_name(policy)} was deleted") from None
            raise
        self.observe(obj, cluster=policy.cluster)
        metadata = obj.get("metadata") or {}
        return str(metadata.get("resourceVersion") or ""), obj.get("status") or {}

    def _state_at(self, key: Key, version: str, status: Mapping[str, Any]) -> PolicyState:
        parsed = self._parsed.get(key)
        if parsed is not None and version and parsed[0] == version:
            return parsed[1]
        state = PolicyState.from_status(status)
        self._parsed[key] = (version, state)
        return state

    def _policy_lock(self, key: Key) -> threading.Lock:
        with self._lock:
            return self._policy_locks.setdefault(key, threading.Lock())


class MemoryStatus:
    """Policy objects in a dict, with resourceVersions and 409s like the API server's.

    For running the filter without a cluster (``tkn-notify``, benchmarks, unit tests of the
    filter's logic); the served functions always use the API.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._version = 0
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}

    def read(self, plural: str, namespace: str, name: str) -> Mapping[str, Any]:
        with self._lock:
            obj = self.objects.get((plural, namespace, name))
            if obj is None:
                obj = {"metadata": {"name": name, "namespace": namespace}, "status": {}}
                self._version += 1
                obj["metadata"]["resourceVersion"] = str(self._version)
                self.objects[(plural, namespace, name)] = obj
            return obj

    def write(
        self,
        plural: str,
        namespace: str,
        name: str,
        status: Mapping[str, Any],
        version: str,
    ) -> Mapping[str, Any]:
        current = self.read(plural, namespace, name)
        with self._lock:
            if current["metadata"]["resourceVersion"] != version:
                raise kube.ApiError(
                    verb="patch status of",
                    what=f"{plural} {namespace}/{name}",
                    status=409,
                    reason="Conflict",
                    message="changed",
                    retryable=False,
                )
            self._version += 1
            updated = {
                "metadata": {**current["metadata"], "resourceVersion": str(self._version)},
                "status": {**current["status"], **status},
            }
            self.objects[(plural, namespace, name)] = updated
            return updated

    def states(self) -> PolicyStates:
        return PolicyStates(self.read, self.write)


def _status(policy: Policy, state: PolicyState) -> dict[str, Any]:
    """The status fields of ``state``, with when the scheduler next owes this policy
    something (``status.nextDue``, a printer column; null removes it)."""
    due = schedule.next_due(policy, state)
    return {**state.status(), "nextDue": schedule.format_seconds(due) if due is not None else None}


def _address(policy: Policy) -> tuple[str, str, str]:
    plural = vocabulary.CLUSTER_POLICY_PLURAL if policy.cluster else vocabulary.POLICY_PLURAL
    return plural, policy.namespace, policy.name


def _name(policy: Policy) -> str:
    return policy.name if policy.cluster else f"{policy.namespace}/{policy.name}"
