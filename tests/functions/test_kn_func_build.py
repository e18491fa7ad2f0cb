"""Each function builds and serves the way ``kn func deploy`` does it.

The buildpack sees only ``functions/<name>/`` and installs its ``pyproject.toml``; func's
scaffolding then imports ``new`` from the installed ``function`` package and calls
``func_python.cloudevent.serve``. This test does the same in a fresh venv, with the core
reaching the build context as a wheel in ``vendor/`` (what ``make build`` puts there).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import jsonschema
import pytest
import yaml

from tekton_notifications.devtools.kubeapi import KubeAPIServer
from tekton_notifications.devtools.serving import FUNCTIONS, ROOT, UNSIGNED, serve_function
from tests.conftest import SCHEMAS, load_cloudevent, policy_object
from tests.functions.serving import post_cloudevent

NAMES = ("policy-filter", "template-renderer", "task-launcher", "status-recorder", "scheduler")
#: (min, max) replicas: the chain scales to zero; the status recorder is the one writer of
#: status, kept up; the scheduler wakes on a ping every few minutes, one at a time.
SCALE = {"status-recorder": (1, 1), "scheduler": (0, 1)}
FUNC_SCHEMA = SCHEMAS / "func_yaml-schema.json"


def project_version() -> str:
    for line in (ROOT / "pyproject.toml").read_text().splitlines():
        if line.startswith("version = "):
            return line.split('"')[1]
    raise AssertionError("no version in pyproject.toml")


@pytest.mark.reference("schemas/func_yaml-schema.json")
@pytest.mark.parametrize("name", NAMES)
def test_func_yaml_validates_against_knative_funcs_schema(name: str) -> None:
    func_yaml = yaml.safe_load((FUNCTIONS / name / "func.yaml").read_text())
    func_yaml["created"] = func_yaml["created"].isoformat()  # YAML reads it as a datetime
    jsonschema.validate(func_yaml, json.loads(FUNC_SCHEMA.read_text()))
    assert func_yaml["name"] == name
    assert (func_yaml["runtime"], func_yaml["invoke"]) == ("python", "cloudevent")
    scale = func_yaml["deploy"]["options"]["scale"]
    assert (scale["min"], scale.get("max")) == SCALE.get(name, (0, 10))
    assert func_yaml["deploy"]["options"]["resources"]["requests"]


@pytest.mark.parametrize("name", NAMES)
def test_the_function_pyproject_pulls_the_core_from_its_own_vendor_folder(name: str) -> None:
    text = (FUNCTIONS / name / "pyproject.toml").read_text()
    assert 'name = "function"' in text
    wheel = f"tekton_notifications-{project_version()}-py3-none-any.whl"
    assert f"{{root:uri}}/vendor/{wheel}" in text
    assert "vendor/" in (ROOT / ".gitignore").read_text()


@pytest.mark.parametrize("name", NAMES)
def test_the_function_pyprojects_differ_only_in_their_description_and_path(name: str) -> None:
    """Why building one of them like kn func does (below) stands for all of them."""

    def without_names(function: str) -> list[str]:
        text = (FUNCTIONS / function / "pyproject.toml").read_text()
        return [
            line.replace(function, "<function>")
            for line in text.splitlines()
            if not line.startswith("description = ")
        ]

    assert without_names(name) == without_names("policy-filter")


@pytest.fixture(scope="module")
def core_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--wheel-dir",
            str(out),
            str(ROOT / "packaging" / "function-core"),
        ],
        check=True,
    )
    (wheel,) = out.glob("*.whl")
    assert wheel.name == f"tekton_notifications-{project_version()}-py3-none-any.whl"
    return wheel


def build_like_kn_func(name: str, wheel: Path, workdir: Path) -> Path:
    """Copy the function alone, vendor the core, install it into a fresh venv: its python."""
    context = workdir / "f"
    shutil.copytree(FUNCTIONS / name, context, ignore=shutil.ignore_patterns("vendor", "tests"))
    (context / "vendor").mkdir()
    shutil.copy(wheel, context / "vendor" / wheel.name)
    venv = workdir / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "func-python", str(context)], check=True
    )
    return python


def test_the_vendored_core_holds_what_a_function_runs_and_nothing_else(core_wheel: Path) -> None:
    with zipfile.ZipFile(core_wheel) as wheel:
        names = wheel.namelist()
        metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
        requires = [
            line.split(":", 1)[1].strip()
            for line in wheel.read(metadata).decode().splitlines()
            if line.startswith("Requires-Dist:")
        ]
    packages = {n.split("/")[1] for n in names if n.startswith("tekton_notifications/")}
    assert {"stages", "adapters", "matching.py", "kube.py", "wire.py"} <= packages
    assert not packages & {"cli", "devtools", "crds", "samples"}
    unconditional = {re.split(r"[<>=;\[ ]", r)[0] for r in requires if "extra ==" not in r}
    assert not unconditional & {"click", "jsonschema", "kubernetes-validate", "hypothesis"}
    # Every module the wheel holds is in the source tree: nothing stale or generated.
    for name in names:
        if name.startswith("tekton_notifications/"):
            assert (ROOT / "src" / name).is_file(), name


@pytest.mark.slow
# One of the seven: their pyprojects differ only in name (a test above holds so), and each
# build is a fresh venv (~1 min on CI), which the suite's ten minutes cannot pay seven times.
# Each function's own smoke test (make test) serves it from its folder as kn func does.
# pip installs func-python from the index into that venv: 90 s here on a busy two-core
# machine, over the suite's 120 s default when the wheel is built in the same test.
@pytest.mark.timeout(600)
@pytest.mark.parametrize("name", ["policy-filter"])
def test_the_built_function_serves_cloudevents(name: str, core_wheel: Path, tmp_path: Path) -> None:
    python = build_like_kn_func(name, core_wheel, tmp_path)
    elsewhere = tmp_path / "run"  # not the source folder: `function` must come from the venv
    elsewhere.mkdir()
    with KubeAPIServer() as kubeapi:
        kubeapi.store.create(
            "notifications.tekton.dev",
            "v1alpha1",
            "notificationpolicies",
            "ci",
            policy_object("failed-pipelines"),
        )
        kubeconfig = tmp_path / "kubeconfig"
        kubeapi.write_kubeconfig(kubeconfig)
        served = serve_function(
            name,
            {"KUBECONFIG": str(kubeconfig), **UNSIGNED},
            tmp_path,
            python=str(python),
            source=elsewhere,
        )
        try:
            reply = post_cloudevent(served.url, load_cloudevent("08-pipelinerun-failed.json"))
        finally:
            served.stop()
    # The function served without the CLI's and dev tools' packages even installed.
    for absent in (
        "click",
        "jsonschema",
        "tekton_notifications.cli",
        "tekton_notifications.devtools",
    ):
        found = subprocess.run(
            [str(python), "-c", f"import importlib.util as u; print(u.find_spec({absent!r}))"],
            capture_output=True,
            text=True,
            check=False,
            env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        )
        assert found.stdout.strip() == "None", (absent, found.stdout, found.stderr)
    if name == "policy-filter":
        assert reply.type == "dev.tekton.notification.matched.v1", served.log()
    else:  # a Tekton event is not theirs: acknowledged, ignored
        assert (reply.status, reply.type) == (202, None), served.log()
