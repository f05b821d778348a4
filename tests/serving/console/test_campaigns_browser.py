"""Planning a campaign in a real browser (Debian's Chromium through Playwright): fill the
plan form, watch the preview, see the budget respected, save, open the campaign."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn

from serving.app import create_app
from serving.deps import get_state
from tests.serving.conftest import in_memory_state
from tests.serving.console.conftest import KEYS
from tests.serving.console.test_browser import CHROMIUM_ARGS, _free_port, _shot, chromium
from tests.serving.console.test_campaigns_page import campaign_home

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def site(tmp_path_factory, world) -> Iterator[str]:
    settings = campaign_home(tmp_path_factory.mktemp("campaign-home"), world)
    app = create_app(settings)
    state = in_memory_state(settings, world)
    app.dependency_overrides[get_state] = lambda: state
    app.state.authenticate = KEYS.get
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="off"))  # fmt: skip
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def browser():
    path = chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield b
        b.close()


def test_plan_a_campaign_and_see_the_budget_respected(browser, site):
    context = browser.new_context(base_url=site, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto("/console/signin")
    page.get_by_label("API key").fill("mk-marketing")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/console/overview")
    page.get_by_role("link", name="Campaigns").click()
    page.wait_for_url("**/console/campaigns")
    page.get_by_label("Campaign name").fill("browser-spring")
    page.get_by_label("Segment (a rule").fill("recency_days >= 0")
    page.get_by_label("Coupon 1").fill("PCT10")
    page.get_by_label("Expected cost 1").fill("1")
    page.get_by_label("Coupon 2").fill("AMT5")
    page.get_by_label("Expected cost 2").fill("2")
    page.get_by_label("Budget (total expected coupon cost)").fill("12")
    page.get_by_role("button", name="Preview the plan").click()
    check = page.get_by_test_id("budget-check")
    check.wait_for()
    page.wait_for_function(
        "() => { const b = document.querySelector('[data-testid=plan-budget]');"
        " return b !== null && b.innerText === '12.00'; }"
    )
    assert check.inner_text().startswith("Within budget")
    cost = float(page.get_by_test_id("plan-cost").inner_text().replace(",", ""))
    assert 0 < cost <= 12.0
    _shot(page, "campaigns")
    page.get_by_role("button", name="Save the plan").click()
    page.wait_for_url("**/console/campaigns/browser-spring")
    assert page.get_by_role("heading", name="Campaign browser-spring").is_visible()
    assert "Not measured yet" in page.content()
    _shot(page, "campaign")
    context.close()
