"""Heatmap quality over annotated images: ``python -m clipcam eval``.

Each sample is an image, its prompts (one per annotated object or category) and one ground-truth
mask per prompt. Every method × layer × sublayer × target asked for is explained with the
explainer's public ``sweep`` (one pass gives every layer) and scored with clipcam.eval.metrics:

- pointing game (peak inside the target's mask, dilated by metrics.DILATE px) and the share of
  peaks on another annotated object instead;
- energy-based pointing game (the map's mass inside the mask);
- deletion / insertion AUC of the prompt's probability over the sample's prompts (RISE);
- mIoU of the thresholded map: the ImageNet-segmentation protocol of Chefer et al. (ICCV 2021,
  ``baselines/ViT/imagenet_seg_eval.py``), whose metrics LeGrad reports too: min-max scale the
  map, call foreground what lies above the scaled map's mean, sum intersections and unions of
  foreground and background over the whole set, and average the two IoUs. (Neither LeGrad's nor
  Grad-ECLIP's repository ships its segmentation code; this threshold is the one in Chefer's.)
- the protocols of clipcam.eval.protocols on the raw maps placed on the image: the binary protocol's
  pixel accuracy, its two-class mIoU with the authors' clip at 0 (``binary_miou``; equal to ``miou``
  for a non-negative map) and mAP; point-level p-mIoU per image and over the set; the multi-class
  mIoU of the label map (clipcam.dense, the method's own rule); and, on the first ``road``
  samples, ROAD from pytorch-grad-cam (clipcam.eval.road).

Sources: the shapes world (clipcam.eval.shapes, easy or hard scenes) or COCO-style annotations
(instances JSON with polygons, RLE or boxes). Writes a markdown and a JSON table and a figure.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import cv2
import numpy as np
import torch
from PIL import Image

from ..constants import MAX_PROMPTS, SUBLAYERS, TARGETS
from ..dense import grid_label_map, label_rule
from ..methods import REGISTRY
from .metrics import DILATE, auc, dilate, energy_pointing, perturbation_series, pointing, saliency_order
from .protocols import POINTS, Protocols, sample_points
from .road import road_scores
from .report import BASELINES, best, markdown, write_report  # noqa: F401 (callers read them here: ev.best)
from .shapes import COLOURS, SHAPES, Scene, ShapeObject, evaluation_set, hard_evaluation_set, object_prompt

#: Methods on which a sublayer has no effect (attention methods, rollout): the sweep ignores theirs.
ATTENTION = tuple(name for name, m in REGISTRY.items() if not m.sublayer_applies)
#: For the rest of the Grad-CAM family, the sublayers where Grad-CAM did well (the full grid is Grad-CAM's).
FAMILY_SUBLAYERS = ("layer_norm1", "self_attn.v_proj", "mlp.fc1")
#: Masking methods (Score-CAM) cost one forward per channel: two sublayers of hidden width (mlp.fc1 is 4× wider).
MASKING_SUBLAYERS = ("layer_norm1", "self_attn.v_proj")


@dataclass(frozen=True)
class Sample:
    """One annotated image: K prompts and K ground-truth masks (K, H, W) bool on the image's pixels."""

    id: str
    image: object  # a path, a PIL image or an (H, W, 3) uint8 array
    prompts: tuple[str, ...]
    masks: np.ndarray


# ----------------------------------------------------------------------------- sources
def shapes_samples(n: int = 300, hard: bool = False) -> list[Sample]:
    """The fixed, seeded shapes-world scenes (hard=True: 4–6 objects with distractors), one prompt per object."""
    scenes = hard_evaluation_set(n) if hard else evaluation_set(n)
    prefix = "hard" if hard else "easy"
    return [Sample(f"{prefix}-{i:04d}", s.image, tuple(object_prompt(o) for o in s.objects), s.masks)
            for i, s in enumerate(scenes)]


