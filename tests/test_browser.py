"""A real browser (Debian's Chromium driven by Playwright) uses the app as a person would, offline,
at 1400 px on a desktop and at a phone's 390×844.

The app offers base (not reachable offline), the shipped shapes model and a tiny random CLIP saved
on disk (a loadable "photo" model). Skipped when Chromium is not installed, unless
CLIPCAM_REQUIRE_BROWSER=1 (set by `make test`, which installs it), so CI can never skip it silently.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from apphelpers import running_app
from PIL import Image

pytestmark = pytest.mark.slow  # a real browser on a served app: not in `make test-fast`

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]
DESKTOP = {"width": 1400, "height": 1000}
PHONE = {"width": 390, "height": 844}
SHAPES_PROMPTS = ["a photo of a red circle.", "a photo of a blue square.", "a photo of a green triangle."]

if os.environ.get("CLIPCAM_REQUIRE_BROWSER") == "1":  # required: a missing browser fails, never skips
    if not Path(CHROMIUM).exists():
        raise RuntimeError("Chromium is required for the browser test: apt-get install -y chromium")
    from playwright import sync_api  # an ImportError here fails the run
else:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (make test installs it)", allow_module_level=True)
    sync_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def url(tiny5_dir):
    with running_app(["base", "shapes", tiny5_dir]) as address:
        yield address


@pytest.fixture(scope="module")
def offline_url():
    """Only base (unreachable) and shapes: no model that suits a photo can be loaded."""
    with running_app(["base", "shapes"]) as address:
        yield address


def open_page(browser, url: str, viewport: dict = DESKTOP):
    page = browser.new_page(viewport=viewport)
    page.goto(url, wait_until="load")  # not networkidle: the unload event keeps a heartbeat stream open
    page.locator("#run").wait_for(timeout=60_000)
    # the page's load event picks the model and fills in its first example
    page.wait_for_function("() => document.querySelector('#prompts textarea').value.length > 0", timeout=60_000)
    page.wait_for_function("() => document.querySelector('#image img') !== null", timeout=60_000)
    page.wait_for_timeout(300)
    return page


def run(page, tiles: int, button: str = "#run", notice: str = "#notice") -> None:
    """Press a run button and wait until its notice is no longer 'Working…' and ``tiles`` are shown."""
    page.locator(button).click()
    finished(page, tiles, notice)


def finished(page, tiles: int, notice: str = "#notice") -> None:
    page.wait_for_function(
        "([sel, n]) => !document.querySelector(sel).innerText.includes('Working')"
        " && document.querySelectorAll('#gallery img').length >= n", arg=[notice, tiles], timeout=120_000)
    page.wait_for_timeout(300)


def choose(page, dropdown: str, option: str) -> None:
    page.locator(f"{dropdown} input").click()
    page.get_by_role("option", name=option, exact=True).click()


def fetch_image(page, src: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(page.request.get(src).body())).convert("RGB"))


def no_error_badges(page) -> None:
    """No output turned into gradio's 'Error' badge, and no toast lingers."""
    assert page.locator(".error").count() == 0
    assert page.locator("[data-testid='toast-body']").count() == 0


