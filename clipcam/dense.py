"""Post-processing of raw maps into an open-vocabulary label map, as options beside the raw maps.

The training-free dense methods (MaskCLIP, SCLIP, ClearCLIP, NACLIP, GEM, CLIP Surgery) turn their
raw cosine maps into a segmentation the way SCLIP's ``postprocess_result`` does
(wangf3014/SCLIP ``clip_segmentor.py``): the maps are upsampled bilinearly to the image, multiplied
by the method's logit scale and soft-maxed over the prompts; every pixel takes the prompt with the
highest probability, and a pixel whose highest probability is below ``prob_thd`` is background
("none"). The scale and threshold are the method's ``DenseDefaults`` (clipcam.methods.kinds).

A method without DenseDefaults (the gradient methods, rollout) has no logit scale of its own, so
its label map follows clipcam's rule instead: each prompt's map is min-max scaled to [0, 1] on its
own (exactly the heatmaps the page shows), the pixel takes the prompt with the highest scaled
value, and it is "none" where that value is below ``prob_thd`` (default ``MINMAX_THRESHOLD`` = 0.5,
half of the prompt's own peak: the binarisation threshold GEM and LeGrad use for p-mIoU). Giving a
logit scale applies the softmax to any method's raw maps instead.

None of this changes ``Explanation.grid_maps``: the raw maps stay as the method made them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .geometry import CropGeometry
from .methods import get_method
from .results import Explanation

#: Label of a pixel whose best prompt is below the threshold ("none").
NONE = -1
#: Label of a pixel outside the region the model saw (NaN in the image maps).
UNSEEN = -2
#: The threshold on min-max scaled maps for methods without DenseDefaults (half of each prompt's peak).
MINMAX_THRESHOLD = 0.5


@dataclass(frozen=True)
class LabelRule:
    """How raw maps become per-prompt scores: a softmax at ``logit_scale`` (None: min-max per prompt),
    and the background threshold on those scores."""

    logit_scale: float | None
    prob_thd: float

    @property
    def text(self) -> str:
        """The rule in words, for notes and legends."""
        how = (f"softmax over the prompts at logit scale {self.logit_scale:g}" if self.logit_scale is not None
               else "each prompt's map min-max scaled on its own")
        return f"{how}; none below {self.prob_thd:g}"


def check_fraction(value: object, what: str) -> float:
    """``value`` as a float in [0, 1], else a ValueError with one sentence."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"The {what} must be a number between 0 and 1; got {value!r}.") from None
    if not 0.0 <= number <= 1.0:
        raise ValueError(f"The {what} must be between 0 and 1; got {number:g}.")
    return number


def label_rule(method: str, prob_thd: object = None, logit_scale: object = None) -> LabelRule:
    """The method's own rule (its DenseDefaults, else min-max with MINMAX_THRESHOLD), with the
    threshold and logit scale overridden where given."""
    dense = get_method(method).dense
    scale = dense.logit_scale if dense is not None else None
    if logit_scale is not None:
        try:
            scale = float(logit_scale)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            scale = float("nan")
        if not scale > 0 or not np.isfinite(scale):
            raise ValueError(f"The logit scale must be a positive number; got {logit_scale!r}.")
    default = dense.prob_thd if dense is not None else MINMAX_THRESHOLD
    thd = default if prob_thd is None else check_fraction(prob_thd, "background threshold (prob_thd)")
    return LabelRule(scale, thd)


