"""The Airflow UI in headless Chromium (Debian's `chromium`, driven by Playwright): log in,
trigger stdf_ingest from its params form, see the run succeed in the grid, open the
Rollouts page; click every task button (Data Docs, MLflow run, Wafer maps) and check the
page it opens, with every request that would leave the machine refused. Screenshots go to
$YIELDOPS_TEST_ARTIFACTS (default: test-artifacts/)."""

from __future__ import annotations

import os
import re
import shutil
import time
import uuid
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, Route, expect, sync_playwright

from yieldops.demo.stack import AIRFLOW_USER, PRODUCT

CHROMIUM = shutil.which("chromium")
ARTIFACTS = Path(
    os.environ.get("YIELDOPS_TEST_ARTIFACTS")
    or Path(__file__).resolve().parents[2] / "test-artifacts"
)
DAG_ID = "stdf_ingest"
RUN_DEADLINE_SECONDS = 120
FINISHED = ("Success", "Failed")
PAGE_TIMEOUT_MS = 120_000
# The frames a file is validated as: lots, parts, tests, results, measurements.
FRAMES = 5

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium binary on PATH (Debian: apt-get install chromium)"
)


@pytest.fixture
def browser_page(stack):
    with sync_playwright() as playwright:
        # Playwright's own browser builds cannot be downloaded here: drive the system one.
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--disable-dev-shm-usage"]
        )
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        # A page of an api-server on a heavily loaded machine; the UI's translations load
        # after its first paint ("nav.dags" before "Dags"), so assertions wait as long.
        page.set_default_timeout(PAGE_TIMEOUT_MS)
        expect.set_options(timeout=PAGE_TIMEOUT_MS)
        try:
            yield page
        finally:
            shot(page, "last")  # the state the test ended in, also after a failure
            browser.close()


def shot(page: Page, name: str) -> None:
    folder = ARTIFACTS / "browser"
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=folder / f"{name}.png", full_page=True)


def log_in(page: Page, stack) -> None:
    page.goto(stack.airflow_url)
    page.get_by_label("Username").fill(AIRFLOW_USER)
    page.get_by_label("Password").fill(stack.airflow_password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("link", name="Dags", exact=True)).to_be_visible()


def param_field(dialog: Locator, title: str) -> Locator:
    """A field of the params form: a group holding the param's title as its label."""
    return dialog.get_by_role("group").filter(has_text=title)


def trigger_dry_run(page: Page, stack, run_id: str) -> None:
    """Trigger the DAG from its params form: defaults, but dry_run on, and our own run id."""
    page.goto(f"{stack.airflow_url}/dags/{DAG_ID}")
    page.get_by_role("button", name="Trigger Dag").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_role("heading", name=f"Trigger Dag - {DAG_ID}")).to_be_visible()
    for title in ("Reprocess file", "Reprocess lot"):
        expect(param_field(dialog, title).get_by_role("textbox")).to_be_empty()
    # The switch's input is visually hidden under the form; clicking its label toggles it.
    param_field(dialog, "Dry run").get_by_text("Dry run").click()
    expect(dialog.get_by_role("checkbox", name="Dry run")).to_be_checked()
    shot(page, "02-trigger-form")
    dialog.get_by_role("button", name="Advanced Options").click()
    dialog.get_by_role("textbox", name="Run ID").fill(run_id)
    submit = dialog.get_by_role("button", name="Trigger", exact=True)
    refused = "Trigger stays disabled: the form refuses its default params (an empty required one?)"
    expect(submit, refused).to_be_enabled()
    submit.click()
    page.wait_for_url(f"**/dags/{DAG_ID}/runs/{run_id}")


def wait_for_run(page: Page, run_id: str) -> str:
    """Reload the run's page until its state badge shows a finished state; returns it."""
    badge = page.get_by_test_id("header-card").get_by_test_id("state-badge")
    deadline = time.monotonic() + RUN_DEADLINE_SECONDS
    while (state := badge.inner_text().strip()) not in FINISHED:
        assert time.monotonic() < deadline, (
            f"run {run_id} still {state!r} after {RUN_DEADLINE_SECONDS} s"
        )
        time.sleep(2)
        page.reload()
    return state