def test_first_run_makes_sense_offline(browser, url, request):
    """Offline the page starts on shapes, says why, fills in a shapes scene and its prompts, lists the
    shapes examples first; Run shows three tiles, each with its score as a number in the tiles'
    order, the colour legend, and the reading help one click away."""
    page = open_page(browser, url)
    try:
        assert "Showing the offline **shapes** model".replace("**", "") in page.locator("#startup-notice").inner_text()
        assert page.locator("#prompts textarea").input_value() == "\n".join(SHAPES_PROMPTS)
        first_group = page.locator(".example-group:visible").first
        assert "Shapes-world scenes" in first_group.inner_text()
        run(page, 3)
        captions = [c.strip() for c in page.locator("#gallery .caption-label").all_inner_texts()]
        rows = page.locator("#scores .score-row")
        assert rows.count() == 3
        for i, prompt in enumerate(SHAPES_PROMPTS):
            row = rows.nth(i)
            assert row.locator(".score-prompt").inner_text() == prompt
            value = row.locator(".score-value").inner_text()
            assert value.endswith("%") and captions[i].startswith(f"{i + 1} · {value}")  # tile and table agree
        assert "CLIP's softmax over the prompts" in page.locator("#scores").inner_text()
        legend = page.locator("#legend").inner_text()
        assert "low" in legend and "high" in legend and "Per-prompt scale" in legend
        assert not page.get_by_text("the brighter the colour").is_visible()
        page.locator("#how-to-read").get_by_text("How to read the maps").click()
        page.get_by_text("the brighter the colour", exact=False).wait_for(state="visible", timeout=10_000)
        no_error_badges(page)
        shot = request.config.getoption("--screenshot")
        if shot:
            page.wait_for_function("() => document.querySelector('#words-explain').innerText.trim().length > 0",
                                   timeout=60_000)  # the word relevance that follows the run
            page.locator("#how-to-read").get_by_text("How to read the maps").click()  # closed again for the picture
            page.wait_for_timeout(500)
            page.screenshot(path=shot, full_page=True)
    finally:
        page.close()


def test_photo_example_on_shapes_switches_to_a_photo_model(browser, url):
    page = open_page(browser, url)
    try:
        page.locator(".example-group:visible button", has_text="Cat (cat, dog, both)").first.click()
        page.wait_for_function("() => document.querySelector('#prompts textarea').value.includes('cat')")
        page.wait_for_function("() => !document.querySelector('#model input').value.startsWith('shapes')")
        assert "Switched to" in page.locator("#model-notice").inner_text()
        assert "Photos" in page.locator(".example-group:visible").first.inner_text()  # its group now comes first
    finally:
        page.close()


def test_photo_example_says_why_no_model_fits_and_unknown_words_are_named(browser, offline_url):
    page = open_page(browser, offline_url)
    try:
        page.locator(".example-group:visible button", has_text="Astronaut").first.click()
        page.wait_for_function("() => document.querySelector('#model-notice').innerText.includes('needs a model')")
        assert page.locator("#model input").input_value().startswith("shapes")
        assert "none can be loaded now" in page.locator("#model-notice").inner_text()
        run(page, 4)
        notice = page.locator("#notice").inner_text()
        assert "does not know 'astronaut' (prompt 1)" in notice and "letter by letter" in notice
    finally:
        page.close()


def test_a_model_that_cannot_be_loaded_says_so_on_picking_and_on_run(browser, offline_url):
    page = open_page(browser, offline_url)
    try:
        run(page, 3)
        choose(page, "#model", "base — CLIP ViT-B/32, 7×7 patches")
        page.wait_for_function("() => document.querySelector('#model-notice').innerText.includes('cannot be loaded')")
        assert "Pick shapes, which works offline" in page.locator("#model-notice").inner_text()
        page.locator("#run").click()
        page.wait_for_function("() => document.querySelector('#notice').innerText.includes('cannot be loaded now')")
        assert page.locator("#gallery img").count() == 3  # the previous result stays
        no_error_badges(page)
    finally:
        page.close()


def test_bad_input_is_one_sentence_and_keeps_the_result_and_inputs(browser, url):
    page = open_page(browser, url)
    try:
        run(page, 3)
        page.locator("#prompts textarea").fill("")
        page.locator("#run").click()
        page.wait_for_function("() => document.querySelector('#notice').innerText.includes('No prompts given')")
        assert page.locator("#gallery img").count() == 3 and page.locator("#scores .score-row").count() == 3
        assert page.locator("#image img").count() == 1
        no_error_badges(page)
        page.locator("#prompts textarea").fill("a photo of a red circle.\na photo of a blue square.")
        run(page, 2)
        assert "No prompts given" not in page.locator("#notice").inner_text()  # the old notice is gone
    finally:
        page.close()


