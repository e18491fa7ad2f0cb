"""The three stages of the chain, each a thin engine over the pure core.

A stage turns one incoming CloudEvent (plain attributes and data) into a :class:`Response`;
the adapters in :mod:`tekton_notifications.adapters` put that on the wire. Stages own their
Kubernetes caches and the error policy: 4xx for what can never succeed, 5xx to be retried.
"""
