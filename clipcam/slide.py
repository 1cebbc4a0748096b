"""The sliding window of the training-free dense methods, as their authors run it.

SCLIP's ``forward_slide`` (wangf3014/SCLIP ``clip_segmentor.py``; NACLIP and ClearCLIP copy it):
resize the image so that its short side is ``short_side``, cut ``crop``-pixel squares every
``stride`` pixels (the last window of a row or column is pushed back inside the image; a side
shorter than the crop is used whole), run the model on each window, upsample each window's raw map
bilinearly to the window's pixels, add them up and divide by how many windows cover each pixel,
then resize the result to the original image. The values are the raw maps (cosines), not scaled;
the label map's softmax comes after (clipcam.dense).

Only methods whose record carries DenseDefaults have a crop and stride of their authors. Each
window is one explain call (one forward pass, two where the method changes the forward and the
pass re-runs the unchanged model for its scores), and the calls count toward a request's forward
budget (``slide_forwards``); ``progress(done, total)`` is called after each window, so a deadline
can stop the loop.
"""

from __future__ import annotations

from typing import Callable, Sequence

import cv2
import numpy as np
from PIL import Image

from .dense import LabelMap, label_map_of, label_rule
from .explainer import Explainer
from .images import load_image
from .methods import REGISTRY, get_method
from .methods.kinds import DenseDefaults, ForwardMethod

Window = tuple[int, int, int, int]  # (y1, y2, x1, x2) in pixels of the resized image


def dense_methods() -> tuple[str, ...]:
    """The methods that carry their authors' post-processing (DenseDefaults)."""
    return tuple(name for name, m in REGISTRY.items() if m.dense is not None)


def dense_defaults(method: str) -> DenseDefaults:
    """The method's DenseDefaults, else a ValueError saying which methods have a sliding window."""
    record = get_method(method)
    if record.dense is None:
        have = ", ".join(dense_methods()) or "none in this build"
        raise ValueError(f"The sliding window applies only to the training-free dense methods ({have}); "
                         f"{record.short} has no crop and stride of its authors.")
    return record.dense


def resized_size(size: tuple[int, int], short_side: int | None) -> tuple[int, int]:
    """(W, H) after the authors' resize of the short side to ``short_side`` (None: unchanged),
    keeping the aspect ratio (rounded to whole pixels)."""
    w, h = size
    if short_side is None:
        return w, h
    scale = short_side / min(w, h)
    return max(1, int(round(w * scale))), max(1, int(round(h * scale)))


def windows(height: int, width: int, crop: int, stride: int) -> list[Window]:
    """The windows of SCLIP's forward_slide over an (height, width) image, row by row."""
    rows = max(height - crop + stride - 1, 0) // stride + 1
    cols = max(width - crop + stride - 1, 0) // stride + 1
    out = []
    for r in range(rows):
        for c in range(cols):
            y2, x2 = min(r * stride + crop, height), min(c * stride + crop, width)
            out.append((max(y2 - crop, 0), y2, max(x2 - crop, 0), x2))
    return out


def passes_per_window(method: str) -> int:
    """Forward passes one window costs: two where the method changes the forward (the pass then
    runs the unchanged model once more for the scores), else one."""
    compute = get_method(method).compute
    return 2 if isinstance(compute, ForwardMethod) and compute.changes_forward else 1


def slide_forwards(image_size: tuple[int, int], method: str) -> int:
    """Forward passes the sliding window runs for an image of (W, H) pixels."""
    dense = dense_defaults(method)
    w, h = resized_size(image_size, dense.short_side)
    return len(windows(h, w, dense.crop, dense.stride)) * passes_per_window(method)


def slide_maps(explainer: Explainer, image: object, prompts: Sequence[str], method: str, layer: int | None = None,
               progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, int]:
    """(K, H, W) float32 raw maps on the original image from the sliding window (NaN where no window
    saw a pixel), and the number of windows run."""
    dense = dense_defaults(method)
    rgb, _ = load_image(image)
    w, h = resized_size(rgb.size, dense.short_side)
    resized = np.asarray(rgb.resize((w, h), Image.BILINEAR) if (w, h) != rgb.size else rgb)  # (h, w, 3)
    boxes = windows(h, w, dense.crop, dense.stride)
    total = np.zeros((len(prompts), h, w), np.float64)  # (K, h, w)
    count = np.zeros((h, w), np.float64)
    for i, (y1, y2, x1, x2) in enumerate(boxes):
        res = explainer.explain(Image.fromarray(resized[y1:y2, x1:x2]), list(prompts), layer=layer, method=method)
        raw = res.geometry.grid_to_image(res.grid_maps)  # (K, y2 - y1, x2 - x1), NaN outside the model's crop
        seen = ~np.isnan(raw[0])
        total[:, y1:y2, x1:x2] += np.nan_to_num(raw)
        count[y1:y2, x1:x2] += seen
        if progress is not None:
            progress(i + 1, len(boxes))
    with np.errstate(invalid="ignore", divide="ignore"):
        stitched = np.where(count > 0, total / count, np.nan).astype(np.float32)  # (K, h, w)
    if (w, h) != rgb.size:
        stitched = np.stack([cv2.resize(m, rgb.size, interpolation=cv2.INTER_LINEAR) for m in stitched])
    return stitched, len(boxes)


def slide_label_map(explainer: Explainer, image: object, prompts: Sequence[str], method: str,
                    layer: int | None = None, prob_thd: object = None, logit_scale: object = None,
                    progress: Callable[[int, int], None] | None = None) -> LabelMap:
    """The label map of the sliding window's stitched maps (clipcam.dense's rule for the method)."""
    rule = label_rule(method, prob_thd, logit_scale)  # checked before any window runs
    maps, count = slide_maps(explainer, image, prompts, method, layer, progress)
    return label_map_of(maps, tuple(prompts), rule, count)
