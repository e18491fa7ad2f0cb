"""One setting, two kinds of links: the run's Tekton Dashboard page and its Tekton Results
record (``TEKTON_DASHBOARD_URL``, ``--dashboard-url``; see links.py)."""

from __future__ import annotations

import pytest

from tekton_notifications import links, rendering
from tests.conftest import load_event

DASHBOARD = "https://tekton.example.com"
RESULTS = "https://results.example.com"
RECORD = (
    "ci/results/c41d2e8f-0a6b-4c3d-9e1f-5b7a2c8d4e60/records/c41d2e8f-0a6b-4c3d-9e1f-5b7a2c8d4e60"
)


@pytest.mark.parametrize(
    ("setting", "parsed"),
    [
        pytest.param(None, links.Links(), id="unset"),
        pytest.param(DASHBOARD + "/", links.Links(dashboard=DASHBOARD), id="a-bare-url-as-before"),
        pytest.param(
            f"dashboard={DASHBOARD}, results={RESULTS}",
            links.Links(dashboard=DASHBOARD, results=RESULTS),
            id="both",
        ),
        pytest.param(f"results={RESULTS}", links.Links(results=RESULTS), id="results-only"),
        pytest.param(
            f"{DASHBOARD}/?a=b,results={RESULTS}",
            links.Links(dashboard=f"{DASHBOARD}/?a=b", results=RESULTS),
            id="bare-dashboard-first-then-results",
        ),
    ],
)
def test_the_setting_names_the_bases(setting: str | None, parsed: links.Links) -> None:
    assert links.parse(setting) == parsed


@pytest.mark.parametrize(
    ("setting", "problem"),
    [
        pytest.param("tekton.example.com", r"dashboard must be an http\(s\) URL", id="no-scheme"),
        pytest.param(f"logs={RESULTS}", "is not dashboard=URL or results=URL", id="unknown-key"),
        pytest.param(f"results={RESULTS},results={RESULTS}", "given twice", id="twice"),
        pytest.param(f"results={RESULTS},{DASHBOARD}", "is not dashboard=URL", id="bare-not-first"),
    ],
)
def test_a_bad_setting_fails_at_start(setting: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        rendering.RenderSettings(dashboard_url=setting)


@pytest.mark.parametrize(
    ("setting", "fixture", "expected"),
    [
        pytest.param(
            f"dashboard={DASHBOARD},results={RESULTS}",
            "causes/pac-pipelinerun-failed.json",
            {
                "dashboard": f"{DASHBOARD}/#/namespaces/ci/pipelineruns/storefront-pr-42-x7k2p",
                "results": f"{RESULTS}/apis/results.tekton.dev/v1alpha2/parents/{RECORD}",
            },
            id="a-run-stored-by-results",
        ),
        pytest.param(
            f"dashboard={DASHBOARD},results={RESULTS}",
            "07-taskrun-failed.json",
            {
                "dashboard": f"{DASHBOARD}/#/namespaces/ci/taskruns/"
                "storefront-ci-run-p7v2k-unit-tests",
                "results": None,
            },
            id="a-run-results-has-not-stored",
        ),
        pytest.param(
            DASHBOARD,
            "causes/pac-pipelinerun-failed.json",
            {
                "dashboard": f"{DASHBOARD}/#/namespaces/ci/pipelineruns/storefront-pr-42-x7k2p",
                "results": None,
            },
            id="results-not-configured",
        ),
    ],
)
def test_event_links(setting: str, fixture: str, expected: dict[str, str | None]) -> None:
    settings = rendering.RenderSettings(dashboard_url=setting)
    context = rendering.render_context(
        load_event(fixture), policy={}, template={}, settings=settings
    )
    assert context["event"]["links"] == expected
    assert context["event"]["url"] == expected["dashboard"]


def test_the_links_schema_lists_what_the_context_holds() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    settings = rendering.RenderSettings(dashboard_url=f"dashboard={DASHBOARD},results={RESULTS}")
    for fixture in ("causes/pac-pipelinerun-failed.json", "07-taskrun-failed.json"):
        view = rendering.render_context(
            load_event(fixture), policy={}, template={}, settings=settings
        )
        jsonschema.validate(view["event"]["links"], links.LINKS_FIELD)
