"""make demo checks the tools the catalog tasks' scripts call before running any, and names
what is missing, what it is for and how to install it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tekton_notifications.devtools import checktools


@pytest.mark.parametrize(
    ("present", "ok", "lines"),
    [
        pytest.param(
            ("sh",),
            False,
            [
                "missing curl: needed for the chat tasks' POST (Slack, Discord, Teams, Telegram)",
                "missing openssl: needed for a certificate for the TLS stand-ins"
                " (SMTP STARTTLS, api.telegram.org, slack.com)",
                "missing unshare: needed for Secret volumes at the path a step reads"
                " (github-set-status)",
                "install with: apt-get install -y curl openssl util-linux  (make demo-tools)",
            ],
            id="only-sh",
        ),
        pytest.param(
            ("sh", "curl"),
            True,
            [
                "missing openssl: needed for a certificate for the TLS stand-ins"
                " (SMTP STARTTLS, api.telegram.org, slack.com)",
                "missing unshare: needed for Secret volumes at the path a step reads"
                " (github-set-status)",
                "install with: apt-get install -y openssl util-linux  (make demo-tools)",
            ],
            id="optional-tools-missing",
        ),
    ],
)
def test_missing_tools_are_named_with_their_use_and_package(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    present: tuple[str, ...],
    ok: bool,
    lines: list[str],
) -> None:
    for tool in present:
        found = shutil.which(tool)
        if found is None:
            pytest.skip(f"{tool} not on this machine")
        (tmp_path / tool).symlink_to(found)
    monkeypatch.setenv("PATH", str(tmp_path))

    report = checktools.check()

    assert report.ok is ok
    assert "python3" in report.found  # the interpreter running the demo, whatever PATH says
    assert report.message().splitlines() == lines


def test_steps_find_python_and_python3_first_on_their_path(tmp_path: Path) -> None:
    environment = checktools.environment(tmp_path / "tools")
    first = environment.path.split(":")[0]
    assert {p.name for p in Path(first).iterdir()} == {"python", "python3"}
    assert (Path(first) / "python").resolve() == Path(checktools.python()).resolve()
