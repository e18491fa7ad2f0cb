"""The Broker and Triggers as `kubectl apply -k knative/` would create them."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal
from urllib.parse import urlsplit

import yaml

from tekton_notifications.devtools.router.filters import Filter, parse_filters

EVENTING_API: Final = "eventing.knative.dev/v1"
_KUSTOMIZATION_NAMES: Final = ("kustomization.yaml", "kustomization.yml", "Kustomization")
# Keys that do not change what a Trigger routes; anything else would make kubectl apply
# something other than what this router reads.
_KUSTOMIZATION_KEYS: Final = frozenset(
    {"apiVersion", "kind", "resources", "labels", "commonLabels", "commonAnnotations"}
)
_DURATION = re.compile(
    r"^P(?!$)(?:(?P<weeks>\d+(?:\.\d+)?)W)?(?:(?P<days>\d+(?:\.\d+)?)D)?"
    r"(?:T(?=\d)(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)
_DURATION_UNITS: Final = {
    "weeks": 604800.0,
    "days": 86400.0,
    "hours": 3600.0,
    "minutes": 60.0,
    "seconds": 1.0,
}


# --- manifests -----------------------------------------------------------------------------


def parse_duration(text: str) -> float:
    """Seconds in an ISO-8601 duration such as ``PT0.5S``, ``PT1M30S`` or ``P1D``."""
    found = _DURATION.match(text) if isinstance(text, str) else None
    if found is None:
        raise ValueError(f"not an ISO-8601 duration (years and months unsupported): {text!r}")
    return sum(float(v) * _DURATION_UNITS[k] for k, v in found.groupdict().items() if v is not None)


BackoffPolicy = Literal["linear", "exponential"]


@dataclass(frozen=True)
class DeliverySpec:
    """A Broker's or Trigger's ``delivery``; durations in seconds."""

    retry: int = 0
    backoff_policy: BackoffPolicy | None = None
    backoff_delay: float | None = None
    timeout: float | None = None
    #: Service name (``ref``) or URL (``uri``) of the dead-letter sink.
    dead_letter_sink: str | None = None

    def backoff(self, retry_number: int) -> float:
        """Seconds before retry ``retry_number`` (1-based), as Knative computes it.

        Knative hands go-retryablehttp's 0-based attempt number to its backoff function, so
        exponential waits delay, 2·delay, 4·delay… and linear waits 0, delay, 2·delay…
        Without both a policy and a delay there is no wait.
        """
        if self.backoff_delay is None or self.backoff_policy is None:
            return 0.0
        if self.backoff_policy == "exponential":
            return float(self.backoff_delay * 2 ** (retry_number - 1))
        return self.backoff_delay * (retry_number - 1)


@dataclass(frozen=True)
class BrokerSpec:
    name: str
    namespace: str
    delivery: DeliverySpec | None

    @property
    def ingress_path(self) -> str:
        """The MT broker's ingress path: ``/<namespace>/<name>``."""
        return f"/{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Trigger:
    name: str
    broker: str
    filters: tuple[Filter, ...]
    #: Service name (``ref``) or absolute URL (``uri``).
    subscriber: str
    delivery: DeliverySpec | None


def manifest_files(manifest_dir: Path) -> list[Path]:
    """The YAML files ``kubectl apply -k manifest_dir`` would read, in order.

    With a kustomization, its ``resources`` are followed recursively (directories must hold a
    kustomization). Kustomizations that transform objects in ways that change routing (patches,
    name prefixes, namespace overrides…) are refused. Without one, every ``*.yaml``/``*.yml``
    under ``manifest_dir`` is read.
    """
    if _kustomization(manifest_dir) is None:
        return sorted(p for p in manifest_dir.rglob("*") if p.suffix in {".yaml", ".yml"})
    return list(_kustomize_resources(manifest_dir, ()))


def _kustomization(directory: Path) -> Path | None:
    return next((p for n in _KUSTOMIZATION_NAMES if (p := directory / n).is_file()), None)


def _kustomize_resources(directory: Path, stack: tuple[Path, ...]) -> Iterator[Path]:
    kfile = _kustomization(directory)
    if kfile is None:
        raise ValueError(f"{directory}: listed as a resource but holds no kustomization.yaml")
    if directory.resolve() in stack:
        raise ValueError(f"{kfile}: kustomization cycle")
    data = yaml.safe_load(kfile.read_text()) or {}
    unsupported = sorted(set(data) - _KUSTOMIZATION_KEYS)
    if unsupported:
        raise ValueError(f"{kfile}: unsupported kustomization field(s) {unsupported}")
    for entry in data.get("resources") or []:
        if not isinstance(entry, str) or "://" in entry or entry.startswith("github.com/"):
            raise ValueError(f"{kfile}: only local resources are supported, got {entry!r}")
        target = directory / entry
        if target.is_dir():
            yield from _kustomize_resources(target, (*stack, directory.resolve()))
        elif target.is_file():
            yield target
        else:
            raise ValueError(f"{kfile}: resource {entry!r} does not exist")


