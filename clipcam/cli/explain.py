"""``python -m clipcam IMAGE --prompt TEXT [--prompt TEXT ...] --out DIR``: explain one image.

Writes one overlay PNG per prompt, ``grid.png``, ``scores.json`` and ``heatmaps.npz`` to DIR.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from transformers.utils import logging as hf_logging

from ..constants import DEFAULT_TARGET, TARGETS
from ..explainer import METHODS, load_explainer
from ..methods import DEFAULT_METHOD, get_method
from ..models import MODEL_ALIASES
from ..notes import seen_notes
from ..record import scores_record
from ..render import (
    COLORMAPS, DEFAULT_ALPHA, DEFAULT_COLORMAP, explanation_images, legend_lines, settings_text, sweep_grid, with_legend,
    word_strip,
)
from ..words import WORD_METHODS, WORD_REGISTRY
from .common import add_precision_options, precision_of, refused, sublayer_help
from .labels import add_label_options, check_label_options, wants_labels, write_label_map


def build_parser() -> argparse.ArgumentParser:
    aliases = ", ".join(f"{k} = {v}" for k, v in MODEL_ALIASES.items())
    parser = argparse.ArgumentParser(
        prog="python -m clipcam",
        description="Show where a CLIP-family model looks when it matches an image to each text prompt: "
        "one heatmap per prompt, with the model's score for each (a softmax over the prompts for CLIP, "
        "one sigmoid per prompt for SigLIP). For data sets: 'python -m clipcam batch --help' (a folder, "
        "manifest or dataset to Parquet, optionally on Ray) and 'python -m clipcam eval --help' (pointing "
        "game, deletion/insertion, mIoU over annotations).",
        epilog="Layers are numbered 1..N (layer 11 of the base model is vision_model.encoder.layers[10]). "
        "Outputs: one overlay PNG per prompt, grid.png, scores.json (prompts, logits, probs, model, layer, "
        "sublayer, seconds) and heatmaps.npz (grid_maps: the method's raw maps on the token grid; image_maps: each "
        "scaled to [0, 1] on the original image, NaN outside the region CLIP saw). With --sweep: every "
        "layer, in sweep.png, and arrays of shape (layers, prompts, ...).",
    )
    parser.add_argument("image", help="image file (PNG, JPEG, WebP, GIF, BMP or TIFF)")
    parser.add_argument("-p", "--prompt", action="append", required=True, metavar="TEXT",
                        help="a text prompt; repeat for several (e.g. --prompt 'a photo of a cat.')")
    parser.add_argument("-m", "--model", default="base",
                        help=f"model alias ({aliases}), a Hugging Face CLIP or SigLIP id, an open_clip name "
                        "(hf-hub:org/repo or local-dir:/path: ViTs, ResNets, timm towers), or a local directory "
                        "written by save_pretrained (default: base)")
    parser.add_argument("-l", "--layer", type=int, default=None,
                        help="vision-encoder layer, 1..N (default: the second-to-last)")
    parser.add_argument("-s", "--sublayer", default=None,
                        help="which output inside the layer to explain, in the family's own names (default: the "
                        f"MLP's first projection). {sublayer_help()}")
    parser.add_argument("--method", default=DEFAULT_METHOD, choices=list(METHODS),
                        help=f"explanation method (default: {DEFAULT_METHOD}): the Grad-CAM family on --sublayer "
                        "(one forward and batched gradients); scorecam on --sublayer (no gradient, one masked "
                        "forward per channel: slow, progress on stderr); or an attention method from --layer to "
                        "the last, --sublayer ignored: chefer (Chefer et al. 2021), gradeclip (Grad-ECLIP, Zhao et "
                        "al. 2024; --layer N for the paper's last layer), legrad (LeGrad, Bousselham et al. 2024)")
    parser.add_argument("-t", "--target", default=DEFAULT_TARGET, choices=TARGETS,
                        help="what is explained per prompt: CLIP's logit (default, as the reference notebook), "
                        "its log-softmax over the prompts, or the logit minus the prompts' mean (contrast)")
    parser.add_argument("--words", default=None, choices=list(WORD_METHODS),
                        help="also say which words of each prompt matter, with this method (a text pass of its own; "
                        "off by default): " + "; ".join(f"{m.name} ({m.short}, {'signed' if m.signed else 'non-negative'})"
                                                        for m in WORD_REGISTRY.values())
                        + ". Adds word_relevance to scores.json and one PNG strip per prompt (NN-...-words.png)")
    parser.add_argument("--words-layer", type=int, default=None, metavar="N",
                        help="the text-encoder layer the attention word methods start from (default: the authors' "
                        "own: the last layer for chefer, the last 8 for gradeclip)")
    parser.add_argument("--sweep", action="store_true",
                        help="explain every layer in one pass (sweep.png; the per-prompt PNGs and grid.png "
                        "then show the second-to-last layer)")
    add_label_options(parser)
    parser.add_argument("-o", "--out", required=True, type=Path, help="output directory (created if needed)")
    parser.add_argument("--colormap", default=DEFAULT_COLORMAP, choices=list(COLORMAPS),
                        help=f"colour map of the overlays (default: {DEFAULT_COLORMAP})")
    parser.add_argument("--alpha", type=float, default=DEFAULT_ALPHA,
                        help=f"heatmap opacity in the overlays, 0..1 (default: {DEFAULT_ALPHA})")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    add_precision_options(parser)
    return parser


def slug(text: str, index: int) -> str:
    """A safe file name for prompt number ``index``."""
    cleaned = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:48] or "prompt"
    return f"{index + 1:02d}-{cleaned}"


def report_progress(done: int, total: int) -> None:
    """Score-CAM's progress on one terminal line."""
    print(f"\rmasked forward passes: {done}/{total}", end="\n" if done == total else "", file=sys.stderr, flush=True)


