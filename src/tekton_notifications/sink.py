"""Publishing CloudEvents to the broker (``K_SINK``) for fan-out.

A Knative reply carries one event; when one Tekton event matches several policies the policy
filter posts each match to the broker itself, so each is delivered and retried on its own.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Final

import urllib3

from tekton_notifications.notifications import OutgoingEvent

TIMEOUT: Final = urllib3.Timeout(connect=2.0, read=10.0)
#: Where a SinkBinding mounts its OIDC token when Knative's ``authentication-oidc`` is on
#: (knative/eventing pkg/apis/sources/v1/sinkbinding_lifecycle.go). Knative renews the file
#: before the token expires, so it is read for every publish.
OIDC_TOKEN_FILE: Final = "/oidc/token"
_POOL: Final = urllib3.PoolManager(retries=False, timeout=TIMEOUT)


class PublishError(Exception):
    """The broker did not accept an event; the caller answers 5xx so the sender retries."""


def binary_message(event: OutgoingEvent) -> tuple[dict[str, str], bytes]:
    """HTTP headers and body of ``event`` in binary content mode."""
    headers = {"content-type": event.attributes.get("datacontenttype", "application/json")}
    for name, value in event.attributes.items():
        if name != "datacontenttype":
            headers[f"ce-{name}"] = _header_value(value)
    return headers, json.dumps(event.data, separators=(",", ":")).encode()


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
        headers, body = binary_message(event)
        if token:
            headers["authorization"] = f"Bearer {token}"
        try:
            response = _POOL.request("POST", sink, body=body, headers=headers)
        except urllib3.exceptions.HTTPError as error:
            raise PublishError(f"broker at {sink} unreachable: {error}") from None
        if not 200 <= response.status < 300:
            detail = response.data[:200].decode(errors="replace")
            raise PublishError(f"broker at {sink} answered {response.status}: {detail}")


def _header_value(value: str) -> str:
    """Percent-encode what HTTP headers can't carry (CloudEvents HTTP binding, 3.1.3.2)."""
    return urllib.parse.quote(value, safe=" !#$&'()*+,/:;<=>?@[]^_`{|}~-.")


def decode_header_value(value: str) -> str:
    return urllib.parse.unquote(value)


def as_text(attributes: Mapping[str, object]) -> dict[str, str]:
    """SDKs hand ``time`` back as a datetime; the core works on strings."""
    text: dict[str, str] = {}
    for name, value in attributes.items():
        if value is None:
            continue
        isoformat = getattr(value, "isoformat", None)
        text[name] = isoformat().replace("+00:00", "Z") if callable(isoformat) else str(value)
    return text
