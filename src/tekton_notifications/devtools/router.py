"""A local CloudEvents router that routes like a Knative broker. It is a development tool.

It is not a production broker. It keeps everything in one process and in memory, with no
persistence, authentication or TLS on ingress, and no ordering guarantees. It exists so that the
local demo and the end-to-end tests route events exactly as the manifests in ``knative/`` say.
It reads the Broker and the Triggers from those YAML files: the files that
``kubectl apply -k`` would apply, following ``kustomization.yaml`` ``resources``. A wrong Trigger
in ``knative/`` therefore breaks local routing too.

What it emulates, from Knative Eventing's multi-tenant channel-based broker (v1.15+):

- Ingress answers 202 to a valid CloudEvent (binary or structured) and 400 to anything else.
  It also answers 400 to an event whose ``knativebrokerttl`` has run out.
- Triggers: ``filters`` (exact, prefix, suffix, all, any, not; AND-ed) when non-empty, else
  ``filter.attributes`` (exact; ``""`` means any value but set), else every event.
  ``cesql`` is rejected when the manifests are loaded.
- Delivery to each matching Trigger's subscriber runs concurrently, in binary content mode.
  ``knativebrokerttl`` is stripped first.
- Retries follow the Trigger's ``delivery``, which replaces the Broker's as a whole. Connection
  errors, timeouts, 5xx, 404, 408, 409 and 429 are retried; other statuses go straight to
  the dead-letter sink. The backoff matches Knative's: before retry *n*, exponential waits
  ``backoffDelay * 2**(n-1)`` and linear waits ``backoffDelay * (n-1)``. Delays are multiplied
  by ``time_scale``; timeouts are not.
- Replies: a 2xx answer carrying a CloudEvent is fed back into the broker. Its TTL is the
  delivered event's, and ingress decrements it, so a reply loop ends. A 2xx with a non-empty
  body that is not a CloudEvent is a bad reply. Knative counts it as 502, and so does this.
- Dead letters are written as structured CloudEvents with ``knativeerrordest``,
  ``knativeerrorcode`` (0 means no response) and ``knativeerrordata``. The last is the base64 of
  the response body, cut to 1024 characters as Knative does. They are kept in ``dead_letters``
  and appended as JSON lines to ``dead_letter_path``. If ``subscribers`` maps the dead-letter
  sink's name, each dead letter is also POSTed there once, in binary mode.

Not emulated: ``cesql``, ``Retry-After``, OIDC and EventPolicies, cross-namespace brokers,
and kustomize features other than ``resources``.

Use::

    urls = {"policy-filter": "http://127.0.0.1:8081/", "template-renderer": ..., ...}
    with EventRouter(Path("knative"), urls, dead_letter_path=Path("dead-letters.jsonl")) as router:
        ...  # give the functions K_SINK=router.url; POST Tekton events to router.url
        router.wait_idle()
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Final, Literal, TypeAlias, assert_never
from urllib.parse import urlsplit

import yaml

from tekton_notifications import wire

log = logging.getLogger(__name__)

TTL_EXTENSION: Final = "knativebrokerttl"
ARRIVAL_TIME_EXTENSION: Final = "knativearrivaltime"
DEFAULT_TTL: Final = 255
DEFAULT_TIMEOUT: Final = 10.0
ERROR_DATA_MAX_LENGTH: Final = 1024
RETRYABLE_STATUSES: Final = frozenset({0, 404, 408, 409, 429})
BAD_REPLY_STATUS: Final = 502

EVENTING_API: Final = "eventing.knative.dev/v1"
_WORKERS: Final = 8
_ATTRIBUTE_NAME = re.compile(r"^[a-z][a-z0-9]*$")
# Context attributes Knative always finds (as "" when unset); anything else is an extension.
_CORE_ATTRIBUTES: Final = frozenset(
    {
        "specversion",
        "id",
        "source",
        "type",
        "subject",
        "time",
        "dataschema",
        "schemaurl",
        "datacontenttype",
        "datamediatype",
        "datacontentencoding",
    }
)
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


# --- filters -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExactFilter:
    attribute: str
    value: str


@dataclass(frozen=True)
class PrefixFilter:
    attribute: str
    value: str


@dataclass(frozen=True)
class SuffixFilter:
    attribute: str
    value: str


@dataclass(frozen=True)
class AllFilter:
    filters: tuple[Filter, ...]


@dataclass(frozen=True)
class AnyFilter:
    filters: tuple[Filter, ...]


@dataclass(frozen=True)
class NotFilter:
    filter: Filter


@dataclass(frozen=True)
class AttributesFilter:
    """``filter.attributes``: exact matches; a ``""`` value accepts any non-empty value."""

    attributes: tuple[tuple[str, str], ...]


Filter: TypeAlias = (
    ExactFilter | PrefixFilter | SuffixFilter | AllFilter | AnyFilter | NotFilter | AttributesFilter
)
_DIALECTS: Final = ("exact", "prefix", "suffix", "all", "any", "not", "cesql")


def parse_filters(trigger_spec: Mapping[str, object]) -> tuple[Filter, ...]:
    """The filters of a Trigger ``spec``, AND-ed; ``()`` lets every event through.

    As in Knative, a non-empty ``filters`` wins over ``filter.attributes``. Raises ValueError
    for anything Knative's webhook would reject, and for ``cesql``, which this tool lacks.
    """
    filters = trigger_spec.get("filters")
    if filters is not None and not isinstance(filters, list):
        raise ValueError("filters: must be a list")
    if filters:
        return tuple(_parse_filter(item, f"filters[{i}]") for i, item in enumerate(filters))
    legacy = trigger_spec.get("filter")
    if legacy is None:
        return ()
    if not isinstance(legacy, Mapping) or set(legacy) - {"attributes"}:
        raise ValueError("filter: only `attributes` is allowed")
    attributes = legacy.get("attributes") or {}
    if not isinstance(attributes, Mapping):
        raise ValueError("filter.attributes: must be a mapping")
    pairs: list[tuple[str, str]] = []
    for name, value in attributes.items():
        _check_attribute_name(name, "filter.attributes")
        if not isinstance(value, str):
            raise ValueError(f"filter.attributes.{name}: must be a string, got {value!r}")
        pairs.append((name, value))
    return (AttributesFilter(tuple(sorted(pairs))),) if pairs else ()


def _parse_filter(item: object, where: str) -> Filter:
    if not isinstance(item, Mapping):
        raise ValueError(f"{where}: a filter must be a mapping")
    unknown = sorted(str(key) for key in item if key not in _DIALECTS)
    if unknown:
        raise ValueError(f"{where}: unknown filter dialect(s) {unknown}")
    present = [key for key in _DIALECTS if item.get(key) not in (None, "", {}, [])]
    if len(present) != 1:
        raise ValueError(f"{where}: a filter needs exactly one dialect, found {present or 'none'}")
    (dialect,) = present
    value = item[dialect]
    match dialect:
        case "exact":
            return ExactFilter(*_single_attribute(value, f"{where}.exact"))
        case "prefix":
            return PrefixFilter(*_single_attribute(value, f"{where}.prefix"))
        case "suffix":
            return SuffixFilter(*_single_attribute(value, f"{where}.suffix"))
        case "all" | "any":
            if not isinstance(value, list):
                raise ValueError(f"{where}.{dialect}: must be a non-empty list of filters")
            nested = tuple(_parse_filter(f, f"{where}.{dialect}[{i}]") for i, f in enumerate(value))
            return AllFilter(nested) if dialect == "all" else AnyFilter(nested)
        case "not":
            return NotFilter(_parse_filter(value, f"{where}.not"))
        case _:  # "cesql"
            raise ValueError(
                f"{where}: cesql filters are not supported by the development router; "
                "express the Trigger with exact/prefix/suffix/all/any/not"
            )


def _single_attribute(value: object, where: str) -> tuple[str, str]:
    if not isinstance(value, Mapping) or len(value) != 1:
        raise ValueError(f"{where}: must map exactly one attribute to a value")
    ((name, expected),) = value.items()
    _check_attribute_name(name, where)
    if not isinstance(expected, str) or not expected:
        raise ValueError(f"{where}.{name}: value must be a non-empty string")
    return name, expected


def _check_attribute_name(name: object, where: str) -> None:
    if not isinstance(name, str) or not _ATTRIBUTE_NAME.match(name):
        raise ValueError(f"{where}: invalid attribute name {name!r} (lowercase letters, digits)")


def matches(trigger_filters: Sequence[Filter], attributes: Mapping[str, str]) -> bool:
    """Whether an event with these context attributes (and extensions) passes all filters."""
    return all(_passes(f, attributes) for f in trigger_filters)


def _lookup(attributes: Mapping[str, str], name: str) -> str | None:
    if name in attributes:
        return attributes[name]
    if name == "datamediatype":
        return attributes.get("datacontenttype", "").split(";")[0].strip()
    if name == "schemaurl":
        return attributes.get("dataschema", "")
    return "" if name in _CORE_ATTRIBUTES else None


def _passes(f: Filter, attributes: Mapping[str, str]) -> bool:
    match f:
        case ExactFilter(name, expected):
            return _lookup(attributes, name) == expected
        case PrefixFilter(name, expected):
            return (_lookup(attributes, name) or "").startswith(expected)
        case SuffixFilter(name, expected):
            return (_lookup(attributes, name) or "").endswith(expected)
        case AllFilter(nested):
            return all(_passes(n, attributes) for n in nested)
        case AnyFilter(nested):
            return any(_passes(n, attributes) for n in nested)
        case NotFilter(inner):
            return not _passes(inner, attributes)
        case AttributesFilter(pairs):
            for name, expected in pairs:
                value = _lookup(attributes, name)
                if not value or (expected and value != expected):
                    return False
            return True
        case _:
            assert_never(f)


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


# --- CloudEvents over HTTP: tekton_notifications.wire -------------------------------------

BadEventError = wire.BadEventError
_Event = wire.Message


def _filter_view(event: _Event) -> dict[str, str]:
    """The attributes Trigger filters see (the broker's own TTL extension is not one)."""
    return {k: v for k, v in event.attributes.items() if k != TTL_EXTENSION}


def _decode_event(headers: Mapping[str, str], body: bytes) -> _Event:
    return wire.decode(headers, body)


def _binary_message(event: _Event) -> tuple[dict[str, str], bytes]:
    return wire.binary(_Event(_filter_view(event), event.data))


def _structured(event: _Event) -> dict[str, object]:
    return wire.structured(_Event(_filter_view(event), event.data))


@dataclass(frozen=True)
class _Response:
    status: int  # 0: no response (connection error, timeout)
    headers: dict[str, str]
    body: bytes
    error: str | None = None


def _post(url: str, headers: Mapping[str, str], body: bytes, timeout: float) -> _Response:
    parts = urlsplit(url)
    connection_class = (
        http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    )
    connection = connection_class(parts.hostname or "localhost", parts.port, timeout=timeout)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        connection.request("POST", path, body=body, headers=dict(headers))
        response = connection.getresponse()
        data = response.read()
        return _Response(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
    except (OSError, http.client.HTTPException) as exc:
        return _Response(0, {}, b"", f"{type(exc).__name__}: {exc}")
    finally:
        connection.close()


# --- the router ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """The outcome of delivering one event to one Trigger's subscriber."""

    event_id: str
    event_type: str
    trigger: str
    subscriber: str
    attempts: int
    #: Final status: the HTTP status, 0 for no response, 502 for a bad (non-CloudEvent) reply.
    status: int
    reply_type: str | None
    dead_lettered: bool
    #: Seconds waited before each retry (after ``time_scale``).
    backoffs: tuple[float, ...] = ()
    error: str | None = None

    @property
    def succeeded(self) -> bool:
        return 200 <= self.status < 300


@dataclass
class _Attempts:
    event: _Event
    trigger: Trigger
    url: str
    delivery: DeliverySpec
    ttl: int
    attempts: int = 0
    backoffs: list[float] = field(default_factory=list)


class EventRouter:
    """Routes CloudEvents among local subscribers as the Triggers in ``manifest_dir`` say.

    ``subscribers`` maps each Service a Trigger references to a base URL. The constructor
    loads the manifests and raises ValueError if they are invalid or a subscriber is unmapped.
    """

    def __init__(
        self,
        manifest_dir: Path,
        subscribers: Mapping[str, str],
        *,
        dead_letter_path: Path | None = None,
        time_scale: float = 1.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.broker, self.triggers = load_triggers(manifest_dir)
        missing = sorted({t.subscriber for t in self.triggers if "://" not in t.subscriber})
        missing = [name for name in missing if name not in subscribers]
        if missing:
            raise ValueError(f"no URL for subscriber(s) {missing}: add them to `subscribers`")
        if time_scale < 0:
            raise ValueError("time_scale must not be negative")
        self._subscribers = dict(subscribers)
        self._delivery = {t.name: self._effective_delivery(t) for t in self.triggers}
        self._dead_letter_path = dead_letter_path
        self._time_scale = time_scale
        self._address = (host, port)
        self.deliveries: list[Delivery] = []
        self.dead_letters: list[dict[str, object]] = []
        #: Events dropped at ingress because their TTL ran out (structured form).
        self.dropped: list[dict[str, object]] = []
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._pending = 0
        self._running = False
        self._timers: set[threading.Timer] = set()
        self._pool: ThreadPoolExecutor | None = None
        self._server: _IngressServer | None = None
        self._thread: threading.Thread | None = None
        self._url = ""

    @property
    def url(self) -> str:
        """The broker ingress URL (what K_SINK points at); empty until started."""
        return self._url

    def start(self) -> str:
        """Start serving; returns the broker ingress URL."""
        if self._server is not None:
            raise RuntimeError("router already started")
        self._pool = ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="router-send")
        self._server = _IngressServer(self._address, self)
        self._running = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},  # how long stop() waits for the loop to notice
            name="router-ingress",
            daemon=True,
        )
        self._thread.start()
        host, port = self._server.server_address[:2]
        self._url = f"http://{host!s}:{port}{self.broker.ingress_path}"
        log.info("router for broker %s listening on %s", self.broker.name, self._url)
        return self._url

    def stop(self) -> None:
        """Stop accepting events, cancel pending retries, wait for deliveries in flight."""
        with self._lock:
            self._running = False
            timers, self._timers = self._timers, set()
        for timer in timers:
            timer.cancel()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        with self._idle:
            self._pending = 0
            self._idle.notify_all()
        self._server = self._thread = self._pool = None

    def __enter__(self) -> EventRouter:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until no delivery is pending or in flight; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def _effective_delivery(self, trigger: Trigger) -> DeliverySpec:
        """The Trigger's delivery replaces the Broker's whole, except the dead-letter sink, which
        falls back to the Broker's (as the Trigger's status does)."""
        broker = self.broker.delivery
        if trigger.delivery is None:
            return broker or DeliverySpec()
        if trigger.delivery.dead_letter_sink is None and broker is not None:
            return replace(trigger.delivery, dead_letter_sink=broker.dead_letter_sink)
        return trigger.delivery

    # -- ingress ----------------------------------------------------------------------------

    def _accept(self, event: _Event, *, reply_ttl: int | None = None) -> bool:
        """Ingress: TTL bookkeeping as the MT broker's defaulter does, then fan out."""
        if reply_ttl is not None:
            event.attributes[TTL_EXTENSION] = str(reply_ttl)
        raw_ttl = event.attributes.get(TTL_EXTENSION)
        ttl = DEFAULT_TTL if raw_ttl is None else max(_to_int(raw_ttl, DEFAULT_TTL + 1) - 1, 0)
        if ttl <= 0:
            log.info("dropped %s (%s): %s exhausted", event.id, event.type, TTL_EXTENSION)
            with self._lock:
                self.dropped.append(_structured(event))
            return False
        event.attributes[TTL_EXTENSION] = str(ttl)
        event.attributes[ARRIVAL_TIME_EXTENSION] = _now()
        view = _filter_view(event)
        chosen = [t for t in self.triggers if matches(t.filters, view)]
        with self._lock:
            if not self._running:
                return False
            self._pending += len(chosen)
        log.debug("accepted %s (%s) for %d trigger(s)", event.id, event.type, len(chosen))
        for trigger in chosen:
            target = trigger.subscriber
            url = target if "://" in target else self._subscribers[target]
            copy = _Event(dict(event.attributes), event.data)
            self._schedule(_Attempts(copy, trigger, url, self._delivery[trigger.name], ttl), 0.0)
        return True

    # -- delivery ---------------------------------------------------------------------------

    def _schedule(self, state: _Attempts, delay: float) -> None:
        if delay <= 0:
            self._submit(state)
            return
        timer = threading.Timer(delay, self._fire, args=(state,))
        timer.daemon = True
        with self._lock:
            if not self._running:
                return
            self._timers.add(timer)
        timer.start()

    def _fire(self, state: _Attempts) -> None:
        with self._lock:
            self._timers = {t for t in self._timers if t is not threading.current_thread()}
        self._submit(state)

    def _submit(self, state: _Attempts) -> None:
        with self._lock:
            pool = self._pool if self._running else None
        if pool is None:
            return
        try:
            pool.submit(self._attempt, state)
        except RuntimeError:  # shut down meanwhile
            return

    def _attempt(self, state: _Attempts) -> None:
        finished = True
        try:
            finished = self._try_once(state)
        except Exception:
            log.exception("delivery of %s to %s crashed", state.event.id, state.url)
        finally:
            if finished:
                with self._idle:
                    self._pending = max(self._pending - 1, 0)
                    if self._pending == 0:
                        self._idle.notify_all()

    def _try_once(self, state: _Attempts) -> bool:
        """One attempt; True when this delivery is over (done, dead-lettered or dropped)."""
        state.attempts += 1
        headers, body = _binary_message(state.event)
        timeout = state.delivery.timeout or DEFAULT_TIMEOUT
        response = _post(state.url, headers, body, timeout)
        status, error, reply = response.status, response.error, None
        if 200 <= status < 300:
            try:
                reply = _reply(response)
            except BadEventError as exc:
                status, error = BAD_REPLY_STATUS, str(exc)
        elif status >= 300 and error is None:
            error = f"HTTP {status}"
        if 200 <= status < 300:
            self._finish(state, status, reply, dead_lettered=False, error=None)
            if reply is not None:
                self._accept(reply, reply_ttl=state.ttl)
            return True
        retryable = status >= 500 or status in RETRYABLE_STATUSES
        if retryable and state.attempts <= state.delivery.retry:
            delay = state.delivery.backoff(state.attempts) * self._time_scale
            state.backoffs.append(delay)
            log.debug("retrying %s to %s in %.3fs (%s)", state.event.id, state.url, delay, error)
            self._schedule(state, delay)
            return False
        dead_lettered = self._dead_letter(state, status, response.body)
        self._finish(state, status, None, dead_lettered=dead_lettered, error=error)
        return True

    def _finish(
        self,
        state: _Attempts,
        status: int,
        reply: _Event | None,
        *,
        dead_lettered: bool,
        error: str | None,
    ) -> None:
        record = Delivery(
            event_id=state.event.id,
            event_type=state.event.type,
            trigger=state.trigger.name,
            subscriber=state.url,
            attempts=state.attempts,
            status=status,
            reply_type=reply.type if reply is not None else None,
            dead_lettered=dead_lettered,
            backoffs=tuple(state.backoffs),
            error=error,
        )
        with self._lock:
            self.deliveries.append(record)
        outcome = f"reply {record.reply_type}" if record.reply_type else "no reply"
        if not record.succeeded:
            outcome = "dead-lettered" if dead_lettered else "dropped (no dead-letter sink)"
        log.info(
            "delivery %s (%s) via trigger %s to %s: status %d after %d attempt(s), %s%s",
            record.event_id,
            record.event_type,
            record.trigger,
            record.subscriber,
            status,
            record.attempts,
            outcome,
            f" [{error}]" if error else "",
        )

    def _dead_letter(self, state: _Attempts, status: int, body: bytes) -> bool:
        """Record the dead letter; also send it (once, binary) to the sink if it has a URL."""
        sink = state.delivery.dead_letter_sink
        if sink is None:
            return False
        errors = {
            "knativeerrordest": state.url,
            "knativeerrorcode": str(status),
            "knativeerrordata": base64.b64encode(body).decode()[:ERROR_DATA_MAX_LENGTH],
        }
        # In the structured form the code is a JSON number, as Knative's integer extension is.
        letter = _structured(state.event) | errors | {"knativeerrorcode": status}
        with self._lock:
            self.dead_letters.append(letter)
            if self._dead_letter_path is not None:
                with self._dead_letter_path.open("a", encoding="utf-8") as out:
                    out.write(json.dumps(letter, sort_keys=True) + "\n")
        url = sink if "://" in sink else self._subscribers.get(sink)
        if url is not None:
            event = _Event(_filter_view(state.event) | errors, state.event.data)
            sent = _post(url, *_binary_message(event), state.delivery.timeout or DEFAULT_TIMEOUT)
            log.info("dead letter %s sent to %s: status %d", event.id, url, sent.status)
        return True


