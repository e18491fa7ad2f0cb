"""The demo's subscriptions scene: teams subscribe from their own YAML (docs/subscriptions.md).

After the main events, loads ``examples/subscriptions/`` (a Pipeline whose annotation
subscribes its team's Slack channel to its failures, and a Namespace whose annotation makes
every timed-out run email the CI leads) into the emulator, then sends the two events there:
a failed run of that Pipeline (notified by the Pipeline's annotation; its own pagerduty
annotation is refused: no policy allows that template) and a timed-out run of another
Pipeline (notified by the Namespace default). The policy that allows both is
``examples/policies/team-subscriptions.yaml``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tekton_notifications import events, kube, subscriptions
from tekton_notifications.definitions import Definitions
from tekton_notifications.devtools.chain import LocalChain

#: How long the policy filter's Namespace watch may take to see the loaded Namespace.
_SETTLE_SECONDS = 5.0

#: Sends one event file and reports what it caused (``demo.replay``), under a title.
Replay = Callable[[str, Path], None]


def scene(chain: LocalChain, folder: Path, say: Callable[..., None], replay: Replay) -> list[Path]:
    """Load ``folder``'s manifests, send its events, report each; returns the events sent."""
    files = sorted((folder / "events").glob("*.json"))
    if chain.emulator is None or not files:
        return []
    chain.emulator.load_manifests(*sorted(folder.glob("*.yaml")))
    say("━━ Subscriptions: teams subscribe from their own YAML (examples/subscriptions/)")
    for manifest in sorted(folder.glob("*.yaml")):
        say(f"   loaded {manifest.name}")
    say()
    _wait_for_namespace_defaults(chain)
    for number, path in enumerate(files, 1):
        _found(chain, json.loads(path.read_text()), say)
        replay(f"subscriptions {number}/{len(files)} {path.name}", path)
    return files


def _found(chain: LocalChain, cloudevent: dict[str, Any], say: Callable[..., None]) -> None:
    """The subscriptions this event's run has, and where each was written, as the policy
    filter reads them (the run, its Pipeline and its Namespace through the API)."""
    event = events.parse_event(cloudevent, cloudevent["data"])
    found = subscriptions.find(
        event,
        namespace=kube.namespace_annotations(chain.api, event.namespace),
        definition=Definitions(chain.api)(event),
    )
    say(
        f"── {event.kind} {event.namespace}/{event.name}: "
        "its subscriptions, as the policy-filter reads them"
    )
    for item in found.subscriptions:
        value = ", ".join(item.recipients)
        say(
            f"   subscription {item.annotation.removeprefix(subscriptions.PREFIX)}: "
            f'"{value}" from {item.source} ({item.where})'
        )


def _wait_for_namespace_defaults(chain: LocalChain) -> None:
    """The Namespace was written straight into the emulator's store; its watch event reaches
    the policy filter within milliseconds, but not before this returns: wait until the
    Namespace is served (it is then in the watch stream) and a little more."""
    deadline = time.monotonic() + _SETTLE_SECONDS
    while time.monotonic() < deadline:
        if kube.namespace_annotations(chain.api, "ci") is not None:
            break
        time.sleep(0.05)
    time.sleep(0.3)


def _namespace(cloudevent: dict[str, Any]) -> str:
    data = cloudevent.get("data") or {}
    run: dict[str, Any] = next(iter(data.values()), {}) if isinstance(data, dict) else {}
    return str((run.get("metadata") or {}).get("namespace") or "default")
