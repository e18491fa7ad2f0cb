"""What the kubelet gives a step's container, read from the API emulator: env from values,
Secrets and ConfigMaps, and Secret/ConfigMap volumes as folders mounted where the step reads.

Used by the step runner (steprunner.py). A Secret, ConfigMap or key the container needs and
cannot have is a ``ConfigError``: the kubelet's CreateContainerConfigError, which fails the
TaskRun before any step runs. Mounting needs a mount namespace (``unshare``); a path that does
not exist here is made in an overlay of its nearest existing parent, so this machine's own
folders are never written.
"""

from __future__ import annotations

import base64
import os
import shlex
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tekton_notifications.devtools import tektonvars
from tekton_notifications.devtools.kubeapi import KubeError, ObjectStore

_KEY_REFS = (("secretKeyRef", "secrets"), ("configMapKeyRef", "configmaps"))
_ALL_REFS = (("secretRef", "secrets"), ("configMapRef", "configmaps"))
_VOLUMES = (("secret", "secrets", "secretName"), ("configMap", "configmaps", "name"))


class ConfigError(Exception):
    """The container cannot be configured (Kubernetes: CreateContainerConfigError)."""


class PodConfig:
    """Reads what one namespace's pods are given."""

    def __init__(self, store: ObjectStore, namespace: str) -> None:
        self.store, self.namespace = store, namespace

    def env(self, step: Mapping[str, Any]) -> dict[str, str]:
        """The container's env as the kubelet builds it: ``envFrom`` first, then ``env`` in
        order, each ``value`` expanded against the variables defined before it."""
        env: dict[str, str] = {}
        for source in step.get("envFrom") or []:
            env.update(self._env_from(source))
        for variable in step.get("env") or []:
            value = self._env_value(variable, env)
            if value is not None:
                env[str(variable["name"])] = value
        return env

    def volume(self, volumes: Sequence[Mapping[str, Any]], name: str, root: Path) -> Path:
        """A Secret, ConfigMap or emptyDir volume as a local folder of files under ``root``."""
        volume = next((v for v in volumes if v.get("name") == name), None)
        if volume is None:
            raise ConfigError(f'volume "{name}" is not declared by the Task')
        folder = root / name
        folder.mkdir(parents=True)
        for kind, plural, key in _VOLUMES:
            source = volume.get(kind)
            if isinstance(source, Mapping):
                data = self.data(plural, str(source.get(key)), bool(source.get("optional")))
                for item, text in data.items():
                    (folder / item).write_text(text, encoding="utf-8")
        return folder

    def data(self, plural: str, name: str, optional: bool = False) -> dict[str, str]:
        """A Secret's or ConfigMap's data as text (a Secret's base64 decoded)."""
        try:
            obj = self.store.get("", plural, self.namespace, name)
        except KubeError as error:
            if optional:
                return {}
            singular = "secret" if plural == "secrets" else "configmap"
            raise ConfigError(f'{singular} "{name}" not found') from error
        data = {
            k: base64.b64decode(v).decode() if plural == "secrets" else str(v)
            for k, v in (obj.get("data") or {}).items()
        }
        data.update({k: str(v) for k, v in (obj.get("stringData") or {}).items()})
        return data

    def _env_value(self, variable: Mapping[str, Any], env: Mapping[str, str]) -> str | None:
        if "value" in variable:
            return tektonvars.kubernetes_expand(str(variable["value"]), env)
        source = variable.get("valueFrom") or {}
        for kind, plural in _KEY_REFS:
            ref = source.get(kind)
            if isinstance(ref, Mapping):
                optional = bool(ref.get("optional"))
                data = self.data(plural, str(ref.get("name")), optional)
                key = str(ref.get("key"))
                if key in data:
                    return data[key]
                if optional:
                    return None
                what = "Secret" if plural == "secrets" else "ConfigMap"
                raise ConfigError(
                    f"couldn't find key {key} in {what} {self.namespace}/{ref.get('name')}"
                )
        if "fieldRef" in source:
            path = str(source["fieldRef"].get("fieldPath"))
            return {"metadata.namespace": self.namespace}.get(path, "")
        return ""

    def _env_from(self, source: Mapping[str, Any]) -> dict[str, str]:
        for kind, plural in _ALL_REFS:
            ref = source.get(kind)
            if isinstance(ref, Mapping):
                data = self.data(plural, str(ref.get("name")), bool(ref.get("optional")))
                return {f"{source.get('prefix', '')}{k}": v for k, v in data.items()}
        return {}


def check_mount_path(target: str) -> None:
    """A mount path must be absolute, and one that does not exist needs a parent other than
    ``/`` (whose overlay would hide this machine's whole filesystem from the step)."""
    path = Path(target)
    if not path.is_absolute():
        raise ConfigError(f"mountPath {target!r} is not absolute")
    parent = _existing(path)
    if parent != path and parent == Path("/"):
        raise ConfigError(f"cannot mount at {target} here: it would be made under / itself")


def with_mounts(command: list[str], mounts: list[tuple[Path, str]], scratch: Path) -> list[str]:
    """``command`` run in a mount namespace of its own with each folder at its mount path."""
    lines = ["set -e"]
    overlaid: set[Path] = set()
    for index, (source, target) in enumerate(mounts):
        parent = _existing(Path(target))
        if parent != Path(target) and parent not in overlaid:
            upper, work = scratch / f"upper-{index}", scratch / f"work-{index}"
            upper.mkdir(parents=True)
            work.mkdir(parents=True)
            lines.append(
                f"mount -t overlay overlay -o lowerdir={shlex.quote(str(parent))},"
                f"upperdir={shlex.quote(str(upper))},workdir={shlex.quote(str(work))} "
                f"{shlex.quote(str(parent))}"
            )
            overlaid.add(parent)
        lines.append(f"mkdir -p {shlex.quote(target)}")
        lines.append(f"mount --bind {shlex.quote(str(source))} {shlex.quote(target)}")
    lines.append('exec "$@"')
    unshare = shutil.which("unshare") or "unshare"
    user = [] if os.geteuid() == 0 else ["--map-root-user"]
    return [unshare, "--mount", *user, "--", "/bin/sh", "-c", "\n".join(lines), "mount", *command]


def _existing(path: Path) -> Path:
    while not path.exists():
        path = path.parent
    return path
