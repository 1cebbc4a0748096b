"""Command line.

    python -m clipcam IMAGE --prompt TEXT [--prompt TEXT ...] --out DIR   # explain one image
    python -m clipcam batch INPUT --out DIR [--prompt TEXT ...] [--ray [ADDRESS]]   # a data set → Parquet
    python -m clipcam eval (--shapes easy|hard | --coco ANNOTATIONS --images DIR) --out DIR   # metrics

Explain writes one overlay PNG per prompt, ``grid.png``, ``scores.json`` and ``heatmaps.npz`` to
DIR. Bad input gets one sentence on stderr and exit status 2, never a traceback.
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

from .constants import DEFAULT_TARGET, SHAPES_MODEL_DIR, TARGETS
from .eval import evaluate as ev
from .eval.batch import Settings, read_inputs
from .eval.engine import run_in_process, run_ray
from .eval.evaluate import ATTENTION
from .explainer import METHODS, load_explainer
from .methods import DEFAULT_METHOD, get_method
from .models import MODEL_ALIASES, families, sublayer_names
from .notes import seen_notes
from .record import scores_record
from .render import (
    COLORMAPS, DEFAULT_ALPHA, DEFAULT_COLORMAP, explanation_images, legend_lines, settings_text, sweep_grid, with_legend,
    word_strip,
)
from .words import WORD_METHODS, WORD_REGISTRY


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

    return "; ".join(f"{cls.family_label}: {', '.join(cls.sublayers)}" for cls in families().values()) + "."


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
    start = time.perf_counter()
    explainer = load_explainer(args.model, device=args.device, half=args.half)
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
    np.savez_compressed(args.out / "heatmaps.npz", **arrays)
    scores = scores_record(result, args.model, source=explainer.adapter.source,
                           seconds=round(time.perf_counter() - start, 3), explain_seconds=round(result.seconds, 3))
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


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        return SUBCOMMANDS[argv[0]](argv[1:])
    args = build_parser().parse_args(argv)
    notes: list[str] = []
    try:
        scores = run(args, notes)
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
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"wrote {args.out}/ in {scores['seconds']:.2f} s")
    return 0


# ----------------------------------------------------------------------------- batch and eval
class SentenceParser(argparse.ArgumentParser):
    """An argument parser whose errors are one sentence on stderr and exit status 2 (no usage dump)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: {message[0].upper() + message[1:]}{'' if message.endswith('.') else '.'} "
                     f"See {self.prog} --help.\n")


def quiet_transformers() -> None:
    """No weight-loading progress bars from transformers between clipcam's own."""

    hf_logging.disable_progress_bar()


def add_model_options(parser: argparse.ArgumentParser, model_default: str) -> None:
    """The model / device options that explain, batch and eval share."""
    aliases = ", ".join(MODEL_ALIASES)
    parser.add_argument("-m", "--model", default=model_default,
                        help=f"model alias ({aliases}), a Hugging Face CLIP id or a local directory (default: {model_default})")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present; default), cpu or cuda")
    parser.add_argument("--half", action="store_true", help="half precision (GPU only)")


