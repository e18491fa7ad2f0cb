"""Posting to the broker with an identity, as served (func-python, real HTTP).

The Tekton relay posts Tekton's events unchanged with its SinkBinding's OIDC token when one
is mounted, and relays nothing else; the policy filter's fan-out carries its own
SinkBinding's token. Why: knative/overlays/sender-identity/README.md."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tekton_notifications.devtools.kubeapi import KubeAPIServer
from tekton_notifications.devtools.serving import ServedFunction
from tests.conftest import EXAMPLES, policy_object
from tests.functions.serving import CaptureServer, post_event

Serve = Callable[..., ServedFunction]
FAILED = json.loads((EXAMPLES / "events" / "03-pipelinerun-failed.json").read_text())
TOKEN = "eyJhbGciOiJSUzI1NiJ9.e30.c2lnbmF0dXJl"


def post(function: ServedFunction, cloudevent: dict[str, Any]) -> tuple[int, str]:
    attributes = {k: str(v) for k, v in cloudevent.items() if k != "data"}
    reply = post_event(function.url, attributes, cloudevent["data"])
    return reply.status, reply.detail


@pytest.fixture
def server() -> str:
    """The relay runs as a plain Deployment under func-python (not ``kn func deploy``), and
    one server is enough to show the fan-out's Authorization header: func-python only."""
    return "func-python"


@pytest.fixture
def relay(
    served: Serve, server: str, broker_sink: CaptureServer, tmp_path: Path
) -> Callable[..., ServedFunction]:

    def start(token: str | None) -> ServedFunction:
        path = tmp_path / "oidc-token"
        if token is not None:
            path.write_text(token + "\n")
        sink = f"http://127.0.0.1:{broker_sink._server.server_address[1]}"
        return served("tekton-relay", K_SINK=sink, OIDC_TOKEN_FILE=str(path))

    return start


@pytest.mark.parametrize(
    ("token", "authorization"),
    [
        pytest.param(TOKEN, f"Bearer {TOKEN}", id="oidc-on-token-sent"),
        pytest.param(None, None, id="oidc-off-no-token-mounted"),
    ],
)
def test_a_tekton_event_is_posted_unchanged(
    relay: Callable[..., ServedFunction],
    broker_sink: CaptureServer,
    token: str | None,
    authorization: str | None,
) -> None:
    status, detail = post(relay(token), FAILED)
    assert status == 202, detail
    ((headers, body),) = broker_sink.received
    assert headers.get("authorization") == authorization
    assert headers["ce-type"] == FAILED["type"]
    assert headers["ce-id"] == FAILED["id"]
    assert headers["ce-source"] == FAILED["source"]
    assert json.loads(body) == FAILED["data"]


@pytest.mark.parametrize(
    ("event_type", "status"),
    [
        pytest.param("dev.tekton.notification.matched.v1", 400, id="a-stage-event"),
        pytest.param("com.example.anything", 400, id="a-foreign-event"),
    ],
)
def test_only_tekton_event_types_are_relayed(
    relay: Callable[..., ServedFunction], broker_sink: CaptureServer, event_type: str, status: int
) -> None:
    answer, detail = post(relay(TOKEN), {**FAILED, "type": event_type})
    assert answer == status
    assert "only dev.tekton.event.* is relayed" in detail
    assert broker_sink.received == []


@pytest.mark.parametrize("refusal", [401, 403, 503], ids=["no-token", "eventpolicy", "down"])
def test_a_broker_refusal_asks_tekton_to_retry(
    relay: Callable[..., ServedFunction], broker_sink: CaptureServer, refusal: int
) -> None:
    broker_sink.status = refusal
    status, detail = post(relay(TOKEN), FAILED)
    assert status == 503
    assert f"answered {refusal}" in detail


def test_the_policy_filter_fans_out_with_its_sinkbinding_token(
    kubeapi: KubeAPIServer,
    kubeconfig: Path,
    served: Serve,
    server: str,
    broker_sink: CaptureServer,
    tmp_path: Path,
) -> None:
    kubeapi.store.create(
        "notifications.tekton.dev",
        "v1alpha1",
        "notificationpolicies",
        "ci",
        policy_object("two", templates=["slack", "email"]),
    )
    (tmp_path / "token").write_text(TOKEN)
    sink = f"http://127.0.0.1:{broker_sink._server.server_address[1]}"
    function = served(
        "policy-filter",
        KUBECONFIG=str(kubeconfig),
        K_SINK=sink,
        OIDC_TOKEN_FILE=str(tmp_path / "token"),
    )
    status, detail = post(function, FAILED)
    assert (status, detail) == (202, "published 2 matches")
    assert [h.get("authorization") for h, _ in broker_sink.received] == [f"Bearer {TOKEN}"] * 2
