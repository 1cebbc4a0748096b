"""``python -m clipcam eval``: the metrics over shapes-world scenes or COCO annotations."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from ..constants import SHAPES_MODEL_DIR, TARGETS
from ..eval import evaluate as ev
from ..eval.evaluate import ATTENTION
from ..explainer import METHODS, load_explainer
from ..models import sublayer_names
from .common import SentenceParser, add_model_options, precision_of, quiet_transformers


def build_eval_parser() -> argparse.ArgumentParser:

    parser = SentenceParser(
        prog="python -m clipcam eval",
        description="Score heatmaps against object masks or boxes: pointing game, peak on another object, "
        "energy pointing game, deletion and insertion AUC, and the mIoU of maps thresholded at their mean "
        "(Chefer et al.'s segmentation protocol) with its pixel accuracy and mAP, point-level p-mIoU (GEM, LeGrad), "
        "the multi-class mIoU of the label map and, with --road, ROAD (pytorch-grad-cam), "
        "per method × layer × sublayer × target. Writes eval.json, "
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
    parser.add_argument("--road", type=int, default=0, metavar="N",
                        help="samples that also get ROAD (pytorch-grad-cam's metrics; 18 imputations per map; default 0)")
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
    if args.curves < 0 or args.road < 0 or args.steps < 1 or (args.samples is not None and args.samples < 1):
        parser.error("--samples and --steps must be at least 1, --curves and --road at least 0")
    try:
        if args.shapes:
            samples = ev.shapes_samples(args.samples or 300, hard=args.shapes == "hard")
        else:
            samples = ev.coco_samples(args.coco, args.images, args.template, args.boxes, args.samples)
        if not samples:
            raise ValueError("No image has annotations to score.")
        explainer = load_explainer(args.model, device=args.device, precision=precision_of(args))
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
                                 progress=progress, road=args.road)
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


#: What this module registers in clipcam.cli.COMMANDS.
COMMAND = ("eval", run_eval)
