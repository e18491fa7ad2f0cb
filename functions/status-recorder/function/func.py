"""status-recorder: records Kubernetes Events for every notification outcome and keeps
NotificationPolicy and NotificationTemplate status current (Ready, match counts).

The logic lives in the tekton_notifications core (vendored as a wheel by `make build`);
this file only hands func-python a function instance.
"""

from tekton_notifications.adapters.funcpython import Function
from tekton_notifications.stages.status_recorder import StatusRecorder


def new() -> Function:
    """Called once by func-python's scaffolding (`func_python.cloudevent.serve(new)`)."""
    return Function(StatusRecorder.from_environ)
