"""What each function imports before its first event: what it needs to answer, not what other
parts of the project use. Every import there is paid by every cold start under scale-to-zero
(``python -X importtime``: kubernetes ~0.3 s, the Rust CEL engine ~0.24 s, celpy ~0.1 s), so this
keeps the heavy ones out: the official ``kubernetes`` client (functions use kuberest), the CLI's
``click``, schema validation, the functions-framework stack, and the CEL engines (loaded when
the first policy with a ``when`` compiles, by the functions that evaluate CEL at all). No
timings here: the bench measures them; this only fails when one comes back."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tekton_notifications.devtools.serving import FUNCTIONS

#: What func's scaffolding does before the first request: import func-python, then the
#: function, and call ``new()`` (``start`` lists resources: measured by the bench).
PROBE = (
    "import json, sys\n"
    "sys.path.insert(0, '.')\n"
    "import func_python.cloudevent\n"
    "from function import new\n"
    "new()\n"
    "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
)
#: Never imported by a function before its first event.
NEVER = frozenset(
    {
        "kubernetes",
        "kubernetes_validate",
        "jsonschema",
        "click",
        "flask",
        "functions_framework",
        "requests",
        "celpy",
        "lark",
        "pendulum",
        "cel",
    }
)


@pytest.mark.parametrize(
    ("function", "also_never"),
    [
        pytest.param("policy-filter", {"jinja2"}, id="policy-filter"),
        pytest.param("template-renderer", set(), id="template-renderer-needs-jinja2"),
        pytest.param("task-launcher", {"jinja2"}, id="task-launcher"),
        pytest.param("status-recorder", {"jinja2"}, id="status-recorder"),
    ],
)
def test_a_function_starts_without_what_it_does_not_need(
    function: str, also_never: set[str]
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=FUNCTIONS / function,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    imported = set(json.loads(done.stdout.splitlines()[-1]))
    assert "tekton_notifications" in imported, "the probe imported the function"
    assert imported & (NEVER | also_never) == set()
