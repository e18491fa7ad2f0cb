"""The webhook stand-ins answer as the services do, as far as the catalog tasks read it:
Slack's Web API says yes or no in its JSON body, always with HTTP 200."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator

import pytest

from tekton_notifications.devtools.receivers import WebhookReceiver


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    started = WebhookReceiver()
    started.start()
    yield started
    started.stop()


@pytest.mark.parametrize(
    ("authorization", "body", "answer"),
    [
        pytest.param(
            "Bearer xoxb-1", {"channel": "C1", "text": "hi"},
            {"ok": True, "channel": "C1"}, id="posted",
        ),
        pytest.param("", {"channel": "C1", "text": "hi"}, {"ok": False, "error": "not_authed"},
                     id="no-token"),
        pytest.param("Bearer ", {"channel": "C1", "text": "hi"},
                     {"ok": False, "error": "not_authed"}, id="empty-token"),
        pytest.param("Bearer xoxb-1", {"text": "hi"},
                     {"ok": False, "error": "channel_not_found"}, id="no-channel"),
        pytest.param("Bearer xoxb-1", {"channel": "C1"}, {"ok": False, "error": "no_text"},
                     id="no-text"),
    ],
)  # fmt: skip
def test_chat_post_message_answers_200_with_ok_or_error(
    receiver: WebhookReceiver, authorization: str, body: dict[str, str], answer: dict[str, object]
) -> None:
    headers = {"content-type": "application/json"}
    if authorization:
        headers["authorization"] = authorization
    request = urllib.request.Request(
        f"{receiver.url}/api/chat.postMessage", json.dumps(body).encode(), headers
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
        got = json.loads(response.read())
    assert {key: got.get(key) for key in answer} == answer
    assert json.loads(receiver.deliveries[-1].reply) == got
