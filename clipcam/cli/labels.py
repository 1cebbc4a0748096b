"""The explain command's label-map options: ``--label-map``, ``--prob-thd``, ``--logit-scale`` and
``--slide`` (clipcam.dense, clipcam.slide), and what they write: label-map.png, the labels and their
scores in heatmaps.npz, and a ``label_map`` entry in scores.json. The raw maps are not changed."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ..dense import MINMAX_THRESHOLD, NONE, UNSEEN, LabelMap, label_map, label_rule
from ..explainer import Explainer
from ..render_labels import label_picture, with_label_legend
from ..results import Explanation
from ..slide import dense_defaults, slide_label_map


def add_label_options(parser: argparse.ArgumentParser) -> None:
    """The label-map options of the explain command."""
    parser.add_argument("--label-map", action="store_true",
                        help="also write label-map.png (every pixel coloured by the prompt that wins it, 'none' below "
                        "the background threshold) and labels / label_scores in heatmaps.npz (labels: the prompt's "
                        f"index, {NONE} none, {UNSEEN} outside the region the model saw)")
    parser.add_argument("--prob-thd", default=None, metavar="P",
                        help="the label map's background threshold, 0..1 (default: the method's own; methods without "
                        f"one scale each map min-max and use {MINMAX_THRESHOLD}); implies --label-map")
    parser.add_argument("--logit-scale", default=None, metavar="S",
                        help="softmax the raw maps over the prompts at this scale for the label map (default: the "
                        "dense method's own; none for the gradient methods); implies --label-map")
    parser.add_argument("--slide", action="store_true",
                        help="the label map from the authors' sliding window (dense methods only: their crop and "
                        "stride after resizing the short side; one forward per window); implies --label-map")


def wants_labels(args: argparse.Namespace) -> bool:
    """Whether any label-map option was given."""
    return bool(args.label_map or args.slide or args.prob_thd is not None or args.logit_scale is not None)


def check_label_options(args: argparse.Namespace) -> None:
    """Refuse bad label-map options with one sentence before the model runs."""
    if wants_labels(args):
        label_rule(args.method, args.prob_thd, args.logit_scale)
        if args.slide:
            dense_defaults(args.method)


def write_label_map(args: argparse.Namespace, explainer: Explainer, shown: Explanation, out: Path
                    ) -> tuple[dict[str, np.ndarray], dict]:
    """Write label-map.png; return the arrays for heatmaps.npz and the scores.json entry."""
    if args.slide:
        labels: LabelMap = slide_label_map(explainer, args.image, shown.prompts, args.method, shown.layer,
                                           args.prob_thd, args.logit_scale)
    else:
        labels = label_map(shown, args.prob_thd, args.logit_scale)
    picture = with_label_legend(label_picture(shown.image, labels.labels), labels.prompts, labels.shares(),
                                labels.rule.text)
    picture.save(out / "label-map.png")
    record = {"rule": labels.rule.text, "logit_scale": labels.rule.logit_scale, "prob_thd": labels.rule.prob_thd,
              "windows": labels.windows, "shares": labels.shares()}
    return {"labels": labels.labels, "label_scores": labels.scores}, record
