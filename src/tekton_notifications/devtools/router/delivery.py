"""Routing: each event to every matching Trigger, with Knative's retries, replies and dead
letters."""

from __future__ import annotations

import base64
import http.client
import json
import logging
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

from tekton_notifications import wire
from tekton_notifications.devtools.router.filters import matches
from tekton_notifications.devtools.router.manifests import (
    DeliverySpec,
    Trigger,
    load_triggers,
)
from tekton_notifications.devtools.router.pings import PingSource, load_ping_sources

if TYPE_CHECKING:
    from tekton_notifications.devtools.router.ingress import _IngressServer

log = logging.getLogger("tekton_notifications.devtools.router")

TTL_EXTENSION: Final = "knativebrokerttl"
ARRIVAL_TIME_EXTENSION: Final = "knativearrivaltime"
DEFAULT_TTL: Final = 255
DEFAULT_TIMEOUT: Final = 10.0
ERROR_DATA_MAX_LENGTH: Final = 1024
RETRYABLE_STATUSES: Final = frozenset({0, 404, 408, 409, 429})
BAD_REPLY_STATUS: Final = 502

_WORKERS: Final = 8

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
        without: frozenset[str] = frozenset(),
    ) -> None:
        """``without``: subscribers not running here; their Triggers are left out (logged)."""
        self.broker, triggers = load_triggers(manifest_dir)
        self.triggers = [t for t in triggers if t.subscriber not in without]
        for trigger in triggers:
            if trigger.subscriber in without:
                log.info("Trigger %s left out: %s is not running", trigger.name, trigger.subscriber)
        #: The PingSources of the manifests, by name (:meth:`ping` sends their pings).
        self.ping_sources: dict[str, PingSource] = load_ping_sources(manifest_dir)
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
        from tekton_notifications.devtools.router.ingress import _IngressServer

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

    def ping(self, name: str, *, at: datetime | None = None, event_id: str | None = None) -> bool:
        """Send PingSource ``name``'s ping of ``at`` (now) to its sink, the Broker: the
        Triggers route it. The same ``event_id`` again is a redelivery of the same ping."""
        source = self.ping_sources[name]
        if source.broker != self.broker.name:
            raise ValueError(f"PingSource {name} sends to broker {source.broker!r}")
        message = source.ping(at or datetime.now(UTC), event_id=event_id)
        return self._accept(_Event(dict(message.attributes), message.data))

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
