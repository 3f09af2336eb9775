"""The dataset explorer in a real browser: GENKI-4K's class balance, sample grid, missed faces and the model's
test-split mistakes with its confusion matrix; a missing dataset gives a clear message."""
from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect

from ui import assert_no_exception, goto_page, save_screenshot, wait_for_app

GENKI = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "genki4k"
pytestmark = pytest.mark.browser


def set_dataset(page, path: str) -> None:
    box = page.get_by_label("Dataset folder (or fer2013.csv)")
    box.fill(path)
    box.press("Enter")
    page.wait_for_timeout(500)
    wait_for_app(page, 300_000)   # a cold cache detects faces in all 4,000 photos: minutes on a busy 2-core machine


@pytest.mark.skipif(not GENKI.is_dir(), reason=f"GENKI-4K is not at {GENKI}")
def test_explorer_shows_genki4k(page):
    goto_page(page, "")   # a fresh server runs a page's URL as a bare script until app.py has run once
    goto_page(page, "explorer", 180_000)
    set_dataset(page, str(GENKI))
    assert_no_exception(page)
    main = page.locator('[data-testid="stMain"]')
    expect(main.get_by_text("genki4k · 4000 images")).to_be_visible()

    # class balance: a chart and a table with both classes in the three splits
    expect(main.get_by_role("heading", name="Class balance per split")).to_be_visible()
    balance = main.locator('[data-testid="stDataFrame"]').first
    expect(balance).to_contain_text("train")
    expect(balance).to_contain_text("test")
    assert main.locator(".js-plotly-plot").count() >= 3

    # the sample grid: 16 photos per class by default
    expect(main.get_by_text("smile (2162)", exact=True)).to_be_visible()
    expect(main.get_by_text("no smile (1838)", exact=True)).to_be_visible()
    assert main.locator('[data-testid="stImage"]').count() >= 32

    # filtering by class leaves one class
    main.get_by_role("combobox", name="Class").click()
    page.get_by_role("option", name="smile", exact=True).click()
    page.keyboard.press("Escape")
    wait_for_app(page)
    expect(main.get_by_text("smile (2162)", exact=True)).to_be_visible()
    expect(main.get_by_text("no smile (1838)", exact=True)).to_have_count(0)
    expect(main.get_by_text("2162 of 4000 images match.")).to_be_visible()

    # head pose, detector misses, and the model's mistakes with its confusion matrix
    expect(main.get_by_role("heading", name="Head pose")).to_be_visible()
    expect(main.get_by_role("heading", name="Faces the detector missed")).to_be_visible()
    expect(main.get_by_role("heading", name="The model's mistakes on the test split")).to_be_visible()
    expect(main.get_by_text("Confusion matrix (test split)")).to_be_visible(timeout=120_000)
    expect(main.locator('[data-testid="stMetric"]').filter(has_text="Test images")).to_contain_text("599")
    expect(main.get_by_text("mistakes, most confident first")).to_be_visible()
    assert_no_exception(page)
    save_screenshot(page, "explorer")


def test_missing_dataset_gives_a_clear_message(page, tmp_path):
    goto_page(page, "explorer")
    missing = tmp_path / "no-such-genki"
    set_dataset(page, str(missing))
    alert = page.locator('[data-testid="stAlert"]').filter(has_text="No dataset at")
    expect(alert).to_be_visible()
    expect(alert).to_contain_text(str(missing))
    expect(alert).to_contain_text("GENKI-4K")
    expect(alert).to_contain_text("mplab.ucsd.edu")
    assert_no_exception(page)
