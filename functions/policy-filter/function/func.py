"""policy-filter: matches each Tekton run event against the NotificationPolicies and emits one
matched event per policy and template.

The logic lives in the tekton_notifications core (vendored as a wheel by `make build`);
this file only hands func-python a function instance.
"""

from tekton_notifications.adapters.funcpython import Function
from tekton_notifications.stages.policy_filter import PolicyFilter


def new() -> Function:
    """Called once by func-python's scaffolding (`func_python.cloudevent.serve(new)`)."""
    return Function(PolicyFilter.from_environ)
