"""The scheduler's scene of ``make demo`` (issue 17): a reminder and a digest, hours early.

A pipeline broke on Friday evening (4h10m ago) under a policy with ``spec.remind``, and a
storm of three failures meets a policy whose rate limit lets one through and keeps the rest
for its ``spec.digest``. Then the scheduler's clock (``SCHEDULER_CLOCK_FILE``, read at every
ping) is fast-forwarded by an hour and the PingSource of ``knative/`` pings through the
router: one reminder and one digest come out, as notification runs like any other. The same
ping delivered again sends nothing. Needs the emulator: the scene's policies and templates
are created in it (namespace ``nightly``), not read from ``examples/``.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from tekton_notifications import vocabulary
from tekton_notifications.devtools.chain import LocalChain
from tekton_notifications.devtools.serving import ROOT
from tekton_notifications.stages import scheduler

NAMESPACE: Final = "nightly"
CLOCK_FILE: Final = "scheduler-clock"
_API: Final = f"{vocabulary.GROUP}/{vocabulary.VERSION}"
_BASE_EVENT: Final = ROOT / "examples" / "events" / "03-pipelinerun-failed.json"


def _template(name: str, message: str) -> dict[str, Any]:
    return {
        "apiVersion": _API,
        "kind": "NotificationTemplate",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "taskRef": {"name": "send-to-webhook-slack"},
            "params": {"webhook-secret": "slack-webhook", "message": message},
        },
    }


REMINDER_TEMPLATE: Final = _template(
    "still-red-slack",
    "{% set text %}"
    "{% if event.reminder %}"
    ":rotating_light: Reminder {{ event.reminder.count }} of {{ event.reminder.max }}: "
    "{{ event.pipeline | slack_escape }} in {{ event.namespace }} has been failing for "
    "{{ event.reminder.redFor }} (since {{ event.reminder.since }}); last run "
    "{{ event.name | slack_escape }}."
    "{% else %}"
    ":x: {{ event.pipeline | slack_escape }} failed: {{ event.name | slack_escape }}"
    "{% endif %}"
    "{% endset %}{{ text | json_escape_strict }}",
)
DIGEST_TEMPLATE: Final = _template(
    "held-back-digest",
    "{% set text %}"
    ":bar_chart: {{ digest.total }} notification(s) held back by the rate limit between "
    "{{ digest.period.start }} and {{ digest.period.end }}:\n"
    "{% for item in digest.items %}"
    "- {{ item.pipeline | slack_escape }} {{ item.outcome }} x{{ item.count }} "
    "(first {{ item.first.run | slack_escape }}, last {{ item.last.run | slack_escape }})\n"
    "{% endfor %}"
    "{% endset %}{{ text | trim | json_escape_strict }}",
)


def _policy(name: str, pipeline: str, template: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": _API,
        "kind": "NotificationPolicy",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "selector": {"matchLabels": {"tekton.dev/pipeline": pipeline}},
            "events": ["failed"],
            "templateRefs": [{"name": template}],
            **spec,
        },
    }


REMINDING: Final = _policy(
    "nightly-release-still-red",
    "nightly-release",
    "still-red-slack",
    remind={"after": "4h", "every": "24h", "max": 3},
)
DIGESTING: Final = _policy(
    "storefront-storm",
    "storefront-ci",
    "still-red-slack",
    rateLimit={"limit": 1, "window": "1h"},
    digest={"every": "1h", "templateRef": {"name": "held-back-digest"}},
)
POLICY_NAMES: Final = (REMINDING["metadata"]["name"], DIGESTING["metadata"]["name"])


def clock(workdir: Path) -> Callable[[], float]:
    """The scene's clock, as the scheduler reads it: the emulator takes it too, so the
    runs it creates after the jump carry the fast-forwarded time."""
    return scheduler.clock_from({scheduler.CLOCK_FILE: str(workdir / CLOCK_FILE)})


def clock_env(workdir: Path) -> dict[str, str]:
    """The scheduler's environment for the scene: its clock in a file, set to now."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / CLOCK_FILE
    path.write_text(str(time.time()))
    return {scheduler.CLOCK_FILE: str(path)}


