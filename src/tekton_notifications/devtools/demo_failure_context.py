"""The demo's failure scene: a failed PipelineRun started by Pipelines-as-Code for a pull
request, whose failing step's log the emulator serves; the message quotes its end, with a
credential in it redacted, and names who pushed the commit.

Stores, in namespace ``shop`` (where no other example policy looks): the example template
``slack-failure-log`` (spec.context.logs), a policy using it, the run's child TaskRuns, the
failing step's pod and its log. Only with the emulator: a real cluster has its own runs.
"""

from __future__ import annotations

import contextlib
import copy
import json
import time
from collections.abc import Callable
from typing import Any, Final

import yaml

from tekton_notifications import vocabulary
from tekton_notifications.devtools.chain import LocalChain
from tekton_notifications.devtools.kubeapi import KubeError, ObjectStore
from tekton_notifications.devtools.serving import ROOT

NAMESPACE: Final = "shop"
RUN: Final = "checkout-pr-7-k9s2d"
TEMPLATE: Final = "slack-failure-log"
POD: Final = f"{RUN}-unit-tests-pod"
UID: Final = "0d9e8f7a-6b5c-4d3e-9f2a-1b0c9d8e7f6a"
SHA: Final = "5e8a2c4d6f1b3a5c7e9d0b2f4a6c8e1d3b5f7a9c"
#: What the failing step printed: colours, a progress line, a token in a clone URL.
LOG: Final = (
    "+ git fetch https://x-access-token:ghs_Q8r7S6t5U4v3W2x1Y0z9A8b7C6d5E4f3G2h1@github.com/"
    "example/checkout\n"
    "Collecting dependencies... 10%\rCollecting dependencies... 100%\n"
    "\x1b[1m============ test session starts ============\x1b[0m\n"
    "collected 87 items\n"
    "tests/test_payment.py ......F.\n"
    "\x1b[31mFAILED\x1b[0m tests/test_payment.py::test_retry_on_503 - assert 2 == 3\n"
    "\x1b[31m======= 1 failed, 86 passed in 41.07s =======\x1b[0m\n"
)

Say = Callable[..., None]


def scene(chain: LocalChain, say: Say) -> bool:
    """Run the scene; False when no message came out (the demo then fails)."""
    emulator = chain.emulator
    if emulator is None:
        return True
    store = emulator.store
    template = yaml.safe_load((ROOT / "examples" / "templates" / f"{TEMPLATE}.yaml").read_text())
    template["metadata"]["namespace"] = NAMESPACE
    store.create(
        vocabulary.GROUP, vocabulary.VERSION, vocabulary.TEMPLATE_PLURAL, NAMESPACE, template
    )
    store.create(
        vocabulary.GROUP, vocabulary.VERSION, vocabulary.POLICY_PLURAL, NAMESPACE, _policy()
    )
    for taskrun in _children():
        store.create("tekton.dev", "v1", "taskruns", NAMESPACE, taskrun)
    store.create("", "v1", "pods", NAMESPACE, _pod())
    _copy_from_ci(store)
    emulator.pod_logs.put(NAMESPACE, POD, "step-pytest", LOG)
    time.sleep(1.0)  # the functions' informers see the new policy and template

    say("━━ Why did it fail? A Pipelines-as-Code run fails; the message quotes its log")
    say(f"   the failing step's log, as the emulator serves it from pod {NAMESPACE}/{POD}:")
    for line in LOG.rstrip("\n").split("\n"):
        say("     | " + repr(line)[1:-1])
    before = {run["metadata"]["name"] for run in chain.notification_runs()}
    status = chain.send(_event())
    chain.wait_idle()
    created = [r for r in chain.notification_runs() if r["metadata"]["name"] not in before]
    say(f"   broker answered {status}; {len(created)} notification run(s) created")
    for run in created:
        params = {p["name"]: p["value"] for p in run["spec"].get("params", [])}
        say(f"   {run['kind']} {NAMESPACE}/{run['metadata']['name']}, message as Slack shows it:")
        for line in _decoded(str(params.get("message", ""))).split("\n"):
            say("     │ " + line)
    say()
    return bool(created)


def _copy_from_ci(store: ObjectStore) -> None:
    """The Tasks and Secrets a notification run needs where the demo runs its runs: what the
    demo put in ``ci`` (none when it does not run them), so the scene's run can run too."""
    for group, plural in (("tekton.dev", "tasks"), ("", "secrets")):
        for obj in store.list(group, plural, "ci"):
            copied = copy.deepcopy(obj)
            copied["metadata"] = {"name": obj["metadata"]["name"], "namespace": NAMESPACE}
            version = str(obj.get("apiVersion") or "v1").rpartition("/")[2]
            with contextlib.suppress(KubeError):  # already there
                store.create(group, version, plural, NAMESPACE, copied)