def test_one_prompt_fills_the_width_and_says_why_it_is_100(browser, url):
    page = open_page(browser, url)
    try:
        page.locator("#prompts textarea").fill("a photo of a red circle.")
        run(page, 1)
        assert "With one prompt the score is 100 % by definition" in page.locator("#notice").inner_text()
        tile = page.locator("#gallery img").first.bounding_box()
        block = page.locator("#gallery").bounding_box()
        assert tile["width"] > 0.8 * block["width"]  # one tile, not a third of the row
        natural = page.evaluate("() => { const i = document.querySelector('#gallery img');"
                                " return [i.naturalWidth, i.naturalHeight, getComputedStyle(i).objectFit]; }")
        assert natural[2] == "contain" or abs(tile["width"] / tile["height"] - natural[0] / natural[1]) < 0.05
    finally:
        page.close()


def test_a_long_prompt_wraps_in_ordinary_text(browser, url):
    page = open_page(browser, url)
    try:
        long = "a photo of a red circle next to " + "a very large blue square and " * 8 + "a green triangle."
        page.locator("#prompts textarea").fill(f"{long}\na photo of a blue square.")
        run(page, 2)
        size = page.evaluate("() => parseFloat(getComputedStyle(document.querySelector('.score-prompt')).fontSize)")
        assert size <= 18
        box = page.locator("#scores").bounding_box()
        assert box["height"] < 400 and box["width"] <= page.locator("#gallery").bounding_box()["width"] + 2
    finally:
        page.close()


def test_display_settings_redraw_at_once_and_downloads_record_them(browser, url):
    """Colour map, opacity and scale re-draw the shown tiles and the legend without Run; the
    downloads come on request, and scores.json records no sublayer for an attention method."""
    page = open_page(browser, url)
    try:
        run(page, 3)
        before = page.locator("#gallery img").first.get_attribute("src")
        page.locator("#display").get_by_text("Display").click()
        choose(page, "#colormap", "jet")
        page.wait_for_function("s => document.querySelector('#gallery img').src !== s", arg=before, timeout=30_000)
        page.wait_for_function("() => document.querySelector('#legend .legend').dataset.colormap === 'jet'")
        page.locator("#shared input").check()
        page.wait_for_function("() => document.querySelector('#legend .legend').dataset.scale === 'shared'")
        assert page.locator("#gallery img").count() == 3
        page.locator("#downloads").click()
        page.locator("#files a[download='scores.json']").wait_for(timeout=30_000)
        link = page.locator("#files a[download='scores.json']").get_attribute("href")
        saved = json.loads(page.request.get(link).body())
        assert saved["method"] == "chefer" and saved["sublayer"] is None
        assert saved["display"] == {"colormap": "jet", "alpha": 0.5, "shared": True}
        grid = page.locator("#files a[download='grid.png']").get_attribute("href")
        sheet = fetch_image(page, grid)
        assert sheet.shape[0] > 300  # the tiles, then the legend and the settings under them
    finally:
        page.close()