def run(args: argparse.Namespace, notes: list[str] | None = None) -> dict:
    """Explain and write the outputs; returns what went into scores.json. ``notes``, when given, is
    filled with what a person should read beside the scores (clipcam.notes): the record's notes,
    the part of the image the crop cut off, prompt words the model does not know, dead layers."""

    hf_logging.disable_progress_bar()

    if not 0.0 <= args.alpha <= 1.0:
        raise ValueError(f"--alpha must be between 0 and 1; got {args.alpha}.")
    check_label_options(args)
    start = time.perf_counter()
    explainer = load_explainer(args.model, device=args.device, precision=precision_of(args))
    progress = report_progress if get_method(args.method).cost == "per channel" and sys.stderr.isatty() else None
    if args.sweep:
        result = explainer.sweep(args.image, args.prompt, sublayer=args.sublayer, target=args.target,
                                 method=args.method, progress=progress, words=args.words, words_layer=args.words_layer)
        args.out.mkdir(parents=True, exist_ok=True)
        sweep_grid(result, args.colormap, args.alpha).save(args.out / "sweep.png")
        shown = result.at(result.layers[-2] if len(result.layers) > 1 else result.layers[0])
        arrays = {"grid_maps": result.layer_maps, "image_maps": result.layer_image_maps,
                  "layers": np.array(result.layers)}
    else:
        result = shown = explainer.explain(args.image, args.prompt, layer=args.layer, sublayer=args.sublayer,
                                           target=args.target, method=args.method, progress=progress,
                                           words=args.words, words_layer=args.words_layer)
        arrays = {"grid_maps": result.grid_maps, "image_maps": result.image_maps}
    args.out.mkdir(parents=True, exist_ok=True)
    tiles, grid = explanation_images(shown, args.colormap, args.alpha)
    for i, (prompt, tile) in enumerate(zip(shown.prompts, tiles)):
        tile.save(args.out / f"{slug(prompt, i)}.png")
    words = result.word_relevance
    if words is not None:
        label = WORD_REGISTRY[words.method].short
        for i, prompt_words in enumerate(words.prompts):
            strip = word_strip(prompt_words, words.signed, args.colormap, label=label)
            strip.save(args.out / f"{slug(prompt_words.prompt, i)}-words.png")
    labels = write_label_map(args, explainer, shown, args.out) if wants_labels(args) else None
    if labels is not None:
        arrays.update(labels[0])
    np.savez_compressed(args.out / "heatmaps.npz", **arrays)
    scores = scores_record(result, args.model, source=explainer.adapter.source,
                           seconds=round(time.perf_counter() - start, 3), explain_seconds=round(result.seconds, 3))
    if labels is not None:
        scores["label_map"] = labels[1]
    scores["precision"] = {"name": explainer.adapter.precision.name, "reason": explainer.adapter.precision.reason}
    if words is not None:
        scores["word_relevance"] = words.as_dict()
    legend = legend_lines(False, result.prob_kind) + [settings_text({**scores, "layers": None, "layer": shown.layer},
                                                                    args.colormap, args.alpha, False)]
    with_legend(grid, args.colormap, legend).save(args.out / "grid.png")
    (args.out / "scores.json").write_text(json.dumps(scores, indent=2, ensure_ascii=False) + "\n")
    if notes is not None:
        tokenizer = getattr(explainer.adapter, "tokenizer", None)
        notes += scores["notes"] + seen_notes(result, tokenizer) + list(scores["dead"].values())
    return scores


def run_explain(argv: Sequence[str]) -> int:
    """``python -m clipcam IMAGE ...``: explain one image into a folder."""
    args = build_parser().parse_args(argv)
    notes: list[str] = []
    try:
        scores = run(args, notes)
    except (ValueError, OSError) as err:
        return refused("clipcam", err)
    if scores["prob_kind"] == "sigmoid":
        print("SigLIP scores each prompt on its own (a sigmoid per prompt), so they need not add up to 100 %.")
    for prompt, prob in zip(scores["prompts"], scores["probs"]):
        print(f"{100 * prob:6.2f} %  {prompt}")
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"wrote {args.out}/ in {scores['seconds']:.2f} s")
    return 0


#: What this module registers in clipcam.cli.COMMANDS: None, the command run when no command is named.
COMMAND = (None, run_explain)
