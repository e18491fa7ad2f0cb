"""The stages as functions-framework HTTP functions: the portable adapter.

Runs the same stages on any functions-framework host (Cloud Run functions, Google's
buildpacks, a plain ``functions-framework`` process). Uses ``@functions_framework.http``
because its ``@cloud_event`` ignores return values, and a subscriber must reply with an
event; replies are built with the cloudevents SDK 1.x that functions-framework pins.

Serve one with ``functions-framework --source <this file> --target policy_filter``, or from a
``main.py`` that imports the target. Gunicorn (functions-framework's production server) forks
after importing this module, so each stage is started lazily in the process that serves.

Gunicorn's threads are the workers here: :mod:`tekton_notifications.stages.fairness` admits
each event (one namespace holds at most its share of them) and fails liveness while one is
stuck. Bodies are limited by Flask's per-request ``max_content_length``, before they are read.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping

import flask
import functions_framework
from cloudevents.http import from_http

from tekton_notifications import logs, signing
from tekton_notifications.adapters import bodylimit, exposition
from tekton_notifications.stages import base, fairness
from tekton_notifications.stages.base import Response, Stage
from tekton_notifications.stages.delivery_tracker import DeliveryTracker
from tekton_notifications.stages.policy_filter import PolicyFilter
from tekton_notifications.stages.scheduler import Scheduler
from tekton_notifications.stages.status_recorder import StatusRecorder
from tekton_notifications.stages.task_launcher import TaskLauncher
from tekton_notifications.stages.template_renderer import TemplateRenderer
from tekton_notifications.wire import attributes_as_text, binary_message

logger = logging.getLogger(__name__)
HttpFunction = Callable[[flask.Request], flask.Response]

HEALTH_PATHS = frozenset({"/health/readiness", "/health/liveness"})

#: How long the first request in a process waits for the stage's caches to load.
STARTUP_WAIT = float(os.environ.get("NOTIFICATIONS_STARTUP_WAIT", "10"))


class LazyStage:
    """One started stage per process, created on first use."""

    def __init__(self, factory: Callable[[Mapping[str, str]], Stage]) -> None:
        self._factory = factory
        self._lock = threading.Lock()
        self._stage: Stage | None = None
        self._admission: fairness.Admission | None = None
        self._pid = 0

    def get(self) -> tuple[Stage, fairness.Admission]:
        with self._lock:
            if self._stage is None or self._admission is None or self._pid != os.getpid():
                logs.configure()
                exposition.serve()
                cfg = dict(os.environ)
                limits = fairness.Limits.from_config(cfg)
                self._stage = base.build(self._factory, cfg)
                self._admission = fairness.Admission(limits, stage=self._stage.name)
                self._stage.start()
                self._pid = os.getpid()
                deadline = time.monotonic() + STARTUP_WAIT
                while not self._stage.ready()[0] and time.monotonic() < deadline:
                    time.sleep(0.05)
            return self._stage, self._admission


def respond(stage: Stage, admission: fairness.Admission, request: flask.Request) -> flask.Response:
    """Decode the CloudEvent, run the stage, encode its answer (binary mode for events)."""
    if request.method == "GET" and request.path in HEALTH_PATHS:
        # The same probes func-python serves, for hosts that can use them.
        ready, message = admission.health()
        if ready and request.path.endswith("readiness"):
            ready, message = stage.ready()
        return flask.Response(message, status=200 if ready else 503, mimetype="text/plain")
    if (request.content_length or 0) > base.MAX_EVENT_BYTES:  # before reading the body
        return _unread(_plain(base.too_large(request.content_length or 0)))
    # Chunked: Werkzeug reads no more than this (gunicorn terminates the input stream), and
    # stops quietly at the maximum: one byte more tells a body over the limit from one at it.
    request.max_content_length = base.MAX_EVENT_BYTES + 1
    body = request.get_data()
    if len(body) > base.MAX_EVENT_BYTES:
        message = bodylimit.message(None, base.MAX_EVENT_BYTES)
        logger.warning("rejected: %s", message)
        return _unread(_plain(Response(413, message=message)))
    try:
        event = from_http(dict(request.headers), body)
    except Exception as error:  # the SDK raises several types for non-CloudEvents
        return _plain(Response(400, message=f"not a CloudEvent: {error}"))
    attributes = attributes_as_text(event.get_attributes())
    data = event.get_data()
    namespace = fairness.namespace_of(attributes, data)
    ticket = admission.admit(namespace, attributes.get("id", ""), attributes.get("type", ""))
    if isinstance(ticket, fairness.Refusal):
        logger.warning("refused: %s: %s", attributes.get("id"), ticket.message)
        return _plain(Response(ticket.status, message=ticket.message))
    try:
        response = base.handle(stage, attributes, data)
    finally:
        admission.release(ticket)
    if response.event is None:
        return _plain(response)
    # The project's own binary encoding (as for K_SINK): cloudevents 1.x's to_binary leaves
    # non-ASCII attribute values unencoded, and the server then fails on the header (500).
    headers, body = binary_message(response.event)
    return flask.Response(body, status=response.status, headers=headers)


def _unread(response: flask.Response) -> flask.Response:
    """An answer that leaves the rest of the body unread.

    functions-framework reads the whole request after every response that is not streamed
    (its ``read_request`` hook: 40 MB in memory for a refused 40 MB body), so the refusal is
    streamed; the connection closes, as the unread body cannot be skipped cheaply.
    """
    body = response.get_data()
    streamed = flask.Response(iter([body]), status=response.status_code, headers=response.headers)
    streamed.headers["content-length"] = str(len(body))
    streamed.headers["connection"] = "close"
    return streamed


def _plain(response: Response) -> flask.Response:
    status, headers, body = response.http()
    if status in (429, 503):
        headers["retry-after"] = "1"
    return flask.Response(body, status=status, headers=headers)


def http_function(name: str, factory: Callable[[Mapping[str, str]], Stage]) -> HttpFunction:
    """A functions-framework HTTP function named ``name`` serving the stage ``factory`` makes."""
    lazy = LazyStage(factory)

    def handle(request: flask.Request) -> flask.Response:
        return respond(*lazy.get(), request)

    handle.__name__ = handle.__qualname__ = name
    registered: HttpFunction = functions_framework.http(handle)
    return registered


# Checked as functions-framework loads this file: the stages are made on the first request,
# and a signing setting that can never work must stop the server, not fail every event.
try:
    signing.key_from(os.environ)
except signing.SigningKeyError as _error:
    raise SystemExit(f"not starting: {_error}") from None

policy_filter = http_function("policy_filter", PolicyFilter.from_environ)
template_renderer = http_function("template_renderer", TemplateRenderer.from_environ)
task_launcher = http_function("task_launcher", TaskLauncher.from_environ)
status_recorder = http_function("status_recorder", StatusRecorder.from_environ)
scheduler = http_function("scheduler", Scheduler.from_environ)
delivery_tracker = http_function("delivery_tracker", DeliveryTracker.from_environ)
