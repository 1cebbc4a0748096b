"""Speed of the parallel-path dense methods (GEM, CLIP Surgery) against the gradient-free forward,
beside Grad-CAM and Chefer, side by side in one process.

    flock /work/test.lock python benchmarks/dense_parallel.py            # ViT-B/16 and ViT-L/14, K = 8
    python benchmarks/dense_parallel.py --arch base16 --repeats 2        # a smoke run

Hugging Face CLIP at the real ViT-B/16 and ViT-L/14 sizes, random weights (timing does not
depend on their values), a 640×480 image, K = 8 prompts with the text cached. Each round times,
one after the other, every row once, so that whatever else the machine does falls on all rows alike:

- forward: preprocessing, the image tower and the logits, without gradients (the floor);
- gem, clipsurgery: explain() at the authors' default start (the last 6 blocks);
- gradcam: explain() at the default layer (the second-to-last) and sublayer (mlp.fc1);
- chefer: explain() at the default start layer (the second-to-last).

The JSON (every repeat) goes to benchmarks/results/dense_parallel.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # as a script too: this checkout's clipcam and benchmarks

import torch

from benchmarks._common import PROMPTS, RESULTS, photo, random_model
from clipcam import load_explainer
from clipcam import testing

ROWS = ("forward", "gem", "clipsurgery", "gradcam", "chefer")


def model_path(arch: str, cache: Path) -> str:
    """A random-weight CLIP: "base16" is ViT-B/16 (ViT-B/32's config with 16-pixel patches), "large" ViT-L/14."""
    if arch == "large":
        return random_model("large", cache / "large")
    path = cache / "base16"
    if not (path / "model.safetensors").exists():
        tok = testing.word_tokenizer()
        config = testing.architecture_config("base", tok)
        config.vision_config.patch_size = 16
        testing.save_random_clip(path, config=config, tokenizer=tok)
    return str(path)


def rows_for(arch: str, cache: Path) -> dict:
    """name → a call that runs that row once."""
    ex = load_explainer(model_path(arch, cache), device="cpu")
    adapter, image, prompts = ex.adapter, photo(), PROMPTS[:8]
    text, _ = adapter.text_embeddings(prompts)

    def forward():
        with torch.inference_mode():
            adapter.logits(adapter.image_features(adapter.preprocess(image)), text)

    calls = {"forward": forward}
    for method in ROWS[1:]:
        calls[method] = lambda method=method: ex.explain(image, prompts, method=method)
    return calls


def measure(arch: str, repeats: int, cache: Path) -> dict:
    calls = rows_for(arch, cache)
    for fn in calls.values():  # warm-up: first-call allocations, the text cache
        fn()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, fn in calls.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(t) for name, t in times.items()}
    for name in calls:
        print(f"  {arch:6s} {name:12s} median {medians[name]:.3f} s  ×{medians[name] / medians['forward']:.2f}",
              flush=True)
    return {"arch": arch, "k": 8, "repeats": repeats, "times_s": times, "median_s": medians}


def table(results: list[dict]) -> str:
    """Markdown: median seconds per row and its ratio to the forward."""
    lines = ["| model | " + " | ".join(ROWS) + " |", "|---" * (len(ROWS) + 1) + "|"]
    names = {"base16": "ViT-B/16", "large": "ViT-L/14"}
    for r in results:
        m = r["median_s"]
        cells = [f"{m[n]:.3f} s (×{m[n] / m['forward']:.2f})" for n in ROWS]
        lines.append(f"| {names[r['arch']]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", choices=["base16", "large"], action="append")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "clipcam-bench-models")
    parser.add_argument("--out", type=Path, default=RESULTS / "dense_parallel.json")
    args = parser.parse_args()
    results = [measure(arch, args.repeats, args.cache) for arch in args.arch or ["base16", "large"]]
    meta = {"python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "machine": platform.machine(), "command": " ".join(sys.argv)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    print(table(results))


if __name__ == "__main__":
    main()
