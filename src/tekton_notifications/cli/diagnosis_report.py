"""How ``tkn-notify explain`` shows its answer: the report (JSON/YAML) and the text.

Text shows each check as ``field ✓`` or ``field ✗ wanted X got Y``, ``when → false`` or
``CEL error: ...``, then, for a matching policy, each template ref with its rendered params or
its error, and (with a cluster) whether that run exists.
"""

from __future__ import annotations

from typing import Any

from tekton_notifications.cli import _output
from tekton_notifications.diagnosis import PolicyExplanation, TemplateOutcome
from tekton_notifications.events import RunEvent
from tekton_notifications.selectors import Check

OK, NO = "✓", "✗"
#: Whether each rendered run exists in the cluster, by run name (None: not looked up).
Created = dict[str, dict[str, Any]] | None


def _check_dict(check: Check) -> dict[str, Any]:
    return {"field": check.field, "ok": check.ok, "wanted": check.wanted, "got": check.got}


def outcome_dict(outcome: TemplateOutcome, created: Created) -> dict[str, Any]:
    data: dict[str, Any] = {"name": outcome.name, "status": outcome.status}
    if outcome.run is not None:
        name = outcome.run["metadata"]["name"]
        data["run"] = {
            "kind": outcome.run["kind"],
            "name": name,
            "namespace": outcome.run["metadata"]["namespace"],
        }
        if created is not None and name in created:
            data["run"]["inCluster"] = created[name]
    if outcome.status == "rendered":
        data["params"] = dict(outcome.params)
    if outcome.error:
        data["error"] = {"reason": outcome.reason, "message": outcome.error}
    return data


def _policy_dict(item: PolicyExplanation, created: Created) -> dict[str, Any]:
    data: dict[str, Any] = {
        "namespace": item.namespace,
        "name": item.name,
        "matched": item.matched,
        "reason": item.reason,
    }
    if item.invalid:
        data["invalid"] = item.invalid
    if item.verdict is not None:
        data["checks"] = [_check_dict(check) for check in item.verdict.checks]
        if item.verdict.error:
            data["celError"] = _cel_message(item.verdict.error)
    if item.compile_error:
        data["whenCompileError"] = _cel_message(item.compile_error)
    if item.storm is not None:
        data["stormControl"] = {
            "notifies": item.storm.notify,
            "transition": item.storm.transition,
            "suppressed": item.storm.suppressed,
            "notes": list(item.storm.notes),
        }
    if item.matched:
        data["templates"] = [outcome_dict(outcome, created) for outcome in item.templates]
    if item.scheduled:
        data["scheduled"] = list(item.scheduled)
    return data


def report(
    event: RunEvent,
    explanations: list[PolicyExplanation],
    policy_source: str,
    live: bool,
    have_templates: bool,
    created: Created,
) -> dict[str, Any]:
    return {
        "event": {
            "type": event.type,
            "source": event.source,
            "kind": event.kind,
            "namespace": event.namespace,
            "name": event.name,
            "uid": event.uid,
            "event": event.tekton_event,
            "outcome": event.outcome,
            "policyEvents": sorted(event.policy_events),
            "fromLiveRun": live,
        },
        "policySource": policy_source,
        "templatesChecked": have_templates,
        "summary": {
            "policies": len(explanations),
            "matched": sum(item.matched for item in explanations),
            "notifications": sum(
                outcome.status == "rendered" for item in explanations for outcome in item.templates
            ),
        },
        "policies": [_policy_dict(item, created) for item in explanations],
    }


def _cel_message(error: str) -> str:
    return error.removeprefix("spec.when: ")


