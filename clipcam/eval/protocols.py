"""Segmentation protocols of the papers that introduced them, on one map (or one label map) at a time.

- **Binary segmentation** (Chefer et al., ICCV 2021, ``baselines/ViT/imagenet_seg_eval.py``, as
  Gandelsman et al. ICLR 2024 run it in yossigandelsman/clip_text_span ``compute_segmentations.py``
  with ``utils/segmentation_utils.py``): clip the raw map at 0, min-max scale it, call foreground
  what lies above the scaled map's mean; over the data set, pixel accuracy = Σ correct / Σ pixels,
  two-class mIoU = mean over {background, foreground} of Σ intersection / Σ union, and mAP = the
  mean over maps of the average precision (scikit-learn's) of the two channels [1 − map, map]
  against the one-hot ground truth. Pixels the model never saw (NaN) count as background with a
  score of 0 on both channels, as the authors' code treats NaN.
- **Point-level p-mIoU** (GEM, Bousselham et al. CVPR 2024, and LeGrad, on OpenImages V7's point
  labels; neither repository ships the evaluation code): points are sampled uniformly inside and
  outside each object's mask (``POINTS`` each, seeded); the map is min-max scaled and binarised at
  ``POINT_THRESHOLD`` = 0.5; each prompt's IoU over its points is TP / (TP + FP + FN). Reported per
  image (the mean over its prompts, averaged over images) and over the data set (TP, FP, FN summed
  per class over every image, then the mean of the classes' IoUs, as OpenImages V7 does).
- **Multi-class mIoU** of the label map (clipcam.dense: argmax over the scene's prompts, "none"
  below the background threshold): the ground truth labels each pixel with its object's prompt or
  background; intersections and unions are summed per class over the data set, mIoU is the mean
  over the classes that occur.
- **ROAD** (Rong et al., ICML 2022) is in clipcam.eval.road, through pytorch-grad-cam's own code.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score

#: Points sampled inside and (as many) outside each object's mask for p-mIoU.
POINTS = 10
#: The binarisation threshold of p-mIoU, on the min-max scaled map.
POINT_THRESHOLD = 0.5
#: The class name of pixels that belong to no prompt in multi-class mIoU.
BACKGROUND = "background"


def _scaled(heatmap: np.ndarray, clip: bool) -> np.ndarray:
    """(H, W) map (NaN: unseen) → clipped at 0 (``clip``) and min-max scaled over its seen pixels;
    a flat map becomes all NaN, as 0 / 0 does in the authors' code."""
    values = np.asarray(heatmap, dtype=np.float64)
    if clip:
        values = np.where(np.isnan(values), np.nan, np.maximum(values, 0.0))
    seen = ~np.isnan(values)
    if not seen.any():
        return values
    low, high = values[seen].min(), values[seen].max()
    if high <= low:
        return np.full_like(values, np.nan)
    return (values - low) / (high - low)


def binary_counts(heatmap: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, float]:
    """The binary protocol on one map: counts (∩bg, ∪bg, ∩fg, ∪fg, correct, pixels) as int64, and
    the map's average precision. heatmap (H, W) raw (NaN: unseen), mask (H, W) bool."""
    scaled = _scaled(heatmap, clip=True)
    seen = ~np.isnan(scaled)
    threshold = scaled[seen].mean() if seen.any() else 0.0
    fg = seen & (np.nan_to_num(scaled, nan=-np.inf) > threshold)
    mask = mask.astype(bool)
    counts = np.array([(~fg & ~mask).sum(), (~fg | ~mask).sum(), (fg & mask).sum(), (fg | mask).sum(),
                       (fg == mask).sum(), mask.size], dtype=np.int64)
    score = np.nan_to_num(scaled, nan=0.0)
    back = np.where(seen, 1.0 - score, 0.0)
    truth = np.concatenate([~mask.ravel(), mask.ravel()]).astype(np.int64)
    ap = float(np.nan_to_num(average_precision_score(truth, np.concatenate([back.ravel(), score.ravel()]))))
    return counts, ap


def binary_summary(counts: np.ndarray, aps: list[float]) -> dict:
    """Pixel accuracy, two-class mIoU and mAP from summed binary_counts and the maps' APs."""
    counts = np.asarray(counts, dtype=np.float64)
    nan = float("nan")
    miou = float((counts[0] / counts[1] + counts[2] / counts[3]) / 2) if counts[1] and counts[3] else nan
    return {"pixel_acc": float(counts[4] / counts[5]) if counts[5] else nan, "binary_miou": miou,
            "map_ap": float(np.mean(aps)) if aps else nan}


