"""What every stage returns and exposes to the adapters."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Protocol

from tekton_notifications import cel, metrics, signing, sink
from tekton_notifications.notifications import OutgoingEvent

logger = logging.getLogger("tekton_notifications.stages")

#: Header carrying what a stage did with an event that gets no reply event.
DETAIL_HEADER = "x-notifications-detail"

#: The largest HTTP request body (a CloudEvent, binary or structured) a function accepts:
#: 1 MiB. Larger ones get 413, which the broker never retries. Tekton events are a few KiB to
#: some hundred KiB; Knative's channel-based broker sets no limit, Kafka's default is 1 MB.
#: The events between the functions carry the Tekton event, so one within about a KiB of the
#: limit passes the policy filter but is refused (413, dead-lettered) by the renderer.
MAX_EVENT_BYTES = 1024 * 1024


def _latin1(text: str) -> str:
    """Header values are latin-1 on the wire; keep it printable and bounded."""
    return " ".join(text.split())[:500].encode("latin-1", "replace").decode("latin-1")


@dataclass(frozen=True)
class Response:
    """An HTTP answer: a reply event, or a status with a short JSON message."""

    status: int
    event: OutgoingEvent | None = None
    message: str = ""

    def http(self) -> tuple[int, dict[str, str], bytes]:
        """Status, headers and body for a response without an event.

        A 2xx answer must have an empty body: Knative's broker takes any other 2xx body for a
        malformed reply event and retries (502). The message goes in a header instead, so it
        still shows up where people look; errors carry it as JSON too.
        """
        headers = {DETAIL_HEADER: _latin1(self.message)}
        if 200 <= self.status < 300:
            return self.status, headers, b""
        body = json.dumps({"message": self.message}).encode()
        return self.status, {**headers, "content-type": "application/json"}, body


def accepted(message: str) -> Response:
    """Processed, nothing to reply (2xx: the broker must not retry)."""
    return Response(202, message=message)


def rejected(message: str) -> Response:
    """Can never succeed (4xx: the broker dead-letters it at once)."""
    logger.warning("rejected: %s", message)
    return Response(400, message=message)


def too_large(size: int) -> Response:
    """A request body over :data:`MAX_EVENT_BYTES` (413: never retried, dead-lettered)."""
    message = f"request body of {size} bytes is over the limit of {MAX_EVENT_BYTES} bytes"
    logger.warning("rejected: %s", message)
    return Response(413, message=message)


def unavailable(message: str) -> Response:
    """May succeed later (5xx: the broker retries with backoff)."""
    logger.warning("unavailable: %s", message)
    return Response(503, message=message)


def reply(event: OutgoingEvent) -> Response:
    return Response(200, event=event)


class Stage(Protocol):
    """The surface an adapter needs: lifecycle, readiness and one call per event."""

    #: The function's name, as in functions/<name>/func.yaml; labels metrics and logs.
    name: str

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def ready(self) -> tuple[bool, str]: ...

    def respond(self, attributes: Mapping[str, str], data: object) -> Response: ...


#: The rest of an event's work when it may block (the API, the broker): for a worker thread.
Blocking = Callable[[], Response]


def handle(stage: Stage, attributes: Mapping[str, str], data: object) -> Response:
    """What both adapters call per event: the stage's answer, timed and counted.

    An exception the stage did not map is a bug or an outage: 500, so the broker retries,
    and the traceback is logged (never sent back: func-python would leak it in the body).
    """
    started = time.perf_counter()
    try:
        response = stage.respond(attributes, data)
    except Exception:
        response = _failure(attributes)
    return _counted(stage, attributes, started, response)


def prepare(stage: Stage, attributes: Mapping[str, str], data: object) -> Response | Blocking:
    """:func:`handle` in two steps, for an adapter that runs on an event loop: the answer when
    the stage can give it without blocking (the policy filter, when no match needs state or
    a fan-out), else the rest of the work, to run on a worker thread. Timed and counted once,
    like :func:`handle`; a stage without ``prepare`` is all blocking."""
    # A stage may have ``prepare(attributes, data) -> Response | Blocking``: getattr, as a
    # runtime-checkable Protocol's isinstance costs ~100 us per event.
    preparing = getattr(stage, "prepare", None)
    if preparing is None:
        return partial(handle, stage, attributes, data)
    started = time.perf_counter()
    try:
        outcome = preparing(attributes, data)
    except Exception:
        return _counted(stage, attributes, started, _failure(attributes))
    if isinstance(outcome, Response):
        return _counted(stage, attributes, started, outcome)

    def rest() -> Response:
        try:
            response = outcome()
        except Exception:
            response = _failure(attributes)
        return _counted(stage, attributes, started, response)

    return rest


def _failure(attributes: Mapping[str, str]) -> Response:
    logger.exception(
        "unexpected failure",
        extra={
            "notification": {
                "event_id": attributes.get("id"),
                "event_type": attributes.get("type"),
            }
        },
    )
    return Response(500, message="internal error; see the function's log")


def _counted(
    stage: Stage, attributes: Mapping[str, str], started: float, response: Response
) -> Response:
    metrics.LATENCY.labels(stage.name).observe(time.perf_counter() - started)
    metrics.EVENTS.labels(stage.name, attributes.get("type", ""), str(response.status)).inc()
    return response


class SignedStage:
    """A stage whose incoming stage events must be signed, and whose replies are.

    See :mod:`tekton_notifications.signing`. Everything else is the wrapped stage's. Without
    a key (only when signing is explicitly disabled) events pass unchecked and unsigned, and
    readiness says so, so an unsigned installation is visible where people look.
    """

    def __init__(self, stage: Stage, key: bytes | None) -> None:
        self.stage, self._key = stage, key
        self.name = stage.name

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stage, name)

    def start(self) -> None:
        self.stage.start()

    def stop(self) -> None:
        self.stage.stop()

    def ready(self) -> tuple[bool, str]:
        ready, message = self.stage.ready()
        if self._key is None:
            return ready, f"{message}; {SIGNING_DISABLED}"
        return ready, message

    def respond(self, attributes: Mapping[str, str], data: object) -> Response:
        if self._key is None:
            return self.stage.respond(attributes, data)
        refused = signing.problem(attributes, data, self._key)
        if refused:
            return rejected(f"{attributes.get('id')}: {refused}")
        return self._signed(self.stage.respond(attributes, data))

    def prepare(self, attributes: Mapping[str, str], data: object) -> Response | Blocking:
        """:func:`prepare` through the signature check, signing the answer however it comes."""
        preparing = getattr(self.stage, "prepare", None)
        if preparing is None:
            return partial(self.respond, attributes, data)
        if self._key is not None:
            refused = signing.problem(attributes, data, self._key)
            if refused:
                return rejected(f"{attributes.get('id')}: {refused}")
        outcome = preparing(attributes, data)
        if isinstance(outcome, Response):
            return self._signed(outcome)
        return lambda: self._signed(outcome())

    def _signed(self, response: Response) -> Response:
        if self._key is None or response.event is None:
            return response
        return replace(response, event=signing.sign(response.event, self._key))


#: What readiness adds when stage events are not signed.
SIGNING_DISABLED = "signing disabled"


def build(factory: Callable[[Mapping[str, str]], Stage], cfg: Mapping[str, str]) -> Stage:
    """The stage ``factory`` makes, signing and checking stage events.

    Fails closed: without a usable key and without ``NOTIFICATIONS_SIGNING=disabled`` it
    raises :class:`signing.SigningKeyError` (logged) before the stage is made, so the function
    never starts. Disabled, it logs a warning and sets ``tekton_notifications_signing_enabled``
    to 0.
    """
    try:
        key = signing.key_from(cfg)
    except signing.SigningKeyError as error:
        logger.error("not starting: %s", error)
        raise
    cel.configure(cfg)  # NOTIFICATIONS_CEL_ENGINE: the configuration enters here, not in the core
    metrics.SIGNING_ENABLED.set(0 if key is None else 1)
    if key is None:
        logger.warning(
            "%s (%s=%s): stage events are neither signed nor checked; anything that can post "
            "to the broker can forge them",
            SIGNING_DISABLED,
            signing.SWITCH,
            signing.DISABLED,
        )
    return SignedStage(factory(cfg), key)


#: Posts events to the broker: what a stage with more than one event to send uses.
Publisher = Callable[[Sequence[OutgoingEvent]], None]


def broker_publisher(environ: Mapping[str, str]) -> Publisher | None:
    """Publishing to the broker (``K_SINK``, set by a SinkBinding), signed with the
    installation's key; None without ``K_SINK``. These events bypass the reply, which
    :class:`SignedStage` signs, so they are signed here. With ``authentication-oidc`` on, the
    broker wants the SinkBinding's token (``OIDC_TOKEN_FILE``)."""
    target = environ.get("K_SINK")
    if not target:
        return None
    key = signing.key_from(environ)
    token_file = environ.get("OIDC_TOKEN_FILE") or sink.OIDC_TOKEN_FILE

    def publish(events: Sequence[OutgoingEvent]) -> None:
        signed = [signing.sign(e, key) for e in events] if key is not None else events
        sink.publish(target, signed, token=sink.oidc_token(token_file))

    return publish
