"""A local CloudEvents router that routes like a Knative broker. It is a development tool.

It is not a production broker. It keeps everything in one process and in memory, with no
persistence, authentication or TLS on ingress, and no ordering guarantees. It exists so that the
local demo and the end-to-end tests route events exactly as the manifests in ``knative/`` say.
It reads the Broker and the Triggers from those YAML files: the files that
``kubectl apply -k`` would apply, following ``kustomization.yaml`` ``resources``. A wrong Trigger
in ``knative/`` therefore breaks local routing too.

What it emulates, from Knative Eventing's multi-tenant channel-based broker (v1.15+):

- Ingress answers 202 to a valid CloudEvent (binary or structured) and 400 to anything else.
  It also answers 400 to an event whose ``knativebrokerttl`` has run out.
- Triggers: ``filters`` (exact, prefix, suffix, all, any, not; AND-ed) when non-empty, else
  ``filter.attributes`` (exact; ``""`` means any value but set), else every event.
  ``cesql`` is rejected when the manifests are loaded.
- Delivery to each matching Trigger's subscriber runs concurrently, in binary content mode.
  ``knativebrokerttl`` is stripped first.
- Retries follow the Trigger's ``delivery``, which replaces the Broker's as a whole. Connection
  errors, timeouts, 5xx, 404, 408, 409 and 429 are retried; other statuses go straight to
  the dead-letter sink. The backoff matches Knative's: before retry *n*, exponential waits
  ``backoffDelay * 2**(n-1)`` and linear waits ``backoffDelay * (n-1)``. Delays are multiplied
  by ``time_scale``; timeouts are not.
- Replies: a 2xx answer carrying a CloudEvent is fed back into the broker. Its TTL is the
  delivered event's, and ingress decrements it, so a reply loop ends. A 2xx with a non-empty
  body that is not a CloudEvent is a bad reply. Knative counts it as 502, and so does this.
- Dead letters are written as structured CloudEvents with ``knativeerrordest``,
  ``knativeerrorcode`` (0 means no response) and ``knativeerrordata``. The last is the base64 of
  the response body, cut to 1024 characters as Knative does. They are kept in ``dead_letters``
  and appended as JSON lines to ``dead_letter_path``. If ``subscribers`` maps the dead-letter
  sink's name, each dead letter is also POSTed there once, in binary mode.

- PingSources (``devtools/router/pings.py``): their pings go to the Broker when asked
  (:meth:`EventRouter.ping`), not on their cron schedule by themselves.

Not emulated: ``cesql``, ``Retry-After``, OIDC and EventPolicies, cross-namespace brokers,
and kustomize features other than ``resources``.

Use::

    urls = {"policy-filter": "http://127.0.0.1:8081/", "template-renderer": ..., ...}
    with EventRouter(Path("knative"), urls, dead_letter_path=Path("dead-letters.jsonl")) as router:
        ...  # give the functions K_SINK=router.url; POST Tekton events to router.url
        router.wait_idle()
"""

from tekton_notifications.devtools.router.delivery import (
    BAD_REPLY_STATUS,
    DEFAULT_TIMEOUT,
    RETRYABLE_STATUSES,
    TTL_EXTENSION,
    Delivery,
    EventRouter,
)
from tekton_notifications.devtools.router.filters import Filter, matches, parse_filters
from tekton_notifications.devtools.router.manifests import (
    BrokerSpec,
    DeliverySpec,
    Trigger,
    load_objects,
    load_triggers,
    manifest_files,
    parse_duration,
)
from tekton_notifications.devtools.router.pings import PingSource, load_ping_sources

__all__ = [
    "BAD_REPLY_STATUS",
    "DEFAULT_TIMEOUT",
    "RETRYABLE_STATUSES",
    "TTL_EXTENSION",
    "BrokerSpec",
    "Delivery",
    "DeliverySpec",
    "EventRouter",
    "Filter",
    "PingSource",
    "Trigger",
    "load_objects",
    "load_ping_sources",
    "load_triggers",
    "manifest_files",
    "matches",
    "parse_duration",
    "parse_filters",
]
