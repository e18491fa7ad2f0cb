"""CloudEvents over HTTP (the HTTP protocol binding, v1.0): the one module that knows the wire.

Every place that turns an event into HTTP headers and a body, or back, goes through here: the
sink's fan-out posts, the dev tools' router, event display and chain, and the tests. The
adapters hand decoding to their SDKs (func-python, functions-framework) and meet this module
only through :func:`attributes_as_text`.

A :class:`Message` keeps ``data`` as bytes, as it travels: a router or a display must not
change what it forwards. :func:`outgoing` builds one from an :class:`OutgoingEvent`.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote, unquote

from tekton_notifications.notifications import OutgoingEvent

#: Printable ASCII except '"' and '%', plus space: what a ce-* header may carry unencoded
#: (binding 3.1.3.2); everything else is percent-encoded.
_HEADER_SAFE: Final = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) not in '"%')
STRUCTURED: Final = "application/cloudevents+json"
BATCH: Final = "application/cloudevents-batch+json"


class BadEventError(ValueError):
    """The HTTP message does not carry a valid CloudEvent."""


@dataclass
class Message:
    """One CloudEvent as it travels: context attributes as strings, ``data`` as bytes."""

    attributes: dict[str, str]
    data: bytes = b""

    @property
    def id(self) -> str:
        return self.attributes["id"]

    @property
    def type(self) -> str:
        return self.attributes["type"]

    def json(self) -> Any:
        """``data`` parsed as JSON (None when there is none)."""
        return json.loads(self.data) if self.data else None


def outgoing(event: OutgoingEvent) -> Message:
    """An event a stage emits, with its ``data`` serialised as compact JSON."""
    data = event.data
    if event.encoded is not None:  # serialised already (signing)
        body = event.encoded
    elif isinstance(data, bytes):
        body = data
    else:
        body = json.dumps(data, separators=(",", ":")).encode()
    attributes = dict(event.attributes)
    attributes.setdefault("datacontenttype", "application/json")
    return Message(attributes, body)


def binary(message: Message) -> tuple[dict[str, str], bytes]:
    """Headers and body in binary content mode (what Tekton sends and the broker delivers)."""
    headers: dict[str, str] = {}
    for name, value in message.attributes.items():
        if name == "datacontenttype":
            headers["content-type"] = value
        else:
            headers[f"ce-{name}"] = quote(value, safe=_HEADER_SAFE)
    return headers, message.data


def binary_message(event: OutgoingEvent) -> tuple[dict[str, str], bytes]:
    """An event a stage emits, in binary content mode."""
    return binary(outgoing(event))


def structured(message: Message) -> dict[str, object]:
    """The structured-mode JSON object: attributes, plus ``data`` or ``data_base64``."""
    obj: dict[str, object] = dict(message.attributes)
    if not message.data:
        return obj
    content_type = message.attributes.get("datacontenttype")
    try:
        if is_json(content_type):
            obj["data"] = json.loads(message.data)
        elif (content_type or "").startswith("text/"):
            obj["data"] = message.data.decode()
        else:
            obj["data_base64"] = base64.b64encode(message.data).decode()
    except ValueError:  # undecodable JSON or text: keep the bytes
        obj["data_base64"] = base64.b64encode(message.data).decode()
    return obj


def structured_message(message: Message) -> tuple[dict[str, str], bytes]:
    """Headers and body in structured content mode."""
    return {"content-type": STRUCTURED}, json.dumps(structured(message)).encode()


def decode(headers: Mapping[str, str], body: bytes) -> Message:
    """A CloudEvent from a request or response, binary or structured.

    ``headers`` keys in lower case. Raises :class:`BadEventError` saying what is wrong.
    """
    content_type = headers.get("content-type", "")
    media_type = content_type.split(";")[0].strip().lower()
    if "ce-specversion" in headers:
        attributes = {k[3:]: unquote(v) for k, v in headers.items() if k.startswith("ce-")}
        attributes.pop("datacontenttype", None)
        if content_type:
            attributes["datacontenttype"] = content_type
        message = Message(attributes, body)
    elif media_type == STRUCTURED:
        message = _decode_structured(body)
    elif media_type == BATCH:
        raise BadEventError("batched CloudEvents are not supported")
    else:
        raise BadEventError("not a CloudEvent: no ce-specversion header, no structured body")
    missing = [a for a in ("id", "source", "type") if not message.attributes.get(a)]
    if message.attributes.get("specversion") not in ("1.0", "0.3"):
        missing.insert(0, "specversion (1.0)")
    if missing:
        raise BadEventError(f"invalid CloudEvent: missing {', '.join(missing)}")
    return message


def carries_event(headers: Mapping[str, str]) -> bool:
    """Whether an HTTP message says it carries a CloudEvent (either mode)."""
    media_type = headers.get("content-type", "").split(";")[0].strip().lower()
    return "ce-specversion" in headers or media_type.startswith("application/cloudevents")


def is_json(content_type: str | None) -> bool:
    media_type = (content_type or "application/json").split(";")[0].strip().lower()
    return media_type in ("application/json", "text/json") or media_type.endswith("+json")


def attributes_as_text(attributes: Mapping[str, object]) -> dict[str, str]:
    """Attributes as the core works on them: strings (SDKs hand ``time`` back as datetime)."""
    text: dict[str, str] = {}
    for name, value in attributes.items():
        if value is None:
            continue
        isoformat = getattr(value, "isoformat", None)
        text[name] = isoformat().replace("+00:00", "Z") if callable(isoformat) else str(value)
    return text


def _decode_structured(body: bytes) -> Message:
    try:
        obj = json.loads(body)
    except ValueError as exc:
        raise BadEventError(f"structured CloudEvent is not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise BadEventError("structured CloudEvent must be a JSON object")
    attributes: dict[str, str] = {}
    for key, value in obj.items():
        if key in ("data", "data_base64") or value is None:
            continue
        if isinstance(value, bool):
            attributes[key] = "true" if value else "false"
        elif isinstance(value, str | int | float):
            attributes[key] = str(value)
        else:
            raise BadEventError(f"attribute {key!r} must be a string, number or boolean")
    if "data_base64" in obj:
        try:
            return Message(attributes, base64.b64decode(obj["data_base64"], validate=True))
        except (binascii.Error, TypeError):
            raise BadEventError("data_base64 is not base64") from None
    if "data" not in obj:
        return Message(attributes)
    data = obj["data"]
    if isinstance(data, str) and not is_json(attributes.get("datacontenttype")):
        return Message(attributes, data.encode())
    return Message(attributes, json.dumps(data).encode())
