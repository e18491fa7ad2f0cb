"""Rendering NotificationTemplate params: Jinja2 strings + a :class:`RunEvent` -> task params.

Owns the template sandbox and everything a template can see or do, in modules of one idea:

- ``sandbox``: the Jinja2 environment class (immutable sandbox, strict undefined, no
  autoescape, no loader, no extensions) and what a template may reach;
- ``limits``: the one budget of a render (time, steps, characters built) and how each
  operation is accounted against it;
- ``filters``: the curated filters and globals, each wrapped in its guard;
- ``instrument``: the compile-time rewriting that routes output, loops and literals through
  the limits;
- ``context``: the variables a template sees (``run``, ``event``, ``policy``, ``template``);
- ``compiling``: compiling params and rendering them, every failure a :class:`RenderError`;
- ``errors``: the reasons a render fails with.

Callers use this module's names only. Must not: do I/O of any kind (files, network,
Kubernetes, environment variables, logging), keep state between renders other than the
compile cache, know which task consumes the params, or let a template reach Python internals.
"""

from __future__ import annotations

from tekton_notifications.rendering.compiling import (
    ENV as _ENV,
)
from tekton_notifications.rendering.compiling import (
    CompiledTemplate,
    compile_template,
)
from tekton_notifications.rendering.compiling import (
    compile_source as _compile_source,
)
from tekton_notifications.rendering.context import dashboard_url, render_context
from tekton_notifications.rendering.errors import RenderError, RenderReason
from tekton_notifications.rendering.filters import (
    FILTER_NAMES,
    GLOBAL_NAMES,
    PROJECT_FILTERS,
    human_duration,
    json_escape,
    json_escape_strict,
    k8s_env_escape,
    oneline,
    shell_quote,
    shell_single_quote_escape,
    slack_escape,
)
from tekton_notifications.rendering.limits import (
    DEFAULT_SETTINGS,
    MAX_EMITTED_CHARS,
    MAX_FORMAT_WIDTH,
    MAX_INT_BITS,
    MAX_RANGE,
    MAX_VALUE_CHARS,
    RENDER_LIMIT_STRIKES,
    RenderSettings,
)
from tekton_notifications.rendering.sandbox import CONTEXT_NAMES

__all__ = [
    "CONTEXT_NAMES",
    "DEFAULT_SETTINGS",
    "FILTER_NAMES",
    "GLOBAL_NAMES",
    "MAX_EMITTED_CHARS",
    "MAX_FORMAT_WIDTH",
    "MAX_INT_BITS",
    "MAX_RANGE",
    "MAX_VALUE_CHARS",
    "PROJECT_FILTERS",
    "RENDER_LIMIT_STRIKES",
    "_ENV",
    "CompiledTemplate",
    "RenderError",
    "RenderReason",
    "RenderSettings",
    "_compile_source",
    "compile_template",
    "dashboard_url",
    "human_duration",
    "json_escape",
    "json_escape_strict",
    "k8s_env_escape",
    "oneline",
    "render_context",
    "shell_quote",
    "shell_single_quote_escape",
    "slack_escape",
]
