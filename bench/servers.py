"""Start what is measured, the way it is deployed, and read what it costs (RSS, start time).

Our functions start through ``devtools.serving`` (func-python as ``kn func``'s scaffolding
runs it, or functions-framework from ``.venv-ff``); the no-op baselines start with the same
commands. Every process is a child of the benchmark and is stopped on exit.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import urllib3

from bench import BENCH, ROOT
from bench.loadgen import TOKEN, Load
from tekton_notifications import signing
from tekton_notifications.devtools import serving
from tekton_notifications.devtools.kubeapi import KubeAPIServer

FUNCTIONS = ("policy-filter", "template-renderer", "task-launcher")
NOOP = "no-op"
FF_NOOP_SOURCE = BENCH / "noop_ff.py"
FUNC_PYTHON_NOOP = BENCH / "noop"


@dataclass(frozen=True)
class Server:
    """Which server, and its settings (functions-framework's ``WORKERS``/``THREADS``)."""

    kind: str = "func-python"
    workers: int | None = None
    threads: int | None = None

    @property
    def label(self) -> str:
        if self.kind == "func-python":
            return "func-python"
        settings = f"{self.workers or 1}w x {self.threads or 4 * (os.cpu_count() or 1)}t"
        return f"functions-framework {settings}"

    def env(self) -> dict[str, str]:
        env: dict[str, str] = {}
        if self.workers:
            env["WORKERS"] = str(self.workers)
        if self.threads:
            env["THREADS"] = str(self.threads)
        return env


FUNC_PYTHON = Server()
FF_DEFAULT = Server("functions-framework")


def command(name: str, server: Server, port: int) -> tuple[list[str], Path, dict[str, str]]:
    """The command, working directory and extra environment that serve ``name``."""
    if server.kind == "func-python":
        cwd = FUNC_PYTHON_NOOP if name == NOOP else serving.FUNCTIONS / name
        env = {"LISTEN_ADDRESS": f"127.0.0.1:{port}"}
        return [sys.executable, "-c", serving.FUNC_PYTHON_MAIN], cwd, env
    source, target = (
        (FF_NOOP_SOURCE, "noop") if name == NOOP else (serving.FF_SOURCE, name.replace("-", "_"))
    )
    cmd = [
        str(serving.FF_VENV / "bin" / "functions-framework"),
        *("--source", str(source), "--target", target),
        *("--host", "127.0.0.1", "--port", str(port)),
    ]
    return cmd, ROOT, {"NOTIFICATIONS_STARTUP_WAIT": "10", **server.env()}


@dataclass
class Running:
    name: str
    server: Server
    url: str
    process: subprocess.Popen[bytes]
    started: float
    log_path: Path

    def stop(self) -> None:
        serving.stop_process(self.process)

    def rss_mb(self) -> float:
        """Resident memory of the process and its children (gunicorn's workers)."""
        return sum(_rss_kb(pid) for pid in _tree(self.process.pid)) / 1024

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]


def spawn(
    name: str, server: Server, env: Mapping[str, str], log_dir: Path, *, port: int | None = None
) -> Running:
    """Start ``name`` (a function, or ``no-op``) without waiting for it."""
    port = port or serving.free_port()
    cmd, cwd, extra = command(name, server, port)
    # Benchmarks post stage events of their own: unsigned, unless ``env`` brings a key.
    signing_env = {} if signing.ENVIRONMENT in env else dict(serving.UNSIGNED)
    environ = {**os.environ, **signing_env, **env, **extra, "PYTHONUNBUFFERED": "1"}
    log_path = log_dir / f"{name}-{server.label.replace(' ', '')}-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(cmd, cwd=cwd, env=environ, stdout=log, stderr=subprocess.STDOUT)
    return Running(name, server, f"http://127.0.0.1:{port}", process, time.perf_counter(), log_path)


def first_reply(running: Running, load: Load, *, timeout: float = 30.0) -> float:
    """Seconds from process start until ``load``'s request gets a 2xx answer."""
    pool = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=1.0, read=15.0))
    body = load.body.replace(TOKEN.encode(), b"0" * 10)
    deadline = running.started + timeout
    while time.perf_counter() < deadline:
        if running.process.poll() is not None:
            raise RuntimeError(f"{running.name} exited:\n{running.log()}")
        try:
            answer = pool.request("POST", load.url, body=body, headers=dict(load.headers))
            if 200 <= answer.status < 300:
                return time.perf_counter() - running.started
        except urllib3.exceptions.HTTPError:
            pass
        time.sleep(0.005)
    raise RuntimeError(f"{running.name}: no 2xx answer in {timeout}s:\n{running.log()}")


def send(load: Load, count: int, *, start: int = 0) -> int:
    """POST ``load`` ``count`` times in a row (each with its own token); the 2xx count."""
    pool = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=2.0, read=15.0))
    body = load.body.decode()
    ok = 0
    for n in range(start, start + count):
        text = body.replace(TOKEN, f"ff{n:08x}") if load.vary else body
        answer = pool.request("POST", load.url, body=text.encode(), headers=dict(load.headers))
        ok += 200 <= answer.status < 300
    return ok


@contextlib.contextmanager
def serve(
    name: str,
    server: Server,
    env: Mapping[str, str],
    log_dir: Path,
    load: Load | None = None,
) -> Iterator[Running]:
    """A started function, ready (answered ``load`` with a 2xx, or its readiness probe)."""
    running = spawn(name, server, env, log_dir)
    try:
        if load is not None:
            first_reply(running, Load(running.url, load.body, load.headers, load.vary))
        else:
            served = serving.ServedFunction(name, running.url, running.process, running.log_path)
            serving.wait_until_listening(served, ready=True)
        yield running
    finally:
        running.stop()


@contextlib.contextmanager
def emulator(objects: list[dict[str, Any]] = ()) -> Iterator[dict[str, str]]:  # type: ignore[assignment]
    """A Kubernetes API emulator holding ``objects``; yields the env that points to it."""
    with tempfile.TemporaryDirectory(prefix="bench-kube-") as tmp, KubeAPIServer() as api:
        for obj in objects:
            api.store.create_manifest(obj)
        kubeconfig = Path(tmp) / "kubeconfig"
        api.write_kubeconfig(kubeconfig)
        yield {"KUBECONFIG": str(kubeconfig)}


def _tree(pid: int) -> list[int]:
    found = [pid]
    for tid in _listdir(f"/proc/{pid}/task"):
        try:
            children = Path(f"/proc/{pid}/task/{tid}/children").read_text().split()
        except OSError:
            continue
        for child in children:
            found.extend(_tree(int(child)))
    return found


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0
