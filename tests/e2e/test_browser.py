"""The Airflow UI in headless Chromium (Debian's `chromium`, driven by Playwright): log in,
trigger stdf_ingest from its params form, see the run succeed in the grid, open the
Rollouts page. Screenshots go to $YIELDOPS_TEST_ARTIFACTS (default: test-artifacts/)."""

from __future__ import annotations

import os
import re
import shutil
import time
import uuid
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, expect, sync_playwright

from yieldops.demo.stack import AIRFLOW_USER

CHROMIUM = shutil.which("chromium")
ARTIFACTS = Path(
    os.environ.get("YIELDOPS_TEST_ARTIFACTS")
    or Path(__file__).resolve().parents[2] / "test-artifacts"
)
DAG_ID = "stdf_ingest"
RUN_DEADLINE_SECONDS = 120
FINISHED = ("Success", "Failed")

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
        page.set_default_timeout(30_000)
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
    expect(page.get_by_role("link", name="Dags")).to_be_visible()


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