def test_unseen_parts_are_hatched_and_named(browser, url, tmp_path):
    """A wide image: the model sees only its centre; the parts it never saw carry the light hatch
    (visible on inferno at the default opacity) and the notice says so."""
    wide = tmp_path / "wide.png"
    Image.fromarray(np.full((100, 400, 3), 30, np.uint8)).save(wide)
    page = open_page(browser, url)
    try:
        page.locator("#image input[type=file]").set_input_files(str(wide))
        page.wait_for_timeout(800)
        run(page, 3)
        assert "saw only the centre 100×100 pixels of this 400×100 image" in page.locator("#notice").inner_text()
        tile = fetch_image(page, page.locator("#gallery img").first.get_attribute("src"))
        left = tile[:, : tile.shape[1] // 5].astype(int)
        assert ((np.abs(left - 150) < 20).all(axis=2)).mean() > 0.15  # the hatch bands (JPEG-blurred)
    finally:
        page.close()


def test_switching_to_grad_cam_on_shapes_moves_to_its_best_layer(browser, url):
    page = open_page(browser, url)
    try:
        assert page.locator("#layer input[type=number]").input_value() == "1"  # Chefer's best on shapes
        choose(page, "#method", "Grad-CAM")
        page.wait_for_function("() => document.querySelector('#layer input[type=number]').value === '2'")
        assert not page.locator("#sublayer input").is_disabled()
        choose(page, "#method", "LeGrad (attention)")
        page.wait_for_function("() => document.querySelector('#sublayer input').disabled")
        page.wait_for_function("() => document.querySelector('#layer').innerText.includes('Start layer')")
        page.wait_for_function("() => document.querySelector('#layer input[type=number]').value === '1'")
    finally:
        page.close()


def test_sweep_names_prompts_at_the_top(browser, url):
    page = open_page(browser, url)
    try:
        page.get_by_role("tab", name="Layer sweep").click()
        page.locator("#sweep").click()
        page.wait_for_function("() => document.querySelector('#sweep-image img') !== null", timeout=120_000)
        sheet = fetch_image(page, page.locator("#sweep-image img").first.get_attribute("src"))
        top = sheet[:24, 80:].mean(axis=2)
        assert (top < 128).sum() > 50  # the prompts' names are drawn above the first row
        assert "Per-prompt scale" in page.locator("#sweep-legend").inner_text()
    finally:
        page.close()


def test_compare_runs_the_side_that_can(browser, url):
    page = open_page(browser, url)
    try:
        page.get_by_role("tab", name="Compare models").click()
        assert page.locator("#left-model input").input_value().startswith("shapes")  # not base, unreachable offline
        choose(page, "#right-model", "base — CLIP ViT-B/32, 7×7 patches")
        page.locator("#compare").click()
        page.wait_for_function("() => document.querySelectorAll('#left-gallery img').length === 3", timeout=120_000)
        page.wait_for_function("() => document.querySelector('#compare-notice').innerText.includes('base')")
        notice = page.locator("#compare-notice").inner_text()
        assert "base: ⚠️ base cannot be loaded now" in notice and "shapes: layer" in notice
        assert page.locator("#left-scores .score-row").count() == 3
        no_error_badges(page)
    finally:
        page.close()


def test_keyboard_runs_and_reaches_every_example(browser, url):
    page = open_page(browser, url)
    try:
        page.locator("#prompts textarea").fill("a photo of a red circle.\na photo of a blue square.")
        page.locator("#prompts textarea").press("Control+Enter")
        finished(page, 2)
        assert page.locator("#scores .score-row").count() == 2
        buttons = page.locator(".example-group:visible button")
        count = buttons.count()
        assert count == 7
        buttons.first.focus()
        reached = 1
        for _ in range(count - 1):
            page.keyboard.press("Tab")
            reached += page.evaluate("() => document.activeElement.closest('.example-group') !== null")
        assert reached == count
        page.locator(".example-group:visible button", has_text="Yellow square").first.focus()
        page.keyboard.press("Enter")
        page.wait_for_function("() => document.querySelector('#prompts textarea').value.includes('yellow square')")
    finally:
        page.close()


def test_share_link_restores_the_example_and_settings(browser, url):
    page = open_page(browser, url)
    try:
        page.locator(".example-group:visible button", has_text="Yellow square").first.click()
        page.wait_for_function("() => document.querySelector('#prompts textarea').value.includes('yellow')")
        choose(page, "#method", "Grad-CAM")
        page.wait_for_function("() => document.querySelector('#layer input[type=number]').value === '2'")
        page.locator("#share").get_by_text("Share these settings").click()
        page.locator("#share-button").click()
        page.wait_for_function("() => document.querySelector('#share-link textarea').value.includes('example=')")
        link = page.locator("#share-link textarea").input_value()
        assert link.startswith(url) and "method=gradcam" in link and "example=shapes-2" in link
    finally:
        page.close()
    page = open_page(browser, link)
    try:
        page.wait_for_function("() => document.querySelector('#prompts textarea').value.includes('yellow square')")
        assert page.locator("#method input").input_value() == "Grad-CAM"
        assert page.locator("#layer input[type=number]").input_value() == "2"
        assert "restored from a shared link" in page.locator("#startup-notice").inner_text()
    finally:
        page.close()


def test_phone_layout(browser, url, request):
    """At 390×844: the model's name stops before the dropdown's arrow, every example fits the width,
    no label covers the first tile, and no empty area sits under the tiles."""
    page = open_page(browser, url, PHONE)
    try:
        assert page.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]
        field = page.locator("#model input").bounding_box()
        arrow = page.locator("#model .icon-wrap").bounding_box()
        text_end = page.evaluate("() => { const i = document.querySelector('#model input');"
                                 " const s = getComputedStyle(i); return i.getBoundingClientRect().right"
                                 " - parseFloat(s.paddingRight); }")
        assert text_end <= arrow["x"] + 1 and field["x"] < arrow["x"]
        for box in (b.bounding_box() for b in page.locator(".example-group:visible button").all()):
            assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
        run(page, 3)
        first = page.locator("#gallery img").first.bounding_box()
        assert page.locator("#gallery [data-testid='block-label']").count() == 0
        tiles = page.locator("#gallery .grid-container").bounding_box()
        block = page.locator("#gallery").bounding_box()
        assert block["height"] < tiles["height"] + 60 and first["width"] > 120
        assert page.locator("#scores .score-value").count() == 3
        shot = request.config.getoption("--screenshot")
        if shot:
            page.wait_for_function("() => document.querySelector('#words-explain').innerText.trim().length > 0",
                                   timeout=60_000)
            page.wait_for_timeout(500)
            page.screenshot(path=str(Path(shot).with_name(Path(shot).stem + "-phone.png")), full_page=True)
    finally:
        page.close()


