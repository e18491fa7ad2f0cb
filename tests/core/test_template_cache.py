"""The renderer's template cache compiles a template when a render first needs it, not when
the informer lists it: compiling every listed template held the renderer unready (a cold
start) for as long as all of them took, while an event needs one."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tekton_notifications import rendering
from tekton_notifications.stages.template_renderer import LazyTemplate, TemplateCache
from tests.conftest import EXAMPLES


def _examples() -> list[dict[str, Any]]:
    return [
        obj
        for path in sorted((EXAMPLES / "templates").glob("*.yaml"))
        for obj in yaml.safe_load_all(path.read_text())
        if obj and obj.get("kind") == "NotificationTemplate"
    ]


def _invalid() -> dict[str, Any]:
    return {
        "apiVersion": "notifications.tekton.dev/v1alpha1",
        "kind": "NotificationTemplate",
        "metadata": {"name": "broken", "namespace": "ci"},
        "spec": {"taskRef": {"name": "notify"}, "params": [{"name": "x", "value": "{{ run. }}"}]},
    }


def test_listing_keeps_every_template_uncompiled_until_first_used() -> None:
    cache = TemplateCache()
    listed = _examples()
    cache.reset(listed)
    assert len(cache) == len(listed) > 1
    entries = [entry for _, entry in cache.items()]
    assert all(isinstance(entry, LazyTemplate) and not entry.is_compiled for entry in entries)
    namespace, name = cache.key(listed[0])
    first = cache.compiled(namespace, name)
    assert isinstance(first, rendering.CompiledTemplate)
    assert cache.compiled(namespace, name) is first, "compiled once per generation"
    assert sum(entry.is_compiled for _, entry in cache.items()) == 1


@pytest.mark.parametrize(
    ("objects", "name", "expected"),
    [
        pytest.param([_invalid()], "broken", str, id="invalid-is-the-reason-on-first-use"),
        pytest.param([], "absent", type(None), id="absent-is-none"),
    ],
)
def test_what_a_render_gets_for_a_template_that_cannot_be_used(
    objects: list[dict[str, Any]], name: str, expected: type
) -> None:
    cache = TemplateCache()
    cache.reset(objects)
    assert isinstance(cache.compiled("ci", name), expected)


def test_an_update_replaces_the_compiled_generation() -> None:
    cache = TemplateCache()
    (template, *_) = _examples()
    cache.reset([template])
    namespace, name = cache.key(template)
    before = cache.compiled(namespace, name)
    cache.upsert({**template, "metadata": {**template["metadata"], "generation": 2}})
    after = cache.compiled(namespace, name)
    assert isinstance(after, rendering.CompiledTemplate) and after is not before
