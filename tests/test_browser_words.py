"""A real browser (Debian's Chromium through Playwright) sees each prompt's words shaded under the
heatmaps, in the Explain and Compare tabs, and turns them off. Skipped like tests/test_browser.py
when Chromium is missing, unless CLIPCAM_REQUIRE_BROWSER=1."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from apphelpers import running_app

pytestmark = pytest.mark.slow  # a real browser on a served app: not in `make test-fast`

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]

if os.environ.get("CLIPCAM_REQUIRE_BROWSER") == "1":  # required: a missing browser fails, never skips
    if not Path(CHROMIUM).exists():
        raise RuntimeError("Chromium is required for the browser test: apt-get install -y chromium")
    from playwright import sync_api  # an ImportError here fails the run
else:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (make test installs it)", allow_module_level=True)
    sync_api = pytest.importorskip("playwright.sync_api")

WORDS = "document.querySelectorAll('{} .clipcam-word').length"


def test_words_shaded_under_the_heatmaps_in_explain_and_compare(tiny_dir, tiny5_dir):
    prompts = ["a photo of a cat.", "a red zebra."]  # 6 + 4 words ("." counts)
    with running_app([tiny_dir, tiny5_dir]) as url, sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url, wait_until="load")  # not networkidle: the unload event keeps a heartbeat stream open
            page.locator("#run").wait_for(timeout=60_000)
            page.wait_for_timeout(1000)  # the page's load event sets the model and its settings
            page.locator("#image input[type=file]").set_input_files(str(ROOT / "assets" / "chelsea.png"))
            page.locator("#prompts textarea").fill("\n".join(prompts))
            page.locator("#words input").click()
            page.get_by_role("option", name="Gradient × input (token embeddings)").click()
            page.wait_for_timeout(500)
            page.locator("#run").click()
            page.wait_for_function(f"() => {WORDS.format('#words-explain')} === 10", timeout=120_000)
            text = page.locator("#words-explain").inner_text()
            assert "a photo of a cat." in text and "zebra" in text and "lowers the score" in text
            colours = page.eval_on_selector_all("#words-explain .clipcam-word", "els => els.map(e => e.style.background)")
            assert len(set(colours)) > 2  # shaded, not one colour
            page.get_by_role("tab", name="Compare models").click()
            page.get_by_role("button", name="Compare").click()
            page.wait_for_function(f"() => {WORDS.format('#words-left')} === 10 && {WORDS.format('#words-right')} === 10",
                                   timeout=120_000)
            page.locator("#words input").click()
            page.get_by_role("option", name="Off").click()
            page.wait_for_function(f"() => {WORDS.format('#words-left')} === 0 && {WORDS.format('#words-explain')} === 0",
                                   timeout=30_000)
        finally:
            browser.close()