def polygon_mask(polygons: Sequence[Sequence[float]], height: int, width: int) -> np.ndarray:
    """(H, W) bool from COCO polygons [[x1, y1, x2, y2, ...], ...]: the pixels whose centres lie inside
    any of them (pixel (row, col) spans [col, col + 1) × [row, row + 1), as in COCO's coordinates)."""
    from matplotlib.path import Path as Polygon  # matplotlib is slow to import; only COCO polygons need it

    mask = np.zeros((height, width), bool)
    for poly in polygons:
        pts = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
        if len(pts) < 3:
            continue
        x0, y0 = np.clip(np.floor(pts.min(axis=0)).astype(int), 0, [width, height])
        x1, y1 = np.clip(np.ceil(pts.max(axis=0)).astype(int) + 1, 0, [width, height])
        if x1 <= x0 or y1 <= y0:
            continue
        ys, xs = np.mgrid[y0:y1, x0:x1]
        centres = np.column_stack([xs.ravel() + 0.5, ys.ravel() + 0.5])
        mask[y0:y1, x0:x1] |= Polygon(pts).contains_points(centres).reshape(ys.shape)
    return mask


def box_mask(box: Sequence[float], height: int, width: int) -> np.ndarray:
    """(H, W) bool from a COCO box [x, y, w, h]: the pixels whose centres lie inside it."""
    x, y, w, h = box
    cols = np.arange(width) + 0.5
    rows = np.arange(height) + 0.5
    return ((rows >= y) & (rows <= y + h))[:, None] & ((cols >= x) & (cols <= x + w))[None, :]


def annotation_mask(ann: dict, height: int, width: int, boxes: bool = False) -> np.ndarray:
    """One COCO annotation's (H, W) bool mask: its box, its polygons, or its RLE (through pycocotools)."""
    seg = ann.get("segmentation")
    if boxes or not seg:
        if "bbox" not in ann:
            raise ValueError(f"Annotation {ann.get('id')} has neither a segmentation nor a bbox.")
        return box_mask(ann["bbox"], height, width)
    if isinstance(seg, list):
        return polygon_mask(seg, height, width)
    try:
        from pycocotools import mask as mask_utils  # an optional extra, only for RLE masks
    except ImportError as err:
        raise ValueError("This annotation file holds RLE masks, which need pycocotools: "
                         "pip install 'clipcam[scale]' (or use --boxes).") from err
    rle = mask_utils.frPyObjects(seg, height, width) if isinstance(seg.get("counts"), list) else seg
    return mask_utils.decode(rle).astype(bool)


def coco_samples(annotations: str | Path, images: str | Path, template: str = "a photo of a {}.",
                 boxes: bool = False, limit: int | None = None) -> list[Sample]:
    """Samples from a COCO instances file: per image, one prompt per category present (its instances'
    masks joined), at most MAX_PROMPTS categories, images in id order; ``limit`` keeps the first ones."""
    path = Path(annotations)
    try:
        data = json.loads(path.read_text())
        categories = {c["id"]: c["name"] for c in data["categories"]}
        infos = sorted(data["images"], key=lambda im: im["id"])
        anns = data["annotations"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"'{path}' is not a COCO annotation file clipcam can read ({err}); it needs "
                         "'images', 'annotations' and 'categories'.") from err
    if "{}" not in template:
        raise ValueError(f"The prompt template {template!r} has no '{{}}' where the category name goes.")
    by_image: dict[int, list[dict]] = {}
    for ann in anns:
        by_image.setdefault(ann["image_id"], []).append(ann)
    samples = []
    for info in infos:
        if info["id"] not in by_image:
            continue
        h, w = info["height"], info["width"]
        per_category: dict[int, np.ndarray] = {}
        for ann in by_image[info["id"]]:
            m = annotation_mask(ann, h, w, boxes)
            per_category[ann["category_id"]] = per_category.get(ann["category_id"], np.zeros((h, w), bool)) | m
        cats = sorted(per_category)[:MAX_PROMPTS]
        samples.append(Sample(str(info.get("file_name", info["id"])), str(Path(images) / info["file_name"]),
                              tuple(template.format(categories[c]) for c in cats),
                              np.stack([per_category[c] for c in cats])))
        if limit is not None and len(samples) >= limit:
            break
    return samples


# ----------------------------------------------------------------------------- scoring
def minmax(maps: np.ndarray) -> np.ndarray:
    """Each (…, H, W) map scaled to [0, 1] over its seen (non-NaN) pixels; a flat map becomes all 0."""
    low = np.nanmin(maps, axis=(-2, -1), keepdims=True)
    span = np.nanmax(maps, axis=(-2, -1), keepdims=True) - low
    return np.where(span > 0, (maps - low) / np.where(span > 0, span, 1), 0.0).astype(np.float32)


