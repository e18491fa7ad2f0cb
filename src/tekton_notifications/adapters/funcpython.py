"""A stage as a ``kn func`` Python function instance (served by func-python, cloudevents 2).

What a stage can answer without I/O (:func:`base.prepare`: the policy filter, for events
whose matches need no state and no fan-out) is answered on the event loop, for events up to
:data:`ON_THE_LOOP_MAX_BYTES`. The rest runs on a
worker thread of the function's own pool (stages block on the API and the broker), admitted
by :mod:`tekton_notifications.stages.fairness`: one namespace holds at most its share of the
workers, and liveness fails while one is stuck.
Oversized bodies are refused before func-python reads them (:mod:`.bodylimit`).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import Any

from tekton_notifications import logs, signing
from tekton_notifications.adapters import bodylimit, exposition
from tekton_notifications.stages import base, fairness
from tekton_notifications.stages.base import Response, Stage
from tekton_notifications.wire import attributes_as_text, binary_message

logger = logging.getLogger(__name__)

StageFactory = Callable[[Mapping[str, str]], Stage]
#: Events up to this size may be answered on the event loop (Tekton's are 2-20 KiB).
ON_THE_LOOP_MAX_BYTES = 32 * 1024
Send = Any  # func-python's CloudEventSender: awaitable, with .binary() and .http()


class Function:
    """What ``new()`` returns: func-python calls ``start(env)``, ``handle`` per event, etc."""

    def __init__(self, factory: StageFactory) -> None:
        self._factory = factory
        self._stage: Stage | None = None
        self._admission: fairness.Admission | None = None
        self._pool: ThreadPoolExecutor | None = None
        #: Set and replaced on every release: what events waiting for a worker wait on.
        self._released: asyncio.Event | None = None
        # new() runs before func-python builds its server: the only moment to get in front.
        bodylimit.install(base.MAX_EVENT_BYTES, detail_header=base.DETAIL_HEADER)

    def start(self, cfg: Mapping[str, str]) -> None:
        logs.configure(cfg)
        exposition.serve(cfg)
        limits = fairness.Limits.from_config(cfg)
        try:
            self._stage = base.build(self._factory, cfg)
        except signing.SigningKeyError as error:
            # func-python logs an exception from start() and serves on without a function:
            # exit instead, so the pod fails visibly (CrashLoopBackOff) with this reason.
            raise SystemExit(f"not starting: {error}") from None
        self._admission = fairness.Admission(limits, stage=self._stage.name)
        self._pool = ThreadPoolExecutor(limits.workers, thread_name_prefix=self._stage.name)
        self._stage.start()

    def stop(self) -> None:
        if self._stage is not None:
            self._stage.stop()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def alive(self) -> tuple[bool, str]:
        if self._admission is None:
            return True, "alive"
        return self._admission.health()

    def ready(self) -> tuple[bool, str]:
        if self._stage is None or self._admission is None:
            return False, "not started"
        alive, why = self._admission.health()
        return (False, why) if not alive else self._stage.ready()

    async def handle(
        self, scope: dict[str, Any], receive: Callable[[], Awaitable[Any]], send: Send
    ) -> None:
        if self._stage is None or self._admission is None or self._pool is None:
            await _plain(send, Response(503, message="function not started"))
            return
        event = scope["event"]
        size = _body_size(scope, event.get_data())
        if size > base.MAX_EVENT_BYTES:
            # Where bodylimit could not be installed, func-python has read the body already;
            # this keeps it from going further.
            await _plain(send, base.too_large(size))
            return
        attributes = attributes_as_text(event.get_attributes())
        data = event.get_data()
        # What needs no I/O is answered here, on the loop: a thread hop costs more than the
        # policy filter's whole decision (bench breakdown). The rest goes to a worker, and so
        # does every large event: its CEL and parsing could hold the loop, and every other
        # tenant's requests behind it, for as long as its cost budget allows (a worker
        # shares the CPU with them instead; tests/reliability/test_hostile_cel.py).
        prepared = (
            base.prepare(self._stage, attributes, data)
            if size <= ON_THE_LOOP_MAX_BYTES
            else partial(base.handle, self._stage, attributes, data)
        )
        response = (
            prepared
            if isinstance(prepared, Response)
            else await self._on_worker(attributes, data, prepared)
        )
        if response.event is None:
            await _plain(send, response)
            return
        # The project's own binary encoding, as the functions-framework adapter and the
        # sink's fan-out use: the SDK's (a CloudEvent validated attribute by attribute, then
        # encoded) cost ~40% of the whole request in-process (bench breakdown).
        headers, body = binary_message(response.event)
        await _respond(send, response.status, headers, body)

    async def _on_worker(
        self, attributes: Mapping[str, str], data: object, work: base.Blocking
    ) -> Response:
        """``work`` on a worker thread admitted by :mod:`fairness`, or its refusal."""
        assert self._admission is not None and self._pool is not None
        ticket = await self._admit(attributes, data)
        if isinstance(ticket, fairness.Refusal):
            logger.warning("refused: %s: %s", attributes.get("id"), ticket.message)
            return Response(ticket.status, message=ticket.message)
        # Stages block on locks and, for the launcher, on the API: keep the loop free. The
        # worker is released when its thread is done, not when this request ends: a request
        # cancelled mid-way must not hide a thread that is still busy (or stuck).
        # One wake-up of the loop per event (asyncio.wrap_future would add a second): the
        # thread's end releases the worker and hands over the answer in the same callback.
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Response] = loop.create_future()
        context = contextvars.copy_context()
        running = self._pool.submit(context.run, work)
        running.add_done_callback(lambda done: _soon(loop, self._finish, ticket, done, answer))
        # A request cancelled before its event reached a thread takes the event back.
        answer.add_done_callback(lambda waited: running.cancel() if waited.cancelled() else None)
        return await answer

    def _finish(
        self,
        ticket: fairness.Ticket,
        work: Future[Response],
        answer: asyncio.Future[Response],
    ) -> None:
        """On the loop, once the event's thread is done: free its worker, then answer."""
        self._release(ticket)
        if answer.cancelled():
            return
        if work.cancelled():
            answer.cancel()
        elif (error := work.exception()) is not None:
            answer.set_exception(error)
        else:
            answer.set_result(work.result())

    def _release(self, ticket: fairness.Ticket) -> None:
        """On the loop: free the worker and wake the events waiting for one."""
        assert self._admission is not None
        self._admission.release(ticket)
        if self._released is not None:
            self._released.set()
            self._released = None

    async def _admit(
        self, attributes: Mapping[str, str], data: object
    ) -> fairness.Ticket | fairness.Refusal:
        """A worker for this event, waiting up to ``queue_wait`` while its share is spent."""
        assert self._admission is not None
        namespace = fairness.namespace_of(attributes, data)
        event_id, event_type = attributes.get("id", ""), attributes.get("type", "")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._admission.limits.queue_wait
        while True:
            if self._released is None:
                self._released = asyncio.Event()
            released = self._released  # taken before trying, so no release is missed
            outcome = self._admission.try_admit(namespace, event_id, event_type)
            remaining = deadline - loop.time()
            if isinstance(outcome, fairness.Ticket) or remaining <= 0:
                return self._admission.settle(outcome)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(released.wait(), remaining)


def _soon(loop: asyncio.AbstractEventLoop, callback: Callable[..., None], *args: Any) -> None:
    """``callback(*args)`` on ``loop`` from another thread; dropped once the loop is closed."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(callback, *args)


def _body_size(scope: Mapping[str, Any], data: object) -> int:
    """The request's Content-Length; for a chunked request, the size of its data."""
    for name, value in scope.get("headers") or ():
        if name.lower() == b"content-length" and value.isdigit():
            return int(value)
    if isinstance(data, bytes | str):
        return len(data)
    return len(json.dumps(data)) if data is not None else 0


async def _plain(send: Send, response: Response) -> None:
    status, headers, body = response.http()
    if status in (429, 503):
        headers["retry-after"] = "1"
    await _respond(send, status, headers, body)


async def _respond(send: Send, status: int, headers: dict[str, str], body: bytes) -> None:
    headers["content-length"] = str(len(body))
    start = {
        "type": "http.response.start",
        "status": status,
        "headers": [(name.encode(), value.encode("latin-1")) for name, value in headers.items()],
    }
    await send.http(start)
    await send.http({"type": "http.response.body", "body": body})