def _decoded(value: str) -> str:
    try:
        text = json.loads(f'"{value}"')
    except ValueError:
        return value
    return text if isinstance(text, str) else value


def _policy() -> dict[str, Any]:
    return {
        "apiVersion": f"{vocabulary.GROUP}/{vocabulary.VERSION}",
        "kind": "NotificationPolicy",
        "metadata": {"name": "why-it-failed", "namespace": NAMESPACE},
        "spec": {
            "selector": {"kinds": ["PipelineRun"]},
            "events": ["failed"],
            "templateRefs": [{"name": TEMPLATE}],
        },
    }


def _labels() -> dict[str, str]:
    pac = "pipelinesascode.tekton.dev"
    return {
        "tekton.dev/pipeline": "checkout-pr",
        "app.kubernetes.io/managed-by": pac,
        f"{pac}/url-org": "example",
        f"{pac}/url-repository": "checkout",
        f"{pac}/sha": SHA,
        f"{pac}/event-type": "pull_request",
        f"{pac}/pull-request": "7",
    }


def _annotations() -> dict[str, str]:
    pac = "pipelinesascode.tekton.dev"
    return {
        f"{pac}/sender": "octo-dev",
        f"{pac}/sha": SHA,
        f"{pac}/repo-url": "https://github.com/example/checkout",
        f"{pac}/url-org": "example",
        f"{pac}/url-repository": "checkout",
        f"{pac}/git-provider": "github",
        f"{pac}/pull-request": "7",
        f"{pac}/event-type": "pull_request",
        f"{pac}/branch": "main",
        # Written by the Tekton Results watcher once it stored the run.
        "results.tekton.dev/record": f"{NAMESPACE}/results/{UID}/records/{UID}",
    }


def _children() -> list[dict[str, Any]]:
    def taskrun(task: str, code: int) -> dict[str, Any]:
        failed = code != 0
        return {
            "apiVersion": "tekton.dev/v1",
            "kind": "TaskRun",
            "metadata": {
                "name": f"{RUN}-{task}",
                "namespace": NAMESPACE,
                "labels": {**_labels(), "tekton.dev/pipelineTask": task},
            },
            "status": {
                "conditions": [
                    {
                        "type": "Succeeded",
                        "status": "False" if failed else "True",
                        "reason": "Failed" if failed else "Succeeded",
                        "message": '"step-pytest" exited with code 1' if failed else "",
                    }
                ],
                "podName": f"{RUN}-{task}-pod",
                "steps": [
                    {
                        "name": "pytest" if failed else "clone",
                        "container": "step-pytest" if failed else "step-clone",
                        "terminated": {
                            "exitCode": code,
                            "reason": "Error" if failed else "Completed",
                            "startedAt": "2026-12-01T09:00:12Z",
                            "finishedAt": "2026-12-01T09:00:53Z",
                        },
                    }
                ],
            },
        }

    return [taskrun("fetch-source", 0), taskrun("unit-tests", 1)]


def _pod() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": POD, "namespace": NAMESPACE},
        "spec": {"containers": [{"name": "step-pytest", "image": "python:3.12-slim"}]},
    }


def _event() -> dict[str, Any]:
    run = {
        "metadata": {
            "name": RUN,
            "namespace": NAMESPACE,
            "uid": UID,
            "labels": _labels(),
            "annotations": _annotations(),
        },
        "spec": {"pipelineRef": {"name": "checkout-pr"}},
        "status": {
            "conditions": [
                {
                    "type": "Succeeded",
                    "status": "False",
                    "reason": "Failed",
                    "message": "Tasks Completed: 2 (Failed: 1, Cancelled 0), Skipped: 0",
                }
            ],
            "startTime": "2026-12-01T09:00:01Z",
            "completionTime": "2026-12-01T09:00:55Z",
            "childReferences": [
                {
                    "apiVersion": "tekton.dev/v1",
                    "kind": "TaskRun",
                    "name": f"{RUN}-{task}",
                    "pipelineTaskName": task,
                }
                for task in ("fetch-source", "unit-tests")
            ],
        },
    }
    return {
        "specversion": "1.0",
        "id": "3c1d5e7f-9a2b-4c6d-8e0f-1a3b5c7d9e2f",
        "source": f"/apis///namespaces/{NAMESPACE}//{RUN}",
        "type": "dev.tekton.event.pipelinerun.failed.v1",
        "subject": RUN,
        "datacontenttype": "application/json",
        "time": "2026-12-01T09:00:55.120Z",
        "data": {"pipelineRun": copy.deepcopy(run)},
    }
