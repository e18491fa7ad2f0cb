"""Signed stage events: only the functions can hand each other a notification.

The stages talk through the broker, and anything in the cluster can post to the broker. The
claim check (:mod:`claims`) makes a forged ``rendered`` event name a real policy and template,
but such an event could still pick the params of that template's run. With a shared key
(``NOTIFICATIONS_SIGNING_KEY``, from a Secret every function mounts), each function signs the
notification events it sends with HMAC-SHA256 over the type and the data, and refuses (400)
those that arrive unsigned or signed wrongly. Tekton's own events are not signed: the policy
filter judges those by what they say, against the policies.

Signing fails closed: a function refuses to start without a usable key (unset, empty,
whitespace or short). Running unsigned takes ``NOTIFICATIONS_SIGNING=disabled`` (for the
demo and tests that post stage events of their own); :func:`key_from` then returns None and
the stage logs a warning, says so on ``/health/readiness`` and in a metric (stages/base.py).

Pure: keys in, signatures out.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Final

from tekton_notifications.notifications import OutgoingEvent

#: The CloudEvents extension attribute carrying the signature (lower-case, at most 20 chars).
EXTENSION: Final = "notificationsig"
ENVIRONMENT: Final = "NOTIFICATIONS_SIGNING_KEY"
#: The explicit switch: ``disabled`` runs unsigned; unset, empty or ``required`` needs a key.
SWITCH: Final = "NOTIFICATIONS_SIGNING"
DISABLED: Final = "disabled"
REQUIRED: Final = "required"
#: Events between the functions: the only ones signed and checked.
SIGNED_PREFIX: Final = "dev.tekton.notification."
MIN_KEY_LENGTH: Final = 32


class SigningKeyError(ValueError):
    """The signing configuration is unusable: the function must not start."""


def key_from(environ: Mapping[str, str]) -> bytes | None:
    """The signing key, or None when signing is explicitly ``disabled``.

    Anything else without a usable key raises :class:`SigningKeyError`, whose message says
    what to set: an empty or whitespace value (a Secret mapped with nothing in it) is no
    more a decision to run unsigned than a missing one.
    """
    switch = (environ.get(SWITCH) or "").strip().lower()
    value = (environ.get(ENVIRONMENT) or "").strip()
    if switch not in ("", REQUIRED, DISABLED):
        raise SigningKeyError(
            f"{SWITCH}={environ.get(SWITCH)!r} is not understood: leave it unset (signing "
            f"required) or set it to {DISABLED!r} to run unsigned"
        )
    if switch == DISABLED:
        if value:
            raise SigningKeyError(
                f"{SWITCH}={DISABLED} but {ENVIRONMENT} is set: remove one of them, so it is "
                "clear whether the functions sign their events"
            )
        return None
    if not value:
        state = "not set" if environ.get(ENVIRONMENT) is None else "empty"
        raise SigningKeyError(
            f"{ENVIRONMENT} is {state}: the functions refuse to start unsigned. Set it from "
            "the Secret tekton-notifications-signing (for example `openssl rand -hex 32`), "
            f"or set {SWITCH}={DISABLED} to run unsigned (anything in the cluster can then "
            "forge stage events)"
        )
    if len(value) < MIN_KEY_LENGTH:
        raise SigningKeyError(
            f"{ENVIRONMENT} must be at least {MIN_KEY_LENGTH} characters, not {len(value)} "
            "(for example `openssl rand -hex 32`)"
        )
    return value.encode()


def canonical(data: Mapping[str, Any]) -> bytes:
    """The data as canonical JSON (sorted keys, no spaces, ASCII): what is signed."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def signature(key: bytes, event_type: str, data: Mapping[str, Any]) -> str:
    """HMAC-SHA256 over the type and the data as canonical JSON (sorted keys, no spaces)."""
    return _signature(key, event_type, canonical(data))


def _signature(key: bytes, event_type: str, encoded: bytes) -> str:
    return hmac.new(key, event_type.encode() + b"\n" + encoded, hashlib.sha256).hexdigest()


def sign(event: OutgoingEvent, key: bytes) -> OutgoingEvent:
    """``event`` with its signature; the canonical JSON is kept as the body to send (valid
    JSON of the same data), so the data is serialised once per event, not twice."""
    encoded = canonical(event.data)
    attributes = {**event.attributes, EXTENSION: _signature(key, event.type, encoded)}
    return replace(event, attributes=attributes, encoded=encoded)


def problem(attributes: Mapping[str, str], data: object, key: bytes) -> str | None:
    """Why a stage event must be refused, or None when it is signed with ``key``."""
    event_type = attributes.get("type", "")
    if not event_type.startswith(SIGNED_PREFIX):
        return None
    given = attributes.get(EXTENSION)
    if not given:
        return f"{event_type} is not signed ({EXTENSION} missing): not from this installation"
    if isinstance(data, bytes | bytearray | str):
        try:
            data = json.loads(data)
        except ValueError:
            return f"{event_type}: data is not JSON"
    if not isinstance(data, Mapping):
        return f"{event_type}: data must be a JSON object"
    if not hmac.compare_digest(given, signature(key, event_type, data)):
        return f"{event_type}: bad {EXTENSION}: not from this installation, or altered on the way"
    return None
