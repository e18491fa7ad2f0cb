"""Run the functions locally the way they are deployed: func-python as ``kn func`` runs it,
or functions-framework (the portable adapter) from its own venv.

Used by the demo and the tests; a development tool, not a deployment method.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from tekton_notifications import signing

ROOT = Path(__file__).resolve().parents[3]
FUNCTIONS = ROOT / "functions"

#: What func's Python scaffolding (service/main.py) does, minus its ulimit tweak.
FUNC_PYTHON_MAIN = (
    "import logging\n"
    "from func_python.cloudevent import serve\n"
    "logging.basicConfig(level=logging.INFO)\n"
    "from function import new as handler\n"
    "serve(handler)\n"
)


#: The functions refuse to start without a signing key (signing.py). A test that posts stage
#: events of its own runs them unsigned, and says so by passing this in ``env``.
UNSIGNED: Final[Mapping[str, str]] = {signing.SWITCH: signing.DISABLED}


def signed(key: str) -> dict[str, str]:
    """The environment of functions that sign with ``key`` (as installed)."""
    return {signing.ENVIRONMENT: key}


def write_kubeconfig(path: Path, server: str) -> None:
    """A kubeconfig for a plain-HTTP API server without auth (the emulator, or nothing)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "test",
        "clusters": [{"name": "test", "cluster": {"server": server}}],
        "users": [{"name": "test", "user": {}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
    }
    path.write_text(json.dumps(config))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServedFunction:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        stop_process(self.process)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, as Knative stops a pod; SIGKILL after 10 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


FF_VENV = ROOT / ".venv-ff"
FF_SOURCE = ROOT / "src" / "tekton_notifications" / "adapters" / "portable.py"
SERVERS = ("func-python", "functions-framework")


def serve_function(
    name: str,
    env: Mapping[str, str],
    log_dir: Path,
    *,
    server: str = "func-python",
    source: Path | None = None,
    python: str = sys.executable,
    wait_ready: bool = True,
    port: int | None = None,
) -> ServedFunction:
    """Start function ``name`` in a subprocess on a free loopback port.

    ``func-python``: as kn func's scaffolding runs ``functions/<name>``. ``functions-framework``:
    the portable adapter, in its own venv (it pins cloudevents<=1.12).

    Signing is what ``env`` says, never what the calling shell has: pass :func:`signed` or
    :data:`UNSIGNED`; with neither the function refuses to start, as it would when deployed.
    """
    port = port or free_port()
    log_path = log_dir / f"{name}-{server}.log"
    inherited = {
        k: v for k, v in os.environ.items() if k not in (signing.ENVIRONMENT, signing.SWITCH)
    }
    # Metrics ports would collide between local functions; a test that wants one sets it.
    environ = {"METRICS_PORT": "0", **inherited, **env, "PYTHONUNBUFFERED": "1"}
    if server == "func-python":
        command = [python, "-c", FUNC_PYTHON_MAIN]
        cwd = source or FUNCTIONS / name
        environ["LISTEN_ADDRESS"] = f"127.0.0.1:{port}"
    else:
        command = [
            str(FF_VENV / "bin" / "functions-framework"),
            "--source",
            str(FF_SOURCE),
            "--target",
            name.replace("-", "_"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
        cwd = ROOT
        environ.setdefault("NOTIFICATIONS_STARTUP_WAIT", "5" if wait_ready else "0.5")
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=cwd, env=environ, stdout=log, stderr=subprocess.STDOUT
        )
    served = ServedFunction(name, f"http://127.0.0.1:{port}", process, log_path)
    wait_until_listening(served, ready=wait_ready)
    return served


def wait_until_listening(served: ServedFunction, *, ready: bool, timeout: float = 30.0) -> None:
    """Until the readiness probe passes (``ready``) or the liveness probe answers at all."""
    path = "/health/readiness" if ready else "/health/liveness"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if served.process.poll() is not None:
            raise RuntimeError(f"{served.name} exited:\n{served.log()}")
        try:
            with urllib.request.urlopen(served.url + path, timeout=10) as response:
                if response.status == 200:
                    return
        except urllib.error.HTTPError:
            if not ready:
                return  # it answered: it is listening
        except OSError:
            pass
        time.sleep(0.1)
    served.stop()
    raise RuntimeError(
        f"{served.name} not {'ready' if ready else 'up'} in {timeout}s:\n{served.log()}"
    )
