"""The checks behind ``tkn-notify lint``: everything that can be wrong with policies and
templates before a run event finds out.

Each check reuses the core the functions run (``models.parse_*``, ``cel.compile_expression``,
``rendering.compile_template`` and ``render``), so lint reports exactly what would fail on the
cluster, plus what the API server would refuse (the CRD schema) and what Tekton would refuse
(params the catalog task does not declare, or required ones left unset). No I/O: documents,
tasks and sample events come in, :class:`Problem` s come out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from tekton_notifications import cel, digests, models, rendering, vocabulary
from tekton_notifications.cli import lint_subscriptions, names, templatefields
from tekton_notifications.cli import samples as sampling
from tekton_notifications.cli import tasks as taskdefs
from tekton_notifications.cli.schema import CrdValidator
from tekton_notifications.events import RunEvent

POLICY: Final = "NotificationPolicy"
CLUSTER_POLICY: Final = "ClusterNotificationPolicy"
POLICIES: Final = (POLICY, CLUSTER_POLICY)
TEMPLATE: Final = "NotificationTemplate"


@dataclass(frozen=True)
class Problem:
    """One thing wrong: where (file, object, field path) and what."""

    file: str
    object: str
    field: str
    message: str
    #: yaml, schema, spec, duplicate, cel, template, render, ref, task
    check: str

    def as_dict(self) -> dict[str, str]:
        return {
            "file": self.file,
            "object": self.object,
            "field": self.field,
            "message": self.message,
            "check": self.check,
        }


@dataclass
class Entry:
    """A policy or template document being linted."""

    file: str
    obj: Mapping[str, Any]
    kind: str
    name: str
    namespace: str
    policy: models.Policy | None = None
    template: models.Template | None = None
    #: Params (own, or overrides by "<ref index>.<param>") that compile.
    compiled: set[str] = field(default_factory=set)

    @property
    def label(self) -> str:
        if self.kind == CLUSTER_POLICY:
            return f"{self.kind} {self.name}"
        return f"{self.kind} {self.namespace}/{self.name}"

    @property
    def home(self) -> str:
        """Where this entry's templates live: a cluster policy's templateNamespace."""
        return self.policy.home_namespace if self.policy is not None else self.namespace


class Linter:
    def __init__(
        self,
        *,
        schema: CrdValidator | None,
        tasks: Sequence[taskdefs.TaskDefinition] | None,
        samples: Sequence[RunEvent],
        settings: rendering.RenderSettings = rendering.DEFAULT_SETTINGS,
    ) -> None:
        self.schema = schema
        self.tasks = tasks
        self.samples = list(samples)
        self.settings = settings
        self.problems: list[Problem] = []
        self.entries: list[Entry] = []
        self.template_variables = templatefields.variables()
        #: Pipelines, Tasks, runs and Namespaces with subscription annotations.
        self.subscribers: list[lint_subscriptions.Subscriber] = []

    # -- collecting -----------------------------------------------------------------------
    def add_file_problem(self, file: str, message: str) -> None:
        self.problems.append(Problem(file, "", "", message, "yaml"))

    def add_document(self, file: str, obj: object) -> bool:
        """Take a document; returns False when it is not ours to lint (other kinds)."""
        if not isinstance(obj, Mapping):
            self.add_file_problem(file, f"not a Kubernetes object: a {type(obj).__name__}")
            return True
        kind = str(obj.get("kind") or "")
        group = str(obj.get("apiVersion") or "").split("/")[0]
        subscriber = lint_subscriptions.subscriber(file, obj)
        if subscriber is not None:
            self.subscribers.append(subscriber)
            return True
        if kind not in (*POLICIES, TEMPLATE) and group != vocabulary.GROUP:
            return False
        metadata = obj.get("metadata")
        metadata = metadata if isinstance(metadata, Mapping) else {}
        entry = Entry(
            file=file,
            obj=obj,
            kind=kind or "<no kind>",
            name=str(metadata.get("name") or "<unnamed>"),
            namespace="" if kind == CLUSTER_POLICY else str(metadata.get("namespace") or "default"),
        )
        self.entries.append(entry)
        return True

    # -- running --------------------------------------------------------------------------
    def run(self) -> list[Problem]:
        self._duplicates()
        for entry in self.entries:
            schema_fields = self._schema(entry)
            if entry.kind in POLICIES:
                self._policy(entry, schema_fields)
            elif entry.kind == TEMPLATE:
                self._template(entry, schema_fields)
        self._references()
        self._render()
        if self.tasks is not None:
            self._task_params()
        self._subscriptions()
        # Grouped by file (in the order the files were read), each file's in check order.
        order = {
            file: index
            for index, file in enumerate(
                dict.fromkeys(
                    [*(e.file for e in self.entries), *(s.file for s in self.subscribers)]
                )
            )
        }
        return sorted(self.problems, key=lambda problem: order.get(problem.file, -1))

    def _subscriptions(self) -> None:
        policies = []
        for entry in self.entries:
            if entry.kind in POLICIES:
                try:
                    policies.append(models.parse_policy(entry.obj))
                except models.SpecError:
                    continue  # reported by the spec check
        templates = [(e.namespace, e.name) for e in self.entries if e.kind == TEMPLATE]
        for item, key, message in lint_subscriptions.problems(
            self.subscribers, policies, templates
        ):
            problem = Problem(
                item.file, item.label, f"metadata.annotations[{key}]", message, "subscription"
            )
            self.problems.append(problem)

    def _problem(self, entry: Entry, path: str, message: str, check: str) -> None:
        problem = Problem(entry.file, entry.label, path, message, check)
        if problem not in self.problems:
            self.problems.append(problem)

    def _duplicates(self) -> None:
        seen: dict[tuple[str, str, str], Entry] = {}
        for entry in self.entries:
            key = (entry.kind, entry.namespace, entry.name)
            if key in seen:
                self._problem(
                    entry, "metadata.name", f"defined twice: also in {seen[key].file}", "duplicate"
                )
            else:
                seen[key] = entry

    def _schema(self, entry: Entry) -> set[str]:
        if self.schema is None:
            return set()
        fields = set()
        for path, message in self.schema.problems(entry.obj):
            self._problem(entry, path, message, "schema")
            fields.add(path)
        return fields

    def _spec_error(self, entry: Entry, error: models.SpecError, schema_fields: set[str]) -> None:
        # The schema already said it (in the API server's words): say it once.
        if not any(_related(error.path, path) for path in schema_fields):
            self._problem(entry, error.path, error.problem, "spec")

    # -- policies ---------------------------------------------------------------------------
    def _policy(self, entry: Entry, schema_fields: set[str]) -> None:
        try:
            entry.policy = models.parse_policy(entry.obj)
        except models.SpecError as error:
            self._spec_error(entry, error, schema_fields)
        spec = entry.obj.get("spec")
        when = spec.get("when") if isinstance(spec, Mapping) else None
        if isinstance(when, str) and when.strip():
            kinds = entry.policy.selector.kinds if entry.policy is not None else frozenset()
            self._cel(entry, when, kinds)
        if entry.policy is not None:
            for index, ref in enumerate(entry.policy.template_refs):
                for name, source in ref.params.items():
                    path = f"spec.templateRefs[{index}].params.{name}"
                    if self._jinja(entry, path, name, source):
                        entry.compiled.add(f"{index}.{name}")

    def _cel(self, entry: Entry, source: str, kinds: frozenset[str]) -> None:
        try:
            cel.compile_expression(source, kinds=kinds)
        except (cel.CelCostError, cel.CelCheckError) as error:
            self._problem(entry, "spec.when", f"{error.reason}: {error}", "cel")
            return
        except cel.CelError as error:
            self._problem(entry, "spec.when", f"CEL does not compile: {error}", "cel")
            return
        for name in sorted(names.cel_free_variables(source)):
            self._problem(
                entry,
                "spec.when",
                f"unknown variable {name!r}; the variables are {', '.join(cel.VARIABLES)}",
                "cel",
            )

    # -- templates --------------------------------------------------------------------------
    def _template(self, entry: Entry, schema_fields: set[str]) -> None:
        try:
            entry.template = models.parse_template(entry.obj)
        except models.SpecError as error:
            self._spec_error(entry, error, schema_fields)
        spec = entry.obj.get("spec")
        params = spec.get("params") if isinstance(spec, Mapping) else None
        if not isinstance(params, Mapping):
            return
        for name, source in params.items():
            path = f"spec.params.{name}"
            if isinstance(source, str) and self._jinja(entry, path, str(name), source):
                entry.compiled.add(str(name))

    def _jinja(self, entry: Entry, path: str, name: str, source: str) -> bool:
        """Compile one param as the renderer would; report syntax errors and unknown names."""
        probe = models.Template(
            name=entry.name,
            namespace=entry.namespace,
            target="Task",
            ref={},
            params={name: source},
        )
        try:
            rendering.compile_template(probe)
        except rendering.RenderError as error:
            self._problem(entry, path, _render_message(error), "template")
            return False
        unknown = names.jinja_free_variables(source) - names.JINJA_NAMES
        known = ", ".join(rendering.CONTEXT_NAMES)
        for variable in sorted(unknown):
            self._problem(
                entry, path, f"unknown variable {variable!r}; the variables are {known}", "template"
            )
        # Every field no event has, each with its line: the render stops at the first.
        fields = templatefields.undefined(source, self.template_variables)
        for read in fields:
            self._problem(entry, path, read.message, "template")
        return not unknown and not fields

    # -- references -------------------------------------------------------------------------
    def _templates_by_key(self) -> dict[tuple[str, str], Entry]:
        return {(e.namespace, e.name): e for e in self.entries if e.kind == TEMPLATE}

    def _references(self) -> None:
        templates = self._templates_by_key()
        for entry in self.entries:
            if entry.policy is None:
                continue
            for index, ref in enumerate(entry.policy.template_refs):
                if (entry.home, ref.name) in templates:
                    continue
                elsewhere = sorted(ns for ns, name in templates if name == ref.name)
                hint = (
                    f" (there is one in namespace {', '.join(elsewhere)}; a policy only uses "
                    "templates in its own namespace)"
                    if elsewhere
                    else ""
                )
                self._problem(
                    entry,
                    f"spec.templateRefs[{index}].name",
                    f"NotificationTemplate {entry.home}/{ref.name} is not among the linted "
                    f"files{hint}",
                    "ref",
                )
            digest = entry.policy.digest
            if digest is not None and (entry.home, digest.template_ref.name) not in templates:
                self._problem(
                    entry,
                    "spec.digest.templateRef.name",
                    f"NotificationTemplate {entry.home}/{digest.template_ref.name} is not among "
                    "the linted files",
                    "ref",
                )

    def _referrers(self, template: Entry) -> list[tuple[Entry, int, models.TemplateRef]]:
        found = []
        for entry in self.entries:
            if entry.policy is None or entry.home != template.namespace:
                continue
            for index, ref in enumerate(entry.policy.template_refs):
                if ref.name == template.name:
                    found.append((entry, index, ref))
        return found

    # -- rendering against sample events ------------------------------------------------------
    def _render(self) -> None:
        for entry in self.entries:
            template = entry.template
            if template is None:
                continue
            # Each referencing policy renders with the samples it could match, given the
            # labels and annotations its selector requires; an unreferenced template with all.
            contexts: list[tuple[Entry | None, int, models.TemplateRef | None, list[RunEvent]]]
            contexts = [
                (policy_entry, index, ref, sampling.for_policy(policy_entry.policy, self.samples))
                for policy_entry, index, ref in self._referrers(entry)
                if policy_entry.policy is not None
            ] or [(None, -1, None, self.samples)]
            # A policy's digest template renders with a digest (issue 17), no other way.
            digesting = self._digesting(entry)
            if digesting and not self._referrers(entry):
                contexts = [(policy_entry, -1, None, self.samples) for policy_entry in digesting]
            scheduled = (
                {"id": "lint", "digest": _sample_digest(self.samples)} if digesting else None
            )
            for name in template.params:
                if name not in entry.compiled:
                    continue
                own = dataclasses.replace(template, params={name: template.params[name]})
                for policy_entry, _, _, events in contexts:
                    view = _view(policy_entry, entry)
                    path = f"spec.params.{name}"
                    if self._render_param(entry, path, own, {}, events, view, scheduled):
                        break
            bare = dataclasses.replace(template, params={})
            for policy_entry, index, ref, events in contexts:
                if policy_entry is None or ref is None:
                    continue
                for name, source in ref.params.items():
                    if f"{index}.{name}" in policy_entry.compiled:
                        path = f"spec.templateRefs[{index}].params.{name}"
                        view = _view(policy_entry, entry)
                        overrides = {name: source}
                        self._render_param(policy_entry, path, bare, overrides, events, view)

    def _digesting(self, template: Entry) -> list[Entry]:
        """The policies whose ``spec.digest`` renders with this template."""
        return [
            entry
            for entry in self.entries
            if entry.policy is not None
            and entry.policy.digest is not None
            and entry.home == template.namespace
            and entry.policy.digest.template_ref.name == template.name
        ]

    def _render_param(
        self,
        entry: Entry,
        path: str,
        template: models.Template,
        overrides: Mapping[str, str],
        samples: Sequence[RunEvent],
        policy: Mapping[str, Any],
        scheduled: Mapping[str, Any] | None = None,
    ) -> bool:
        """Render against each sample until one fails; True when one did (and is reported)."""
        compiled = rendering.compile_template(template)
        for sample in samples:
            try:
                compiled.render(
                    event=sample,
                    policy=policy,
                    overrides=overrides,
                    settings=self.settings,
                    scheduled=scheduled,
                )
            except rendering.RenderError as error:
                message = f"{_render_message(error)} (rendering sample event {sample.id})"
                self._problem(entry, path, message, "render")
                return True
        return False

    # -- task params ------------------------------------------------------------------------
    def _task_params(self) -> None:
        for entry in self.entries:
            template = entry.template
            if template is None:
                continue
            task = self._find_task(entry, template)
            if task is None:
                continue
            for name in template.params:
                self._check_param(entry, f"spec.params.{name}", name, task)
            referrers = self._referrers(entry)
            for name, (_, has_default) in task.params.items():
                if has_default or name in template.params:
                    continue
                if referrers and all(name in ref.params for _, _, ref in referrers):
                    continue
                self._problem(
                    entry,
                    "spec.params",
                    f"required param {name!r} of {task.label} is not set (it has no default)",
                    "task",
                )
            for policy_entry, index, ref in referrers:
                for name in ref.params:
                    path = f"spec.templateRefs[{index}].params.{name}"
                    self._check_param(policy_entry, path, name, task)

    def _check_param(
        self, entry: Entry, path: str, name: str, task: taskdefs.TaskDefinition
    ) -> None:
        if name not in task.params:
            declared = ", ".join(task.params) or "none"
            self._problem(
                entry,
                path,
                f"{task.label} has no param {name!r}; its params are: {declared}",
                "task",
            )
        elif task.params[name][0] != "string":
            self._problem(
                entry,
                path,
                f"param {name!r} of {task.label} is of type {task.params[name][0]}; "
                "a template renders strings",
                "task",
            )

    def _find_task(self, entry: Entry, template: models.Template) -> taskdefs.TaskDefinition | None:
        assert self.tasks is not None
        name, version = taskdefs.referenced(template.ref)
        field_name = "spec.taskRef" if template.target == "Task" else "spec.pipelineRef"
        if not name:
            return None  # a resolver we cannot see through (git without a name...)
        kinds = ("Task", "ClusterTask") if template.target == "Task" else ("Pipeline",)
        candidates = [t for t in self.tasks if t.kind in kinds and t.name == name]
        if not candidates:
            self._problem(
                entry, field_name, f"no {template.target} named {name!r} among --tasks", "task"
            )
            return None
        if version:
            exact = [t for t in candidates if t.version == version]
            if not exact:
                have = ", ".join(sorted(t.version or "unversioned" for t in candidates))
                self._problem(
                    entry,
                    field_name,
                    f"{template.target} {name} version {version} is not among --tasks "
                    f"(found: {have})",
                    "task",
                )
                return None
            return exact[0]
        return max(candidates, key=lambda t: taskdefs.version_key(t.version))


# --------------------------------------------------------------------------------------------
# Helpers


def _related(a: str, b: str) -> bool:
    """The same field, or one inside the other (``spec.events`` and ``spec.events[0]``)."""
    return a == b or a.startswith((b + ".", b + "[")) or b.startswith((a + ".", a + "["))


def _render_message(error: rendering.RenderError) -> str:
    line = f"line {error.line}: " if error.line is not None else ""
    return f"{line}{error.reason}: {error.detail}"


def _sample_digest(samples: Sequence[RunEvent]) -> dict[str, Any]:
    """A digest of the sample events, as if a rate limit had held each of them back."""
    held = digests.Held()
    for serial, sample in enumerate(samples):
        held = digests.record(held, sample, occurrence=str(serial), every=3600.0, now=0.0) or held
    period = held.periods[0] if held.periods else digests.Period(0.0)
    return digests.view(period, 3600.0)


def _view(policy_entry: Entry | None, template: Entry) -> dict[str, str]:
    if policy_entry is not None and policy_entry.policy is not None:
        return policy_entry.policy.view()
    return {"name": "lint", "namespace": template.namespace, "kind": POLICY}
