"""Speed of the training-free dense methods beside the gradient-free forward, Grad-CAM and Chefer,
all in one run at K = 8 prompts (issue 23: within 1.15× of the gradient-free forward).

Each round times, in turn, the model's scores without any gradient (``Explainer.scores``: one
forward, the text cached), each dense method's ``explain`` (one unchanged forward, the changed last
block run after it) and each comparison method's ``explain``, at the library's default layer; the
rounds interleave the settings so that the machine's drift hits them alike. Every repeat is kept.

    flock /work/test.lock env OMP_NUM_THREADS=1 python benchmarks/dense.py --models base,large \
        --methods maskclip,sclip,clearclip,naclip --compare gradcam,chefer --repeats 5

``base`` and ``large`` are benchmarks/_common's random-weight Hugging Face CLIP ViT-B/32 and
ViT-L/14 (the architectures of the other speed tables). Other dense methods (gem, clipsurgery)
join with ``--methods``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from benchmarks._common import PROMPTS, RESULTS, photo, random_model, timed  # noqa: E402
from clipcam import load_explainer  # noqa: E402

#: What each dense method must stay within, as a multiple of the gradient-free forward's median.
TARGET = 1.15


def measure(kind: str, methods: list[str], compare: list[str], repeats: int, folder: Path) -> dict:
    """Every repeat's seconds per setting on one model, and each median's ratio to the forward's."""
    explainer = load_explainer(random_model(kind, folder / kind), device="cpu")
    image = photo()
    settings = {"forward": lambda: explainer.scores(image, PROMPTS)}
    for method in [*methods, *compare]:
        settings[method] = lambda method=method: explainer.explain(image, PROMPTS, method=method)
    for fn in settings.values():  # warm-up: the text cache, the allocator, lazy imports
        fn()
    times: dict[str, list[float]] = {name: [] for name in settings}
    for _ in range(repeats):
        for name, fn in settings.items():
            times[name] += timed(fn)
    base = statistics.median(times["forward"])
    rows = {name: {"seconds": ts, "median": statistics.median(ts), "ratio": statistics.median(ts) / base,
                   "dense": name in methods} for name, ts in times.items()}
    return {"model": kind, "layers": explainer.num_layers, "grid": list(explainer.grid), "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="base,large")
    parser.add_argument("--methods", default="maskclip,sclip,clearclip,naclip", help="dense methods, comma-separated")
    parser.add_argument("--compare", default="gradcam,chefer", help="gradient methods timed beside them")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=str(RESULTS / "dense-cpu.json"))
    args = parser.parse_args()
    methods, compare = args.methods.split(","), [m for m in args.compare.split(",") if m]
    with tempfile.TemporaryDirectory() as tmp:
        runs = [measure(kind, methods, compare, args.repeats, Path(tmp)) for kind in args.models.split(",")]
    out = {"prompts": len(PROMPTS), "repeats": args.repeats, "threads": torch.get_num_threads(), "target": TARGET,
           "command": " ".join(sys.argv), "runs": runs}
    Path(args.out).write_text(json.dumps(out, indent=1))
    for run in runs:
        for name, row in run["rows"].items():
            flag = "" if not row["dense"] else ("  ok" if row["ratio"] <= TARGET else "  OVER")
            print(f"{run['model']:6} {name:10} {row['median'] * 1000:8.0f} ms  {row['ratio']:5.2f}×{flag}")


if __name__ == "__main__":
    main()
