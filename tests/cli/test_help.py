"""Every command documents itself (`--help`, examples, exit codes), and `tkn-notify` is the
installed script that tkn runs as its `notify` plugin."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from tests.cli.conftest import Invoke

COMMANDS = ["explain", "render", "lint", "history", "schema"]


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_the_group_lists_every_command_and_the_exit_codes(invoke: Invoke, flag: str) -> None:
    result = invoke(flag)

    assert result.exit_code == 0
    for command in COMMANDS:
        assert f"  {command} " in result.stdout
    assert "Exit codes: 0 ok / matched, 1 no match or problems found, 2 usage or input" in (
        " ".join(result.stdout.split())
    )


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_options_examples_and_exit_codes(
    invoke: Invoke, command: str
) -> None:
    result = invoke(command, "--help")

    assert result.exit_code == 0
    assert result.stdout.startswith(f"Usage: cli {command} ")
    assert "-o, --output [text|json|yaml]" in result.stdout
    assert "Example" in result.stdout
    assert "Exit codes: 0" in result.stdout


def test_an_unknown_option_is_a_usage_error_with_exit_code_2(invoke: Invoke) -> None:
    result = invoke("explain", "--no-such-option")

    assert result.exit_code == 2


def test_the_console_script_is_tkn_notify_so_tkn_finds_it_as_a_plugin() -> None:
    (script,) = [ep for ep in entry_points(group="console_scripts") if ep.name == "tkn-notify"]

    assert script.value == "tekton_notifications.cli:main"


def test_the_installed_script_runs() -> None:
    script = Path(sys.executable).with_name("tkn-notify")
    if not script.exists():
        pytest.skip(f"{script} not installed (run `make install`)")

    result = subprocess.run(
        [str(script), "lint", "--help"], capture_output=True, text=True, check=False, timeout=60
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: tkn-notify lint ")


def test_python_dash_m_runs_the_same_cli() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tekton_notifications.cli", "--version"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("tkn-notify, version ")
