"""Every command the README gives a newcomer refers to things that exist.

`make demo` and `make test` themselves run in CI (`.ci/run`); cluster commands (kubectl,
kn func) cannot run here, so their paths, targets and files are checked instead.
"""

from __future__ import annotations

import re
import shlex

import pytest

from tekton_notifications.devtools.serving import ROOT

README = (ROOT / "README.md").read_text()
COMMANDS = [
    line.split("#")[0].strip()
    for block in re.findall(r"```sh\n(.*?)```", README, flags=re.S)
    for line in block.splitlines()
    if line.split("#")[0].strip() and not line.startswith(" ")
]
MAKEFILE = (ROOT / "Makefile").read_text()


def test_the_readme_gives_the_two_commands_first() -> None:
    assert COMMANDS[:2] == ["make demo", "make test"]


@pytest.mark.parametrize("command", COMMANDS)
def test_each_readme_command_refers_to_what_exists(command: str) -> None:
    words = shlex.split(command.replace("$fn", "policy-filter").rstrip("\\"))
    if words[0] == "make":
        assert re.search(rf"^{words[1]}:", MAKEFILE, flags=re.M), f"no make target {words[1]}"
    for word in words:
        if word.startswith(("crds/", "knative/", "functions/", "src/", "docs/")):
            assert (ROOT / word).exists(), word
    if words[:3] == ["kubectl", "apply", "-k"]:
        assert (ROOT / words[3] / "kustomization.yaml").is_file()
    if "--patch-file" in words:
        assert (ROOT / words[words.index("--patch-file") + 1]).is_file()


def test_ci_runs_the_readmes_test_command_and_its_demo() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
    assert "make demo" in ci
