"""The local end-to-end demo: Tekton events in, notification TaskRuns out, no cluster needed.

Starts the three functions as real HTTP servers (func-python, as ``kn func`` runs them), the
local event router driven by the Triggers in ``knative/``, and a Kubernetes API emulator
preloaded with ``examples/``; then sends Tekton CloudEvents in binary mode, as Tekton does,
and prints what each one caused. ``--kubeconfig`` points the same chain at a real cluster.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any, TextIO

import urllib3
from kubernetes import client

from tekton_notifications import kube, types
from tekton_notifications.devtools.display import EventDisplay
from tekton_notifications.devtools.kubeapi import KubeAPIServer
from tekton_notifications.devtools.router import EventRouter
from tekton_notifications.devtools.serving import ROOT, SERVERS, free_port, serve_function
from tekton_notifications.notifications import OutgoingEvent
from tekton_notifications.sink import binary_message

FUNCTIONS = ("policy-filter", "template-renderer", "task-launcher")
MANAGED = f"{types.MANAGED_BY_LABEL}={types.MANAGED_BY_VALUE}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__.splitlines()[0])
    parser.add_argument(
        "events",
        nargs="*",
        type=Path,
        help="Tekton CloudEvent JSON files or folders (default: examples/events)",
    )
    parser.add_argument(
        "--kubeconfig",
        type=Path,
        help="use this cluster instead of the emulator (policies must exist)",
    )
    parser.add_argument(
        "--examples",
        type=Path,
        default=ROOT / "examples",
        help="policies and templates to load into the emulator",
    )
    parser.add_argument(
        "--knative",
        type=Path,
        default=ROOT / "knative",
        help="the manifests whose Triggers the router follows",
    )
    parser.add_argument("--server", choices=SERVERS, default="func-python")
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "demo-out",
        help="function logs and the dead-letter file go here",
    )
    parser.add_argument(
        "--dashboard-url",
        default="https://tekton.example.com",
        help="Tekton Dashboard base URL for links in messages",
    )
    args = parser.parse_args(argv)
    files = event_files(args.events or [ROOT / "examples" / "events"])
    if not files:
        parser.error("no event files found")
    return run(files, args=args, out=sys.stdout)


def event_files(paths: Sequence[Path]) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        found.extend(sorted(path.glob("*.json")) if path.is_dir() else [path])
    return found


def run(files: Sequence[Path], *, args: argparse.Namespace, out: TextIO) -> int:
    args.out.mkdir(parents=True, exist_ok=True)
    dead_letter_file = args.out / "dead-letters.jsonl"
    dead_letter_file.unlink(missing_ok=True)
    say = lambda text="": print(text, file=out, flush=True)  # noqa: E731
    with ExitStack() as stack:
        if args.kubeconfig:
            kubeconfig = args.kubeconfig
            say(f"Cluster: {kubeconfig} (policies and templates as they are there)")
        else:
            emulator = stack.enter_context(KubeAPIServer())
            count = emulator.load_manifests(args.examples / "policies", args.examples / "templates")
            kubeconfig = args.out / "kubeconfig"
            emulator.write_kubeconfig(kubeconfig)
            say(f"Kubernetes API emulator: {emulator.url} ({count} objects from {args.examples})")
        failures, dead_letters = EventDisplay(), EventDisplay()
        for display in (failures, dead_letters):
            display.start()
            stack.callback(display.stop)
        ports = {name: free_port() for name in FUNCTIONS}
        router = EventRouter(
            args.knative,
            {
                **{name: f"http://127.0.0.1:{port}" for name, port in ports.items()},
                "notification-failures": failures.url,
                "notification-dead-letters": dead_letters.url,
            },
            dead_letter_path=dead_letter_file,
            time_scale=0.2,
        )
        broker = router.start()
        stack.callback(router.stop)
        say(f"Event router (Triggers from {args.knative}): broker ingress {broker}")
        env = {
            "KUBECONFIG": str(kubeconfig),
            "K_SINK": broker,
            "TEKTON_DASHBOARD_URL": args.dashboard_url,
        }
        for name in FUNCTIONS:
            served = serve_function(name, env, args.out, server=args.server, port=ports[name])
            stack.callback(served.stop)
            say(f"Function {name} ({args.server}): {served.url}, log {served.log_path}")
        api = kube.api_client({"KUBECONFIG": str(kubeconfig)})
        say()
        for number, path in enumerate(files, 1):
            cloudevent = json.loads(path.read_text())
            before = {run["metadata"]["name"] for run in notification_runs(api)}
            failures_before = len(failures.events)
            letters_before = len(router.dead_letters)
            status = send(broker, cloudevent)
            router.wait_idle(timeout=60)
            new_runs = [r for r in notification_runs(api) if r["metadata"]["name"] not in before]
            report(
                say,
                number,
                len(files),
                path,
                cloudevent,
                status,
                new_runs,
                failures.events[failures_before:],
                router.dead_letters[letters_before:],
            )
        runs = notification_runs(api)
        say(
            f"Done: {len(files)} events, {len(runs)} notification runs, "
            f"{len(failures.events)} failed notifications, {len(router.dead_letters)} dead letters."
        )
        say(f"Logs in {args.out}/; dead letters in {dead_letter_file}.")
    return 0


def send(broker: str, cloudevent: dict[str, Any]) -> int:
    """POST in binary content mode, as Tekton's cloud event sender does."""
    attributes = {k: str(v) for k, v in cloudevent.items() if k != "data"}
    headers, body = binary_message(OutgoingEvent(attributes, cloudevent.get("data") or {}))
    response = urllib3.request("POST", broker, body=body, headers=headers, timeout=10)
    return int(response.status)