def load_objects(manifest_dir: Path) -> list[tuple[Path, dict[str, object]]]:
    """Every object in :func:`manifest_files`, with the file it came from."""
    objects: list[tuple[Path, dict[str, object]]] = []
    for path in manifest_files(manifest_dir):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is None:
                continue
            if not isinstance(doc, dict) or "apiVersion" not in doc or "kind" not in doc:
                raise ValueError(f"{path}: every document must be an object with apiVersion/kind")
            objects.append((path, doc))
    return objects


def load_triggers(manifest_dir: Path) -> tuple[BrokerSpec, list[Trigger]]:
    """The one Broker and its Triggers, from the YAML under ``manifest_dir``.

    Raises ValueError, naming the file and object, for anything the router cannot route
    faithfully: no Broker or several, a Trigger for another broker or namespace, duplicate
    Trigger names, invalid filters or delivery.
    """
    brokers: list[BrokerSpec] = []
    triggers: list[tuple[Path, str, Trigger]] = []
    for path, obj in load_objects(manifest_dir):
        if obj["apiVersion"] != EVENTING_API or obj["kind"] not in ("Broker", "Trigger"):
            continue
        name, namespace = _name_and_namespace(obj, path)
        spec = obj.get("spec") or {}
        if not isinstance(spec, Mapping):
            raise ValueError(f"{path}: {obj['kind']} {name}: spec must be a mapping")
        where = f"{path}: {obj['kind']} {name}"
        try:
            if obj["kind"] == "Broker":
                brokers.append(BrokerSpec(name, namespace, _delivery(spec.get("delivery"))))
            else:
                triggers.append((path, namespace, _trigger(name, spec)))
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
    if len(brokers) != 1:
        names = [f"{b.namespace}/{b.name}" for b in brokers]
        raise ValueError(f"{manifest_dir}: expected exactly one Broker, found {names or 'none'}")
    (broker,) = brokers
    seen: set[str] = set()
    for path, namespace, trigger in triggers:
        if (trigger.broker, namespace) != (broker.name, broker.namespace):
            raise ValueError(
                f"{path}: Trigger {trigger.name} ({namespace}) points at broker "
                f"{trigger.broker!r}; the manifests define {broker.namespace}/{broker.name}"
            )
        if trigger.name in seen:
            raise ValueError(f"{path}: Trigger {trigger.name} is defined twice")
        seen.add(trigger.name)
    return broker, [t for _, _, t in triggers]


def _name_and_namespace(obj: Mapping[str, object], path: Path) -> tuple[str, str]:
    metadata = obj.get("metadata")
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    if not isinstance(name, str) or not name:
        raise ValueError(f"{path}: {obj['kind']} without metadata.name")
    namespace = metadata.get("namespace") if isinstance(metadata, Mapping) else None
    return name, namespace if isinstance(namespace, str) and namespace else "default"


def _trigger(name: str, spec: Mapping[str, object]) -> Trigger:
    if "brokerRef" in spec:
        raise ValueError("brokerRef (cross-namespace brokers) is not supported")
    broker = spec.get("broker")
    if not isinstance(broker, str) or not broker:
        raise ValueError("spec.broker is required")
    subscriber = _destination(spec.get("subscriber"), "subscriber")
    if subscriber is None:
        raise ValueError("spec.subscriber is required")
    return Trigger(name, broker, parse_filters(spec), subscriber, _delivery(spec.get("delivery")))


def _destination(value: object, where: str) -> str | None:
    """``ref`` → the referenced name; ``uri`` → the absolute URL."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}: must be a mapping with ref or uri")
    ref, uri = value.get("ref"), value.get("uri")
    if ref is not None and uri is not None:
        raise ValueError(f"{where}: ref together with uri is not supported")
    if isinstance(ref, Mapping) and isinstance(ref.get("name"), str) and ref["name"]:
        return str(ref["name"])
    if isinstance(uri, str) and urlsplit(uri).scheme in ("http", "https"):
        return uri
    raise ValueError(f"{where}: needs ref.name or an absolute http(s) uri")


def _delivery(value: object) -> DeliverySpec | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValueError("delivery: must be a mapping")
    retry = value.get("retry", 0)
    if not isinstance(retry, int) or isinstance(retry, bool) or retry < 0:
        raise ValueError(f"delivery.retry: must be a non-negative integer, got {retry!r}")
    policy = value.get("backoffPolicy")
    if policy not in (None, "linear", "exponential"):
        raise ValueError(f"delivery.backoffPolicy: linear or exponential, got {policy!r}")
    delay = value.get("backoffDelay")
    timeout = value.get("timeout")
    timeout_s = None if timeout is None else parse_duration(str(timeout))
    if timeout_s is not None and timeout_s <= 0:
        raise ValueError("delivery.timeout: must be greater than zero")
    return DeliverySpec(
        retry=retry,
        backoff_policy=policy,
        backoff_delay=None if delay is None else parse_duration(str(delay)),
        timeout=timeout_s,
        dead_letter_sink=_destination(value.get("deadLetterSink"), "delivery.deadLetterSink"),
    )
