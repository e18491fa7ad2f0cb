"""tekton-relay: posts each Tekton event to the broker with the SinkBinding's OIDC token, so
only Tekton (which alone can reach this relay) may send Tekton events to a broker with
Knative's authentication-oidc on.

The logic lives in the tekton_notifications core (vendored as a wheel by `make build`);
this file only hands func-python a function instance.
"""

from tekton_notifications.adapters.funcpython import Function
from tekton_notifications.stages.tekton_relay import TektonRelay


def new() -> Function:
    """Called once by func-python's scaffolding (`func_python.cloudevent.serve(new)`)."""
    return Function(TektonRelay.from_environ)
