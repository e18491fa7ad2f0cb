"""The tools the catalog tasks' scripts call, found on this machine or named as missing.

The images the notification tasks run in give them ``sh``, ``curl`` and ``python``/``python3``;
run locally, the step runner takes them from this machine. ``check()`` says which are missing
and how to install them (``make demo`` prints it and runs no step without them);
``environment()`` builds the PATH the steps see: a folder where ``python`` and ``python3`` are
the interpreter running the demo (as in a python image, whatever pyenv or Debian calls it),
before this machine's PATH.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from tekton_notifications.devtools.steprunner import Environment

#: Tool -> what the scripts use it for, and the Debian package that brings it.
REQUIRED: Final = {
    "sh": ("every shell step (#!/bin/sh, #!/usr/bin/env sh)", "dash"),
    "curl": ("the chat tasks' POST (Slack, Discord, Teams, Telegram)", "curl"),
    "python3": ("sendmail and the GitHub tasks (#!/usr/bin/env python3)", "python3"),
}
#: Needed for some scenes only: TLS stand-ins and Secret volumes.
OPTIONAL: Final = {
    "openssl": (
        "a certificate for the TLS stand-ins (SMTP STARTTLS, api.telegram.org, slack.com)",
        "openssl",
    ),
    "unshare": ("Secret volumes at the path a step reads (github-set-status)", "util-linux"),
}


@dataclass(frozen=True)
class ToolReport:
    found: dict[str, str]
    missing: dict[str, str]  # tool -> explanation

    @property
    def ok(self) -> bool:
        return not any(tool in REQUIRED for tool in self.missing)

    def message(self) -> str:
        if not self.missing:
            return "tools: " + ", ".join(f"{k} ({v})" for k, v in self.found.items())
        lines = [f"missing {tool}: needed for {why}" for tool, why in self.missing.items()]
        packages = sorted({(REQUIRED | OPTIONAL)[tool][1] for tool in self.missing})
        lines.append(f"install with: apt-get install -y {' '.join(packages)}  (make demo-tools)")
        return "\n".join(lines)


def check() -> ToolReport:
    found: dict[str, str] = {}
    missing: dict[str, str] = {}
    for tool, (why, _) in (REQUIRED | OPTIONAL).items():
        path = shutil.which(tool)
        if tool == "python3":
            path = python()
        if tool == "unshare" and path and not _namespaces_work(path):
            missing[tool] = f"{why} (present, but this machine refuses mount namespaces)"
            continue
        if path:
            found[tool] = path
        else:
            missing[tool] = why
    return ToolReport(found, missing)


def python() -> str:
    """The real interpreter behind this process (not a venv's or pyenv's wrapper)."""
    base = Path(sys.base_prefix) / "bin" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    return str(base) if base.exists() else sys.executable


def environment(folder: Path, extra: dict[str, str] | None = None) -> Environment:
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("python", "python3"):
        link = folder / name
        if not link.exists():
            link.symlink_to(python())
    return Environment(path=f"{folder}{os.pathsep}{os.environ.get('PATH', '')}", extra=extra or {})


def _namespaces_work(unshare: str) -> bool:
    user = [] if os.geteuid() == 0 else ["--map-root-user"]
    try:
        done = subprocess.run(
            [unshare, "--mount", *user, "true"], capture_output=True, timeout=10, check=False
        )
    except OSError:
        return False
    return done.returncode == 0
