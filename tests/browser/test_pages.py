"""Every page in the app's navigation opens in a real browser without an exception."""
import os
import re
import time
from pathlib import Path

import pytest

from server import start_server, stop_server
from ui import assert_no_exception, expect, goto_page, wait_for_app, wait_for_rerun

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
    nav = page.locator('[data-testid="stSidebarNav"]')
    expect(nav).to_contain_text("Home", timeout=30_000)   # the legacy menu would read "home", "common", ...
    assert "Webcam" in nav.inner_text() and "common" not in nav.inner_text(), f"navigation reads {nav.inner_text()!r}"
    expect(page.get_by_role("heading", name="Upload")).to_be_visible()
    assert_no_exception(page)


def cold_start(browser, tmp_path: Path) -> tuple[float, float]:
    """Seconds from `streamlit run app.py` to a healthy server, and to the home page's title in a browser."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, GRIN_ICE="none", GRIN_RUNS=str(tmp_path / "runs"), GRIN_HUB_DIR=str(tmp_path / "hub"))
    t0 = time.monotonic()
    proc, url = start_server(env, tmp_path / "streamlit.log")
    healthy = time.monotonic() - t0
    context = browser.new_context(base_url=url)
    try:
        page = context.new_page()
        page.goto("/")
        page.get_by_role("heading", name="Grin").wait_for(timeout=30_000)
        return healthy, time.monotonic() - t0
    finally:
        context.close()
        stop_server(proc)


def test_the_first_page_shows_within_5_s_of_launch(browser, tmp_path):
    tries = []
    for i in range(2):             # a second try only if the first was slow (a busy moment on a shared machine)
        tries.append(cold_start(browser, tmp_path / str(i)))
        if tries[-1][1] < 5.0:
            break
    print("\ncold starts (healthy, home shown): " + ", ".join(f"{h:.1f} s, {s:.1f} s" for h, s in tries))
    best = min(s for _, s in tries)
    assert best < 5.0, f"the home page took {best:.1f} s to show after launch"


def tensorflow_in(pid: int) -> bool:
    """Whether TensorFlow's native library is loaded in process `pid`."""
    return "libtensorflow" in Path(f"/proc/{pid}/maps").read_text()


def rss_mb(pid: int) -> int:
    return next(int(line.split()[1]) // 1024 for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                if line.startswith("VmRSS:"))


def test_tensorflow_is_loaded_only_by_a_page_that_needs_it(browser, tmp_path):
    """Labelling a photo is served without TensorFlow (about 650 MB less for a server whose users only label
    faces); the Training page loads it and works."""
    photo = Path(__file__).resolve().parents[2].parent / "shared" / "media" / "expressions" / "happy.jpg"
    if not photo.is_file():
        pytest.skip(f"{photo} is absent (shared test media)")
    env = dict(os.environ, GRIN_ICE="none", GRIN_RUNS=str(tmp_path / "runs"), GRIN_HUB_DIR=str(tmp_path / "hub"))
    proc, url = start_server(env, tmp_path / "streamlit.log")
    context = browser.new_context(base_url=url, viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(60_000)
    try:
        page = context.new_page()
        goto_page(page, "upload")
        page.locator('[data-testid="stFileUploader"]').filter(has_text="Images").locator('input[type="file"]') \
            .set_input_files([str(photo)])
        wait_for_rerun(page)
        expect(page.get_by_role("button", name="Download the table (CSV)")).to_be_visible(timeout=60_000)
        expect(page.locator('[data-testid="stImage"]')).to_have_count(1)
        assert_no_exception(page)
        labelled = rss_mb(proc.pid)
        assert not tensorflow_in(proc.pid), "a photo was labelled without TensorFlow"
        goto_page(page, "training")
        expect(page.get_by_text("Architecture").first).to_be_visible(timeout=120_000)
        assert_no_exception(page)
        assert tensorflow_in(proc.pid), "the Training page needs Keras"
        print(f"\nserver memory: {labelled} MB after labelling a photo, {rss_mb(proc.pid)} MB with TensorFlow")
    finally:
        context.close()
        stop_server(proc)


def test_home(page, screenshot):
    goto_page(page, "home")
    assert_no_exception(page)
    expect(page.get_by_text("Open the webcam")).to_be_visible()
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


def test_models_page_says_when_a_model_trained_on_its_validation_faces(page):
    """The bundled expression model is a final model (--fit-val): its curves say so, and the sidebar shows
    test accuracy to two decimals (94.99 % must not read as 95.0 %)."""
    goto_page(page, "models")
    details = page.locator('[data-testid="stSelectbox"]').filter(has_text="Details of")
    details.get_by_role("combobox").click()
    page.get_by_role("option", name=re.compile(r"^expression \(bundled")).click()
    wait_for_rerun(page)
    assert_no_exception(page)
    expect(page.get_by_text("validation faces were part of this model's training (--fit-val)")).to_be_visible()
    label = page.locator('[data-testid="stSidebar"]').get_by_text(re.compile(r"test accuracy \d+\.\d\d%"))
    expect(label.first).to_be_visible()


def test_models_page_compares_the_suites_figures(page, screenshot):
    """The bundled models' generalisation figures: a table with one column per chosen model, each model's
    worst case, and a grouped bar chart."""
    goto_page(page, "models")
    assert_no_exception(page)
    section = page.get_by_text("Faces it never trained on")
    section.scroll_into_view_if_needed()
    expect(section).to_be_visible()
    expect(page.get_by_text(re.compile(r"worst balanced accuracy \d+\.\d%")).first).to_be_visible()
    expect(page.locator(".st-key-gen\\.chart .js-plotly-plot, [data-testid='stPlotlyChart']").first).to_be_visible()
    screenshot(page, "models-generalisation")