def _reply(response: _Response) -> _Event | None:
    """The CloudEvent a 2xx response carries, None for an empty one; BadEventError else."""
    if wire.carries_event(response.headers):
        try:
            return _decode_event(response.headers, response.body)
        except BadEventError as exc:
            raise BadEventError(f"malformed CloudEvent reply: {exc}") from None
    if response.body:
        raise BadEventError("non-empty response that is not a CloudEvent")
    return None


def _to_int(value: str, default: int) -> int:
    try:
        return int(value)
    except ValueError:
        return default


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


# --- ingress server ------------------------------------------------------------------------


class _IngressServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], router: EventRouter) -> None:
        self.router = router
        super().__init__(address, _IngressHandler)


class _IngressHandler(BaseHTTPRequestHandler):
    server: _IngressServer

    def do_POST(self) -> None:
        router = self.server.router
        if urlsplit(self.path).path.rstrip("/") != router.broker.ingress_path:
            self._answer(404, f"no broker at {self.path}; POST to {router.broker.ingress_path}")
            return
        try:
            body = self._read_body()
        except ValueError as exc:
            self._answer(400, f"unreadable body: {exc}")
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            event = _decode_event(headers, body)
        except BadEventError as exc:
            log.info("ingress rejected a request: %s", exc)
            self._answer(400, str(exc))
            return
        if router._accept(event):
            self._answer(202)
        else:
            self._answer(400, "event dropped: TTL exhausted or router stopping")

    def _refuse(self) -> None:
        self._answer(405, "only POST is allowed")

    do_GET = do_PUT = do_DELETE = do_PATCH = _refuse

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline().strip():  # trailers
                pass
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _answer(self, status: int, message: str = "") -> None:
        payload = message.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(payload)))
        if payload:
            self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        log.debug("ingress: " + format, *args)