def sample_points(masks: np.ndarray, rng: np.random.Generator, n: int = POINTS) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per mask (K, H, W): flat indices of up to ``n`` pixels inside it and up to ``n`` outside it,
    drawn uniformly without replacement."""
    out = []
    for mask in masks:
        inside, outside = np.flatnonzero(mask), np.flatnonzero(~mask)
        out.append((rng.choice(inside, min(n, inside.size), replace=False),
                    rng.choice(outside, min(n, outside.size), replace=False)))
    return out


def point_counts(heatmap: np.ndarray, inside: np.ndarray, outside: np.ndarray,
                 threshold: float = POINT_THRESHOLD) -> np.ndarray:
    """(TP, FP, FN) of one map at its points: the map min-max scaled (NaN: unseen, negative) and
    called positive above ``threshold``."""
    positive = np.nan_to_num(_scaled(heatmap, clip=False), nan=-np.inf).ravel() > threshold
    return np.array([positive[inside].sum(), positive[outside].sum(), (~positive[inside]).sum()], dtype=np.int64)


def iou_of(counts: np.ndarray) -> float:
    """TP / (TP + FP + FN) from (TP, FP, FN); NaN when all three are 0."""
    tp, fp, fn = (float(c) for c in counts)
    return tp / (tp + fp + fn) if tp + fp + fn else float("nan")


def truth_labels(masks: np.ndarray) -> np.ndarray:
    """(K, H, W) masks → (H, W) int: the index of the (first) object covering a pixel, -1 for background."""
    labels = np.argmax(masks, axis=0).astype(np.int64)
    labels[~masks.any(axis=0)] = -1
    return labels


def class_counts(labels: np.ndarray, truth: np.ndarray, classes: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Per class name (each prompt, then BACKGROUND): (intersection, union) in pixels of a label map
    (H, W) (prompt index; any negative label, "none" or unseen, is background) against the truth."""
    pred = np.where(labels >= 0, labels, -1)
    out: dict[str, np.ndarray] = {}
    for k, name in [*enumerate(classes), (-1, BACKGROUND)]:
        p, t = pred == k, truth == k
        counts = np.array([(p & t).sum(), (p | t).sum()], dtype=np.int64)
        out[name] = out.get(name, np.zeros(2, np.int64)) + counts
    return out


def mean_iou(per_class: dict[str, np.ndarray]) -> float:
    """The mean over classes with a non-empty union of Σ intersection / Σ union."""
    ious = [c[0] / c[1] for c in per_class.values() if c[1] > 0]
    return float(np.mean(ious)) if ious else float("nan")


class Protocols:
    """Running sums of the binary protocol, p-mIoU and multi-class mIoU for one setting."""

    def __init__(self) -> None:
        self.binary = np.zeros(6, np.int64)  # (∩bg, ∪bg, ∩fg, ∪fg, correct, pixels)
        self.aps: list[float] = []
        self.points: dict[str, np.ndarray] = {}  # class → summed (TP, FP, FN)
        self.image_pmiou: list[float] = []
        self.classes: dict[str, np.ndarray] = {}  # class → summed (∩, ∪) of the label maps
        self.road: dict[str, list[float]] = {}

    def add(self, raw: np.ndarray, masks: np.ndarray, prompts: tuple[str, ...],
            points: list[tuple[np.ndarray, np.ndarray]], labels: np.ndarray | None) -> None:
        """One sample: raw maps (K, H, W) on the image (NaN: unseen), its masks (K, H, W), the
        points sampled in and out of each mask, and the label map (H, W) or None."""
        ious = []
        for k, prompt in enumerate(prompts):
            counts, ap = binary_counts(raw[k], masks[k])
            self.binary += counts
            self.aps.append(ap)
            tp_fp_fn = point_counts(raw[k], *points[k])
            self.points[prompt] = self.points.get(prompt, np.zeros(3, np.int64)) + tp_fp_fn
            ious.append(iou_of(tp_fp_fn))
        if ious and not np.isnan(ious).all():
            self.image_pmiou.append(float(np.nanmean(ious)))
        if labels is not None:
            for name, counts in class_counts(labels, truth_labels(masks), prompts).items():
                self.classes[name] = self.classes.get(name, np.zeros(2, np.int64)) + counts

    def add_road(self, scores: dict[str, list[float]] | None) -> None:
        """One sample's ROAD values per prompt (clipcam.eval.road.road_scores)."""
        for key, values in (scores or {}).items():
            self.road.setdefault(key, []).extend(values)

    def summary(self) -> dict:
        """The protocols' figures (NaN where nothing was measured)."""
        nan = float("nan")
        point_ious = [iou_of(c) for c in self.points.values()]
        point_ious = [v for v in point_ious if not np.isnan(v)]
        out = {**binary_summary(self.binary, self.aps),
               "p_miou": float(np.mean(point_ious)) if point_ious else nan,
               "p_miou_image": float(np.mean(self.image_pmiou)) if self.image_pmiou else nan,
               "mc_miou": mean_iou(self.classes) if self.classes else nan}
        out.update({key: float(np.mean(values)) for key, values in self.road.items() if values})
        return out