def prompt_scores(maps: np.ndarray, logit_scale: float | None) -> np.ndarray:
    """(K, H, W) raw maps (NaN: unseen) → (K, H, W) float32 scores in [0, 1], NaN where unseen: the
    softmax over the prompts of ``logit_scale`` × maps, or (None) each map min-max scaled over its
    seen pixels (a flat map becomes 0)."""
    maps = np.asarray(maps, dtype=np.float64)
    if logit_scale is not None:
        z = logit_scale * maps
        z = np.exp(z - np.max(z, axis=0, keepdims=True))  # (K, H, W), NaN stays NaN
        return (z / z.sum(axis=0, keepdims=True)).astype(np.float32)
    seen = ~np.isnan(maps)
    if not seen.any():
        return maps.astype(np.float32)
    low = np.nanmin(maps, axis=(-2, -1), keepdims=True)
    span = np.nanmax(maps, axis=(-2, -1), keepdims=True) - low
    return np.where(span > 0, (maps - low) / np.where(span > 0, span, 1.0), 0.0 * maps).astype(np.float32)


def labels_of(scores: np.ndarray, prob_thd: float) -> np.ndarray:
    """(K, H, W) scores → (H, W) int16 labels: the winning prompt's index (first one on a tie, as
    argmax), NONE where its score is below ``prob_thd`` (SCLIP: ``seg_pred[max < prob_thd] = 0``),
    UNSEEN where the scores are NaN."""
    unseen = np.isnan(scores).any(axis=0)
    filled = np.nan_to_num(scores, nan=-np.inf)
    labels = np.argmax(filled, axis=0).astype(np.int16)
    labels[filled.max(axis=0) < prob_thd] = NONE
    labels[unseen] = UNSEEN
    return labels


@dataclass(frozen=True)
class LabelMap:
    """Every pixel of the person's image coloured by the prompt that wins it.

    ``labels`` (H, W) int16: a prompt's index, NONE (-1) below the threshold, UNSEEN (-2) outside
    the region the model saw. ``scores`` (K, H, W) float32 in [0, 1]: what the labels were read
    from (the rule says which), NaN where unseen. ``windows``: sliding windows run (0: none).
    """

    prompts: tuple[str, ...]
    labels: np.ndarray
    scores: np.ndarray
    rule: LabelRule
    windows: int = 0

    def shares(self) -> dict[str, float]:
        """Each prompt's and "none"'s share of the seen pixels."""
        seen = self.labels != UNSEEN
        total = max(int(seen.sum()), 1)
        out = {p: float((self.labels == k).sum() / total) for k, p in enumerate(self.prompts)}
        out["none"] = float((self.labels == NONE).sum() / total)
        return out


def label_map_of(maps: np.ndarray, prompts: tuple[str, ...], rule: LabelRule, windows: int = 0) -> LabelMap:
    """The label map of raw maps (K, H, W) on the image (NaN: unseen) under ``rule``."""
    scores = prompt_scores(maps, rule.logit_scale)
    return LabelMap(tuple(prompts), labels_of(scores, rule.prob_thd), scores, rule, windows)


def grid_label_map(grid_maps: np.ndarray, geometry: CropGeometry, prompts: tuple[str, ...], rule: LabelRule,
                   size: tuple[int, int] | None = None) -> LabelMap:
    """The label map of raw grid maps (K, rows, cols) on a (W, H) canvas over the image (default:
    full size), NaN (UNSEEN) outside the region the model saw, as ``image_maps`` are placed. The
    softmax comes after the bilinear upsampling, as SCLIP's; min-max scaling is over the grid, as
    the shown heatmaps' (so that the label map's winner is the brightest of the shown maps)."""
    if rule.logit_scale is None:
        scores = geometry.grid_to_image(prompt_scores(grid_maps, None), size)  # (K, H, W)
    else:
        scores = prompt_scores(geometry.grid_to_image(grid_maps, size), rule.logit_scale)
    return LabelMap(tuple(prompts), labels_of(scores, rule.prob_thd), scores, rule)


def label_map(result: Explanation, prob_thd: object = None, logit_scale: object = None,
              size: tuple[int, int] | None = None) -> LabelMap:
    """The label map of a one-layer result on a (W, H) canvas over its image (default: full size),
    under its method's rule (label_rule) with the given overrides."""
    rule = label_rule(result.method, prob_thd, logit_scale)
    return grid_label_map(result.grid_maps, result.geometry, result.prompts, rule, size)