def build_batch_parser() -> argparse.ArgumentParser:
    parser = SentenceParser(
        prog="python -m clipcam batch",
        description="Explain every image of a data set and write one Parquet row per image × prompt "
        "(× layer with --sweep): image_id, image, prompt_index, prompt, layer, logit, prob, grid_map (the raw "
        "map on the token grid, flattened) with grid_shape, the settings, and error (why an image could not "
        "be explained; the run goes on). A rerun into the same --out skips the images already done.",
        epilog="INPUT is a folder of images (give the prompts with --prompt), a .csv manifest (columns image, "
        "prompts separated by '|', optional id), a .jsonl manifest ({\"image\": ..., \"prompts\": [...], \"id\": ...} "
        "per line; image paths relative to the manifest), or a folder written by datasets' save_to_disk "
        "(columns image, prompts or prompt, optional id).")
    parser.add_argument("input", help="folder of images, .csv / .jsonl manifest, or saved datasets folder")
    parser.add_argument("-o", "--out", required=True, type=Path, help="output folder of Parquet files")
    parser.add_argument("-p", "--prompt", action="append", default=[], metavar="TEXT",
                        help="a prompt for every image (repeat for several); a manifest's rows may name their own")
    add_model_options(parser, "base")
    parser.add_argument("-l", "--layer", type=int, default=None, help="layer 1..N (default: the second-to-last)")
    parser.add_argument("-s", "--sublayer", default=None, metavar="SUBLAYER",
                        help=f"the output inside the layer (default: the model family's, e.g. mlp.fc1). {sublayer_help()}")
    parser.add_argument("--method", default=DEFAULT_METHOD, choices=list(METHODS), metavar="METHOD",
                        help=f"one of {', '.join(METHODS)} (default: {DEFAULT_METHOD})")
    parser.add_argument("-t", "--target", default=DEFAULT_TARGET, choices=TARGETS, help="what is explained per prompt")
    parser.add_argument("--sweep", action="store_true", help="every layer, one row per layer")
    parser.add_argument("--overlays", type=Path, default=None, metavar="DIR",
                        help="also write one overlay PNG per image × prompt to DIR")
    parser.add_argument("--ray", nargs="?", const="auto", default=None, metavar="ADDRESS",
                        help="run on Ray Data: 'auto' (or no value) joins a running cluster or starts a local one; "
                        "or a cluster address (needs clipcam[scale])")
    parser.add_argument("--workers", type=int, default=None,
                        help="Ray actors, one explainer each (default: one per GPU, else per CPU)")
    parser.add_argument("--chunk", type=int, default=32, help="images per Parquet file / Ray batch (default: 32)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def run_batch(argv: Sequence[str]) -> int:
    """``python -m clipcam batch``: explain a data set into Parquet, in the process or on Ray."""

    parser = build_batch_parser()
    args = parser.parse_args(argv)
    quiet_transformers()
    if args.chunk < 1 or (args.workers is not None and args.workers < 1):
        parser.error("--chunk and --workers must be at least 1")

    if args.sublayer is not None and args.sublayer not in sublayer_names():
        parser.error(f"argument --sublayer: {args.sublayer!r} is none of the families' sublayers. {sublayer_help()}")
    settings = Settings(model=args.model, method=args.method, layer=args.layer, sublayer=args.sublayer,
                        target=args.target, sweep=args.sweep, device=args.device, half=args.half)
    start = time.perf_counter()
    try:
        items = read_inputs(args.input, args.prompt)
        if args.ray is None:
            done = run_in_process(items, settings, args.out, args.overlays, args.chunk, not args.no_progress)
        else:
            done = run_ray(items, settings, args.out, args.ray, args.workers, args.overlays, args.chunk,
                           not args.no_progress)
    except ValueError as err:
        print(f"clipcam batch: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"clipcam batch: cannot write the outputs: {err.strerror or err} ({err.filename}).", file=sys.stderr)
        return 2
    skipped = len(items) - done
    print(f"explained {done} images ({skipped} already in {args.out}) in {time.perf_counter() - start:.1f} s")
    return 0


def build_eval_parser() -> argparse.ArgumentParser:

    parser = SentenceParser(
        prog="python -m clipcam eval",
        description="Score heatmaps against object masks or boxes: pointing game, peak on another object, "
        "energy pointing game, deletion and insertion AUC, and the mIoU of maps thresholded at their mean "
        "(Chefer et al.'s segmentation protocol), per method × layer × sublayer × target. Writes eval.json, "
        "eval.md and eval.png to --out.",
        epilog=f"Attention methods ({', '.join(ATTENTION)}) ignore --sublayers; the rest of the Grad-CAM "
        "family uses layer_norm1, self_attn.v_proj and mlp.fc1 among them, Score-CAM the first two.")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--shapes", choices=("easy", "hard"),
                        help="built-in shapes-world scenes: easy (2–3 objects) or hard (4–6, distractors, occlusion)")
    source.add_argument("--coco", type=Path, metavar="ANNOTATIONS", help="COCO instances JSON (polygons, RLE or boxes)")
    parser.add_argument("--images", type=Path, help="folder of the COCO file's images")
    parser.add_argument("--boxes", action="store_true", help="score against boxes instead of segmentations")
    parser.add_argument("--template", default="a photo of a {}.", help="prompt per category (default: 'a photo of a {}.')")
    parser.add_argument("-o", "--out", required=True, type=Path, help="output folder")
    add_model_options(parser, "shapes")
    parser.add_argument("--methods", default="gradcam,chefer",
                        help=f"comma-separated, or 'all': every one the model supports ({', '.join(METHODS)}); default gradcam,chefer")
    parser.add_argument("--sublayers", default="self_attn.v_proj,mlp.fc1", help="comma-separated (default: "
                        "self_attn.v_proj,mlp.fc1); 'all' for every one")
    parser.add_argument("--targets", default="logit", help="comma-separated, or 'all' (default: logit)")
    parser.add_argument("--layers", default=None, help="comma-separated layers (default: every layer)")
    parser.add_argument("--samples", type=int, default=None, help="the first N images or scenes (shapes: default 300)")
    parser.add_argument("--curves", type=int, default=20, help="samples that also get deletion/insertion (default 20)")
    parser.add_argument("--steps", type=int, default=16, help="deletion/insertion steps (default 16)")
    parser.add_argument("--no-baselines", action="store_true", help="skip random pixel, random object and rollout")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def _choices(parser: argparse.ArgumentParser, text: str, allowed: Sequence[str], what: str) -> tuple[str, ...]:
    chosen = tuple(allowed) if text == "all" else tuple(x.strip() for x in text.split(",") if x.strip())
    unknown = [x for x in chosen if x not in allowed]
    if unknown or not chosen:
        parser.error(f"unknown {what} {', '.join(unknown) or '(none given)'}; choose from {', '.join(allowed)} or all")
    return chosen


def run_eval(argv: Sequence[str]) -> int:
    """``python -m clipcam eval``: the metrics over shapes-world scenes or COCO annotations."""
    from tqdm import tqdm  # clipcam[scale]'s progress bar: only eval needs the extra


    parser = build_eval_parser()
    args = parser.parse_args(argv)
    quiet_transformers()

    methods = _choices(parser, args.methods, METHODS, "methods")
    sublayers = _choices(parser, args.sublayers, sublayer_names(), "sublayers")
    targets = _choices(parser, args.targets, TARGETS, "targets")
    if args.coco is not None and args.images is None:
        parser.error("--coco needs --images, the folder of its images")
    try:
        layers = None if args.layers is None else tuple(int(x) for x in args.layers.split(","))
    except ValueError:
        parser.error(f"--layers takes comma-separated layer numbers such as 11,12; got {args.layers!r}")
    if args.curves < 0 or args.steps < 1 or (args.samples is not None and args.samples < 1):
        parser.error("--samples and --steps must be at least 1, --curves at least 0")
    try:
        if args.shapes:
            samples = ev.shapes_samples(args.samples or 300, hard=args.shapes == "hard")
        else:
            samples = ev.coco_samples(args.coco, args.images, args.template, args.boxes, args.samples)
        if not samples:
            raise ValueError("No image has annotations to score.")
        explainer = load_explainer(args.model, device=args.device, half=args.half)
        if args.sublayers == "all":  # every sublayer of this model's own family
            sublayers = explainer.sublayers
        if args.methods == "all":  # every method this model's family supports (a ResNet has no attention)
            methods = tuple(m for m in methods if m in explainer.methods)
        rollout = str(SHAPES_MODEL_DIR) if args.model == "shapes" else args.model if Path(args.model).is_dir() else None
        if explainer.family != "hf-clip":  # the rollout baseline follows CLIP's class token (SigLIP has none)
            rollout = None
        bar = tqdm(total=len(samples), unit="img", disable=args.no_progress, desc="evaluating")
        progress = lambda done, total: bar.update(done - bar.n)  # noqa: E731
        try:
            result = ev.evaluate(explainer, samples, methods, sublayers, targets, layers, args.curves, args.steps,
                                 baselines=not args.no_baselines, rollout_model=None if args.no_baselines else rollout,
                                 progress=progress)
        finally:
            bar.close()
        result["command"] = "python -m clipcam eval " + " ".join(argv)
        text = ev.write_report(result, args.out / "eval.json")
    except ValueError as err:
        print(f"clipcam eval: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"clipcam eval: cannot read or write {err.filename}: {err.strerror or err}.", file=sys.stderr)
        return 2
    print(text)
    print(f"wrote {args.out}/eval.json, eval.md, eval.png in {result['seconds']:.1f} s")
    return 0


SUBCOMMANDS = {"batch": run_batch, "eval": run_eval}


if __name__ == "__main__":
    sys.exit(main())
