"""delivery-tracker: turns Tekton's finish events of notification runs into their outcome
(delivered, failed, timedOut) and their next step (a retry, the fallback template).

The logic lives in the tekton_notifications core (vendored as a wheel by `make build`);
this file only hands func-python a function instance.
"""

from tekton_notifications.adapters.funcpython import Function
from tekton_notifications.stages.delivery_tracker import DeliveryTracker


def new() -> Function:
    """Called once by func-python's scaffolding (`func_python.cloudevent.serve(new)`)."""
    return Function(DeliveryTracker.from_environ)
