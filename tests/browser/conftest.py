"""Browser-test harness: one real streamlit server per session, a real headless Chromium with a fake
camera made from ../shared/media/smile_video.mp4, and a fresh page per test.

Fixtures: `streamlit_server` (base URL), `app_server` (URL, log and folders), `fake_camera`
(FakeCamera or None), `browser`, `page`, `calm_page` (its own Chromium whose camera shows a calm face the
expression model misreads), `screenshot(page, name)`.
Helpers for tests: `from ui import goto_page, assert_no_exception, sidebar_select, wait_for_app,
start_webcam`; `server.py` starts and stops the app for other scripts (benchmarks).
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fake_camera import FakeCamera, write_fake_camera, write_y4m  # noqa: E402
from server import CHROMIUM, chromium_args, start_server, stop_server  # noqa: E402
from ui import assert_no_exception, goto_page, save_screenshot  # noqa: E402,F401

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
SMILE_VIDEO = SHARED / "media" / "smile_video.mp4"


def pytest_collection_modifyitems(items):
    here = Path(__file__).resolve().parent
    for item in items:
        if here in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.browser)


@dataclass(frozen=True)
class AppServer:
    url: str
    pid: int
    log: Path            # the server's stdout and stderr
    webcam_log: Path     # JSON lines the webcam page writes (GRIN_WEBCAM_LOG)
    runs: Path           # GRIN_RUNS: training runs of this test session
    started_s: float     # seconds from launch to a healthy server


@pytest.fixture(scope="session")
def app_server(tmp_path_factory) -> AppServer:
    """`streamlit run app.py` on a free port, headless, no file watcher, runs in a temporary folder."""
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    tmp = tmp_path_factory.mktemp("server")
    (tmp / "runs").mkdir()
    env = dict(os.environ, GRIN_ICE="none", GRIN_RUNS=str(tmp / "runs"), GRIN_HUB_DIR=str(tmp / "hub"),
               GRIN_WEBCAM_LOG=str(tmp / "webcam.jsonl"), PYTHONUNBUFFERED="1")
    t0 = time.monotonic()
    proc, url = start_server(env, tmp / "streamlit.log")
    try:
        yield AppServer(url, proc.pid, tmp / "streamlit.log", tmp / "webcam.jsonl", tmp / "runs",
                        time.monotonic() - t0)
    finally:
        stop_server(proc)


@pytest.fixture(scope="session")
def streamlit_server(app_server) -> str:
    """Base URL of the running app, e.g. http://127.0.0.1:8765."""
    return app_server.url


@pytest.fixture(scope="session")
def fake_camera(tmp_path_factory) -> FakeCamera | None:
    """The looping y4m the browser's camera plays, or None without ../shared/media/smile_video.mp4."""
    if not SMILE_VIDEO.is_file():
        return None
    return write_fake_camera(SMILE_VIDEO, tmp_path_factory.mktemp("camera") / "smile.y4m")


@pytest.fixture(scope="session")
def playwright_driver():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


def _launch(driver, camera: Path | None):
    return driver.chromium.launch(executable_path=CHROMIUM, args=chromium_args(camera))


def _new_page(browser, base_url: str):
    """A fresh page (own context, so its own Streamlit session) with the app's URL as base URL."""
    context = browser.new_context(base_url=base_url, viewport={"width": 1400, "height": 1000},
                                  permissions=["camera", "microphone"], accept_downloads=True)
    context.set_default_timeout(30_000)
    return context, context.new_page()


@pytest.fixture(scope="session")
def browser(playwright_driver, fake_camera):
    """Headless Debian Chromium driven by Playwright (camera and microphone allowed, fake devices)."""
    b = _launch(playwright_driver, fake_camera and fake_camera.path)
    yield b
    b.close()


@pytest.fixture
def page(browser, streamlit_server):
    context, pg = _new_page(browser, streamlit_server)
    yield pg
    context.close()


@pytest.fixture(scope="session")
def calm_face():
    """A calm GENKI-4K test face (RGB) that the bundled expression model reads angry, sad or afraid, with neutral
    second; None without GENKI-4K."""
    genki = SHARED / "datasets" / "genki4k"
    if not genki.is_dir():
        return None
    from bench.calibration import leaning_calm_face
    from core.detect import LIVE_DETECTOR, FaceDetector
    from core.model import Classifier
    from core.pipeline import Pipeline

    return leaning_calm_face(Pipeline(Classifier(REPO / "models" / "expression"), FaceDetector(LIVE_DETECTOR)), genki)


@pytest.fixture(scope="session")
def calm_camera(calm_face, tmp_path_factory) -> Path | None:
    """A looping y4m of `calm_face` held still (swaying a pixel or two); None without it."""
    from bench.calibration import webcam_frames

    if calm_face is None:
        return None
    return write_y4m(webcam_frames(calm_face, 60), tmp_path_factory.mktemp("calm") / "calm.y4m")


@pytest.fixture
def calm_page(playwright_driver, calm_camera, streamlit_server):
    """A page in its own Chromium whose camera shows the calm face of `calm_camera`."""
    if calm_camera is None:
        pytest.skip("../shared/datasets/genki4k is absent (or none of its calm faces reads angry, sad or afraid)")
    b = _launch(playwright_driver, calm_camera)
    context, pg = _new_page(b, streamlit_server)
    yield pg
    context.close()
    b.close()


@pytest.fixture
def screenshot():
    """screenshot(page, name): save tests/screenshots/<name>.png (shown in the README)."""
    return save_screenshot