def text(
    event: RunEvent,
    explanations: list[PolicyExplanation],
    report: dict[str, Any],
    created: Created,
) -> str:
    lines: list[str] = []
    outcome = (
        event.tekton_event
        if event.outcome in (event.tekton_event, "succeeded")
        else (f"{event.tekton_event} ({event.outcome})")
    )
    lines.append(f"{event.kind} {event.namespace}/{event.name}: {outcome}   [{event.type}]")
    if report["event"]["fromLiveRun"]:
        lines.append("  (the event for the run's current status, read from the cluster)")
    summary = report["summary"]
    if not explanations:
        lines.append(
            f"No NotificationPolicy in scope ({report['policySource']}): nothing can match."
        )
        return "\n".join(lines) + "\n"
    lines.append(
        f"{summary['policies']} {'policy' if summary['policies'] == 1 else 'policies'} "
        f"({report['policySource']}), {summary['matched']} matched, "
        f"{summary['notifications']} notification run(s) rendered."
    )
    for item in explanations:
        lines.append("")
        lines.extend(_policy_lines(item, created))
    return "\n".join(lines) + "\n"


def _policy_lines(item: PolicyExplanation, created: Created) -> list[str]:
    key = f"{item.namespace}/{item.name}"
    if item.verdict is None:
        return [f"{NO} {key}: invalid policy, never loaded: {item.invalid}"]
    verdict = item.verdict
    if item.matched:
        head = f"{OK} {key}: matched"
    elif verdict.error:
        head = f"{NO} {key}: not matched (CEL error)"
    else:
        head = f"{NO} {key}: not matched ({verdict.reason})"
    lines = [head]
    for check in verdict.checks:
        if check.field == "when":
            lines.append(f"    when → {check.got}")
        elif check.ok:
            lines.append(f"    {check.field} {OK}")
        else:
            lines.append(f"    {check.field} {NO} wanted {check.wanted} got {check.got}")
    if item.storm is not None:
        decision = item.storm
        for note in decision.notes:
            if note != decision.suppressed:
                lines.append(f"    storm control: {note}")
        if decision.suppressed:
            lines.append(f"    {NO} suppressed: {decision.suppressed}")
        elif not decision.notify:
            lines.append(f"    {NO} not notified: it only tells the policy the pipeline's outcome")
        elif decision.transition:
            lines.append(f"    {OK} notifies as {decision.transition}")
    if verdict.error:
        lines.append(f"    CEL error: {_cel_message(verdict.error)}")
    elif item.compile_error:
        lines.append(
            f"    note: spec.when does not compile, so this policy never matches: "
            f"{_cel_message(item.compile_error)}"
        )
    lines.extend(f"    scheduler: {line}" for line in item.scheduled)
    held_back = item.storm is not None and not item.storm.notify
    for outcome in item.templates:
        # Nothing is launched for a suppressed match: "not in the cluster" would mislead.
        lines.extend(outcome_lines(outcome, None if held_back else created))
    return lines


def outcome_lines(outcome: TemplateOutcome, created: Created) -> list[str]:
    if outcome.status == "unchecked":
        return [f"  → template {outcome.name}: not rendered (no templates given: --templates)"]
    if outcome.status != "rendered":
        label = {"failed": "render error", "missing": "missing", "invalid": "invalid template"}
        return [f"  → template {outcome.name} {NO} {label[outcome.status]}: {outcome.error}"]
    assert outcome.run is not None
    name = outcome.run["metadata"]["name"]
    lines = [f"  → template {outcome.name} {OK} renders {outcome.run['kind']} {name}"]
    state = (created or {}).get(name)
    if state is not None:
        if state["exists"]:
            status = state["status"] + (f" ({state['reason']})" if state["reason"] else "")
            lines.append(f"      in the cluster: {status}")
            if "attempts" in state:
                tries = state["attempts"]
                lines.append(
                    f"      delivery: {state['delivery']}"
                    + (f" after {tries} attempts" if tries > 1 else "")
                    + (
                        f"; fallback {state['fallback']['template']} "
                        f"({state['fallback']['name']}): {state['fallback']['delivery']}"
                        if "fallback" in state
                        else ""
                    )
                )
        elif state["exists"] is False:
            lines.append(
                "      not in the cluster: the launch failed or is still to come (see "
                "`kubectl get events` on the run and the notification-failures log)"
            )
        else:
            lines.append(f"      in the cluster: unknown ({state['error']})")
    for name, value in outcome.params.items():
        if "\n" in value:
            lines.append(f"      {name}: |")
            lines.append(_output.indent(value, "        "))
        else:
            lines.append(_output.indent(value, f"      {name}: "))
    return lines
