"""Heatmap-quality metrics against ground-truth object masks.

- Pointing game (Zhang et al., "Top-down Neural Attention by Excitation Backprop", ECCV 2016):
  a hit when the heatmap's peak lies inside the target object's mask, dilated by a few pixels.
- Other-object share: the peak lies on *another* object instead (a prompt-specific failure).
- Energy-based pointing game (Wang et al., "Score-CAM", CVPR-W 2020): the share of the
  heatmap's mass inside the target's mask.
- Deletion / insertion AUC (Petsiuk et al., "RISE", BMVC 2018): remove (or reveal) pixels in
  order of saliency and follow the prompt's score; low deletion and high insertion AUC are good.
Maps are (H, W) float arrays on the image's pixel grid; NaN marks pixels the model never saw.
"""

from __future__ import annotations

import cv2
import numpy as np

#: Pixels by which masks are dilated for the pointing game (the usual tolerance of a few pixels).
DILATE = 2


def dilate(mask: np.ndarray, pixels: int = DILATE) -> np.ndarray:
    """A boolean mask grown by ``pixels`` in every direction."""
    if pixels <= 0:
        return mask.astype(bool)
    kernel = np.ones((2 * pixels + 1, 2 * pixels + 1), np.uint8)
    return cv2.dilate(mask.astype(np.uint8), kernel).astype(bool)


def peak(heatmap: np.ndarray) -> tuple[int, int] | None:
    """(y, x) of the maximum, or None for a map with no positive value (no peak to point with)."""
    values = np.nan_to_num(heatmap, nan=-np.inf)
    if not np.isfinite(values).any() or values.max() <= 0:
        return None
    return tuple(int(v) for v in np.unravel_index(np.argmax(values), values.shape))  # type: ignore[return-value]


def pointing(heatmap: np.ndarray, masks: np.ndarray, target: int, pixels: int = DILATE) -> tuple[bool, bool]:
    """(hit, on_other): the peak lies in the dilated target mask / in another object's dilated mask only."""
    p = peak(heatmap)
    if p is None:
        return False, False
    hit = bool(dilate(masks[target], pixels)[p])
    other = any(dilate(m, pixels)[p] for i, m in enumerate(masks) if i != target)
    return hit, bool(other and not hit)


def energy_pointing(heatmap: np.ndarray, mask: np.ndarray) -> float:
    """Share of the map's (non-negative) mass inside ``mask``; 0 for an empty map."""
    values = np.clip(np.nan_to_num(heatmap, nan=0.0), 0, None)
    total = values.sum()
    return float(values[mask].sum() / total) if total > 0 else 0.0


def saliency_order(heatmap: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Pixel indices from most to least salient; ties broken at random (seeded), unseen pixels last."""
    values = np.nan_to_num(heatmap, nan=-np.inf).ravel()
    jitter = rng.random(values.size) * 1e-9
    return np.argsort(-(values + jitter), kind="stable")


def perturbation_series(image: np.ndarray, order: np.ndarray, steps: int, fill: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Images for deletion (most salient first replaced by ``fill``) and insertion (revealed onto ``fill``).

    image: (H, W, 3) uint8; returns two (steps + 1, H, W, 3) uint8 stacks, step 0 = untouched / blank.
    """
    h, w, _ = image.shape
    flat = image.reshape(-1, 3)
    blank = np.broadcast_to(fill.astype(np.uint8), flat.shape)
    deletion, insertion = [], []
    for i in range(steps + 1):
        chosen = order[: int(round(i / steps * order.size))]
        d, ins = flat.copy(), blank.copy()
        d[chosen] = blank[chosen]
        ins[chosen] = flat[chosen]
        deletion.append(d.reshape(h, w, 3))
        insertion.append(ins.reshape(h, w, 3))
    return np.stack(deletion), np.stack(insertion)


def auc(scores: np.ndarray) -> float:
    """Area under a curve sampled at evenly spaced fractions 0..1 (trapezoid rule)."""
    scores = np.asarray(scores, dtype=np.float64)
    return float(((scores[1:] + scores[:-1]) / 2).mean()) if scores.size > 1 else float(scores.mean())
