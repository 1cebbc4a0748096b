"""Heatmap quality on shapes world, where every object's mask is known.

    python benchmarks/quality.py                      # full table (300 scenes), writes results + figure
    python benchmarks/quality.py --scenes 40 --curves 10   # a quick look
    python benchmarks/quality.py --methods all --sublayers layer_norm1,self_attn.v_proj,mlp.fc1 \
        --no-baselines --out benchmarks/results/quality_methods.json   # every method × target

For each of the fixed, seeded evaluation scenes (2–3 objects), the prompts are one per object
("a photo of a red circle."), and each prompt's heatmap is scored against that object's mask:
pointing game, peak on another object, energy-based pointing game, and deletion / insertion AUC
of the prompt's softmax score over the scene's prompts. Every layer × sublayer × target of
Grad-CAM is measured (one sweep per sublayer and target gives all layers), with baselines: a
random pixel, a random object, and class-agnostic attention rollout; --methods adds the other
methods (clipcam.explainer.METHODS), each at every target and layer.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from clipcam import load_explainer  # noqa: E402
from clipcam.methods.cam import normalize_maps  # noqa: E402
from clipcam.constants import DEFAULT_SUBLAYER, SUBLAYERS, TARGETS  # noqa: E402
from clipcam.explainer import ATTENTION_METHODS, MASKING_METHODS, METHODS  # noqa: E402
from clipcam.eval.metrics import DILATE, auc, dilate, energy_pointing, perturbation_series, pointing, saliency_order  # noqa: E402
from clipcam.eval.shapes import Scene, evaluation_set, object_prompt  # noqa: E402

SHAPES_MODEL = ROOT / "assets" / "shapes-clip"
RESULTS = ROOT / "benchmarks" / "results"


@dataclass
class Tally:
    """Running sums of the metrics for one setting."""

    hits: list[float] = field(default_factory=list)
    other: list[float] = field(default_factory=list)
    energy: list[float] = field(default_factory=list)
    deletion: list[float] = field(default_factory=list)
    insertion: list[float] = field(default_factory=list)

    def summary(self) -> dict:
        mean = lambda xs: float(np.mean(xs)) if xs else float("nan")  # noqa: E731
        return {"pointing": mean(self.hits), "other_object": mean(self.other), "energy": mean(self.energy),
                "deletion_auc": mean(self.deletion), "insertion_auc": mean(self.insertion), "n": len(self.hits)}


def score_curves(explainer, scene: Scene, maps: np.ndarray, steps: int, rng: np.random.Generator) -> tuple[list, list]:
    """Deletion and insertion AUC for each prompt's map (K, H, W), one batched forward per scene."""
    prompts = [object_prompt(o) for o in scene.objects]
    fill = np.median(scene.image.reshape(-1, 3), axis=0)  # the background colour: objects vanish
    stacks = []
    for k in range(len(prompts)):
        d, i = perturbation_series(scene.image, saliency_order(maps[k], rng), steps, fill)
        stacks += [d, i]
    images = np.concatenate(stacks)  # (K * 2 * (steps + 1), H, W, 3)
    pixels = explainer.adapter.image_processor(images=list(images), return_tensors="pt")["pixel_values"]
    text, _ = explainer.text_embeddings(tuple(prompts))
    with torch.no_grad():
        emb = explainer.model.get_image_features(pixel_values=pixels).pooler_output
        emb = emb / emb.norm(dim=-1, keepdim=True)
        probs = ((emb @ text.T) * explainer.model.logit_scale.exp()).softmax(dim=-1).numpy()
    probs = probs.reshape(len(prompts), 2, steps + 1, len(prompts))
    deletion = [auc(probs[k, 0, :, k]) for k in range(len(prompts))]
    insertion = [auc(probs[k, 1, :, k]) for k in range(len(prompts))]
    return deletion, insertion


