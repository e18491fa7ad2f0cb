"""Publishing CloudEvents to the broker (``K_SINK``) for fan-out.

A Knative reply carries one event; when one Tekton event matches several policies the policy
filter posts each match to the broker itself, so each is delivered and retried on its own.

Plain ``http.client`` with one kept-alive connection per thread and broker: the Kubernetes
client (and its urllib3) belongs to :mod:`tekton_notifications.kube` alone, and a fan-out
needs nothing more than a POST.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterable, Mapping
from typing import Final
from urllib.parse import urlsplit

from tekton_notifications import wire
from tekton_notifications.notifications import OutgoingEvent

#: Seconds to connect to, and then to hear back from, the broker.
CONNECT_TIMEOUT: Final = 2.0
READ_TIMEOUT: Final = 10.0
#: Where a SinkBinding mounts its OIDC token when Knative's ``authentication-oidc`` is on
#: (knative/eventing pkg/apis/sources/v1/sinkbinding_lifecycle.go). Knative renews the file
#: before the token expires, so it is read for every publish.
OIDC_TOKEN_FILE: Final = "/oidc/token"


class PublishError(Exception):
    """The broker did not accept an event; the caller answers 5xx so the sender retries."""


def oidc_token(path: str = OIDC_TOKEN_FILE) -> str | None:
    """The workload's OIDC token for the broker, or None where none is mounted (OIDC off)."""
    try:
        with open(path, encoding="utf-8") as token:
            return token.read().strip() or None
    except FileNotFoundError:
        return None


def publish(sink: str, events: Iterable[OutgoingEvent], *, token: str | None = None) -> None:
    """POST each event to ``sink``; stop at the first refusal and raise :class:`PublishError`.

    ``token``: sent as ``Authorization: Bearer``, which a broker with ``authentication-oidc``
    requires (401 without it, 403 when its EventPolicies don't admit the sender or type).
    """
    for event in events:
        headers, body = wire.binary_message(event)
        if token:
            headers["authorization"] = f"Bearer {token}"
        try:
            status, answer = post(sink, headers, body)
        except OSError as error:
            raise PublishError(f"broker at {sink} unreachable: {error}") from None
        if not 200 <= status < 300:
            detail = answer[:200].decode(errors="replace")
            raise PublishError(f"broker at {sink} answered {status}: {detail}")


def post(
    url: str, headers: Mapping[str, str], body: bytes, *, timeout: float = READ_TIMEOUT
) -> tuple[int, bytes]:
    """POST ``body`` to ``url``; the status and body of the answer. Raises OSError when no
    answer came (``http.client``'s errors are OSErrors or HTTPException, mapped here)."""
    target = urlsplit(url)
    path = (target.path or "/") + (f"?{target.query}" if target.query else "")
    for attempt in (1, 2):
        connection = _connection(target.scheme, target.netloc, timeout)
        try:
            connection.request("POST", path, body=body, headers=dict(headers))
            response = connection.getresponse()
            return response.status, response.read()
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            # A kept-alive connection the broker closed meanwhile: once more on a new one.
            _drop(target.scheme, target.netloc)
            if attempt == 2:
                raise
        except http.client.HTTPException as error:
            _drop(target.scheme, target.netloc)
            raise OSError(f"{type(error).__name__}: {error}") from None
        except OSError:
            _drop(target.scheme, target.netloc)
            raise
    raise AssertionError("unreachable")


_local = threading.local()


def _connection(scheme: str, netloc: str, timeout: float) -> http.client.HTTPConnection:
    pool: dict[tuple[str, str], http.client.HTTPConnection] = _local.__dict__.setdefault("pool", {})
    connection = pool.get((scheme, netloc))
    if connection is None:
        kind = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
        connection = kind(netloc, timeout=CONNECT_TIMEOUT)
        pool[(scheme, netloc)] = connection
    connection.timeout = timeout
    if connection.sock is not None:
        connection.sock.settimeout(timeout)
    return connection


def _drop(scheme: str, netloc: str) -> None:
    pool = _local.__dict__.get("pool", {})
    connection = pool.pop((scheme, netloc), None)
    if connection is not None:
        connection.close()
