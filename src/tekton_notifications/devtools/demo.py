"""The local end-to-end demo: Tekton events in, notification TaskRuns out, no cluster needed.

Starts the three functions as real HTTP servers (func-python, as ``kn func`` runs them), the
local event router driven by the Triggers in ``knative/``, and a Kubernetes API emulator
preloaded with ``examples/``; then sends Tekton CloudEvents in binary mode, as Tekton does,
and prints what each one caused. ``--kubeconfig`` points the same chain at a real cluster.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from tekton_notifications import signing, vocabulary
from tekton_notifications.devtools import (
    checktools,
    demo_failure_context,
    demo_scheduler,
    demo_subscriptions,
    printercolumns,
)
from tekton_notifications.devtools.chain import LocalChain
from tekton_notifications.devtools.demo_delivery import DeliveryScene, follows
from tekton_notifications.devtools.serving import ROOT, SERVERS
from tekton_notifications.devtools.standins import StandIns


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout) -> int:
    parser = argparse.ArgumentParser(prog="make demo", description=(__doc__ or "").split("\n")[0])
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
        "--no-delivery",
        action="store_true",
        help="create the notification runs but do not run them (no stand-ins)",
    )
    parser.add_argument(
        "--dashboard-url",
        default="dashboard=https://tekton.example.com,results=https://results.tekton.example.com",
        help="Tekton Dashboard base URL for links in messages (or dashboard=URL,results=URL)",
    )
    args = parser.parse_args(argv)
    files = event_files(args.events or [ROOT / "examples" / "events"])
    if not files:
        parser.error("no event files found")

    def say(text: str = "") -> None:
        print(text, file=out, flush=True)

    tools = checktools.check()
    deliver = not args.no_delivery and args.kubeconfig is None and tools.ok
    if not args.no_delivery and args.kubeconfig is None:
        say(tools.message() + ("" if tools.ok else "\n→ the notification runs are not run"))
    stack = ExitStack()
    clock = demo_scheduler.clock(args.out)  # the emulator's: the scheduler scene moves it
    scene = DeliveryScene(stack.enter_context(StandIns(args.out))) if deliver else None
    chain = LocalChain(
        args.out,
        knative=args.knative,
        kubeconfig=args.kubeconfig,
        server=args.server,
        manifests=(
            args.examples / "policies",
            args.examples / "templates",
            args.examples / "cluster",
        ),
        # As installed: the functions sign what they send each other (signing.py).
        env={
            "TEKTON_DASHBOARD_URL": args.dashboard_url,
            signing.ENVIRONMENT: secrets.token_hex(32),
            **demo_scheduler.clock_env(args.out),  # the scheduler scene fast-forwards it
        },
        run_notifications=scene is not None,
        step_env=scene.standins.step_env if scene else None,
        setup=scene.setup if scene else None,
        scheduler=True,
        clock=clock,
    )
    with stack, chain:
        if chain.emulator is not None:
            say(
                f"Kubernetes API emulator  {chain.emulator.url}  "
                f"({chain.loaded} policies and templates from {args.examples})"
            )
        else:
            say(f"Cluster                  {args.kubeconfig}")
        say(f"Event router (Triggers from {args.knative.name}/)  broker ingress {chain.broker}")
        for name, served in chain.functions.items():
            say(f"Function {name:<17} {served.url}  ({args.server}; log {served.log_path})")
        if scene is not None:
            say(
                f"Stand-ins                {scene.standins.webhooks.url} (Slack, Discord, Teams,"
                f" GitHub), SMTP 127.0.0.1:{scene.standins.smtp.port}"
                + (", api.telegram.org and slack.com (TLS)" if scene.standins.telegram else "")
            )
            say(f"Staged delivery failures: {'; '.join(scene.staged)}")
        say()
        for number, path in enumerate(files, 1):
            replay(chain, say, f"{number}/{len(files)} {path.name}", path, scene)

        # The subscriptions scene (docs/subscriptions.md): its own manifests and events; its
        # runs are run too, and what they delivered is shown after each event's report.
        files += (
            demo_subscriptions.scene(
                chain,
                args.examples / "subscriptions",
                say,
                lambda title, path: replay(chain, say, title, path, scene),
            )
            if not args.events
            else []
        )
        if scene is not None and chain.emulator is not None:
            scene.prepare(chain.emulator, demo_scheduler.NAMESPACE)
        scheduled = demo_scheduler.scene(chain, say, args.out)
        explained = demo_failure_context.scene(chain, say)
        time.sleep(1.0)  # the status recorder flushes counters every 0.2 s here
        say(
            "Policies, as `kubectl get notificationpolicies,clusternotificationpolicies -A`"
            " shows them:"
        )
        say(
            f"   {'NAMESPACE':<10} {'NAME':<28} {'READY':<6} {'REASON':<18} {'MATCHES':>7}  "
            f"{'SUPPRESSED':>10}  LAST MATCHED"
        )
        for policy in chain.policies():
            policy_status: dict[str, Any] = policy.get("status") or {}
            ready: dict[str, Any] = next(
                (c for c in policy_status.get("conditions") or [] if c.get("type") == "Ready"),
                {},
            )
            say(
                f"   {policy['metadata'].get('namespace') or '(cluster)':<10} "
                f"{policy['metadata']['name']:<28} "
                f"{ready.get('status', '-'):<6} {ready.get('reason', '-'):<18} "
                f"{policy_status.get('matchCount', 0):>7}  "
                f"{policy_status.get('suppressedCount', 0):>10}  "
                f"{policy_status.get('lastMatchedTime', '-')}"
            )
        say()
        say(
            "Templates, as `kubectl get notificationtemplates -A -o wide` shows them"
            " (crds/notificationtemplate.yaml's printer columns):"
        )
        for line in printercolumns.table(
            chain.templates(),
            printercolumns.columns(ROOT / "crds" / "notificationtemplate.yaml"),
            wide=True,
            now=datetime.fromtimestamp(clock(), UTC),  # AGE as the cluster's clock has it
        ):
            say(f"   {line}")
        say()
        total = len(chain.notification_runs())
        say(
            f"Done: {len(files)} events in, {total} notification runs created, "
            f"{len(chain.failures.events)} failed, {len(chain.router.dead_letters)} dead letters."
        )
        delivered = True
        if scene is not None and chain.tekton is not None:
            line, delivered = scene.summary(chain.tekton, staged_expected=not args.events)
            say(line)
            say(f"Each notification run's scripts, Secret files and step logs: {args.out}/runs/")
        say(f"Function logs and dead letters: {args.out}/")
        # The demo doubles as a smoke test in CI: a chain that loses events must not pass.
        return (
            0
            if total and delivered and scheduled and explained and not chain.router.dead_letters
            else 1
        )


def replay(
    chain: LocalChain,
    say: Callable[..., None],
    title: str,
    path: Path,
    scene: DeliveryScene | None,
) -> None:
    """Send one Tekton event file and report what it caused: the runs, the failures and
    dead letters, the Events on its run, and (delivering) what the stand-ins received."""
    cloudevent = json.loads(path.read_text())
    before = {run["metadata"]["name"] for run in chain.notification_runs()}
    seen = (len(chain.failures.events), len(chain.router.dead_letters))
    namespace = _namespace(cloudevent)
    events_before = {e["metadata"]["name"] for e in chain.kubernetes_events(namespace)}
    if scene is not None and chain.tekton is not None:
        scene.mark(chain.tekton)
    status = chain.send(cloudevent)
    chain.wait_idle()
    runs = [r for r in chain.notification_runs() if r["metadata"]["name"] not in before]
    recorded = [
        e
        for e in chain.kubernetes_events(namespace)
        if e["metadata"]["name"] not in events_before
        and e["involvedObject"]["kind"] != "NotificationPolicy"
    ]
    report(
        say,
        title,
        cloudevent,
        status,
        runs,
        chain.failures.events[seen[0] :],
        chain.router.dead_letters[seen[1] :],
        recorded,
    )
    if scene is not None and chain.tekton is not None:
        scene.report(say, chain.tekton)
        say()


def event_files(paths: Sequence[Path]) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        found.extend(sorted(path.glob("*.json")) if path.is_dir() else [path])
    return found


def _namespace(cloudevent: dict[str, Any]) -> str:
    data = cloudevent.get("data") or {}
    run: dict[str, Any] = next(iter(data.values()), {}) if isinstance(data, dict) else {}
    return str((run.get("metadata") or {}).get("namespace") or "default")


def report(
    say: Callable[..., None],
    title: str,
    cloudevent: dict[str, Any],
    status: int,
    runs: list[dict[str, Any]],
    failures: list[dict[str, Any]],
    dead_letters: list[dict[str, Any]],
    recorded: list[dict[str, Any]],
) -> None:
    data = cloudevent.get("data") or {}
    key, run = next(iter(data.items())) if isinstance(data, dict) and data else ("run", {})
    metadata = run.get("metadata", {})
    condition = ((run.get("status") or {}).get("conditions") or [{}])[0]
    say(
        f"━━ {title}: {key[0].upper()}{key[1:]} {metadata.get('namespace')}/"
        f"{metadata.get('name')} {cloudevent['type'].split('.')[-2]} "
        f"(reason {condition.get('reason') or '-'}); broker answered {status}"
    )
    # Matched runs first, then the retries and fallbacks the delivery tracker made of them.
    for created in sorted(runs, key=lambda run: bool(follows(run))):
        labels = created["metadata"]["labels"]
        spec = created["spec"]
        ref = spec.get("taskRef") or spec.get("pipelineRef") or {}
        how = follows(created)
        say(
            (f"   ↻ delivery tracker: {how}," if how else "   ✔ matched")
            + f" policy {labels[f'{vocabulary.GROUP}/policy']} → template "
            f"{labels[f'{vocabulary.GROUP}/template']}"
        )
        say(
            f"     created {created['kind']} {created['metadata']['namespace']}/"
            f"{created['metadata']['name']}  (runs {ref.get('name') or ref.get('resolver')})"
        )
        for param in spec.get("params", []):
            value = (
                param["value"] if isinstance(param["value"], str) else json.dumps(param["value"])
            )
            say(f"       {param['name']:<22} = " + value.replace("\n", "\n" + " " * 32))
            readable = _as_received(value)
            if readable is not None:
                say(
                    f"       {'':<22}   (the task sends: "
                    + readable.replace("\n", "\n" + " " * 48)
                    + ")"
                )
    for failed in failures:
        payload = failed.get("data") or {}
        error = payload.get("error", {})
        say(
            f"   ✘ policy {payload.get('policy', {}).get('name')} → template "
            f"{payload.get('templateRef', {}).get('name')}: {error.get('stage')} failed: "
            f"{error.get('reason')}: {error.get('message')}"
        )
    for letter in dead_letters:
        say(
            f"   ☠ dead letter: {letter.get('type')} to {letter.get('knativeerrordest')} "
            f"(code {letter.get('knativeerrorcode')})"
        )
    for event in sorted(recorded, key=_written):
        involved = event["involvedObject"]
        say(
            f"     Event on {involved['kind']} {involved['name']}: {event['type']} "
            f"{event['reason']}: {event['message']}"
        )
    if not (runs or failures or dead_letters):
        say("   · nothing to send: no policy matched, or the notification already exists")
    say()


def _written(event: dict[str, Any]) -> int:
    """When the API wrote an Event (its resourceVersion), to list them in that order."""
    version = str(event["metadata"].get("resourceVersion") or "0")
    return int(version) if version.isdigit() else 0


def _as_received(value: str) -> str | None:
    """A json_escape_strict'ed value as the chat service shows it, when that differs."""
    if "\\u" not in value:
        return None
    try:
        decoded = json.loads(f'"{value}"')
    except ValueError:
        return None
    return decoded if isinstance(decoded, str) else None


if __name__ == "__main__":
    raise SystemExit(main())
