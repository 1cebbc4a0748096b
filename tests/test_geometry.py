"""Heatmaps land on the right pixels of the user's own (non-square) image."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from transformers import CLIPImageProcessor

from clipcam.geometry import CropGeometry

PROCESSOR = CLIPImageProcessor()  # OpenAI's settings: short side 224, centre crop 224


def marker_cell(processor, image_size, box, grid):
    """Run the real processor on a black image with a white box; return the grid cell it lands in."""
    img = Image.new("RGB", image_size, "black")
    img.paste(Image.new("RGB", (box[2] - box[0], box[3] - box[1]), "white"), box[:2])
    pixels = processor(images=img, return_tensors="pt")["pixel_values"][0].mean(0).numpy()  # (S, S)
    rows, cols = grid
    cells = pixels.reshape(rows, pixels.shape[0] // rows, cols, pixels.shape[1] // cols).mean(axis=(1, 3))
    return np.unravel_index(np.argmax(cells), cells.shape)


@pytest.mark.parametrize("size", [(640, 480), (480, 640), (451, 300), (300, 451), (1000, 230), (224, 224), (100, 150)])
def test_geometry_matches_the_processor(size):
    """A white box drawn where the geometry says cell (r, c) lies ends up in cell (r, c) of the crop."""
    geo = CropGeometry.from_processor(PROCESSOR, size, (7, 7))
    left, top, right, bottom = geo.crop_box()
    cw, ch = (right - left) / 7, (bottom - top) / 7
    for r, c in [(0, 0), (1, 5), (3, 3), (6, 6), (6, 0)]:
        box = (int(round(left + (c + 0.3) * cw)), int(round(top + (r + 0.3) * ch)),
               int(round(left + (c + 0.7) * cw)), int(round(top + (r + 0.7) * ch)))
        assert marker_cell(PROCESSOR, size, box, (7, 7)) == (r, c)


@pytest.mark.parametrize("size", [(640, 480), (300, 451), (2000, 300)])
def test_peak_cell_lands_on_its_pixels(size):
    grid = np.zeros((1, 7, 7), np.float32)
    grid[0, 2, 5] = 1.0
    geo = CropGeometry.from_processor(PROCESSOR, size, (7, 7))
    image_map = geo.grid_to_image(grid)[0]
    assert image_map.shape == (size[1], size[0])
    y, x = np.unravel_index(np.nanargmax(image_map), image_map.shape)
    left, top, right, bottom = geo.crop_box()
    cw, ch = (right - left) / 7, (bottom - top) / 7
    assert left + 5 * cw <= x + 0.5 <= left + 6 * cw
    assert top + 2 * ch <= y + 0.5 <= top + 3 * ch


def test_outside_the_crop_is_nan_and_inside_is_not():
    geo = CropGeometry.from_processor(PROCESSOR, (640, 480), (7, 7))
    m = geo.grid_to_image(np.ones((1, 7, 7), np.float32))[0]
    left, _, right, _ = geo.crop_box()  # 480 → 224: crop spans x in [80, 560)
    assert (left, right) == pytest.approx((80.0, 560.0), abs=1.5)
    assert np.isnan(m[:, :79]).all() and np.isnan(m[:, 562:]).all()
    assert not np.isnan(m[:, 82:558]).any()


def test_downscaled_canvas_keeps_the_same_layout():
    geo = CropGeometry.from_processor(PROCESSOR, (4000, 1000), (7, 7))
    grid = np.random.RandomState(0).rand(2, 7, 7).astype(np.float32)
    full = geo.grid_to_image(grid)
    small = geo.grid_to_image(grid, (400, 100))
    assert small.shape == (2, 100, 400)
    np.testing.assert_allclose(np.isnan(small), np.isnan(full[:, 5::10, 5::10]))


def test_processor_that_pads():
    proc = CLIPImageProcessor(size={"shortest_edge": 200}, crop_size={"height": 224, "width": 224})
    geo = CropGeometry.from_processor(proc, (200, 200), (7, 7))
    assert geo.offset == (-12, -12)
    assert marker_cell(proc, (200, 200), (0, 0, 20, 20), (7, 7)) == (0, 0)


def test_end_to_end_peak_on_wide_and_tall_images(explainer7):
    """The model's own heatmap peak (wherever it is) is drawn over the pixels of that patch."""
    from conftest import PROMPTS, noise_image

    for size in [(160, 60), (60, 170)]:
        img = noise_image(*size, seed=3)
        res = explainer7.explain(img, PROMPTS[:1], layer=1)
        r, c = np.unravel_index(np.argmax(res.grid_maps[0]), res.grid_maps[0].shape)
        proc = explainer7.adapter.image_processor
        left, top, right, bottom = res.geometry.crop_box()
        cw, ch = (right - left) / 7, (bottom - top) / 7
        box = (int(round(left + (c + 0.25) * cw)), int(round(top + (r + 0.25) * ch)),
               int(round(left + (c + 0.75) * cw)), int(round(top + (r + 0.75) * ch)))
        assert marker_cell(proc, size, box, (7, 7)) == (r, c)  # the processor agrees where that patch is
        y, x = np.unravel_index(np.nanargmax(res.image_maps[0]), res.image_maps[0].shape)
        assert box[0] - cw / 2 <= x <= box[2] + cw / 2 and box[1] - ch / 2 <= y <= box[3] + ch / 2
