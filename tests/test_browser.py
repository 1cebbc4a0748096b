"""A real browser (Debian's Chromium driven by Playwright) uses the app as a person would.

Skipped when Chromium is not installed, unless CLIPCAM_REQUIRE_BROWSER=1 (set by `make test`,
which installs it), so CI can never skip it silently.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from apphelpers import running_app

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]

if not Path(CHROMIUM).exists():
    if os.environ.get("CLIPCAM_REQUIRE_BROWSER") == "1":
        raise RuntimeError("Chromium is required for the browser test: apt-get install -y chromium")
    pytest.skip("Debian's chromium is not installed (make test installs it)", allow_module_level=True)

sync_api = pytest.importorskip("playwright.sync_api")


def drive(url: str, image: Path, prompts: list[str], screenshot: Path | None, switch_to: str | None):
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url, wait_until="load")  # not networkidle: the unload event keeps a heartbeat stream open
            page.locator("#run").wait_for(timeout=60_000)
            page.wait_for_timeout(1000)  # the page's load event sets the model and its settings
            page.locator("#image input[type=file]").set_input_files(str(image))
            page.locator("#prompts textarea").fill("\n".join(prompts))
            page.wait_for_timeout(500)
            page.locator("#run").click()
            page.wait_for_function(
                "n => document.querySelectorAll('#gallery img').length >= n", arg=len(prompts), timeout=120_000)
            page.wait_for_function(
                "n => document.querySelectorAll('#scores .confidence-set').length >= n", arg=len(prompts),
                timeout=30_000)
            captions = page.locator("#gallery").inner_text()
            shown = page.locator("#gallery img").count()
            scores = page.locator("#scores").inner_text()
            if screenshot:
                page.wait_for_timeout(800)
                page.screenshot(path=str(screenshot), full_page=True)
            # a display setting redraws the shown result at once, without Run; the downloads come on request
            before = page.locator("#gallery img").first.get_attribute("src")
            page.get_by_text("Display", exact=True).click()
            page.locator("#colormap input").click()
            page.get_by_role("option", name="jet").click()
            page.wait_for_function("s => document.querySelector('#gallery img').src !== s", arg=before, timeout=30_000)
            restyled = page.locator("#gallery img").count()
            page.locator("#downloads").click()
            page.wait_for_function("() => document.querySelector('#files').innerText.includes('heatmaps')",
                                   timeout=30_000)
            # an attention method disables the sublayer and makes the layer a start layer
            page.locator("#method input").click()
            page.get_by_role("option", name="LeGrad (attention)").click()
            page.wait_for_function("() => document.querySelector('#sublayer input').disabled", timeout=30_000)
            page.wait_for_function("() => document.querySelector('#layer').innerText.includes('Start layer')",
                                   timeout=30_000)
            # EigenCAM ignores the prompts: no target to choose
            page.locator("#method input").click()
            page.get_by_role("option", name="EigenCAM (prompt-independent)").click()
            page.wait_for_function("() => document.querySelector('#target input').disabled", timeout=30_000)
            # Score-CAM says it is slow and how many forward passes it needs
            page.locator("#method input").click()
            page.get_by_role("option", name="Score-CAM (slow: masked forwards)").click()
            page.wait_for_function("() => document.querySelector('#method-info').innerText.includes('forward passes')",
                                   timeout=30_000)
            assert not page.locator("#sublayer input").is_disabled()
            assert not page.locator("#target input").is_disabled()
            slider_max = None
            if switch_to:
                page.locator("#model input").click()
                page.get_by_role("option", name=switch_to).click()
                page.wait_for_function(
                    "m => document.querySelector('#layer input[type=range]').max === m",
                    arg=str(switch_to_layers[switch_to]), timeout=30_000)
                slider_max = page.locator("#layer input[type=range]").get_attribute("max")
            return shown, captions, scores, slider_max, restyled
        finally:
            browser.close()


switch_to_layers: dict[str, int] = {}


def test_upload_prompts_run_and_switch_model(tiny_dir, tiny5_dir, request):
    """On the shipped shapes model (a random tiny one if this checkout lacks it): upload a scene,
    type its three prompts, run, see three overlays and three scores; then switch models."""
    from clipcam.constants import SHAPES_MODEL_DIR

    if (SHAPES_MODEL_DIR / "model.safetensors").exists():
        first, image = "shapes", ROOT / "assets" / "shapes" / "scene-1.png"
        prompts = ["a photo of a red circle.", "a photo of a blue square.", "a photo of a green triangle."]
    else:
        first, image = str(tiny_dir), ROOT / "assets" / "chelsea.png"
        prompts = ["a photo of a cat.", "a photo of a dog.", "a photo of a dog and a cat."]
    label5 = tiny5_dir.name
    switch_to_layers[label5] = 3
    shot = request.config.getoption("--screenshot")
    with running_app([first, tiny5_dir]) as url:
        shown, captions, scores, slider_max, restyled = drive(url, image, prompts, Path(shot) if shot else None,
                                                              label5)
    assert shown >= 3 and restyled == shown
    for prompt in prompts:
        assert prompt in scores
    assert slider_max == "3"
