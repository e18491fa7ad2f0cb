"""Put the function's part of ``src/tekton_notifications`` into the wheel, and nothing else."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

#: Subpackages a function never imports: the command-line tool and the local dev tools.
LEFT_OUT = frozenset({"cli", "devtools"})


class FunctionCore(BuildHookInterface):  # type: ignore[misc]  # hatchling is untyped
    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        package = Path(self.root).resolve().parents[1] / "src" / "tekton_notifications"
        if not (package / "__init__.py").is_file():
            raise RuntimeError(f"the core's sources are not at {package}")
        for path in sorted(package.rglob("*")):
            relative = path.relative_to(package)
            if (
                not path.is_file()
                or relative.parts[0] in LEFT_OUT
                or "__pycache__" in relative.parts
                or path.suffix not in (".py", ".typed", ".cache")
            ):
                continue
            build_data["force_include"][str(path)] = f"tekton_notifications/{relative}"
