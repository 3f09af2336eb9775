"""Every page in the app's navigation opens in a real browser without an exception."""
import time

import pytest

from ui import assert_no_exception, expect, goto_page, wait_for_app

pytestmark = pytest.mark.browser


def nav_paths(page) -> list[str]:
    """URL paths of the pages listed in the sidebar navigation ("" for the home page)."""
    goto_page(page, "home")
    hrefs = page.locator('[data-testid="stSidebarNav"] a').evaluate_all("els => els.map(e => e.href)")
    return [h.split("/", 3)[3] if h.count("/") >= 3 else "" for h in hrefs]


def test_a_page_opened_directly_shows_the_apps_navigation(page):
    # pages/ is also Streamlit's legacy pages folder: a first visit straight to a page must still get
    # app.py's navigation, not one entry per file (this test runs first in a fresh server).
    goto_page(page, "upload")
    nav = page.locator('[data-testid="stSidebarNav"]').inner_text()
    assert "Home" in nav and "Webcam" in nav and "common" not in nav, f"navigation reads {nav!r}"
    expect(page.get_by_role("heading", name="Upload")).to_be_visible()
    assert_no_exception(page)


def test_home_opens_fast(page, app_server, screenshot):
    start = time.monotonic()
    page.goto("/")
    page.get_by_role("heading", name="Grin").wait_for(timeout=20_000)
    shown = time.monotonic() - start
    print(f"\nserver healthy after {app_server.started_s:.1f} s; home page shown {shown:.1f} s after opening it")
    wait_for_app(page)
    assert_no_exception(page)
    expect(page.get_by_text("Open the webcam")).to_be_visible()
    assert shown < 5.0, f"the home page took {shown:.1f} s to show"
    screenshot(page, "home")


def test_every_page_opens_without_an_exception(page, screenshot):
    paths = nav_paths(page)
    assert {"", "webcam", "upload"} <= set(paths), f"navigation lists {paths}"
    for path in paths:
        print(f"opening /{path}", flush=True)
        goto_page(page, path or "home")
        page.wait_for_timeout(500)       # let late elements (charts, components) arrive
        wait_for_app(page)
        assert_no_exception(page)
        assert page.locator('[data-testid="stMainBlockContainer"] h1').count() >= 1, f"/{path} shows no title"
        assert "common" not in page.locator('[data-testid="stSidebarNav"]').inner_text()
        if path:
            screenshot(page, path)
