"""Overlays keep unseen pixels dimmed; the grid shows every prompt with its score."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from clipcam.render import (
    HATCH_GREY, caption, colorize, format_score, grid_image, hatch, layer_grid, legend_lines, overlay, with_legend,
)


def test_overlay_dims_unseen_and_colours_seen():
    img = Image.new("RGB", (20, 10), (200, 200, 200))
    heat = np.full((10, 20), 1.0, np.float32)
    heat[:, :5] = np.nan
    out = np.asarray(overlay(img, heat, "jet", 0.5)).astype(int)
    bands = hatch(10, 20)[:, :5]
    assert (out[:, :5][~bands] < 120).all()  # dimmed grey
    assert (out[:, :5][bands] == HATCH_GREY).all() and bands.any()  # hatched, so it never reads as a low value
    assert out[0, 10, 0] > out[0, 10, 2]  # jet at 1.0 is red


def test_colorize_rejects_unknown_map():
    with pytest.raises(ValueError, match="Unknown colour map 'rainbow': choose one of inferno, turbo, viridis, jet."):
        colorize(np.zeros((2, 2)), "rainbow")


def test_caption_and_grid():
    assert caption("a photo of a cat.", 0.8314) == "a photo of a cat. — 83.1 %"
    tiles = [Image.new("RGB", (64, 48), c) for c in ("red", "green", "blue")]
    sheet = grid_image(tiles, ["one", "two", "three"])
    assert sheet.width > 3 * 64 and sheet.height > 48


def reference_overlay(image, heatmap, colormap, alpha):
    """The float computation the uint8 blend replaces: cv2.applyColorMap, then (1 - a)·rgb + a·colour."""
    import cv2

    from clipcam.render import COLORMAPS, HATCH_PERIOD, HATCH_WIDTH, UNSEEN_DIM

    rgb = np.asarray(image, dtype=np.float32)
    values = np.nan_to_num(np.clip(heatmap, 0, 1), nan=0.0)
    colored = cv2.cvtColor(cv2.applyColorMap(np.uint8(np.round(255 * values)), COLORMAPS[colormap]), cv2.COLOR_BGR2RGB)
    blended = (1 - alpha) * rgb + alpha * colored.astype(np.float32)
    grey = rgb.mean(axis=2, keepdims=True)
    y, x = np.mgrid[:heatmap.shape[0], :heatmap.shape[1]]
    unseen = np.where(((x + y) % HATCH_PERIOD < HATCH_WIDTH)[..., None], float(HATCH_GREY),
                      UNSEEN_DIM * grey + (1 - UNSEEN_DIM) * 40.0)
    blended = np.where(np.isnan(heatmap)[..., None], unseen, blended)
    return np.round(blended)


@pytest.mark.parametrize("colormap", ["inferno", "turbo", "viridis", "jet"])
@pytest.mark.parametrize("alpha", [0.0, 0.35, 1.0])
def test_lookup_table_overlays_equal_the_float_blend(colormap, alpha):
    from clipcam.render import overlays

    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8))
    maps = rng.random((3, 30, 40)).astype(np.float32)
    maps[:, :, :7] = np.nan
    for tile, heat in zip(overlays(img, maps, colormap, alpha), maps):
        diff = np.abs(np.asarray(tile, dtype=np.float32) - reference_overlay(img, heat, colormap, alpha))
        assert diff.max() <= 1  # uint8 rounding only


def test_captions_are_shortened():
    long = "a photo of " + "a very " * 30 + "long cat."
    text = caption(long, 0.5)
    assert text.endswith("… — 50.0 %") and len(text.split(" — ")[0]) == 60


def test_scores_tell_small_from_zero():
    assert [format_score(p) for p in (0.0, 4e-5, 0.004, 0.0004, 0.8314, 0.99996, 1.0)] == [
        "0 %", "< 0.01 %", "0.40 %", "0.04 %", "83.1 %", "> 99.9 %", "100.0 %"]
    assert caption("a photo of a cat.", 0.004) == "a photo of a cat. — 0.40 %"


def ink(image: Image.Image, box: tuple[int, int, int, int]) -> int:
    """How many dark pixels a region of a white sheet holds (text drawn there)."""
    return int((np.asarray(image.crop(box).convert("L")) < 128).sum())


def test_grid_png_text_draws_the_em_dash_not_a_missing_glyph_box():
    """DejaVu Sans has the em dash: drawn alone it is one thin horizontal stroke, not the hollow
    rectangle (ink on four sides) that a font without the glyph draws."""
    from clipcam.render import _font

    from PIL import ImageDraw

    font = _font(40)
    sheet = Image.new("RGB", (80, 60), "white")
    ImageDraw.Draw(sheet).text((10, 5), "—", fill="black", font=font)
    dark = np.asarray(sheet.convert("L")) < 128
    rows, cols = np.flatnonzero(dark.any(axis=1)), np.flatnonzero(dark.any(axis=0))
    assert len(rows) and rows[-1] - rows[0] < 8 and cols[-1] - cols[0] > 20  # wide and thin: a dash


def test_legend_under_a_sheet_names_high_low_and_the_scale():
    sheet = Image.new("RGB", (500, 100), "white")
    lines = legend_lines(False, "sigmoid")
    assert "Per-prompt scale" in lines[1] and "sigmoid" in lines[3] and "need not add up" in lines[3]
    assert "Shared scale" in legend_lines(True)[1]
    out = with_legend(sheet, "inferno", lines)
    assert out.width == 500 and out.height > 100 + 4 * 18
    bar = np.asarray(out.crop((0, 100, 500, 130)))
    assert (bar[..., 0].astype(int) - bar[..., 2].astype(int)).max() > 100  # inferno's orange-yellow end is drawn


def test_sweep_names_its_prompts_above_the_first_row():
    image = Image.new("RGB", (64, 64), (120, 120, 120))
    maps = np.random.default_rng(0).random((6, 2, 32, 32)).astype(np.float32)
    sheet = layer_grid(image, maps, range(1, 7), ["a cat", "a dog"], [0.7, 0.3], tile_side=64)
    top = ink(sheet, (60, 0, sheet.width, 20))
    bottom = ink(sheet, (60, sheet.height - 7, sheet.width, sheet.height))  # no captions under the last row
    assert top > 30 and bottom == 0
