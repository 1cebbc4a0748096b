"""Segmentation quality of every method on the shapes world, for every shipped shapes model: a thin
caller of clipcam.eval.evaluate, the evaluator behind ``python -m clipcam eval``.

    python benchmarks/dense_quality.py --scenes 40            # easy and hard, every model, one table
    python benchmarks/dense_quality.py --models shapes --scenes 10 --out /tmp/q.json
    python benchmarks/dense_quality.py --models shapes --scenes 1 --slide-price   # + the sliding window's price

For each model (shapes = CLIP ViT, shapes-siglip, shapes-rn = open_clip ResNet), each scene set
(easy: 2–3 objects; hard: 4–6 with distractors and occlusion) and every method in the registry that
the model supports (a dense method appears here as soon as it is registered), every layer is
measured at the family's default sublayer and the ``logit`` target. The table shows, per method,
the layer with the best pointing game (the JSON keeps every layer): pointing game, energy pointing
game, the binary protocol (pixel accuracy, two-class mIoU, mAP), p-mIoU over the set and per image,
and the multi-class mIoU of the label map. It also writes each model's attention entropy per block
(clipcam.eval.entropy) on the first scenes, which says how peaked the attention a dense method
rewires is on these small models.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from clipcam import load_explainer  # noqa: E402
from clipcam.constants import SHAPES_MODEL_DIR  # noqa: E402
from clipcam.eval import evaluate as ev  # noqa: E402
from clipcam.eval.entropy import attention_entropy  # noqa: E402
from clipcam.slide import dense_methods, slide_forwards, slide_label_map  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
#: The shipped shapes models: short name → source (the siglip and ResNet ones sit beside shapes-clip).
MODELS = {"shapes": "shapes", "shapes-siglip": str(SHAPES_MODEL_DIR.parent / "shapes-siglip"),
          "shapes-rn": f"local-dir:{SHAPES_MODEL_DIR.parent / 'shapes-rn'}"}
COLUMNS = (("pointing", "pointing"), ("energy", "energy"), ("pixel_acc", "pix. acc"), ("binary_miou", "bin. mIoU"),
           ("map_ap", "mAP"), ("p_miou", "p-mIoU"), ("p_miou_image", "p-mIoU/img"), ("mc_miou", "mc mIoU"))


def run_model(name: str, scenes: int, entropy_scenes: int = 5) -> dict:
    """Every supported method's rows on easy and hard scenes, and the attention entropy per block."""
    explainer = load_explainer(MODELS[name], device="cpu")
    out: dict = {"model": name, "source": MODELS[name], "family": explainer.family, "methods": list(explainer.methods)}
    for hard in (False, True):
        samples = ev.shapes_samples(scenes, hard=hard)
        start = time.perf_counter()
        result = ev.evaluate(explainer, samples, explainer.methods, (explainer.default_sublayer,), ("logit",),
                             n_curves=0, baselines=False)
        out["hard" if hard else "easy"] = {**result, "wall_seconds": round(time.perf_counter() - start, 1)}
    if "attention" in explainer.adapter.capabilities:
        per_scene = [attention_entropy(explainer, s.image) for s in ev.shapes_samples(entropy_scenes)]
        out["entropy"] = [{"layer": rows[0]["layer"], "all": float(np.mean([r["all"] for r in rows])),
                           "cls": float(np.mean([r["cls"] for r in rows]))} for rows in zip(*per_scene)]
    return out


def slide_price(name: str, repeats: int = 3, size: tuple[int, int] = (448, 336)) -> list[dict]:
    """For every dense method the model supports: seconds of one explain and of the sliding window's
    label map on a (W, H) noise image (every repeat kept), and the window count. Empty when no
    method carries DenseDefaults."""
    explainer = load_explainer(MODELS[name], device="cpu")
    image = (np.random.default_rng(0).random((size[1], size[0], 3)) * 255).astype(np.uint8)
    prompts = ["a photo of a red circle.", "a photo of a blue square."]
    out = []
    for method in (m for m in dense_methods() if m in explainer.methods):
        plain, slid = [], []
        for _ in range(repeats):
            start = time.perf_counter()
            explainer.explain(image, prompts, method=method)
            plain.append(time.perf_counter() - start)
            start = time.perf_counter()
            slide_label_map(explainer, image, prompts, method)
            slid.append(time.perf_counter() - start)
        out.append({"model": name, "method": method, "size": size, "forwards": slide_forwards(size, method),
                    "explain_s": plain, "slide_s": slid})
    return out


def best_rows(rows: list[dict]) -> list[dict]:
    """Per method, the row (layer) with the best pointing game, ties to the later layer."""
    chosen: dict[str, dict] = {}
    for row in rows:
        old = chosen.get(row["method"])
        if old is None or row["pointing"] >= old["pointing"]:
            chosen[row["method"]] = row
    return list(chosen.values())


def table(results: list[dict]) -> str:
    """One markdown table: model × scenes × method (best layer) × metric."""
    head = "| model | scenes | method | layer | " + " | ".join(h for _, h in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (4 + len(COLUMNS))]
    for res in results:
        for kind in ("easy", "hard"):
            for row in best_rows(res[kind]["rows"]):
                values = " | ".join(f"{row[k]:.3f}" for k, _ in COLUMNS)
                lines.append(f"| {res['model']} | {kind} | {row['method']} | {row['layer']} | {values} |")
    return "\n".join(lines)


def entropy_table(results: list[dict]) -> str:
    """Attention entropy per block (mean over rows / class-token row), one line per model."""
    lines = ["| model | normalised attention entropy per block: all rows (class token row) |", "|---|---|"]
    for res in results:
        if "entropy" in res:
            cells = ", ".join(f"{e['layer']}: {e['all']:.2f} ({e['cls']:.2f})" for e in res["entropy"])
            lines.append(f"| {res['model']} | {cells} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated ({', '.join(MODELS)})")
    parser.add_argument("--scenes", type=int, default=40, help="scenes per set (easy and hard each)")
    parser.add_argument("--out", type=Path, default=RESULTS / "dense_quality.json")
    parser.add_argument("--slide-price", action="store_true",
                        help="also time the sliding window against one explain, for every dense method (none: empty)")
    args = parser.parse_args()
    models = [m.strip() for m in args.models.split(",")]
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        parser.error(f"unknown models {unknown}; choose from {', '.join(MODELS)}")
    results = [run_model(m, args.scenes) for m in models]
    prices = [p for m in models for p in slide_price(m)] if args.slide_price else []
    text = table(results) + "\n\n" + entropy_table(results)
    if prices:
        text += "\n\n| model | method | windows (forwards) | explain s (median) | sliding window s (median) |\n|---|---|---|---|---|\n"
        text += "\n".join(f"| {p['model']} | {p['method']} | {p['forwards']} | {np.median(p['explain_s']):.3f} | "
                          f"{np.median(p['slide_s']):.3f} |" for p in prices)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"command": "python benchmarks/dense_quality.py " + " ".join(sys.argv[1:]),
                                    "scenes": args.scenes, "results": results, "slide_price": prices}, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
