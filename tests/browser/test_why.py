""""Why?" in a real browser: the upload page's switch shows, for each face of a two-face photo, the crop the
model saw, its heat maps and every class's probability; the webcam page's "Explain this frame" does the
same for the fake camera's face."""
import io
import re
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ui import assert_no_exception, expect, goto_page, sidebar_select, start_webcam, stop_webcam, wait_for_rerun

pytestmark = pytest.mark.browser

EXPRESSIONS = Path(__file__).resolve().parents[2].parent / "shared" / "media" / "expressions"
BUNDLED_SMILE = re.compile(r"^smile \(bundled")


def two_faces() -> dict:
    """happy.jpg and angry.jpg side by side, as an upload payload."""
    photos = []
    for name in ("happy", "angry"):
        path = EXPRESSIONS / f"{name}.jpg"
        if not path.is_file():
            pytest.skip(f"{path} is absent (shared test media)")
        photos.append(np.asarray(Image.open(path).convert("RGB")))
    h = min(p.shape[0] for p in photos)
    buf = io.BytesIO()
    Image.fromarray(np.concatenate([p[:h] for p in photos], axis=1)).save(buf, format="JPEG", quality=95)
    return {"name": "two.jpg", "mimeType": "image/jpeg", "buffer": buf.getvalue()}


LOADED_WIDTH = """i => i.complete ? i.naturalWidth : new Promise(done => {
    i.addEventListener("load", () => done(i.naturalWidth), {once: true});
    i.addEventListener("error", () => done(0), {once: true});
})"""


def assert_why_panel(panel, classes: int) -> None:
    """One face's panel: the crop, a heat map per method, the mouth shares and a bar per class."""
    expect(panel.locator('[data-testid="stImage"]')).to_have_count(3, timeout=60_000)
    text = panel.inner_text()
    assert "What the model saw (64x64)" in text
    assert "Grad-CAM" in text and "Occlusion" in text
    assert len(re.findall(r"\d+% on the mouth|no evidence", text)) == 2
    expect(panel.locator('[data-testid="stProgress"]')).to_have_count(classes)
    for img in panel.locator('[data-testid="stImage"] img').all():   # its width once loaded (0 if it fails to)
        width = img.evaluate(LOADED_WIDTH)
        assert width == 192, f"shown enlarged, 192 px wide, not {width}"


def test_upload_why_shows_a_heat_map_for_each_face(page, screenshot):
    photo = two_faces()
    goto_page(page, "upload")
    sidebar_select(page, "Model", BUNDLED_SMILE)
    files = page.locator('[data-testid="stFileUploader"]').filter(has_text="Images")
    files.locator('input[type="file"]').set_input_files([photo])
    expect(files.get_by_text("two.jpg").first).to_be_visible()
    wait_for_rerun(page)
    assert_no_exception(page)
    expect(page.locator('[class*="st-key-why-"]')).to_have_count(0)
    switch = page.get_by_role("switch", name="Why?")
    switch.click(force=True)
    wait_for_rerun(page)
    assert_no_exception(page)
    panels = page.locator('[class*="st-key-why-1-"]')
    expect(panels).to_have_count(2, timeout=60_000)
    for k in (1, 2):
        panel = page.locator(f".st-key-why-1-{k}")
        expect(panel).to_contain_text(f"Face {k}:")
        assert_why_panel(panel, classes=2)
    assert "smile" in page.locator(".st-key-why-1-1").inner_text()
    screenshot(page, "upload-why")
    switch.click(force=True)
    wait_for_rerun(page)
    expect(page.locator('[class*="st-key-why-"]')).to_have_count(0)


def test_webcam_explain_this_frame(page, fake_camera, screenshot):
    if fake_camera is None:
        pytest.skip("../shared/media/smile_video.mp4 is absent: no fake camera to play")
    goto_page(page, "webcam")
    sidebar_select(page, "Model", BUNDLED_SMILE)
    start_webcam(page)
    label = page.locator(".st-key-webcam-label")
    deadline = time.monotonic() + 30
    while "smile" not in label.inner_text() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert "smile" in label.inner_text(), "labels arrive before the frame is explained"
    page.get_by_role("button", name="Explain this frame").click()
    panel = page.locator(".st-key-why-frame-1")
    expect(panel).to_be_visible(timeout=60_000)
    assert_why_panel(panel, classes=2)
    expect(page.get_by_text("Heat maps over the faces (Grad-CAM)")).to_be_visible()
    assert_no_exception(page)
    screenshot(page, "webcam-why")
    stop_webcam(page)
