"""What the server keeps of one result: enough to re-draw it with other display settings and to
build its downloads, never the full photo."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np
from PIL import Image

from ..geometry import CropGeometry
from ..methods.cam import normalize_maps, normalize_shared
from ..record import scores_record
from ..render import display_size, levels, to_size
from ..results import Explanation

#: Longest side of images shown in the browser; the downloads keep the raw grid maps.
DISPLAY_SIDE = 1024


@dataclass(frozen=True)
class Kept:
    """What the server keeps of one result, to re-draw it with other display settings and to build
    its downloads on request: scores, raw grid maps, the geometry, the image at display size and
    ``settings``, the result's record (clipcam.record.scores_record: scores and what made them).

    Never the full photo: a kept result costs about ``DISPLAY_SIDE``² × 3 bytes (3 MB) plus the
    grid maps. Like the result, it has a layer axis: one layer for the Explain and Compare tabs,
    every layer for a sweep.
    """

    prompts: tuple[str, ...]
    logits: np.ndarray  # (K,)
    probs: np.ndarray  # (K,)
    layers: tuple[int, ...]
    layer_maps: np.ndarray  # (L, K, rows, cols), raw
    geometry: CropGeometry
    display: Image.Image  # the explained image, longer side at most DISPLAY_SIDE
    settings: dict
    notes: tuple[str, ...] = ()
    seconds: float = 0.0
    prob_kind: str = "softmax"

    @property
    def sweep(self) -> bool:
        """True for a result of several layers (drawn as a layers × prompts sheet)."""
        return len(self.layers) > 1

    @property
    def image_size(self) -> tuple[int, int]:
        """(W, H) of the image that was explained."""
        return self.geometry.image_size

    def scaled(self, shared: bool = False) -> np.ndarray:
        """The grid maps (L, K, rows, cols) scaled to [0, 1]: each on its own, or (shared) by one
        maximum per layer."""
        return np.stack([normalize_shared(m) for m in self.layer_maps]) if shared else normalize_maps(self.layer_maps)

    def display_levels(self, size: tuple[int, int], shared: bool = False) -> tuple[np.ndarray, tuple[slice, slice]]:
        """The maps for the screen as uint8 colour levels (L, K, H, W) on a (W, H) canvas, and the
        (rows, columns) the model saw (CLIP's crop; outside it the levels mean nothing).

        The same sampling as maps_at (geometry's coordinates, bilinear between cell centres, edge
        cells held), done by OpenCV on the grid's levels with the coordinates converted once to its
        fixed-point form (weights in steps of 1/32): within 8 of 255 levels of
        ``levels(maps_at(...))`` inside the crop, and a few milliseconds per map at 1024 pixels."""
        gx, gy, inside_x, inside_y = self.geometry._sample_coords(size)
        map_x = np.broadcast_to(gx[None, :].astype(np.float32), (len(gy), len(gx)))
        map_y = np.broadcast_to(gy[:, None].astype(np.float32), (len(gy), len(gx)))
        fixed, fraction = cv2.convertMaps(map_x, map_y, cv2.CV_16SC2)
        grids = levels(self.scaled(shared).reshape(-1, *self.layer_maps.shape[-2:]))  # (L × K, rows, cols) uint8
        out = np.empty((len(grids), len(gy), len(gx)), np.uint8)
        for k, grid in enumerate(grids):
            cv2.remap(grid, fixed, fraction, cv2.INTER_LINEAR, dst=out[k], borderMode=cv2.BORDER_REPLICATE)
        seen = []
        for inside in (inside_y, inside_x):  # the crop is one run of rows and one of columns
            index = np.flatnonzero(inside)
            seen.append(slice(index[0], index[-1] + 1) if len(index) else slice(0, 0))
        return out.reshape(*self.layer_maps.shape[:-2], len(gy), len(gx)), (seen[0], seen[1])

    def maps_at(self, size: tuple[int, int], shared: bool = False, dtype: type = np.float32) -> np.ndarray:
        """(L, K, H, W) in [0, 1] on a (W, H) canvas covering the whole image, NaN outside the
        model's crop; shared=True scales the prompts of each layer by one maximum. Resampled one
        layer at a time into ``dtype`` (float16 for a download: never a float32 copy of them all)."""
        scaled = self.scaled(shared)
        out = np.empty((*scaled.shape[:2], size[1], size[0]), dtype=dtype)
        for layer, maps in enumerate(scaled):
            out[layer] = self.geometry.grid_to_image(maps, size)
        return out


def keep(result: Explanation, model: str | dict, notes: Sequence[str]) -> Kept:
    """The part of a result the server keeps (see Kept), with its record made by the one builder
    (scores_record: attention methods record no sublayer; ``model`` is the name the person picked,
    or a dict whose "model" it is and whose other keys are added); the full-size image is dropped."""
    size = display_size(result.image.size, DISPLAY_SIDE)
    display = to_size(result.image, size)
    extra = dict(model) if isinstance(model, dict) else {"model": model}
    settings = scores_record(result, extra.pop("model", None))
    settings.update(extra, notes=list(notes))
    return Kept(prompts=tuple(result.prompts), logits=np.asarray(result.logits), probs=np.asarray(result.probs),
                layers=tuple(result.layers), layer_maps=result.layer_maps, geometry=result.geometry, display=display,
                settings=settings, notes=tuple(notes), seconds=result.seconds, prob_kind=result.prob_kind)
