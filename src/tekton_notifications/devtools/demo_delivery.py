"""``make demo``'s delivery scene: the notification runs run, and what each receiver got.

With the emulator, the demo starts the stand-ins (standins.py), loads the catalog Tasks of
examples/tasks and the Secrets the example templates name into every namespace that has
templates, points github-status at the GitHub stand-in (its ``GITHUB_HOST_URL`` param, as for
a GitHub Enterprise), and lets LocalTekton run every notification TaskRun. Two deliveries
fail on purpose, the way they fail in clusters: the GitHub API answers 500 once, and the
``teams-webhook`` Secret was never created (the run fails with CreateContainerConfigError).
Each failure's finish event goes to the broker like any other: a delivery tracker routed
there retries or falls back, and its runs are run and shown here too.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tekton_notifications import vocabulary
from tekton_notifications.devtools.kubeapi import KubeAPIServer
from tekton_notifications.devtools.localtekton import LocalTekton
from tekton_notifications.devtools.serving import ROOT
from tekton_notifications.devtools.standins import StandIns

TASKS = ROOT / "examples" / "tasks"
#: The Secret left out, and the service answering 500 once: the scene's two failures.
MISSING_SECRET = "teams-webhook"
FAILING_SERVICE = "github"
_SHOWN_LABELS = ("attempt", "fallback")


@dataclass
class DeliveryScene:
    standins: StandIns
    _marks: tuple[int, int, int, int] = (0, 0, 0, 0)
    staged: list[str] = field(default_factory=list)

    def setup(self, emulator: KubeAPIServer) -> None:
        """Before the functions start: Tasks, Secrets, the GitHub host, the staged failures."""
        store = emulator.store
        templates = store.list(vocabulary.GROUP, vocabulary.TEMPLATE_PLURAL)
        for namespace in sorted({t["metadata"]["namespace"] for t in templates}):
            self.prepare(emulator, namespace)
        for template in templates:
            if (template["spec"].get("taskRef") or {}).get("name") == "github-set-status":
                params = template["spec"].setdefault("params", {})
                params["GITHUB_HOST_URL"] = self.standins.github_host
                store.replace(
                    vocabulary.GROUP,
                    vocabulary.TEMPLATE_PLURAL,
                    template["metadata"]["namespace"],
                    template["metadata"]["name"],
                    template,
                )
        self.standins.webhooks.fail(FAILING_SERVICE, 500, times=1)
        self.staged = [
            f"the {FAILING_SERVICE} stand-in answers 500 once",
            f"Secret {MISSING_SECRET} is missing",
        ]

    def prepare(self, emulator: KubeAPIServer, namespace: str) -> None:
        """The catalog Tasks and the stand-ins' Secrets in ``namespace`` (all but the one
        staged missing): a later scene that creates templates in its own namespace calls it."""
        emulator.load_manifests(TASKS, namespace=namespace)
        for secret in self.standins.secrets(namespace):
            if secret["metadata"]["name"] != MISSING_SECRET:
                emulator.store.create_manifest(secret)

    def mark(self, tekton: LocalTekton) -> None:
        self._marks = (
            len(tekton.finished),
            len(self.standins.webhooks.deliveries),
            len(self.standins.telegram.deliveries) if self.standins.telegram else 0,
            len(self.standins.smtp.mails),
        )

    def report(self, say: Callable[[str], None], tekton: LocalTekton) -> None:
        """The runs finished and what the receivers got since ``mark``."""
        runs, hooks, telegram, mails = self._marks
        for finished in tekton.finished[runs:]:
            condition = finished.outcome.condition
            labels = finished.run["metadata"].get("labels") or {}
            extra = "".join(
                f", {key.rsplit('/', 1)[-1]} {value}"
                for key, value in labels.items()
                if any(word in key for word in _SHOWN_LABELS)
            )
            mark = "⇒" if finished.outcome.succeeded else "✘"
            event = "successful" if finished.outcome.succeeded else "failed"
            say(
                f"   {mark} ran TaskRun {finished.name} ({_task(finished.run)}{extra}): "
                f"{condition['reason']}"
                + ("" if finished.outcome.succeeded else f": {condition['message']}")
            )
            if not finished.outcome.succeeded:
                for step, log in finished.outcome.logs.items():
                    tail = " | ".join(line for line in log.splitlines()[-3:] if line.strip())
                    say(f"       step {step} log: {tail[:300]}")
            say(f"       Tekton event taskrun.{event} → broker answered {finished.event_status}")
        deliveries = list(self.standins.webhooks.deliveries[hooks:])
        if self.standins.telegram:
            deliveries += self.standins.telegram.deliveries[telegram:]
        for delivery in deliveries:
            auth = f" ({delivery.authorization})" if delivery.authorization else ""
            say(
                f"     {delivery.service} stand-in got POST {delivery.path}{auth}, "
                f"answered {delivery.answered}:"
            )
            say("       " + delivery.body.decode(errors="replace"))
            shown = _shown_text(delivery.body)
            if shown is not None:
                say("       which reads: " + shown.replace("\n", "\n" + " " * 21))
        for mail in self.standins.smtp.mails[mails:]:
            tls = "STARTTLS" if mail.tls else "plain"
            say(f"     mail ({tls}) from {mail.sender} to {', '.join(mail.recipients)}:")
            say(f"       Subject: {mail.subject}")
            for line in mail.body.strip().splitlines():
                say(f"       | {line}")

    def summary(self, tekton: LocalTekton) -> tuple[str, bool]:
        """The demo's delivery line, and whether every failure is one the scene staged (a run
        refused for the missing Secret, or one per 500 the stand-in was told to answer)."""
        succeeded = [f for f in tekton.finished if f.outcome.succeeded]
        failed = [f for f in tekton.finished if not f.outcome.succeeded]
        received = (
            len(self.standins.webhooks.deliveries)
            + (len(self.standins.telegram.deliveries) if self.standins.telegram else 0)
            + len(self.standins.smtp.mails)
        )
        refused = [f for f in failed if f'"{MISSING_SECRET}"' in f.outcome.condition["message"]]
        answered_500 = sum(1 for d in self.standins.webhooks.deliveries if d.answered == 500)
        unexpected = len(failed) - len(refused) - answered_500
        line = (
            f"Delivery: {len(tekton.finished)} notification runs ran here, {len(succeeded)} "
            f"succeeded, {len(failed)} failed (staged: {'; '.join(self.staged)}"
            + (f"; {unexpected} NOT staged" if unexpected > 0 else "")
            + f"); the stand-ins received {received} requests and mails."
        )
        return line, bool(succeeded) and received > 0 and unexpected <= 0


def _task(run: dict[str, Any]) -> str:
    ref = run["spec"].get("taskRef") or {}
    params = {p.get("name"): p.get("value") for p in ref.get("params") or []}
    return str(ref.get("name") or params.get("name") or "inline taskSpec")


def _shown_text(body: bytes) -> str | None:
    """The message a chat service shows for a webhook body, when it has one."""
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    if not isinstance(payload, dict):
        return None
    text = payload.get("text") or payload.get("content") or payload.get("description")
    return text if isinstance(text, str) else None
