"""TextSpan on the shapes world: which heads of the shipped shapes CLIP carry colour, shape, position.

    python benchmarks/heads.py scenes --out /tmp/shapes-scenes      # the 300 evaluation scenes + manifest.jsonl
    python -m clipcam heads --model shapes --images /tmp/shapes-scenes/manifest.jsonl \
        --texts clipcam/assets/shapes/texts.txt --out benchmarks/results/heads-shapes
    python benchmarks/heads.py probe --scenes /tmp/shapes-scenes   # writes benchmarks/results/heads-probe.json

``scenes`` writes the fixed, seeded evaluation scenes (clipcam.eval.shapes.evaluation_set) as PNG
files and a manifest whose prompts are each scene's objects ("a photo of a red circle."), so the
zero-shot accuracy counts a scene as right when its best of the 12 object prompts names one of its
objects. ``probe`` checks TextSpan's labels without the text tower: for each head, a ridge
regression from its terms (normalised as TextSpan's) to what the scene holds, fitted on half the
scenes and scored (R², the best of three ridge strengths) on the other half: which colours are present (4 targets), which shapes (3),
and where the objects are (their mean x and y). The text tower of the shapes CLIP only knows the
words its captions used, so position can be seen in a head only this way.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # as a script too: this checkout's clipcam and benchmarks

import numpy as np
from PIL import Image

from benchmarks._common import RESULTS
from clipcam.eval.batch import read_inputs
from clipcam.eval.heads import class_labels, collect_in_process, embed_texts
from clipcam.eval.shapes import COLOURS, SHAPES, evaluation_set, object_prompt
from clipcam.explainer import load_explainer


def write_scenes(out: Path, n: int = 300) -> Path:
    """The evaluation scenes as PNG files and a JSONL manifest (also each scene's objects)."""
    out.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, scene in enumerate(evaluation_set(n)):
        name = f"scene-{i:03d}.png"
        Image.fromarray(scene.image).save(out / name)
        lines.append(json.dumps({"image": name, "id": f"{i:03d}", "prompts": [object_prompt(o) for o in scene.objects],
                                 "objects": [[o.colour, o.shape, *o.center] for o in scene.objects]}))
    (out / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return out / "manifest.jsonl"


def ridge_r2(x: np.ndarray, y: np.ndarray) -> float:
    """The best of three ridge strengths' R² (on the second half, fitted on the first; an upper bound)."""
    return max(ridge_r2_at(x, y, alpha) for alpha in (1e-2, 1e-1, 1.0))


def ridge_r2_at(x: np.ndarray, y: np.ndarray, alpha: float) -> float:
    """R² on the second half of a ridge regression fitted on the first half (x (N, E), y (N, T))."""
    half = len(x) // 2
    mx, my = x[:half].mean(0), y[:half].mean(0)
    a, b = x[:half] - mx, y[:half] - my
    w = np.linalg.solve(a.T @ a + alpha * np.trace(a.T @ a) / a.shape[1] * np.eye(a.shape[1]), a.T @ b)  # (E, T)
    pred = (x[half:] - mx) @ w + my
    resid = ((y[half:] - pred) ** 2).sum(0)
    total = ((y[half:] - y[half:].mean(0)) ** 2).sum(0)
    return float(np.mean(1.0 - resid / total))


def probe(scenes: Path, model: str) -> dict:
    """Per head of every layer: the held-out R² of colour, shape and position from its terms."""
    manifest = scenes / "manifest.jsonl"
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    items = read_inputs(manifest)
    explainer = load_explainer(model, device="cpu")
    classes, _ = class_labels(items)
    start = time.perf_counter()
    terms = collect_in_process(explainer, items, embed_texts(explainer, classes), explainer.num_layers)["last"]
    seconds = time.perf_counter() - start
    colour = np.array([[any(o[0] == c for o in r["objects"]) for c in COLOURS] for r in rows], float)  # (N, 4)
    shape = np.array([[any(o[1] == s for o in r["objects"]) for s in SHAPES] for r in rows], float)  # (N, 3)
    where = np.array([np.mean([o[2:] for o in r["objects"]], axis=0) for r in rows], float)  # (N, 2)
    heads = []
    for layer in range(terms.shape[1]):
        for head in range(terms.shape[2]):
            x = terms[:, layer, head].astype(np.float64)
            heads.append({"layer": layer + 1, "head": head + 1, "colour_r2": ridge_r2(x, colour),
                          "shape_r2": ridge_r2(x, shape), "position_r2": ridge_r2(x, where)})
    return {"model": model, "scenes": len(rows), "collect_seconds": seconds, "heads": heads,
            "machine": platform.machine(), "python": platform.python_version()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    s = sub.add_parser("scenes", help="write the evaluation scenes and their manifest")
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--n", type=int, default=300)
    p = sub.add_parser("probe", help="per-head linear probes of colour, shape and position")
    p.add_argument("--scenes", type=Path, required=True)
    p.add_argument("--model", default="shapes")
    p.add_argument("--json", type=Path, default=RESULTS / "heads-probe.json")
    args = parser.parse_args(argv)
    if args.what == "scenes":
        print(write_scenes(args.out, args.n))
        return 0
    result = probe(args.scenes, args.model)
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    for h in result["heads"]:
        print(f"L{h['layer']} H{h['head']}: colour {h['colour_r2']:.2f}  shape {h['shape_r2']:.2f}  "
              f"position {h['position_r2']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
