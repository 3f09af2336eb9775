"""Helpers for driving the Grin app in Playwright (imported by conftest and by the browser tests)."""
from __future__ import annotations

import re
import time
from pathlib import Path

from playwright.sync_api import Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeout

SCREENSHOTS = Path(__file__).resolve().parents[1] / "screenshots"
APP_TIMEOUT_MS = 90_000   # the first page that loads a model also imports TensorFlow


IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'


def wait_for_app(page: Page, timeout_ms: int = APP_TIMEOUT_MS, settle_ms: int = 400) -> None:
    """Wait until the script has run to its end and stays idle for `settle_ms` (a component that
    mounts, like the webcam's, asks for a second run right after the first)."""
    for _ in range(5):
        page.wait_for_selector(IDLE, state="attached", timeout=timeout_ms)
        page.wait_for_timeout(settle_ms)
        if page.locator(IDLE).count():
            break
    page.wait_for_selector('[data-testid="stMainBlockContainer"]', timeout=timeout_ms)


def wait_for_rerun(page: Page, timeout_ms: int = APP_TIMEOUT_MS, start_ms: int = 5_000) -> None:
    """After an action that reruns the script (a widget change, an upload): wait for the run to
    start (a run too quick to be seen just costs `start_ms`), then for it to end."""
    try:
        page.wait_for_selector('[data-testid="stApp"]:not([data-test-script-state="notRunning"])',
                               state="attached", timeout=start_ms)
    except PlaywrightTimeout:
        pass
    wait_for_app(page, timeout_ms)


def goto_page(page: Page, name: str, timeout_ms: int = APP_TIMEOUT_MS) -> None:
    """Open a page of the app by its URL path ("" or "home" for the home page, "webcam", "upload",
    "explorer", "training", "models") and wait for it to finish running."""
    path = "" if name in ("", "home") else name
    page.goto(f"/{path}")
    wait_for_app(page, timeout_ms)


def exceptions(page: Page) -> list[str]:
    """Texts of the exceptions Streamlit shows on the page."""
    return [e.inner_text() for e in page.locator('[data-testid="stException"]').all()]


def assert_no_exception(page: Page) -> None:
    found = exceptions(page)
    assert not found, "the page shows an exception:\n" + "\n---\n".join(found)


def sidebar_select(page: Page, label: str, option: str | re.Pattern) -> None:
    """Choose `option` (its text, or a pattern) in the sidebar radio or selectbox called `label`,
    then wait for the rerun."""
    sidebar = page.locator('[data-testid="stSidebar"]')
    widget = sidebar.locator('[data-testid="stRadio"], [data-testid="stSelectbox"]').filter(has_text=label).first
    widget.wait_for(timeout=APP_TIMEOUT_MS)
    exact = {"exact": True} if isinstance(option, str) else {}
    radio = sidebar.locator('[data-testid="stRadio"]').filter(has_text=label)
    if radio.count():
        radio.get_by_text(option, **exact).click()
    else:
        sidebar.get_by_role("combobox", name=label).click()
        page.get_by_role("option", name=option, **exact).click()
    wait_for_rerun(page)


def start_webcam(page: Page, timeout_s: float = 30.0) -> None:
    """Press START in the webcam page's WebRTC component and wait until annotated video plays."""
    frame = page.frame_locator('iframe[title*="webrtc"]')
    frame.get_by_role("button", name=re.compile("start", re.I)).click(timeout=APP_TIMEOUT_MS)
    video = frame.locator("video")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if video.count() and video.first.evaluate("v => v.videoWidth > 0 && v.currentTime > 0.5"):
            return
        time.sleep(0.5)
    raise AssertionError(f"no video came back from the server within {timeout_s:.0f} s")


def stop_webcam(page: Page) -> None:
    page.frame_locator('iframe[title*="webrtc"]').get_by_role("button", name=re.compile("stop", re.I)).click()


def metric(page: Page, label: str) -> str:
    """The value shown by the st.metric whose label contains `label`."""
    box = page.locator('[data-testid="stMetric"]').filter(has_text=label)
    return box.locator('[data-testid="stMetricValue"]').inner_text()


def save_screenshot(page: Page, name: str, full_page: bool = True) -> Path:
    """Save tests/screenshots/<name>.png and return its path."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


__all__ = ["wait_for_app", "wait_for_rerun", "goto_page", "exceptions", "assert_no_exception", "sidebar_select",
           "start_webcam", "stop_webcam", "metric", "save_screenshot", "expect"]
