"""Preprocessing geometry: where CLIP's input crop lies on the original image, and the way back.

CLIP's processor resizes the image (short side to 224 for the OpenAI models) and centre-crops
it. Each heatmap lives on the crop's token grid; to draw it on the user's own image we invert
exactly that resize and crop, read from the processor's settings, so that a heatmap cell lands
on the very pixels the model saw. Pixels outside the crop were never seen: they get NaN.

SigLIP 2's variable-resolution (NaFlex) processor crops nothing: it squashes the whole image to a
size of its own (``naflex_size``), each side a multiple of the patch size, the aspect ratio kept as
closely as the patch budget allows, so the grid differs from image to image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np


def size_setting(obj: object, key: str) -> int | None:
    """Read ``key`` from a processor size setting, which may be a dict or a SizeDict."""
    if obj is None:
        return None
    value = obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)
    return int(value) if value is not None else None


def naflex_size(image_size: tuple[int, int], patch_size: int, max_num_patches: int) -> tuple[int, int]:
    """(W', H') that SigLIP 2's NaFlex processor resizes an image of ``image_size`` (W, H) to.

    The largest scale s at which ceil(s·H / p) · ceil(s·W / p) ≤ max_num_patches, each side
    rounded up to a multiple of the patch size p and at least one patch; s is found by the same
    bisection over [1e-6, 100] to 1e-5 as transformers' get_image_size_for_max_num_patches, so
    the result is the processor's to the last pixel. The image is squashed to (W', H'), never
    cropped, and seen as a grid of (H' / p, W' / p) patches.
    """
    width, height = image_size

    def side(scale: float, size: int) -> int:
        return max(patch_size, math.ceil(size * scale / patch_size) * patch_size)

    low, high = 1e-6, 100.0
    while high - low >= 1e-5:
        mid = (low + high) / 2
        if (side(mid, height) / patch_size) * (side(mid, width) / patch_size) <= max_num_patches:
            low = mid
        else:
            high = mid
    return side(low, width), side(low, height)


@dataclass(frozen=True)
class CropGeometry:
    """How an image of ``image_size`` (W, H) became the model's input crop.

    The image was resized to ``resized`` (W', H'), then the window of ``crop`` (w, h) pixels
    whose top-left corner is at ``offset`` (x, y) of the resized image was cut out (a negative
    offset means the processor padded). The crop is seen as a ``grid`` (rows, cols) of patches.
    """

    image_size: tuple[int, int]
    resized: tuple[int, int]
    offset: tuple[int, int]
    crop: tuple[int, int]
    grid: tuple[int, int]

    @classmethod
    def from_processor(cls, image_processor: object, image_size: tuple[int, int], grid: tuple[int, int]) -> "CropGeometry":
        """Reproduce the processor's resize-then-centre-crop arithmetic for an image of (W, H)."""
        width, height = image_size
        size = getattr(image_processor, "size", None)
        new_w, new_h = width, height
        if getattr(image_processor, "do_resize", True) and size is not None:
            short = size_setting(size, "shortest_edge")
            if short is not None:  # transformers' get_resize_output_image_size(default_to_square=False)
                if width <= height:
                    new_w, new_h = short, int(short * height / width)
                else:
                    new_w, new_h = int(short * width / height), short
            else:
                new_w, new_h = size_setting(size, "width"), size_setting(size, "height")
                if new_w is None or new_h is None:
                    raise ValueError(f"Unsupported image-processor size setting {size!r}.")
        crop_w, crop_h = new_w, new_h
        left = top = 0
        crop_size = getattr(image_processor, "crop_size", None)
        if getattr(image_processor, "do_center_crop", False) and crop_size is not None:
            crop_w, crop_h = size_setting(crop_size, "width"), size_setting(crop_size, "height")
            # transformers pads symmetrically (extra pixel right/bottom), then crops at int((size - crop) / 2)
            left = -((crop_w - new_w) // 2) if crop_w > new_w else int((new_w - crop_w) / 2.0)
            top = -((crop_h - new_h) // 2) if crop_h > new_h else int((new_h - crop_h) / 2.0)
        return cls((width, height), (new_w, new_h), (left, top), (crop_w, crop_h), grid)

    @classmethod
    def naflex(cls, image_size: tuple[int, int], patch_size: int, max_num_patches: int) -> "CropGeometry":
        """SigLIP 2's NaFlex preprocessing: the whole image squashed to ``naflex_size``, no crop;
        the grid is (H' / p, W' / p), this image's own."""
        new_w, new_h = naflex_size(image_size, patch_size, max_num_patches)
        return cls(tuple(image_size), (new_w, new_h), (0, 0), (new_w, new_h), (new_h // patch_size, new_w // patch_size))

    def crop_box(self) -> tuple[float, float, float, float]:
        """The crop as (left, top, right, bottom) in the original image's pixel coordinates."""
        sx = self.resized[0] / self.image_size[0]
        sy = self.resized[1] / self.image_size[1]
        left, top = self.offset
        return (left / sx, top / sy, (left + self.crop[0]) / sx, (top + self.crop[1]) / sy)

    def _sample_coords(self, out_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """For each pixel of an output of ``out_size`` (W, H) covering the whole original image:
        its position on the token grid (x, y, in cell units, centres at integers) and whether
        the model saw it (inside the crop)."""
        out_w, out_h = out_size
        # pixel centre in original coordinates → resized coordinates → crop coordinates
        ux = (np.arange(out_w, dtype=np.float64) + 0.5) * (self.resized[0] / out_w) - self.offset[0]
        uy = (np.arange(out_h, dtype=np.float64) + 0.5) * (self.resized[1] / out_h) - self.offset[1]
        inside_x = (ux >= 0) & (ux < self.crop[0])
        inside_y = (uy >= 0) & (uy < self.crop[1])
        rows, cols = self.grid
        gx = ux * (cols / self.crop[0]) - 0.5  # grid cell c has its centre at crop x = (c + 0.5) * cell width
        gy = uy * (rows / self.crop[1]) - 0.5
        return gx, gy, inside_x, inside_y

    def grid_to_image(self, maps: np.ndarray, out_size: tuple[int, int] | None = None) -> np.ndarray:
        """Map (K, rows, cols) grid maps onto the original image: (K, H, W) float32.

        Bilinear between cell centres (as the reference's cv2.resize does over the crop), edge
        cells held to the crop's border, NaN outside the crop. ``out_size`` (W, H) gives a smaller
        canvas covering the same image, for display of very large photos; default: full size.
        """
        out_w, out_h = out_size or self.image_size
        gx, gy, inside_x, inside_y = self._sample_coords((out_w, out_h))
        map_x = np.broadcast_to(gx[None, :], (out_h, out_w)).astype(np.float32)
        map_y = np.broadcast_to(gy[:, None], (out_h, out_w)).astype(np.float32)
        unseen = ~(inside_y[:, None] & inside_x[None, :])  # (H, W)
        out = np.empty((len(maps), out_h, out_w), dtype=np.float32)
        for k, grid_map in enumerate(np.asarray(maps, dtype=np.float32)):
            out[k] = cv2.remap(grid_map, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            out[k][unseen] = np.nan
        return out