def test_desktop_has_no_empty_area_under_the_tiles(browser, url):
    page = open_page(browser, url)
    try:
        run(page, 3)
        tiles = page.locator("#gallery .grid-container").bounding_box()
        block = page.locator("#gallery").bounding_box()
        assert block["height"] < tiles["height"] + 60
    finally:
        page.close()


def test_a_large_jpeg_notice_states_no_wrong_size(browser, url, tmp_path):
    """The notice for a JPEG decoded smaller names no model input size (it was "224×224" even for
    the 64×64 shapes model)."""
    big = tmp_path / "big.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (3000, 9000, 3), np.uint8)).save(big, quality=40)
    page = open_page(browser, url)
    try:
        page.locator("#image input[type=file]").set_input_files(str(big))
        page.wait_for_timeout(1500)
        run(page, 3)
        notice = page.locator("#notice").inner_text()
        assert "decoded at" in notice and "224" not in notice
    finally:
        page.close()


def test_compare_offline_defaults_run_on_both_sides(browser):
    """Offline, with the default model list, Compare pairs shapes with shapes-siglip and labels its depth
    from the two; Compare shows maps on both sides; switching to a model that cannot be loaded says why
    at once and relabels the depth (issue 26)."""
    from clipcam.app.choices import allowed_models

    with running_app(allowed_models("")) as address:
        page = open_page(browser, address)
        try:
            page.get_by_role("tab", name="Compare models").click()
            assert page.locator("#left-model input").input_value().startswith("shapes — ")
            assert page.locator("#right-model input").input_value().startswith("shapes-siglip — ")
            page.wait_for_function("() => document.querySelector('#depth').innerText"
                                   ".includes('Relative depth (0.9 = layer 4 of 4, layer 1 of 1)')", timeout=30_000)
            page.locator("#compare").click()
            page.wait_for_function("() => document.querySelectorAll('#left-gallery img').length === 3"
                                   " && document.querySelectorAll('#right-gallery img').length === 3", timeout=120_000)
            for side in ("#left-gallery", "#right-gallery"):
                tile = fetch_image(page, page.locator(f"{side} img").first.get_attribute("src"))
                assert tile.std() > 10  # a coloured map over the scene, not a blank tile
            notice = page.locator("#compare-notice").inner_text()
            assert "shapes: layer 4 of 4" in notice and "shapes-siglip: layer 1 of 1" in notice
            choose(page, "#right-model", "base — CLIP ViT-B/32, 7×7 patches")
            page.wait_for_function("() => document.querySelector('#compare-notice').innerText"
                                   ".includes('base cannot be loaded now')", timeout=30_000)
            assert "layer 4 of 4, layer 11 of 12" in page.locator("#depth").inner_text()
            no_error_badges(page)
        finally:
            page.close()
