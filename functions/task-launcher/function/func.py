"""task-launcher: creates the rendered TaskRun or PipelineRun, once, however often the event is
delivered.

The logic lives in the tekton_notifications core (vendored as a wheel by `make build`);
this file only hands func-python a function instance.
"""

from tekton_notifications.adapters.funcpython import Function
from tekton_notifications.stages.task_launcher import TaskLauncher


def new() -> Function:
    """Called once by func-python's scaffolding (`func_python.cloudevent.serve(new)`)."""
    return Function(TaskLauncher.from_environ)