def grid_tooltip(page: Page, run_id: str) -> Locator:
    """The grid's tooltip of a run (run id, state, duration), shown on hovering its bar."""
    page.locator(f'a[href$="/dags/{DAG_ID}/runs/{run_id}/"]').hover()
    return page.get_by_test_id("basic-tooltip").filter(has_text=f"Run ID: {run_id}")


def open_rollouts(page: Page) -> Locator:
    """The Rollouts nav entry (Browse menu); returns the frame the plugin page renders in."""
    page.get_by_role("button", name="Browse").click()
    page.get_by_role("menuitem", name="Rollouts").click()
    frame = page.get_by_title("Rollouts")
    expect(frame).to_have_attribute("src", re.compile(r"yieldops/rollouts/$"))
    return frame.content_frame.locator("body")


def test_trigger_ingest_from_the_form_and_open_rollouts(stack, browser_page):
    page = browser_page
    log_in(page, stack)
    shot(page, "01-logged-in")

    run_id = f"browser_dry_run_{uuid.uuid4().hex[:8]}"
    trigger_dry_run(page, stack, run_id)
    assert wait_for_run(page, run_id) == "Success"
    expect(grid_tooltip(page, run_id)).to_contain_text("State: Success")
    shot(page, "03-run-succeeded")
    run = stack.airflow().get(f"/dags/{DAG_ID}/dagRuns/{run_id}").raise_for_status().json()
    assert (run["state"], run["run_type"], run["conf"]["dry_run"]) == ("success", "manual", True)

    rollouts = open_rollouts(page)
    expect(rollouts.get_by_role("heading", name="Rollouts", level=1)).to_be_visible()
    expect(rollouts.get_by_role("heading", name="adc-local")).to_be_visible()
    shot(page, "04-rollouts")


def refuse_requests_leaving_the_machine(page: Page) -> list[tuple[str, str]]:
    """From now on the browser is offline, as on a test floor: requests to anywhere but
    this machine fail. Returns the list that collects (page, URL) of each one refused."""
    refused: list[tuple[str, str]] = []

    def refuse(route: Route) -> None:
        refused.append((route.request.frame.url, route.request.url))
        route.abort()

    page.context.route(re.compile(r"^(?!https?://127\.0\.0\.1[:/])"), refuse)
    return refused


def succeeded_task(api, dag_id: str, task_id: str) -> dict:
    """A task instance of ``task_id`` that succeeded, in any run of the DAG."""
    path = f"/dags/{dag_id}/dagRuns/~/taskInstances"
    response = api.get(path, params={"task_id": task_id, "state": "success", "limit": 1})
    response.raise_for_status()
    (task,) = response.json()["task_instances"]
    return task


def task_links(api, task: dict) -> dict[str, str | None]:
    """The task's buttons as the UI asks Airflow's REST API for them."""
    path = f"/dags/{task['dag_id']}/dagRuns/{task['dag_run_id']}/taskInstances/{task['task_id']}"
    response = api.get(f"{path}/links", params={"map_index": task["map_index"]})
    assert response.status_code == 200, response.text
    return response.json()["extra_links"]


def open_task_buttons(page: Page, stack, task: dict) -> Locator:
    """The task instance's Details tab, where the UI shows its buttons; returns them."""
    mapped = f"/mapped/{task['map_index']}" if task["map_index"] >= 0 else ""
    run = f"{stack.airflow_url}/dags/{task['dag_id']}/runs/{task['dag_run_id']}"
    page.goto(f"{run}/tasks/{task['task_id']}{mapped}/details")
    expect(page.get_by_text("Extra Links", exact=True)).to_be_visible()
    return page.get_by_role("link", name=re.compile(r"^(Data Docs|MLflow run|Wafer maps)$"))


