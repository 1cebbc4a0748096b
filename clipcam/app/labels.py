"""The Explain tab's label map, in plain Python: every pixel coloured by the prompt that wins it
("none" below the background threshold), drawn from the session's kept result (no model run), or
from the authors' sliding window for a dense method (one forward per window, counted against the
server's forward budget and stopped by the request's deadline). Returns a dataclass the layout
maps onto its components; downloads: label-map.png and labels.npz."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np
from PIL import Image

from ..dense import LabelMap, grid_label_map, label_rule
from ..images import load_image
from ..render_labels import label_legend_html, label_picture, with_label_legend
from ..slide import dense_defaults, slide_forwards, slide_label_map
from .kept import Kept
from .server import Deadline


@dataclass(frozen=True)
class LabelShown:
    """The label map as the page shows it: the picture, its legend (HTML) and the download files."""

    picture: Image.Image
    legend: str
    files: list[str]


def check_slide_budget(forwards: int, limit: int) -> None:
    """Refuse a sliding window whose forward passes exceed the server's limit, saying what to change."""
    if forwards > limit:
        raise ValueError(f"The sliding window would run {forwards} forward passes on this image, above this server's "
                         f"limit of {limit} (CLIPCAM_MAX_FORWARDS); turn the sliding window off or use a smaller image.")


def threshold_of(value: object) -> object:
    """The page's threshold box: empty means the method's own default (None)."""
    return None if value is None or (isinstance(value, str) and not value.strip()) else value


def show_labels(service, session: str, prob_thd: object, slide: object, image: object = None,
                alive: Callable[[], bool] | None = None) -> LabelShown:
    """The label map of the session's Explain result (``service`` is the app's Service)."""
    kept = service.store.get(session, "explain")
    if not isinstance(kept, Kept):
        raise ValueError("No result to draw a label map from yet: run an explanation on the Explain tab first.")
    method, prompts = kept.settings["method"], kept.prompts
    rule = label_rule(method, threshold_of(prob_thd))  # a bad threshold is refused before any work
    if slide:
        labels = _slide(service, kept, rule.prob_thd, image, alive)
        shown = cv2.resize(labels.labels, kept.display.size, interpolation=cv2.INTER_NEAREST)  # (h, w) int16
    else:
        labels = grid_label_map(kept.layer_maps[0], kept.geometry, prompts, rule, kept.display.size)
        shown = labels.labels
    picture = label_picture(kept.display, shown)
    legend = label_legend_html(prompts, labels.shares(), labels.rule.text
                               + (f"; sliding window of {labels.windows} crops" if labels.windows else ""))
    folder = service.store.folder(session) / "labels"
    folder.mkdir(parents=True, exist_ok=True)
    png, npz = folder / "label-map.png", folder / "labels.npz"
    with_label_legend(picture, prompts, labels.shares(), labels.rule.text).save(png)
    np.savez_compressed(npz, labels=labels.labels, label_scores=labels.scores, prompts=np.array(prompts))
    return LabelShown(picture, legend, [str(png), str(npz)])


def _slide(service, kept: Kept, prob_thd: float, image: object, alive: Callable[[], bool] | None) -> LabelMap:
    """The sliding window's label map on the full image, within the forward budget and the deadline."""
    method = kept.settings["method"]
    dense_defaults(method)  # a method without its authors' window is refused first
    if image is None:
        raise ValueError("The sliding window runs the model again on the image: keep the image you explained.")
    deadline = Deadline(service.time_limit, alive)
    rgb, _ = load_image(image, max_pixels=service.max_pixels)
    check_slide_budget(slide_forwards(rgb.size, method), service.max_forwards)
    explainer = service.explainer_for(kept.settings["model"])
    return slide_label_map(explainer, rgb, kept.prompts, method, kept.settings.get("layer"), prob_thd,
                           progress=deadline.progress())