def segmentation_counts(heatmap: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(intersection_bg, union_bg, intersection_fg, union_fg) of the map thresholded at its mean.

    heatmap (H, W) on the image's pixels, NaN where the model saw nothing (counted as background);
    Chefer et al.'s protocol: min-max scale, foreground = above the scaled map's mean.
    """
    scaled = minmax(heatmap)
    seen = ~np.isnan(scaled)
    predicted = seen & (np.nan_to_num(scaled, nan=0.0) > (scaled[seen].mean() if seen.any() else 0.0))
    return np.array([(~predicted & ~mask).sum(), (~predicted | ~mask).sum(),
                     (predicted & mask).sum(), (predicted | mask).sum()], dtype=np.int64)


def batch_probs(explainer, images: Sequence[np.ndarray], prompts: Sequence[str]) -> np.ndarray:
    """(N, K) probabilities of the prompts for N images, as ``explainer.scores`` gives them one by one.

    The deletion and insertion curves need hundreds of images per sample, so they go through the
    model adapter's own steps (preprocess, image_features, logits, probabilities) in batches of
    256; an explainer without an adapter falls back to ``explainer.scores`` per image. A test
    checks that both paths agree.
    """
    adapter = getattr(explainer, "adapter", None)
    if adapter is None:
        return np.stack([explainer.scores(im, list(prompts))[1] for im in images])
    text, _ = explainer.text_embeddings(tuple(prompts))
    probs = []
    with torch.no_grad():
        for start in range(0, len(images), 256):
            pixels = torch.cat([adapter.preprocess(Image.fromarray(im)) for im in images[start:start + 256]])
            logits = adapter.logits(adapter.image_features(pixels), text).float().cpu().numpy()  # (B, K)
            probs += [adapter.probabilities(row) for row in logits]
    return np.stack(probs)


def score_curves(explainer, sample: Sample, image: np.ndarray, maps: np.ndarray, steps: int,
                 rng: np.random.Generator) -> tuple[list[float], list[float]]:
    """Deletion and insertion AUC for each prompt's map (K, H, W): pixels go (or come back) in order
    of saliency onto the image's median colour, and the prompt's probability is followed. One
    prompt's 2 × (steps + 1) images at a time, so a large photo with many prompts fits in memory."""
    fill = np.median(image.reshape(-1, 3), axis=0)  # shapes world: the background, so objects vanish
    deletion, insertion = [], []
    for k in range(len(sample.prompts)):
        d, i = perturbation_series(image, saliency_order(maps[k], rng), steps, fill)
        probs = batch_probs(explainer, np.concatenate([d, i]), sample.prompts)[:, k]  # (2 * (steps + 1),)
        deletion.append(auc(probs[: steps + 1]))
        insertion.append(auc(probs[steps + 1:]))
    return deletion, insertion


@dataclass
class Tally:
    """Running sums of the metrics for one setting."""

    hits: list[float] = field(default_factory=list)
    other: list[float] = field(default_factory=list)
    energy: list[float] = field(default_factory=list)
    deletion: list[float] = field(default_factory=list)
    insertion: list[float] = field(default_factory=list)
    seg: np.ndarray = field(default_factory=lambda: np.zeros(4, np.int64))  # (∩bg, ∪bg, ∩fg, ∪fg)
    protocols: Protocols = field(default_factory=Protocols)  # clipcam.eval.protocols, on the raw maps

    def summary(self) -> dict:
        mean = lambda xs: float(np.mean(xs)) if xs else float("nan")  # noqa: E731
        miou = float((self.seg[0] / self.seg[1] + self.seg[2] / self.seg[3]) / 2) if self.seg[1] and self.seg[3] \
            else float("nan")
        return {"pointing": mean(self.hits), "other_object": mean(self.other), "energy": mean(self.energy),
                "deletion_auc": mean(self.deletion), "insertion_auc": mean(self.insertion), "miou": miou,
                **self.protocols.summary(), "n": len(self.hits)}


def masks_on(sample: Sample, shape: tuple[int, int]) -> np.ndarray:
    """The sample's masks on an (H, W) pixel grid (nearest-neighbour when the image was shrunk on reading)."""
    if sample.masks.shape[1:] == shape:
        return sample.masks
    return np.stack([cv2.resize(m.astype(np.uint8), shape[::-1], interpolation=cv2.INTER_NEAREST).astype(bool)
                     for m in sample.masks])


def add_maps(tally: Tally, masks: np.ndarray, maps: np.ndarray, curves: tuple[list, list] | None = None) -> None:
    """Score K maps (K, H, W) against the sample's K masks."""
    dilated = np.stack([dilate(m) for m in masks])  # once per sample, not per map
    for k in range(len(masks)):
        hit, other = pointing(maps[k], dilated, k, pixels=0)
        tally.hits.append(hit)
        tally.other.append(other)
        tally.energy.append(energy_pointing(maps[k], masks[k]))
        tally.seg += segmentation_counts(maps[k], masks[k])
    if curves is not None:
        tally.deletion += curves[0]
        tally.insertion += curves[1]


def method_plan(methods: Iterable[str], sublayers: Sequence[str]) -> list[tuple[str, str]]:
    """(method, sublayer) pairs to sweep: every given sublayer for Grad-CAM, FAMILY_SUBLAYERS for the
    rest of the family, MASKING_SUBLAYERS for Score-CAM, one pass for attention methods. Those two
    lists name CLIP's (transformers) sublayers; for a family with other names (a ResNet's stage
    ``output``, open_clip's ``ln_1``…) every given sublayer is used."""
    family = [s for s in FAMILY_SUBLAYERS if s in sublayers] or list(sublayers)
    masking = [s for s in MASKING_SUBLAYERS if s in sublayers] or list(sublayers)
    plan = []
    for method in methods:
        if method == "gradcam":
            plan += [(method, s) for s in sublayers]
        elif method in ATTENTION:
            plan.append((method, "self_attn"))
        else:
            plan += [(method, s) for s in (masking if REGISTRY[method].cost == "per channel" else family)]
    return plan


def evaluate(explainer, samples: Sequence[Sample], methods: Sequence[str] = ("gradcam",),
             sublayers: Sequence[str] = SUBLAYERS, targets: Sequence[str] = TARGETS,
             layers: Sequence[int] | None = None, n_curves: int = 60, steps: int = 16,
             curve_methods: Sequence[str] | None = None, baselines: bool = True, rollout_model: str | None = None,
             seed: int = 0, progress: Callable[[int, int], None] | None = None, road: int = 0) -> dict:
    """Every setting's metrics over the samples; deletion/insertion on the first ``n_curves`` samples
    for ``curve_methods`` (default: all methods), ROAD on the first ``road`` samples. Baselines: a
    random pixel and a random object (expected values), and attention rollout of the explained model
    when ``rollout_model`` is given (a model directory, as the command line passes it; the model
    explained is the one rolled out)."""
    curve_methods = tuple(methods) if curve_methods is None else tuple(curve_methods)
    rng = np.random.default_rng(seed)
    point_rng = np.random.default_rng(seed + 1)  # its own stream: the curves' tie-breaking stays as it was
    tallies: dict[tuple, Tally] = {}
    start = time.perf_counter()
    plan = method_plan(methods, sublayers)
    for s, sample in enumerate(samples):
        curves_here = s < n_curves
        geometry, image, points = None, None, None
        for target in targets:
            for method, sublayer in plan:
                sub = None if method in ATTENTION else sublayer  # None: the model's default (a ResNet has no mlp.fc1)
                sweep = explainer.sweep(sample.image, list(sample.prompts), sublayer=sub, layers=layers,
                                        target=target, method=method)
                geometry, image = sweep.geometry, np.array(sweep.image)  # a writable (H, W, 3) uint8 copy
                masks = masks_on(sample, image.shape[:2])
                points = points or sample_points(masks, point_rng, POINTS)  # the same points for every setting
                rule = label_rule(method)
                for li, layer in enumerate(sweep.layers):
                    if sweep.dead_reasons[li]:
                        continue
                    maps = sweep.at(layer).image_maps  # (K, H, W) in [0, 1], NaN outside the crop
                    curves = score_curves(explainer, sample, image, maps, steps, rng) \
                        if curves_here and method in curve_methods else None
                    tally = tallies.setdefault((method, target, layer, sublayer), Tally())
                    add_maps(tally, masks, maps, curves)
                    raw = sweep.geometry.grid_to_image(sweep.layer_maps[li])  # (K, H, W) raw, NaN outside the crop
                    labels = grid_label_map(sweep.layer_maps[li], sweep.geometry, sample.prompts, rule).labels
                    tally.protocols.add(raw, masks, sample.prompts, points, labels)
                    if s < road:
                        tally.protocols.add_road(road_scores(explainer, image, sample.prompts, sweep.layer_maps[li], seed))
        if baselines and image is not None:
            add_baselines(tallies, explainer, sample, image, geometry, curves_here, steps, rng, rollout_model)
        if progress is not None:
            progress(s + 1, len(samples))
    rows = [{"method": k[0], "target": k[1], "layer": k[2], "sublayer": k[3], **t.summary()} for k, t in tallies.items()]
    return {"samples": len(samples), "curve_samples": min(n_curves, len(samples)), "steps": steps, "dilate": DILATE,
            "road_samples": min(road, len(samples)), "points": POINTS, "seconds": round(time.perf_counter() - start, 1), "rows": rows}


def add_baselines(tallies: dict, explainer, sample: Sample, image: np.ndarray, geometry, curves: bool, steps: int,
                  rng: np.random.Generator, rollout_model: str | None) -> None:
    """Random pixel and random object (their expected scores), and attention rollout's map where the
    model has attention."""
    masks = masks_on(sample, image.shape[:2])
    k_objects = len(masks)
    t = tallies.setdefault(("random_pixel", "-", "-", "-"), Tally())
    for k in range(k_objects):  # the expected hit rate is the dilated mask's share of the image
        own = dilate(masks[k])
        others = np.any([dilate(m) for i, m in enumerate(masks) if i != k], axis=0) if k_objects > 1 else own & False
        t.hits.append(float(own.mean()))
        t.other.append(float((others & ~own).mean()))
        t.energy.append(float(masks[k].mean()))
    t = tallies.setdefault(("random_object", "-", "-", "-"), Tally())
    for k in range(k_objects):  # the peak lands on one of the objects, chosen uniformly
        t.hits.append(1.0 / k_objects)
        t.other.append(1.0 - 1.0 / k_objects)
        t.energy.append(float(np.mean([masks[k][m].mean() for m in masks])))
    if rollout_model is None or "rollout" not in explainer.methods:
        return
    grid = rollout_grid(explainer, sample, image)
    maps = geometry.grid_to_image(minmax(np.repeat(grid[None], k_objects, axis=0)))
    curve_scores = score_curves(explainer, sample, image, maps, steps, rng) if curves else None
    add_maps(tallies.setdefault(("rollout", "-", "-", "-"), Tally()), masks, maps, curve_scores)


def rollout_grid(explainer, sample: Sample, image: np.ndarray) -> np.ndarray:
    """Attention rollout (the registered method clipcam.methods.rollout, from the first layer) of the
    explained model itself, on its token grid (rows, cols)."""
    return explainer.explain(image, list(sample.prompts), layer=1, method="rollout").grid_maps[0]


# ----------------------------------------------------------------------------- recognition
def recognition(explainer, scenes: Sequence[Scene]) -> dict:
    """Zero-shot accuracy (the top one of all 12 colour–shape prompts names an object in the scene)
    and colour–shape binding (the true 'colour shape' beats the same shape in another present
    object's colour, when that is not in the scene), as tools/train_shapes.py defines them."""
    names = [ShapeObject(s, c, (0, 0), 0) for c in COLOURS for s in SHAPES]
    prompts = [object_prompt(o) for o in names]
    hits = bind_hits = bind_total = 0
    for scene in scenes:
        logits, _ = explainer.scores(scene.image, prompts)
        present = {o.name for o in scene.objects}
        hits += names[int(np.argmax(logits))].name in present
        for a in scene.objects:
            for b in scene.objects:
                wrong = f"{b.colour} {a.shape}"
                if a is b or wrong in present:
                    continue
                bind_hits += bool(logits[prompts.index(object_prompt(a))] > logits[prompts.index(f"a photo of a {wrong}.")])
                bind_total += 1
    return {"zero_shot": hits / len(scenes), "binding": bind_hits / max(1, bind_total), "scenes": len(scenes),
            "binding_pairs": bind_total}