def failed_run(name: str, pipeline: str, finished: float) -> dict[str, Any]:
    """examples/events/03 as a failed run ``name`` of ``pipeline`` in the scene's namespace."""
    event = copy.deepcopy(json.loads(_BASE_EVENT.read_text()))
    run = event["data"]["pipelineRun"]
    at = datetime.fromtimestamp(finished, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    run["metadata"].update(
        name=name, namespace=NAMESPACE, uid=f"nightly-{name}", generateName=f"{pipeline}-"
    )
    run["metadata"]["labels"] = {"tekton.dev/pipeline": pipeline}
    run["status"].update(startTime=at, completionTime=at)
    event.update(id=f"demo-{name}", source=f"/apis///namespaces/{NAMESPACE}//{name}", time=at)
    return dict(event)


def scene(chain: LocalChain, say: Callable[[str], None], workdir: Path) -> bool:
    """Play the scene; False when it did not show a reminder and a digest sent once."""
    say(
        "━━ Scheduler (issue 17): reminders while a pipeline stays red, digests of what was "
        "held back"
    )
    if chain.emulator is None:
        say("   skipped: the scene creates its policies in the emulator")
        return True
    for obj in (REMINDER_TEMPLATE, DIGEST_TEMPLATE, REMINDING, DIGESTING):
        chain.emulator.store.create_manifest(copy.deepcopy(obj))
    time.sleep(1.0)  # the functions' informers see the new policies and templates
    now = time.time()
    say(
        f"   nightly-release fails at {_when(now - 4 * 3600 - 600)} (4h10m ago); policy "
        "nightly-release-still-red reminds after 4h, every 24h, at most 3 times"
    )
    chain.send(failed_run("nightly-release-fri", "nightly-release", now - 4 * 3600 - 600))
    chain.wait_idle()
    say(
        "   storefront-ci fails 3 times in a minute; policy storefront-storm: 1 per hour, "
        "digest every hour"
    )
    for serial in (1, 2, 3):
        chain.send(failed_run(f"storefront-ci-{serial}", "storefront-ci", now))
        chain.wait_idle()
    _show_status(chain, say)
    before = _scene_runs(chain)
    say(f"   (so far {len(before)} notification run(s) from these policies)")
    clock = workdir / CLOCK_FILE
    clock.write_text(str(now + 3600 + 60))
    say(
        f"   fast-forward: the scheduler's clock jumps 1h1m to {_when(now + 3660)}; "
        "the PingSource pings"
    )
    chain.router.ping("scheduler", at=datetime.fromtimestamp(now + 3660, UTC), event_id="tick")
    chain.wait_idle()
    sent = [run for name, run in _scene_runs(chain).items() if name not in before]
    for run in sent:
        _show_run(run, say)
    chain.router.ping("scheduler", at=datetime.fromtimestamp(now + 3660, UTC), event_id="tick")
    chain.wait_idle()
    again = len(_scene_runs(chain)) - len(before) - len(sent)
    say(f"   the same ping redelivered: {again} new notification run(s)")
    _show_status(chain, say)
    say("")
    kinds = sorted(run["metadata"]["labels"][f"{vocabulary.GROUP}/template"] for run in sent)
    return kinds == ["held-back-digest", "still-red-slack"] and again == 0


def _scene_runs(chain: LocalChain) -> dict[str, dict[str, Any]]:
    label = f"{vocabulary.GROUP}/policy"
    return {
        run["metadata"]["name"]: run
        for run in chain.notification_runs()
        if run["metadata"]["labels"].get(label) in POLICY_NAMES
    }


def _show_run(run: Mapping[str, Any], say: Callable[[str], None]) -> None:
    labels = run["metadata"]["labels"]
    params = {p["name"]: p["value"] for p in run["spec"].get("params", [])}
    say(
        f"   ✔ {labels[f'{vocabulary.GROUP}/policy']} → {labels[f'{vocabulary.GROUP}/template']}: "
        f"created {run['kind']} {run['metadata']['namespace']}/{run['metadata']['name']} "
        f"at {run['metadata'].get('creationTimestamp')} (the emulator's clock)"
    )
    message = json.loads(f'"{params.get("message", "")}"')
    say("     message: " + str(message).replace("\n", "\n              "))


def _show_status(chain: LocalChain, say: Callable[[str], None]) -> None:
    for policy in chain.policies():
        if policy["metadata"]["name"] not in POLICY_NAMES:
            continue
        status = policy.get("status") or {}
        held = sum(
            item["count"]
            for period in (status.get("digest") or {}).get("periods", [])
            for item in period["items"]
        )
        red = [o["pipeline"] for o in status.get("outcomes", []) if o["outcome"] == "failed"]
        reminded = [o.get("reminded", 0) for o in status.get("outcomes", [])]
        say(
            f"     {policy['metadata']['name']}: failing {red or '-'}, reminded {reminded}, "
            f"held for the digest {held}, next due {status.get('nextDue') or '-'}"
        )


def _when(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%H:%M UTC")
