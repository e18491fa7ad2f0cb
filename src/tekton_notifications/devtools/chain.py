"""The whole chain on one machine: API emulator, event router, the functions, displays.

Shared by ``make demo`` and the end-to-end tests, so both exercise the same wiring: the
router follows the Triggers in ``knative/`` and the functions run as they are deployed.
"""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType
from typing import Any

from tekton_notifications import kube, signing, sink, vocabulary, wire
from tekton_notifications.devtools import localtekton
from tekton_notifications.devtools.display import EventDisplay
from tekton_notifications.devtools.kubeapi import KubeAPIServer, KubeError, ObjectStore
from tekton_notifications.devtools.localtekton import LocalTekton
from tekton_notifications.devtools.router import EventRouter
from tekton_notifications.devtools.serving import ROOT, ServedFunction, free_port, serve_function
from tekton_notifications.notifications import OutgoingEvent

FUNCTIONS = (
    "policy-filter",
    "template-renderer",
    "task-launcher",
    "status-recorder",
    "delivery-tracker",
)
#: Started only when asked (``scheduler=True``): the stage PingSources wake (issue 17).
SCHEDULER = "scheduler"
_RUN_RESOURCES = {
    "taskRun": ("taskruns", "TaskRun"),
    "pipelineRun": ("pipelineruns", "PipelineRun"),
    "customRun": ("customruns", "CustomRun"),
}
MANAGED = f"{vocabulary.MANAGED_BY_LABEL}={vocabulary.MANAGED_BY_VALUE}"


