"""Overlays keep unseen pixels dimmed; the grid shows every prompt with its score."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from clipcam.render import caption, colorize, grid_image, overlay


def test_overlay_dims_unseen_and_colours_seen():
    img = Image.new("RGB", (20, 10), (200, 200, 200))
    heat = np.full((10, 20), 1.0, np.float32)
    heat[:, :5] = np.nan
    out = np.asarray(overlay(img, heat, "jet", 0.5)).astype(int)
    assert (out[:, :5] < 120).all()  # dimmed grey
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

    from clipcam.render import COLORMAPS, UNSEEN_DIM

    rgb = np.asarray(image, dtype=np.float32)
    values = np.nan_to_num(np.clip(heatmap, 0, 1), nan=0.0)
    colored = cv2.cvtColor(cv2.applyColorMap(np.uint8(np.round(255 * values)), COLORMAPS[colormap]), cv2.COLOR_BGR2RGB)
    blended = (1 - alpha) * rgb + alpha * colored.astype(np.float32)
    grey = rgb.mean(axis=2, keepdims=True)
    blended = np.where(np.isnan(heatmap)[..., None], UNSEEN_DIM * grey + (1 - UNSEEN_DIM) * 40.0, blended)
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