def add_scene(tally: Tally, explainer, scene: Scene, maps: np.ndarray, curves: bool, steps: int, rng) -> None:
    dilated = np.stack([dilate(m) for m in scene.masks])  # once per scene, not per map
    for k in range(len(scene.objects)):
        hit, other = pointing(maps[k], dilated, k, pixels=0)
        tally.hits.append(hit)
        tally.other.append(other)
        tally.energy.append(energy_pointing(maps[k], scene.masks[k]))
    if curves:
        d, i = score_curves(explainer, scene, maps, steps, rng)
        tally.deletion += d
        tally.insertion += i


#: For the other CAM methods, the sublayers where Grad-CAM did well (the full grid is Grad-CAM's).
FAMILY_SUBLAYERS = ("layer_norm1", "self_attn.v_proj", "mlp.fc1")
#: Score-CAM costs one forward per channel: its two sublayers of hidden width (mlp.fc1 is 4× wider).
MASKING_SUBLAYERS = ("layer_norm1", "self_attn.v_proj")


def method_plan(methods, sublayers) -> list[tuple[str, str]]:
    """(method, sublayer) pairs to sweep: every given sublayer for Grad-CAM, FAMILY_SUBLAYERS for the
    rest of the family, one pass for attention methods (their layer is where relevance starts)."""
    plan = []
    for method in methods:
        if method == "gradcam":
            plan += [(method, s) for s in sublayers]
        elif method in ATTENTION_METHODS:
            plan.append((method, "self_attn"))
        elif method in MASKING_METHODS:
            plan += [(method, s) for s in MASKING_SUBLAYERS if s in sublayers]
        else:
            plan += [(method, s) for s in FAMILY_SUBLAYERS if s in sublayers]
    return plan


def evaluate(model_path: Path = SHAPES_MODEL, n_scenes: int = 300, n_curves: int = 60, steps: int = 16,
             sublayers=SUBLAYERS, targets=TARGETS, seed: int = 0, baselines: bool = True,
             methods=("gradcam",), curve_methods=("gradcam", "chefer")) -> dict:
    """All settings' metrics on the first n_scenes evaluation scenes (curves on the first n_curves,
    for curve_methods only: the curves cost one batched forward per scene, prompt and setting)."""
    explainer = load_explainer(str(model_path), device="cpu")
    scenes = evaluation_set()[:n_scenes]
    rng = np.random.default_rng(seed)
    tallies: dict[tuple, Tally] = {}
    start = time.perf_counter()
    for s, scene in enumerate(scenes):
        prompts = [object_prompt(o) for o in scene.objects]
        for target in targets:
            for method, sublayer in method_plan(methods, sublayers):
                sub = DEFAULT_SUBLAYER if method in ATTENTION_METHODS else sublayer
                sweep = explainer.sweep(scene.image, prompts, sublayer=sub, target=target, method=method)
                maps = sweep.image_maps  # (L, K, 64, 64)
                curves = s < n_curves and method in curve_methods
                for li, layer in enumerate(sweep.layers):
                    if sweep.dead_reasons[li]:
                        continue
                    key = ("grad_cam" if method == "gradcam" else method, target, layer, sublayer)
                    add_scene(tallies.setdefault(key, Tally()), explainer, scene, maps[li], curves, steps, rng)
        if baselines:
            add_baselines(tallies, explainer, scene, s < n_curves, steps, rng, model_path)
    rows = [{"method": k[0], "target": k[1], "layer": k[2], "sublayer": k[3], **t.summary()} for k, t in tallies.items()]
    return {"scenes": len(scenes), "curve_scenes": min(n_curves, len(scenes)), "steps": steps, "dilate": DILATE,
            "seconds": round(time.perf_counter() - start, 1), "rows": rows}


_eager_models: dict[str, object] = {}


