"""Tekton relay: Tekton's events in, the same events posted to the broker with an identity.

Tekton's events controller sends plain HTTP without a token, which a broker with Knative's
``authentication-oidc`` refuses (401). The relay runs where only Tekton's controllers can reach
it (knative/overlays/sender-identity: a NetworkPolicy) and posts each event to ``K_SINK`` with
its SinkBinding's OIDC token, so the broker's EventPolicies can admit Tekton's events from it
and from nothing else. It forwards only Tekton's event types and changes nothing in them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from tekton_notifications import sink
from tekton_notifications.notifications import OutgoingEvent
from tekton_notifications.stages.base import Response, accepted, rejected, unavailable
from tekton_notifications.stages.skeleton import Informed

#: What Tekton sends (dev.tekton.event.<kind>.<event>.v1); anything else is not relayed.
TEKTON_TYPES = "dev.tekton.event."

#: (target, events, token) -> None; raises sink.PublishError.
Publisher = Callable[..., None]


class TektonRelay(Informed):
    """No informers, no state: the skeleton's start and stop do nothing; ready is K_SINK."""

    name = "tekton-relay"

    def __init__(
        self,
        target: str,
        *,
        token: Callable[[], str | None] = sink.oidc_token,
        publish: Publisher = sink.publish,
    ) -> None:
        super().__init__()
        self._target, self._token, self._publish = target, token, publish

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> TektonRelay:
        """``K_SINK`` and the token come from the SinkBinding; ``OIDC_TOKEN_FILE`` moves the
        token file (tests, or a mount elsewhere)."""
        path = environ.get("OIDC_TOKEN_FILE") or sink.OIDC_TOKEN_FILE
        return cls(environ.get("K_SINK", ""), token=lambda: sink.oidc_token(path))

    def ready(self) -> tuple[bool, str]:
        if not self._target:
            return False, "K_SINK is not set: is the SinkBinding tekton-relay ready?"
        return True, f"relaying to {self._target}"

    def respond(self, attributes: Mapping[str, str], data: object) -> Response:
        kind = attributes.get("type", "")
        if not kind.startswith(TEKTON_TYPES):
            return rejected(f"{kind!r} is not a Tekton event type; only {TEKTON_TYPES}* is relayed")
        if not isinstance(data, Mapping):
            return rejected(f"{kind} {attributes.get('id')}: data is not a JSON object")
        if not self._target:
            return unavailable("K_SINK is not set")
        events: Sequence[OutgoingEvent] = [OutgoingEvent(dict(attributes), data)]
        try:
            self._publish(self._target, events, token=self._token())
        except sink.PublishError as error:
            return unavailable(str(error))
        return accepted(f"relayed {kind} {attributes.get('id')}")
