"""Heatmap quality on shapes world, where every object's mask is known: a thin caller of
clipcam.eval.evaluate, the evaluator behind ``python -m clipcam eval``.

    python benchmarks/quality.py                      # full table (300 scenes), writes results + figure
    python benchmarks/quality.py --scenes 40 --curves 10   # a quick look
    python benchmarks/quality.py --methods all --sublayers layer_norm1,self_attn.v_proj,mlp.fc1 \
        --no-baselines --out benchmarks/results/quality_methods.json   # every method × target
    python benchmarks/quality.py --hard --methods all ... # the harder scenes (4–6 objects, distractors)

For each of the fixed, seeded evaluation scenes (2–3 objects; --hard: 4–6), the prompts are one
per object ("a photo of a red circle."), and each prompt's heatmap is scored against that
object's mask: pointing game, peak on another object, energy-based pointing game, deletion /
insertion AUC of the prompt's softmax score over the scene's prompts, and the mIoU of the map
thresholded at its mean. Every layer × sublayer × target of Grad-CAM is measured (one sweep per
sublayer and target gives all layers), with baselines: a random pixel, a random object, and
class-agnostic attention rollout; --methods adds the other methods, each at every target and layer.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from clipcam import load_explainer  # noqa: E402
from clipcam.constants import SHAPES_MODEL_DIR, SUBLAYERS, TARGETS  # noqa: E402
from clipcam.eval import evaluate as ev  # noqa: E402
from clipcam.eval.shapes import evaluation_set, hard_evaluation_set  # noqa: E402
from clipcam.explainer import METHODS  # noqa: E402

SHAPES_MODEL = SHAPES_MODEL_DIR
RESULTS = ROOT / "benchmarks" / "results"
best = ev.best


def evaluate(model_path: Path = SHAPES_MODEL, n_scenes: int = 300, n_curves: int = 60, steps: int = 16,
             sublayers=SUBLAYERS, targets=TARGETS, seed: int = 0, baselines: bool = True,
             methods=("gradcam",), curve_methods=("gradcam", "chefer"), hard: bool = False) -> dict:
    """All settings' metrics on the first n_scenes evaluation scenes (curves on the first n_curves,
    for curve_methods only: the curves cost one batched forward per scene, prompt and setting)."""
    explainer = load_explainer(str(model_path), device="cpu")
    result = ev.evaluate(explainer, ev.shapes_samples(n_scenes, hard=hard), methods=methods, sublayers=sublayers,
                         targets=targets, n_curves=n_curves, steps=steps, curve_methods=curve_methods,
                         baselines=baselines, rollout_model=str(model_path) if baselines else None, seed=seed)
    scenes = hard_evaluation_set(n_scenes) if hard else evaluation_set(n_scenes)
    return {"scenes": result["samples"], "curve_scenes": result["curve_samples"], **result,
            "recognition": ev.recognition(explainer, scenes)}  # does the model itself tell the objects apart?


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=SHAPES_MODEL)
    parser.add_argument("--scenes", type=int, default=300)
    parser.add_argument("--curves", type=int, default=60, help="scenes that also get deletion/insertion curves")
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--methods", default="gradcam",
                        help=f"comma-separated methods, or 'all' ({', '.join(METHODS)}); default gradcam")
    parser.add_argument("--sublayers", default=",".join(SUBLAYERS),
                        help="comma-separated sublayers for the sublayer methods (default: all)")
    parser.add_argument("--targets", default=",".join(TARGETS), help="comma-separated targets (default: all)")
    parser.add_argument("--hard", action="store_true", help="the harder scenes: 4–6 objects, distractors, occlusion")
    parser.add_argument("--no-baselines", action="store_true")
    parser.add_argument("--replot", action="store_true",
                        help="only redraw the table and figure from --out's JSON")
    parser.add_argument("--out", type=Path, default=RESULTS / "quality.json")
    parser.add_argument("--figure", type=Path, default=RESULTS / "quality_pointing.png")
    args = parser.parse_args()
    methods = METHODS if args.methods == "all" else tuple(m.strip() for m in args.methods.split(","))
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown methods {unknown}; choose from {', '.join(METHODS)}")
    sublayers = tuple(s.strip() for s in args.sublayers.split(","))
    if not set(sublayers) <= set(SUBLAYERS):
        parser.error(f"unknown sublayers {sorted(set(sublayers) - set(SUBLAYERS))}; choose from {', '.join(SUBLAYERS)}")
    targets = tuple(t.strip() for t in args.targets.split(","))
    if not set(targets) <= set(TARGETS):
        parser.error(f"unknown targets {sorted(set(targets) - set(TARGETS))}; choose from {', '.join(TARGETS)}")
    if args.replot:
        result = json.loads(args.out.read_text())
        for r in result["rows"]:  # tables written before the evaluator moved called Grad-CAM grad_cam
            r["method"] = "gradcam" if r["method"] == "grad_cam" else r["method"]
        result.setdefault("samples", result.get("scenes"))
        result.setdefault("curve_samples", result.get("curve_scenes"))
    else:
        result = evaluate(args.model, args.scenes, args.curves, args.steps, sublayers=sublayers, targets=targets,
                          methods=methods,
                          baselines=not args.no_baselines, curve_methods=methods, hard=args.hard)
        result["command"] = "python " + " ".join(sys.argv)
    figure = args.figure if methods == ("gradcam",) else None
    print(ev.write_report(result, args.out, figure))
    if "recognition" in result:
        print("the model on these scenes: zero-shot {zero_shot:.3f}, colour-shape binding {binding:.3f}".format(
            **result["recognition"]))
    for method in methods:
        b = best(result["rows"], method)
        print(f"best {method}: layer {b['layer']} {b['sublayer']} target {b['target']}: pointing {b['pointing']:.3f}")


if __name__ == "__main__":
    main()