class LocalChain:
    """Start with ``with LocalChain(...) as chain:``; everything stops on exit.

    Without ``kubeconfig`` an emulator is started and ``manifests`` are loaded into it;
    with one, the functions use that cluster as it is.

    The functions sign their events as installed: with the key in ``env``, or a fresh random
    one (:attr:`signing_key`, for a test that posts a stage event of its own); ``env`` with
    ``NOTIFICATIONS_SIGNING=disabled`` runs them unsigned.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        knative: Path = ROOT / "knative",
        manifests: tuple[Path, ...] = (),
        kubeconfig: Path | None = None,
        server: str = "func-python",
        env: Mapping[str, str] | None = None,
        time_scale: float = 0.2,
        run_notifications: bool = False,
        step_env: Mapping[str, str] | None = None,
        setup: Callable[[KubeAPIServer], None] | None = None,
        scheduler: bool = False,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.workdir = workdir
        #: The functions this chain runs; the scheduler's Trigger is left out without it.
        self.names = (*FUNCTIONS, SCHEDULER) if scheduler else FUNCTIONS
        #: The emulator's clock (its timestamps), when a demo fast-forwards time.
        self._clock = clock
        self._knative, self._manifests, self._kubeconfig = knative, manifests, kubeconfig
        self._server, self._env, self._time_scale = server, dict(env or {}), time_scale
        if signing.ENVIRONMENT not in self._env and signing.SWITCH not in self._env:
            self._env[signing.ENVIRONMENT] = secrets.token_hex(32)
        #: The key the functions sign with, None when signing is disabled.
        self.signing_key = signing.key_from(self._env)
        self._stack = ExitStack()
        self.emulator: KubeAPIServer | None = None
        self.failures = EventDisplay()
        self.dead_letter_display = EventDisplay()
        self.functions: dict[str, ServedFunction] = {}
        self.loaded = 0
        #: With ``run_notifications`` (emulator only): runs every notification TaskRun's steps
        #: here and reports its finish as Tekton does (localtekton.py); ``step_env`` is added
        #: to each step's env (the demo's curl config).
        self._run_notifications, self._step_env = run_notifications, dict(step_env or {})
        #: Called with the emulator once the manifests are loaded, before any function starts.
        self._setup = setup
        self.tekton: LocalTekton | None = None

    def __enter__(self) -> LocalChain:
        try:
            self._start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stack.close()

    def _start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.dead_letter_file = self.workdir / "dead-letters.jsonl"
        self.dead_letter_file.unlink(missing_ok=True)
        if self._kubeconfig is None:
            store = ObjectStore(clock=self._clock) if self._clock is not None else None
            self.emulator = self._stack.enter_context(KubeAPIServer(store=store))
            self.loaded = self.emulator.load_manifests(*self._manifests) if self._manifests else 0
            if self._setup is not None:
                self._setup(self.emulator)
            self.kubeconfig = self.workdir / "kubeconfig"
            self.emulator.write_kubeconfig(self.kubeconfig)
        else:
            self.kubeconfig = self._kubeconfig
        for display in (self.failures, self.dead_letter_display):
            display.start()
            self._stack.callback(display.stop)
        ports = {name: free_port() for name in self.names}
        subscribers = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
        subscribers["notification-failures"] = self.failures.url
        subscribers["notification-dead-letters"] = self.dead_letter_display.url
        self.router = EventRouter(
            self._knative,
            subscribers,
            dead_letter_path=self.dead_letter_file,
            time_scale=self._time_scale,
            without=frozenset({SCHEDULER} - set(self.names)),
        )
        self.broker = self.router.start()
        self._stack.callback(self.router.stop)
        env = {
            "KUBECONFIG": str(self.kubeconfig),
            "K_SINK": self.broker,
            "STATUS_FLUSH_SECONDS": "0.2",
            **self._env,
        }
        for name in self.names:
            served = serve_function(name, env, self.workdir, server=self._server, port=ports[name])
            self._stack.callback(served.stop)
            self.functions[name] = served
        self.api = kube.api_client({"KUBECONFIG": str(self.kubeconfig)})
        if self._run_notifications and self.emulator is not None:
            self.tekton = localtekton.start_local(
                self.emulator.store, self.workdir / "runs", self.broker, self._step_env
            )
            self._stack.callback(self.tekton.stop)

    def send(self, cloudevent: Mapping[str, Any]) -> int:
        """POST a structured-view event to the broker in binary mode, as Tekton does.

        With the emulator, the run is first stored as it would exist in a cluster, so what
        the functions read about it (a PipelineRun's child TaskRuns) is there.
        """
        self.store_run(cloudevent)
        attributes = {k: str(v) for k, v in cloudevent.items() if k != "data"}
        data = cloudevent.get("data")
        headers, body = wire.binary_message(
            OutgoingEvent(attributes, data if data is not None else {})
        )
        if isinstance(data, str | bytes):
            body = data.encode() if isinstance(data, str) else data
        status, _ = sink.post(self.broker, headers, body)
        return status

    def store_run(self, cloudevent: Mapping[str, Any]) -> None:
        """Store the run a Tekton event carries (with its uid), as it exists in a cluster
        before Tekton sends the event; for tests that post to a function directly. The
        policy filter confirms a run before its event spends storm budget (runcheck.py)."""
        if self.emulator is not None:
            self._mirror_run(cloudevent.get("data"))

    def _mirror_run(self, data: object) -> None:
        assert self.emulator is not None
        if not isinstance(data, Mapping) or len(data) != 1:
            return
        ((key, run),) = data.items()
        plural, kind = _RUN_RESOURCES.get(key, ("", ""))
        metadata = run.get("metadata") if isinstance(run, Mapping) else None
        if not plural or not isinstance(metadata, Mapping) or not metadata.get("name"):
            return
        namespace, name = str(metadata.get("namespace") or "default"), str(metadata["name"])
        store = self.emulator.store
        with contextlib.suppress(KubeError):  # not there the first time the run is seen
            stored = store.get("tekton.dev", plural, namespace, name)
            if _finished(stored) and stored["metadata"].get("uid") == metadata.get("uid"):
                return  # a finished run never changes: a late copy of an earlier event
            store.delete("tekton.dev", plural, namespace, name)
        store.create(
            "tekton.dev",
            "v1",
            plural,
            namespace,
            {**run, "apiVersion": "tekton.dev/v1", "kind": kind},
            keep_uid=True,  # the policy filter confirms the event's run by its uid
        )

    def send_file(self, path: Path) -> int:
        return self.send(json.loads(path.read_text()))

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Until the router (and the local Tekton, when it runs) have nothing left to do:
        a finished run's event may make another run (a retry), and that run another event."""
        if self.tekton is None:
            return self.router.wait_idle(timeout=timeout)
        return localtekton.settle(self.router.wait_idle, self.tekton, timeout)

    def policies(self) -> list[dict[str, Any]]:
        """Namespaced and cluster policies as the API has them now, status included."""
        found: list[dict[str, Any]] = []
        for plural in (vocabulary.POLICY_PLURAL, vocabulary.CLUSTER_POLICY_PLURAL):
            found.extend(kube.list_objects(self.api, plural, None))
        return found

    def templates(self) -> list[dict[str, Any]]:
        """The NotificationTemplates as the API has them now, status included."""
        return kube.list_objects(self.api, vocabulary.TEMPLATE_PLURAL, None)

    def kubernetes_events(self, namespace: str) -> list[dict[str, Any]]:
        return kube.list_events(self.api, namespace)

    def notification_runs(self) -> list[dict[str, Any]]:
        """TaskRuns and PipelineRuns created by the chain, read through the API."""
        found: list[dict[str, Any]] = []
        for plural in ("taskruns", "pipelineruns"):
            found.extend(
                kube.list_objects(
                    self.api, plural, None, group="tekton.dev", version="v1", label_selector=MANAGED
                )
            )
        return found


def _finished(run: Mapping[str, Any]) -> bool:
    """Whether a run's ``Succeeded`` condition is final (True or False)."""
    conditions = (run.get("status") or {}).get("conditions") or []
    return any(
        c.get("type") == "Succeeded" and c.get("status") in ("True", "False") for c in conditions
    )