def notification_runs(api: client.ApiClient) -> list[dict[str, Any]]:
    objects = client.CustomObjectsApi(api)
    found: list[dict[str, Any]] = []
    for plural in ("taskruns", "pipelineruns"):
        listing = objects.list_cluster_custom_object(
            "tekton.dev", "v1", plural, label_selector=MANAGED
        )
        found.extend(listing.get("items") or [])
    return found


def report(
    say: Any,
    number: int,
    total: int,
    path: Path,
    cloudevent: dict[str, Any],
    status: int,
    runs: list[dict[str, Any]],
    failures: list[dict[str, Any]],
    dead_letters: list[dict[str, Any]],
) -> None:
    data = cloudevent.get("data") or {}
    kind, run = next(iter(data.items())) if isinstance(data, dict) and data else ("?", {})
    metadata = run.get("metadata", {}) if isinstance(run, dict) else {}
    conditions = (run.get("status", {}) or {}).get("conditions") or [{}]
    event_name = cloudevent["type"].split(".")[-2]
    say(
        f"━━ {number}/{total} {path.name}: {kind[0].upper()}{kind[1:]} "
        f"{metadata.get('namespace')}/{metadata.get('name')} {event_name}"
        f" ({conditions[0].get('reason') or '-'}), broker answered {status}"
    )
    for created in runs:
        labels = created["metadata"]["labels"]
        spec = created["spec"]
        ref = spec.get("taskRef") or spec.get("pipelineRef") or {}
        say(
            f"   ✔ policy {labels[f'{types.GROUP}/policy']} → template "
            f"{labels[f'{types.GROUP}/template']}"
        )
        say(
            f"     created {created['kind']} {created['metadata']['namespace']}/"
            f"{created['metadata']['name']} ({ref.get('name') or ref.get('resolver')})"
        )
        for param in spec.get("params", []):
            say(f"       {param['name']:<16} = {_indent(param['value'])}")
    for failed in failures:
        payload = failed.get("data") or {}
        error = payload.get("error", {})
        say(
            f"   ✘ policy {payload.get('policy', {}).get('name')} → template "
            f"{payload.get('templateRef', {}).get('name')}: {error.get('stage')} failed, "
            f"{error.get('reason')}: {error.get('message')}"
        )
    for letter in dead_letters:
        say(
            f"   ☠ dead letter: {letter.get('type')} to {letter.get('knativeerrordest')} "
            f"(code {letter.get('knativeerrorcode')})"
        )
    if not (runs or failures or dead_letters):
        say("   · no policy matched (or the notification already existed)")
    say()


def _indent(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text.replace("\n", "\n" + " " * 26)


if __name__ == "__main__":
    raise SystemExit(main())
