"""Command line: ``python -m clipcam IMAGE --prompt TEXT [--prompt TEXT ...] --out DIR``.

Writes one overlay PNG per prompt, ``grid.png``, ``scores.json`` and ``heatmaps.npz`` to DIR.
Bad input gets one sentence on stderr and exit status 2, never a traceback.
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

from .methods import DEFAULT_METHOD
from .constants import DEFAULT_TARGET, MODEL_ALIASES, TARGETS
from .explainer import MASKING_METHODS, METHODS, load_explainer
from .render import COLORMAPS, DEFAULT_ALPHA, DEFAULT_COLORMAP, explanation_images, sweep_grid, word_strip
from .words import WORD_METHODS, WORD_REGISTRY


def build_parser() -> argparse.ArgumentParser:
    aliases = ", ".join(f"{k} = {v}" for k, v in MODEL_ALIASES.items())
    parser = argparse.ArgumentParser(
        prog="python -m clipcam",
        description="Show where a CLIP-family model looks when it matches an image to each text prompt: "
        "one heatmap per prompt, with the model's score for each (a softmax over the prompts for CLIP, "
        "one sigmoid per prompt for SigLIP).",
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
    parser.add_argument("-o", "--out", required=True, type=Path, help="output directory (created if needed)")
    parser.add_argument("--colormap", default=DEFAULT_COLORMAP, choices=list(COLORMAPS),
                        help=f"colour map of the overlays (default: {DEFAULT_COLORMAP})")
    parser.add_argument("--alpha", type=float, default=DEFAULT_ALPHA,
                        help=f"heatmap opacity in the overlays, 0..1 (default: {DEFAULT_ALPHA})")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    parser.add_argument("--half", action="store_true", help="half precision (GPU only)")
    return parser


def sublayer_help() -> str:
    """Each family's sublayer names, for --help."""
    from .models import families

    return "; ".join(f"{cls.family_label}: {', '.join(cls.sublayers)}" for cls in families().values()) + "."


def slug(text: str, index: int) -> str:
    """A safe file name for prompt number ``index``."""
    cleaned = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:48] or "prompt"
    return f"{index + 1:02d}-{cleaned}"


def report_progress(done: int, total: int) -> None:
    """Score-CAM's progress on one terminal line."""
    print(f"\rmasked forward passes: {done}/{total}", end="\n" if done == total else "", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> dict:
    """Explain and write the outputs; returns what went into scores.json."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    if not 0.0 <= args.alpha <= 1.0:
        raise ValueError(f"--alpha must be between 0 and 1; got {args.alpha}.")
    start = time.perf_counter()
    explainer = load_explainer(args.model, device=args.device, half=args.half)
    progress = report_progress if args.method in MASKING_METHODS and sys.stderr.isatty() else None
    if args.sweep:
        result = explainer.sweep(args.image, args.prompt, sublayer=args.sublayer, target=args.target,
                                 method=args.method, progress=progress, words=args.words, words_layer=args.words_layer)
        args.out.mkdir(parents=True, exist_ok=True)
        sweep_grid(result, args.colormap, args.alpha).save(args.out / "sweep.png")
        shown = result.at(result.layers[-2] if len(result.layers) > 1 else result.layers[0])
        layer_info = {"layers": list(result.layers)}
        dead = {str(layer): reason for layer, reason in zip(result.layers, result.dead_reasons) if reason}
        arrays = {"grid_maps": result.grid_maps, "image_maps": result.image_maps, "layers": np.array(result.layers)}
    else:
        result = shown = explainer.explain(args.image, args.prompt, layer=args.layer, sublayer=args.sublayer,
                                           target=args.target, method=args.method, progress=progress,
                                           words=args.words, words_layer=args.words_layer)
        layer_info = {"layer": result.layer}
        dead = {str(result.layer): result.dead_reason} if result.dead else {}
        arrays = {"grid_maps": result.grid_maps, "image_maps": result.image_maps}
    args.out.mkdir(parents=True, exist_ok=True)
    tiles, grid = explanation_images(shown, args.colormap, args.alpha)
    for i, (prompt, tile) in enumerate(zip(shown.prompts, tiles)):
        tile.save(args.out / f"{slug(prompt, i)}.png")
    grid.save(args.out / "grid.png")
    words = result.word_relevance
    if words is not None:
        label = WORD_REGISTRY[words.method].short
        for i, prompt_words in enumerate(words.prompts):
            strip = word_strip(prompt_words, words.signed, args.colormap, label=label)
            strip.save(args.out / f"{slug(prompt_words.prompt, i)}-words.png")
    np.savez_compressed(args.out / "heatmaps.npz", **arrays)
    scores = {
        "prompts": list(result.prompts),
        "logits": [float(x) for x in result.logits],
        "probs": [float(x) for x in result.probs],
        "prob_kind": result.prob_kind,
        "family": result.family,
        "model": args.model,
        "source": explainer.adapter.source,
        **layer_info,
        "sublayer": result.sublayer,
        "target": result.target,
        "method": result.method,
        "dead": dead,
        "notes": list(result.notes),
        "seconds": round(time.perf_counter() - start, 3),
        "explain_seconds": round(result.seconds, 3),
    }
    if words is not None:
        scores["word_relevance"] = words.as_dict()
    (args.out / "scores.json").write_text(json.dumps(scores, indent=2, ensure_ascii=False) + "\n")
    return scores


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        scores = run(args)
    except ValueError as err:
        print(f"clipcam: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"clipcam: cannot write the outputs: {err.strerror or err} ({err.filename}).", file=sys.stderr)
        return 2
    if scores["prob_kind"] == "sigmoid":
        print("SigLIP scores each prompt on its own (a sigmoid per prompt), so they need not add up to 100 %.")
    for prompt, prob in zip(scores["prompts"], scores["probs"]):
        print(f"{100 * prob:6.2f} %  {prompt}")
    for note in scores["notes"] + list(scores["dead"].values()):
        print(f"note: {note}", file=sys.stderr)
    print(f"wrote {args.out}/ in {scores['seconds']:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
