"""The Training page in a real browser: bad settings are refused with the reason; a short GENKI-4K run
started from the page shows its curves growing while it trains, finishes with a validation confusion matrix
and test figures, and becomes the app's model in one click."""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect

from core.onnx_runtime import stale_reason
from ui import assert_no_exception, goto_page, save_screenshot, wait_for_app

GENKI = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "genki4k"
RUN = "browser-run"
pytestmark = [pytest.mark.browser, pytest.mark.skipif(not GENKI.is_dir(), reason=f"GENKI-4K is not at {GENKI}")]


def fill(page, label: str, value) -> None:
    box = page.locator('[data-testid="stMain"]').get_by_label(label, exact=True)
    box.fill(str(value))
    box.press("Tab")


def choose(page, label: str, option) -> None:
    """Pick `option` (its text, or a pattern) in the main area's selectbox called `label`."""
    page.locator('[data-testid="stMain"]').get_by_role("combobox", name=label).click()
    page.get_by_role("option", name=option, **({"exact": True} if isinstance(option, str) else {})).click()
    page.wait_for_timeout(300)


def start(page) -> None:
    page.get_by_role("button", name="Start training").click()
    page.wait_for_timeout(500)
    wait_for_app(page)


def curve_points(page) -> int:
    """Epochs drawn in the learning curves (0 before the first)."""
    chart = page.locator('[data-testid="stPlotlyChart"] .js-plotly-plot').first
    if not chart.count():
        return 0
    return chart.evaluate("e => (e.data && e.data[0] && e.data[0].x) ? e.data[0].x.length : 0")


def test_a_short_run_from_the_page(page, app_server):
    goto_page(page, "")   # a fresh server runs a page's URL as a bare script until app.py has run once
    goto_page(page, "training")
    main = page.locator('[data-testid="stMain"]')
    before = set(app_server.runs.iterdir())
    fill(page, "Dataset folder (or fer2013.csv)", GENKI)
    wait_for_app(page)

    # bad settings: refused before anything starts, with the reason
    fill(page, "Epochs", 0)
    start(page)
    expect(main.get_by_text("Not started: epochs must be between 1 and 1000, not 0")).to_be_visible()
    assert set(app_server.runs.iterdir()) == before

    # starting from a model of another architecture (the bundled expression network) is refused too
    fill(page, "Epochs", 2)
    choose(page, "Start from", re.compile(r"^expression \(bundled.* · expression task, expression network$"))
    start(page)
    expect(main.get_by_text(re.compile(r"Not started: --init .*models/expression: a 'expression' network, "
                                       r"and this run builds 'compact'"))).to_be_visible()
    assert set(app_server.runs.iterdir()) == before
    choose(page, "Start from", "new weights")

    # the augmentation's deblocking blur blurs compressed faces only: without JPEG compression it is refused
    main.get_by_text("Augmentation", exact=True).click()
    slider = main.locator('[data-testid="stSlider"]').filter(has_text="Deblocking blur")
    thumb, shown = slider.get_by_role("slider"), slider.get_by_test_id("stSliderThumbValue")
    thumb.focus()
    for _ in range(5):
        thumb.press("ArrowRight")
    expect(shown).to_have_text(re.compile(r"^0\.50?$"))
    start(page)
    expect(main.get_by_text("Not started: deblock blurs compressed training faces: it needs --jpeg above 0")
           ).to_be_visible()
    assert set(app_server.runs.iterdir()) == before
    thumb.focus()
    thumb.press("Home")
    expect(shown).to_have_text(re.compile(r"^0(\.00?)?$"))

    # a 2-epoch run on 300 images
    fill(page, "Epochs", 2)
    fill(page, "Subset limit (0: all)", 300)
    fill(page, "Batch size", 32)
    fill(page, "Run name (optional)", RUN)
    start(page)
    progress = main.locator('[data-testid="stProgress"]')
    expect(progress).to_contain_text("Epoch 0/2", timeout=20_000)

    # live: the epoch counter and the learning curves move while it trains
    samples = []                          # (seconds, epoch shown, state shown, curve points)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 240:
        m = re.search(r"Epoch (\d+)/2 · (?:ETA [^·]+ · )?(\w+)", progress.inner_text())
        if m:
            samples.append((time.monotonic() - t0, int(m[1]), m[2], curve_points(page)))
        if main.get_by_text("Test accuracy").count():
            break
        page.wait_for_timeout(400)
    running = [s for s in samples if s[2] in ("preparing", "running")]
    assert {0, 1} <= {s[1] for s in running}, f"the epoch counter did not advance live: {samples}"
    assert_no_exception(page)

    # finished: both epochs drawn, validation confusion matrix after the last one, test figures
    expect(progress).to_contain_text("Epoch 2/2 · finished", timeout=60_000)
    expect(progress).not_to_contain_text("finished: finished")
    assert curve_points(page) == 2
    expect(main.get_by_text("Validation, epoch 2")).to_be_visible()
    expect(main.locator('[data-testid="stMetric"]').filter(has_text="Test accuracy")).to_be_visible()
    table = main.locator('[data-testid="stDataFrame"]')
    expect(table).to_contain_text(RUN)

    # one click makes it the app's model: the registry and the sidebar's picker follow
    page.get_by_role("button", name="Use as the app's model").click()
    wait_for_app(page)
    expect(main.get_by_text(f"{RUN} is now the app's smile model.")).to_be_visible(timeout=30_000)
    chosen = json.loads((app_server.runs / "active_models.json").read_text())
    assert chosen["smile"] == str((app_server.runs / RUN).resolve())
    run_dir = app_server.runs / RUN   # exported on the way, so ONNX Runtime serves it, not Keras
    assert stale_reason(run_dir, run_dir / "model.keras") == ""
    expect(page.locator('[data-testid="stSidebar"]').get_by_role("combobox", name="Model")).to_have_value(
        re.compile(rf"^{RUN} \(run"))
    expect(main.get_by_text("The app's smile model", exact=True)).to_be_visible()
    expect(main.get_by_text("Validation, epoch 2")).to_be_visible()
    assert_no_exception(page)
    save_screenshot(page, "training")
    # the server is shared by the later browser tests: give them back the bundled model
    (app_server.runs / "active_models.json").unlink()
