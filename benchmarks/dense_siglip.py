"""Is clipcam's SigLIP adaptation of the dense methods faithful? Measured on the shapes SigLIP
(clipcam/assets/shapes-siglip), before the family is given the capabilities (issue 23).

SigLIP reads its embedding with an attention-pooling head, not from a token, and no author defines
MaskCLIP, SCLIP, ClearCLIP or NACLIP for it. The adaptation reads each token through the head's
value path (out_proj of W_v·x, then the head's MLP residual; ``SiglipAdapter.value_pool``): MaskCLIP
on the unchanged last block, the others on their changed last block. This script switches the
capabilities on for one loaded model and scores the maps with clipcam.eval.evaluate (pointing
game, energy pointing game, two-class mIoU) beside Grad-CAM, attention rollout and the random
baselines, on the easy and the hard shapes scenes; the shapes CLIP and ResNet are measured alike.

    flock /work/test.lock python benchmarks/dense_siglip.py --scenes 100
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from clipcam import load_explainer  # noqa: E402
from clipcam.eval import evaluate as ev  # noqa: E402

DENSE = ("maskclip", "sclip", "clearclip", "naclip")
MODELS = {"shapes-siglip": "shapes-siglip", "shapes-clip": "shapes", "shapes-rn": "shapes-rn"}


def measure(name: str, n: int, hard: bool) -> list[dict]:
    """Rows of the evaluator for the dense methods, Grad-CAM at the model's default and the baselines."""
    explainer = load_explainer(str(ROOT / MODELS[name]), device="cpu")
    adapter = explainer.adapter
    if adapter.family == "siglip":  # the adaptation under test, switched on for this model only
        adapter.capabilities = adapter.capabilities | {"dense", "value_path"}
    methods = [m for m in DENSE if m in explainer.methods] + ["gradcam"]
    last = adapter.num_layers
    out = ev.evaluate(explainer, ev.shapes_samples(n, hard=hard), methods=methods,
                      sublayers=(adapter.default_sublayer,), targets=("logit",),
                      layers=tuple(sorted({adapter.default_layer, last})), n_curves=0, rollout_model=name)
    return [{"model": name, "scenes": "hard" if hard else "easy", **row} for row in out["rows"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=100)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "dense-siglip.json"))
    args = parser.parse_args()
    rows = [r for name in args.models.split(",") for hard in (False, True) for r in measure(name, args.scenes, hard)]
    Path(args.out).write_text(json.dumps({"scenes": args.scenes, "rows": rows}, indent=1))
    for r in rows:
        print(f"{r['model']:14} {r['scenes']:4} {r['method']:13} L{r['layer']!s:2} point {r['pointing']:.3f} "
              f"energy {r['energy']:.3f} miou {r['miou']:.3f} n {r['n']}")


if __name__ == "__main__":
    main()
