"""``make demo``'s delivery scene: the notification runs run, and what each receiver got.

With the emulator, the demo starts the stand-ins (standins.py), loads the catalog Tasks of
examples/tasks and the Secrets the example templates name into every namespace that has
templates, points github-status at the GitHub stand-in (its ``GITHUB_HOST_URL`` param, as for
a GitHub Enterprise), and lets LocalTekton run every notification TaskRun. Two deliveries
fail on purpose, the way they fail in clusters: the GitHub API answers 500 once, and the
``teams-webhook`` Secret was never created (the run fails with CreateContainerConfigError).
Each failure's finish event goes to the broker like any other: the delivery tracker routed
there retries it (github-status has ``retries: 1``) or falls back (run-timed-out-teams names
``fallback: {name: email}``), and those runs are run and shown here too. The demo passes only
when every failed run is one of the staged ones and each staged failure ended delivered, by
its retry or its fallback (``summary``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tekton_notifications import taskruns, vocabulary
from tekton_notifications.devtools.kubeapi import KubeAPIServer
from tekton_notifications.devtools.localtekton import Finished, LocalTekton
from tekton_notifications.devtools.receivers import SLACK_POST_MESSAGE
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
    _marks: tuple[int, tuple[int, ...], int] = (0, (), 0)
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
            tuple(len(r.deliveries) for r in self.standins.receivers()),
            len(self.standins.smtp.mails),
        )

    def report(self, say: Callable[[str], None], tekton: LocalTekton) -> None:
        """The runs finished and what the receivers got since ``mark``."""
        runs, hooks, mails = self._marks
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
        deliveries = [
            delivery
            for receiver, seen in zip(self.standins.receivers(), hooks or (0, 0, 0), strict=False)
            for delivery in receiver.deliveries[seen:]
        ]
        for delivery in deliveries:
            auth = f" ({delivery.authorization})" if delivery.authorization else ""
            say(
                f"     {delivery.service} stand-in got POST {delivery.path}{auth}, "
                f"answered {delivery.answered}"
                + (
                    f" {_web_api_answer(delivery.reply)}"
                    if delivery.path == SLACK_POST_MESSAGE
                    else ""
                )
                + ":"
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

    def summary(self, tekton: LocalTekton, *, staged_expected: bool = True) -> tuple[str, bool]:
        """The demo's delivery line, and whether it went as staged: every failed run is one
        the scene staged (a run refused for the missing Secret, or one per 500 the stand-in
        was told to answer), and each of those notifications was delivered in the end by a
        retry or a fallback. With ``staged_expected`` (the example events), the staged
        failures must also have happened: the demo shows a retry and a fallback."""
        succeeded = [f for f in tekton.finished if f.outcome.succeeded]
        failed = len(tekton.finished) - len(succeeded)
        received = sum(len(r.deliveries) for r in self.standins.receivers()) + len(
            self.standins.smtp.mails
        )
        answered_500 = sum(1 for d in self.standins.webhooks.deliveries if d.answered == 500)
        problems, by = judge(
            tekton.finished, answered_500=answered_500, staged_expected=staged_expected
        )
        line = (
            f"Delivery: {len(tekton.finished)} notification runs ran here, {len(succeeded)} "
            f"succeeded, {failed} failed (staged: {'; '.join(self.staged)}"
            + "".join(f"; {problem}" for problem in problems)
            + f"), then delivered by {by['retry']} retry run(s) and {by['fallback']} fallback "
            f"run(s); the stand-ins received {received} requests and mails."
        )
        return line, bool(succeeded) and received > 0 and not problems


def judge(
    finished: Sequence[Finished], *, answered_500: int, staged_expected: bool
) -> tuple[list[str], dict[str, int]]:
    """What went other than staged (empty when all is well), and how many notifications a
    retry and a fallback delivered. A failed run is staged when the missing Secret refused
    it, or, up to ``answered_500``, when the stand-in answered it 500 on purpose; each failed
    notification must have ended delivered (:func:`notification`)."""
    succeeded = [f for f in finished if f.outcome.succeeded]
    failed = [f for f in finished if not f.outcome.succeeded]
    refused = [f for f in failed if f'"{MISSING_SECRET}"' in f.outcome.condition["message"]]
    unexpected = len(failed) - len(refused) - answered_500
    delivered = {notification(f.run) for f in succeeded}
    undelivered = [f for f in failed if notification(f.run) not in delivered]
    by = {"retry": 0, "fallback": 0}
    for run in succeeded:
        labels = run.run["metadata"].get("labels") or {}
        if taskruns.FALLBACK_OF_LABEL in labels:
            by["fallback"] += 1
        elif taskruns.ATTEMPT_LABEL in labels:
            by["retry"] += 1
    missing = [
        what
        for what, happened in (
            (f"no run failed for Secret {MISSING_SECRET}", refused),
            (f"the {FAILING_SERVICE} stand-in never answered 500", answered_500),
            ("no retry delivered", by["retry"]),
            ("no fallback delivered", by["fallback"]),
        )
        if staged_expected and not happened
    ]
    problems = (
        ([f"{unexpected} NOT staged"] if unexpected > 0 else [])
        + (
            [f"{len(undelivered)} never delivered: {', '.join(f.name for f in undelivered)}"]
            if undelivered
            else []
        )
        + missing
    )
    return problems, by


def notification(run: dict[str, Any]) -> tuple[str, ...]:
    """Which notification a run sends, the same for its retries and its fallback: the
    source run, the policy, the template it was made for (a fallback's ``fallback-of``), the
    event, and the origin (a subscription's recipients, a scheduled item)."""
    metadata = run["metadata"]
    labels = metadata.get("labels") or {}
    return (
        labels.get(taskruns.SOURCE_UID_LABEL, ""),
        labels.get(taskruns.POLICY_LABEL, ""),
        labels.get(taskruns.FALLBACK_OF_LABEL) or labels.get(taskruns.TEMPLATE_LABEL, ""),
        labels.get(taskruns.EVENT_LABEL, ""),
        (metadata.get("annotations") or {}).get(taskruns.ORIGIN_ANNOTATION, ""),
    )


def follows(run: dict[str, Any]) -> str:
    """How the delivery tracker made ``run`` ("" when the chain matched it): a retry or a
    fallback, as the demo's report names it."""
    labels = run["metadata"].get("labels") or {}
    if taskruns.FALLBACK_OF_LABEL in labels:
        return f"fallback of template {labels[taskruns.FALLBACK_OF_LABEL]}"
    if taskruns.ATTEMPT_LABEL in labels:
        return f"retry, attempt {labels[taskruns.ATTEMPT_LABEL]}"
    return ""


def _task(run: dict[str, Any]) -> str:
    ref = run["spec"].get("taskRef") or {}
    params = {p.get("name"): p.get("value") for p in ref.get("params") or []}
    return str(ref.get("name") or params.get("name") or "inline taskSpec")


def _web_api_answer(reply: str) -> str:
    """Slack's Web API answers 200 either way: its ``ok`` and ``error`` (or ``channel`` and
    ``ts``) say whether the message was posted; the echoed message is left out."""
    try:
        answer = json.loads(reply)
    except ValueError:
        return reply
    if not isinstance(answer, dict):
        return reply
    return json.dumps({k: v for k, v in answer.items() if k != "message"})


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
