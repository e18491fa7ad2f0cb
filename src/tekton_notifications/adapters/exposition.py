"""Serving the metrics registry: a listening socket, so it belongs to the edge that starts a
function, not to the modules that count."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from prometheus_client import start_http_server

from tekton_notifications.metrics import REGISTRY

logger = logging.getLogger(__name__)


def serve(environ: Mapping[str, str] | None = None) -> int | None:
    """Start the metrics endpoint once per process; ``METRICS_PORT=0`` turns it off."""
    environ = os.environ if environ is None else environ
    port = int(environ.get("METRICS_PORT", "9090") or 0)
    if not port:
        return None
    try:
        start_http_server(port, addr=environ.get("METRICS_ADDRESS", "0.0.0.0"), registry=REGISTRY)
    except OSError as error:  # another process (a test, a sidecar) has the port: keep serving
        logger.warning("metrics not served on :%d: %s", port, error)
        return None
    return port
