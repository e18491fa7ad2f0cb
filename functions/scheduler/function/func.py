"""scheduler: woken by a PingSource, sends the reminders and digests that are due.

The logic lives in the tekton_notifications core (vendored as a wheel by `make build`);
this file only hands func-python a function instance.
"""

from tekton_notifications.adapters.funcpython import Function
from tekton_notifications.stages.scheduler import Scheduler


def new() -> Function:
    """Called once by func-python's scaffolding (`func_python.cloudevent.serve(new)`)."""
    return Function(Scheduler.from_environ)