def icon_font_loaded(page: Page) -> bool:
    """Font Awesome's solid face (the pass/fail icons) loaded: from the site, the only place
    the offline browser can reach."""
    return page.evaluate(
        """document.fonts.ready.then(() => [...document.fonts].some(font =>
            font.family.includes("Font Awesome 6 Free") && font.weight === "900"
            && font.status === "loaded"))"""
    )


def check_data_docs(page: Page) -> None:
    """From an ingest task's run page: its validation results, one frame's GX page, the index."""
    heading = page.get_by_role("heading", level=1)
    expect(heading).to_have_text(re.compile(r"Validation of .* \(lot S0-L00\d\):\s+passed"))
    file, lot = re.search(r"of (\S+\.stdf) \(lot (\S+)\)", heading.inner_text()).groups()
    assert file == f"{PRODUCT}_{lot}.stdf"  # the landed file and its lot
    expect(page.locator("tbody tr")).to_have_count(FRAMES)  # one row per validated frame ...
    expect(page.locator("tbody tr .fa-check-circle.text-success")).to_have_count(FRAMES)  # passed
    assert icon_font_loaded(page)
    shot(page, "06-data-docs-run")

    page.get_by_role("link", name=f"{PRODUCT}.parts").click()
    overview = page.locator("body")
    expect(overview).to_contain_text(f"Data asset: {file} (lot {lot})")
    expect(overview).to_contain_text("Status: Succeeded")
    expect(page.locator(".fa-check-circle.text-success").first).to_be_visible()
    assert icon_font_loaded(page)
    shot(page, "07-data-docs-parts")

    page.get_by_role("link", name="Home").click()  # the index: bootstrap-table lists results
    search = page.get_by_placeholder("Search")  # ... and searches them, client-side
    search.fill(file)
    search.press("Enter")
    expect(page.get_by_role("cell", name=f"{file} (lot {lot})")).to_have_count(FRAMES)
    shot(page, "08-data-docs-index")


def test_task_buttons_open_their_pages(stack, landed, browser_page):
    page = browser_page
    refused = refuse_requests_leaving_the_machine(page)
    log_in(page, stack)

    ingest = succeeded_task(landed, "stdf_ingest", "ingest")
    links = task_links(landed, ingest)
    buttons = open_task_buttons(page, stack, ingest)
    expect(buttons).to_have_text(["Data Docs"])  # an ingest task has no training run
    expect(buttons).to_have_attribute("href", links["Data Docs"])
    shot(page, "05-ingest-task-buttons")
    buttons.click()
    page.wait_for_url(f"**{links['Data Docs']}")
    check_data_docs(page)

    register = succeeded_task(landed, "yield_training", "register")
    links = task_links(landed, register)
    mlflow_run = links["MLflow run"].rsplit("/", 1)[-1]
    buttons = open_task_buttons(page, stack, register)
    expect(buttons).to_have_text(["MLflow run", "Wafer maps"])
    shot(page, "09-training-task-buttons")
    with page.context.expect_page() as opened:  # MLflow is another site: a new tab
        page.get_by_role("link", name="MLflow run").click()
    mlflow = opened.value
    expect(mlflow).to_have_title(re.compile(mlflow_run))
    # the run the training task logged: named after the product and the Airflow run
    name = f"{PRODUCT} {register['dag_run_id']}"
    expect(mlflow.get_by_role("heading", name=name)).to_be_visible()
    shot(mlflow, "10-mlflow-run")
    mlflow.close()

    page.get_by_role("link", name="Wafer maps").click()
    page.wait_for_url(f"**{links['Wafer maps']}")
    expect(page.get_by_role("heading", level=1)).to_contain_text(mlflow_run)
    pictures = dict(page.evaluate("[...document.images].map(i => [i.alt, i.naturalWidth])"))
    assert any(name.startswith("wafer_") for name in pictures), pictures
    assert all(width > 0 for width in pictures.values()), pictures  # each one shows
    shot(page, "11-wafer-maps")

    ours = [(origin, url) for origin, url in refused if "/yieldops/" in origin]
    assert not ours, f"our pages asked for resources off this machine: {ours}"
