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