def add_baselines(tallies, explainer, scene: Scene, curves: bool, steps: int, rng, model_path: Path) -> None:
    """Random pixel, random object, and attention rollout for one scene."""
    from transformers import CLIPModel

    from clipcam.eval.rollout import rollout_map

    k_objects = len(scene.objects)
    h, w = scene.masks.shape[1:]
    # random pixel: the expected hit rate is the dilated mask's share of the image
    t = tallies.setdefault(("random_pixel", "-", "-", "-"), Tally())
    for k in range(k_objects):
        own = dilate(scene.masks[k])
        others = np.any([dilate(m) for i, m in enumerate(scene.masks) if i != k], axis=0)
        t.hits.append(float(own.mean()))
        t.other.append(float((others & ~own).mean()))
        t.energy.append(float(scene.masks[k].mean()))
    # random object: the peak lands on one of the scene's objects, chosen uniformly
    t = tallies.setdefault(("random_object", "-", "-", "-"), Tally())
    for k in range(k_objects):
        t.hits.append(1.0 / k_objects)
        t.other.append(1.0 - 1.0 / k_objects)
        t.energy.append(float(np.mean([scene.masks[k][m].mean() for m in scene.masks])))
    # attention rollout: the same map for every prompt
    key = str(model_path)
    if key not in _eager_models:
        _eager_models[key] = CLIPModel.from_pretrained(model_path, attn_implementation="eager").eval()
    _, pixels, geometry, _ = explainer.prepare_image(scene.image)
    grid = rollout_map(_eager_models[key], pixels)
    maps = geometry.grid_to_image(normalize_maps(np.repeat(grid[None], k_objects, axis=0)))
    add_scene(tallies.setdefault(("rollout", "-", "-", "-"), Tally()), explainer, scene, maps, curves, steps, rng)


def best(rows: list[dict], method: str = "grad_cam", target: str | None = None) -> dict:
    """The row with the highest pointing game (ties: energy) among a method's settings."""
    pool = [r for r in rows if r["method"] == method and (target is None or r["target"] == target)]
    return max(pool, key=lambda r: (round(r["pointing"], 6), r["energy"]))


def method_target_table(rows: list[dict]) -> str:
    """Markdown: for each method × target, its best layer (and sublayer) by pointing game."""
    lines = ["| method | target | best layer, sublayer | pointing ↑ | peak on other object ↓ | energy PG ↑ | "
             "deletion AUC ↓ | insertion AUC ↑ |", "|---|---|---|---|---|---|---|---|"]
    names = [m for m in ("grad_cam", *METHODS) if any(r["method"] == m for r in rows)]
    ranked = sorted(names, key=lambda m: -best(rows, m)["pointing"])
    for name in ranked:
        for target in TARGETS:
            if not any(r["method"] == name and r["target"] == target for r in rows):
                continue
            r = best(rows, name, target)
            where = f"{r['layer']}" + ("" if r["sublayer"] == "self_attn" else f", {r['sublayer']}")
            lines.append(f"| {name.replace('grad_cam', 'gradcam')} | {target} | {where} | {r['pointing']:.3f} | "
                         f"{r['other_object']:.3f} | {r['energy']:.3f} | {r['deletion_auc']:.3f} | "
                         f"{r['insertion_auc']:.3f} |")
    return "\n".join(lines)


def markdown(result: dict) -> str:
    rows = result["rows"]
    lines = [f"Scenes: {result['scenes']} (deletion/insertion on the first {result['curve_scenes']}, "
             f"{result['steps']} steps); masks dilated by {result['dilate']} px.", "",
             "| method | target | layer | sublayer | pointing ↑ | peak on other object ↓ | energy PG ↑ | deletion AUC ↓ | insertion AUC ↑ |",
             "|---|---|---|---|---|---|---|---|---|"]
    def fmt(r):
        return (f"| {r['method']} | {r['target']} | {r['layer']} | {r['sublayer']} | {r['pointing']:.3f} | "
                f"{r['other_object']:.3f} | {r['energy']:.3f} | {r['deletion_auc']:.3f} | {r['insertion_auc']:.3f} |")
    fixed = ("random_pixel", "random_object", "rollout")
    baselines = [r for r in rows if r["method"] in fixed]
    ranked = sorted((r for r in rows if r["method"] not in fixed), key=lambda r: -r["pointing"])
    lines += [fmt(r) for r in baselines] + [fmt(r) for r in ranked]
    return "\n".join(lines)


