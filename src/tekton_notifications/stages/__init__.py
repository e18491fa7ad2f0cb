"""The stages of the chain, each a thin engine over the pure core.

policy-filter (Tekton events in, ``matched`` out), template-renderer (``rendered``),
task-launcher (the run created, ``launched``), status-recorder (Events and policy status), and
tekton-relay (Tekton's events forwarded to the broker with an identity), and scheduler (woken
by a PingSource: reminders and digests that are due, as ``matched``). A stage turns one
incoming CloudEvent (plain attributes and data) into a :class:`base.Response`; the adapters
in :mod:`tekton_notifications.adapters` put that on the wire. What stages share is in
:mod:`.skeleton` (informers, readiness, the opening of every notification stage) and
:mod:`tekton_notifications.caches` (keys and parse-on-change caches); a stage keeps its own
decision and its error policy: 4xx for what can never succeed, 5xx to be retried.
"""
