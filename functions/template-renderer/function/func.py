"""template-renderer: renders the NotificationTemplate of a matched event into the TaskRun or
PipelineRun to create.

The logic lives in the tekton_notifications core (vendored as a wheel by `make build`);
this file only hands func-python a function instance.
"""

from tekton_notifications.adapters.funcpython import Function
from tekton_notifications.stages.template_renderer import TemplateRenderer


def new() -> Function:
    """Called once by func-python's scaffolding (`func_python.cloudevent.serve(new)`)."""
    return Function(TemplateRenderer.from_environ)