def figure(result: dict, path: Path) -> None:
    """Layer × sublayer heatmap of the pointing game, one panel per target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result["rows"] if r["method"] == "grad_cam"]
    targets = sorted({r["target"] for r in rows}, key=TARGETS.index)
    layers = sorted({r["layer"] for r in rows})
    fig, axes = plt.subplots(1, len(targets), figsize=(4.2 * len(targets), 3.6), squeeze=False)
    for ax, target in zip(axes[0], targets):
        grid = np.full((len(layers), len(SUBLAYERS)), np.nan)
        for r in rows:
            if r["target"] == target:
                grid[layers.index(r["layer"]), SUBLAYERS.index(r["sublayer"])] = r["pointing"]
        im = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", aspect="auto")
        for (i, j), v in np.ndenumerate(grid):
            ax.text(j, i, "dead" if np.isnan(v) else f"{v:.2f}", ha="center", va="center", fontsize=6,
                    color="grey" if np.isnan(v) else ("white" if v < 0.6 else "black"))
        ax.set_xticks(range(len(SUBLAYERS)), [s.split(".")[-1] for s in SUBLAYERS], rotation=60, fontsize=7)
        ax.set_yticks(range(len(layers)), [f"layer {layer}" for layer in layers], fontsize=7)
        ax.set_title(f"pointing game, target = {target}", fontsize=9)
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130, bbox_inches="tight")
    plt.close(fig)


def methods_figure(result: dict, path: Path) -> None:
    """Each method's best setting per target: pointing game, and deletion / insertion AUC."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    names = [m for m in ("grad_cam", *METHODS) if any(r["method"] == m for r in rows)]
    targets = [t for t in TARGETS if any(r["target"] == t for r in rows)]
    metrics = [("pointing", "pointing game ↑"), ("deletion_auc", "deletion AUC ↓"), ("insertion_auc", "insertion AUC ↑")]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    width = 0.8 / len(targets)
    for ax, (metric, title) in zip(axes, metrics):
        for t, target in enumerate(targets):
            values = [best(rows, m, target)[metric] if any(r["method"] == m and r["target"] == target for r in rows)
                      else np.nan for m in names]
            ax.bar(np.arange(len(names)) + (t - (len(targets) - 1) / 2) * width, values, width, label=target)
        ax.set_xticks(range(len(names)), [n.replace("grad_cam", "gradcam") for n in names], rotation=60, fontsize=8)
        ax.set_title(f"{title} (best setting by pointing game)", fontsize=9)
        ax.set_ylim(0, 1)
        ax.grid(axis="y", alpha=0.3)
    axes[-1].legend(title="target", fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130, bbox_inches="tight")
    plt.close(fig)


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
    if args.replot:
        result = json.loads(args.out.read_text())
    else:
        result = evaluate(args.model, args.scenes, args.curves, args.steps, sublayers=sublayers, methods=methods,
                          baselines=not args.no_baselines, curve_methods=methods)
        result["command"] = "python " + " ".join(sys.argv)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    if len(methods) > 1:
        methods_figure(result, args.out.with_suffix(".png"))
    elif "gradcam" in methods:
        figure(result, args.figure)
    text = markdown(result)
    if len(methods) > 1:
        text = "Each method × target at its best setting:\n\n" + method_target_table(result["rows"]) + \
            "\n\nEvery setting:\n\n" + text
    args.out.with_suffix(".md").write_text(text + "\n")
    print(text)
    for method in methods:
        b = best(result["rows"], "grad_cam" if method == "gradcam" else method)
        print(f"best {method}: layer {b['layer']} {b['sublayer']} target {b['target']}: pointing {b['pointing']:.3f}")


if __name__ == "__main__":
    main()
