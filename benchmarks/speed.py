"""Speed and peak memory: clipcam against the reference notebook's pipeline and a gradient-free forward.

    python benchmarks/speed.py                 # both architectures, writes BENCHMARKS.md's table
    python benchmarks/speed.py --arch base     # one architecture
    python benchmarks/speed.py --quick         # fewer repeats, for a smoke run

The real ViT-B/32 ("base") and ViT-L/14 ("large") architectures are built with random weights
(the hub cannot be reached from CI machines; timing does not depend on the weights' values) and
a small word-level tokenizer whose prompts are about as long as CLIP's BPE makes them. Each
measurement runs in its own process, so that its peak resident memory (ru_maxrss) is its own.
Every row: a 640×480 image, the second-to-last layer's mlp.fc1.

(a) reference: the notebook's pipeline, one pytorch-grad-cam GradCAM call per prompt, each
    running the processor and CLIP's whole forward and backward again (weights take gradients).
(b) clipcam cold: explain() with an empty text cache (text encoded in the call);
    clipcam warm: the same prompts again (text embeddings cached).
(c) floor: processor + CLIP forward of the same inputs without gradients.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # as a script too: this checkout's clipcam and benchmarks

import torch
from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

from benchmarks._common import PROMPTS, RESULTS, photo, random_model, timed
from clipcam import load_explainer
from clipcam.explainer import MASKING_METHODS, METHODS
from clipcam.testing.reference import reference_grad_cam


def model_dir(arch: str, cache: Path) -> Path:
    """Save (once) a random-weight model of the real architecture and return its directory."""
    return Path(random_model(arch, cache / arch))


#: Score-CAM runs one forward per channel: timed on v_proj (the model width: 768 / 1024 forwards),
#: not mlp.fc1 (4× as many).
METHOD_SUBLAYER = {"scorecam": "self_attn.v_proj"}


def measure(arch: str, method: str, k: int, repeats: int, cache: Path) -> dict:
    """Run one (arch, method, K) measurement in this process; return times and peak memory."""
    path = model_dir(arch, cache)
    img, prompts = photo(), PROMPTS[:k]
    warm = None
    if method in ("reference", "reference_all_layers", "floor"):
        model = CLIPModel.from_pretrained(path).eval()  # the notebook's model: weights require grad
        tok = AutoTokenizer.from_pretrained(path)
        proc = AutoImageProcessor.from_pretrained(path)
        n = len(model.vision_model.encoder.layers)
        if method == "reference":
            fn = lambda: reference_grad_cam(model, tok, proc, img, prompts, n - 1, "mlp.fc1")  # noqa: E731
        elif method == "reference_all_layers":
            fn = lambda: [reference_grad_cam(model, tok, proc, img, prompts, layer, "mlp.fc1")  # noqa: E731
                          for layer in range(1, n + 1)]
        else:
            def fn():
                inputs = proc(images=img, return_tensors="pt")
                tokens = tok(prompts, padding=True, return_tensors="pt")
                with torch.inference_mode():
                    model(pixel_values=inputs["pixel_values"], **tokens)
    else:
        ex = load_explainer(str(path), device="cpu")
        n = ex.num_layers
        if method == "clipcam_cold":
            def fn():
                ex.adapter.text_cache.clear()
                ex.explain(img, prompts, layer=n - 1, sublayer="mlp.fc1")
        elif method == "clipcam_warm":
            fn = lambda: ex.explain(img, prompts, layer=n - 1, sublayer="mlp.fc1")  # noqa: E731
        elif method == "clipcam_layer1":
            fn = lambda: ex.explain(img, prompts, layer=1, sublayer="mlp.fc1")  # noqa: E731
        elif method == "clipcam_sweep":
            fn = lambda: ex.sweep(img, prompts, sublayer="mlp.fc1")  # noqa: E731
        elif method.startswith("method:"):  # one explanation method, second-to-last layer, warm text cache
            name = method.split(":", 1)[1]
            sublayer = METHOD_SUBLAYER.get(name, "mlp.fc1")
            fn = lambda: ex.explain(img, prompts, layer=n - 1, sublayer=sublayer, method=name)  # noqa: E731
            if name in MASKING_METHODS:  # minutes per call: warm up with a cheap call instead
                warm = lambda: ex.explain(img, prompts, layer=n - 1, sublayer=sublayer)  # noqa: E731
        else:
            raise SystemExit(f"unknown method {method}")
    (warm if warm else fn)()  # warm-up: first-call allocations, lazy imports, text cache for the warm rows
    times = timed(fn, repeats)
    return {
        "arch": arch, "method": method, "k": k, "repeats": repeats,
        "median_s": statistics.median(times), "min_s": min(times), "times_s": times,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def run_child(arch: str, method: str, k: int, repeats: int, cache: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", arch, method, str(k), str(repeats), str(cache)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"  {arch:5s} {method:22s} K={k}: median {result['median_s']:.3f} s, peak {result['peak_rss_mb']:.0f} MB",
          flush=True)
    return result


def plan(arch: str, quick: bool) -> list[tuple[str, int, int]]:
    """(method, K, repeats) for one architecture; the slow reference gets fewer repeats."""
    slow = 1 if quick else (3 if arch == "base" else 2)
    fast = 2 if quick else 7
    rows = []
    for k in (1, 3, 8):
        rows += [("reference", k, slow), ("clipcam_cold", k, fast), ("clipcam_warm", k, fast), ("floor", k, fast)]
    rows += [("clipcam_layer1", 8, fast), ("clipcam_sweep", 8, fast)]
    if arch == "base":
        rows.append(("reference_all_layers", 8, 1))
    return rows


def table(results: list[dict]) -> str:
    """Markdown tables of the results."""
    by = {(r["arch"], r["method"], r["k"]): r for r in results}
    lines = ["| model | K | (a) reference | (b) clipcam cold | clipcam warm | (c) floor | a/b | b/c (cold) | b/c (warm) | peak MB: reference / clipcam / floor |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for arch in ("base", "large"):
        for k in (1, 3, 8):
            if (arch, "reference", k) not in by:
                continue
            a, b, w, c = (by[(arch, m, k)] for m in ("reference", "clipcam_cold", "clipcam_warm", "floor"))
            lines.append(
                f"| {arch} | {k} | {a['median_s']:.3f} s | {b['median_s']:.3f} s | {w['median_s']:.3f} s | "
                f"{c['median_s']:.3f} s | {a['median_s'] / b['median_s']:.1f}× | {b['median_s'] / c['median_s']:.2f}× | "
                f"{w['median_s'] / c['median_s']:.2f}× | {a['peak_rss_mb']:.0f} / {b['peak_rss_mb']:.0f} / {c['peak_rss_mb']:.0f} |")
    lines += ["", "| model | layers | sweep, all layers × 8 prompts | layer 1 alone | sweep / layer 1 | reference once per layer | reference / sweep | peak MB (sweep) |",
              "|---|---|---|---|---|---|---|---|"]
    for arch in ("base", "large"):
        if (arch, "clipcam_sweep", 8) not in by:
            continue
        s, one, ref = by[(arch, "clipcam_sweep", 8)], by[(arch, "clipcam_layer1", 8)], by[(arch, "reference", 8)]
        n = 12 if arch == "base" else 24
        full = by.get((arch, "reference_all_layers", 8))
        ref_all = full["median_s"] if full else n * ref["median_s"]
        label = f"{ref_all:.1f} s" + ("" if full else f" (estimated: {n} × one layer's {ref['median_s']:.2f} s)")
        lines.append(f"| {arch} | {n} | {s['median_s']:.3f} s | {one['median_s']:.3f} s | {s['median_s'] / one['median_s']:.2f}× | "
                     f"{label} | {ref_all / s['median_s']:.0f}× | {s['peak_rss_mb']:.0f} |")
    return "\n".join(lines)


def methods_table(results: list[dict]) -> str:
    """Markdown: median time per call for each method at K = 8, base and large side by side."""
    by = {(r["arch"], r["method"]): r for r in results}
    lines = ["| method | base, K = 8 | large, K = 8 |", "|---|---|---|"]
    for name in METHODS:
        cells = [f"{by[(a, 'method:' + name)]['median_s']:.3f} s" if (a, "method:" + name) in by else "–"
                 for a in ("base", "large")]
        where = f" ({METHOD_SUBLAYER[name]}, one run)" if name in METHOD_SUBLAYER else ""
        lines.append(f"| {name}{where} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        arch, method, k, repeats, cache = sys.argv[2:7]
        print(json.dumps(measure(arch, method, int(k), int(repeats), Path(cache))))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", choices=["base", "large"], action="append")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "clipcam-bench-models")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--methods", action="store_true",
                        help="time every explanation method at K = 8 instead (results in speed-methods-cpu.json)")
    parser.add_argument("--only", default=None,
                        help="with --methods: time only these (comma-separated) and update their rows in --out")
    args = parser.parse_args()
    args.out = args.out or RESULTS / ("speed-methods-cpu.json" if args.methods else "speed-cpu.json")
    results = []
    for arch in args.arch or ["base", "large"]:
        model_dir(arch, args.cache)
        chosen = [m.strip() for m in args.only.split(",")] if args.only else list(METHODS)
        rows = ([(f"method:{m}", 8, 1 if m in MASKING_METHODS else (2 if args.quick else 5)) for m in chosen]
                if args.methods else plan(arch, args.quick))
        for method, k, repeats in rows:
            results.append(run_child(arch, method, k, repeats, args.cache))
    meta = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "date": time.strftime("%Y-%m-%d"), "command": " ".join(["python"] + sys.argv)}
    if args.only and args.out.exists():  # keep the other methods' rows, replace these
        done = {(r["arch"], r["method"]) for r in results}
        old = json.loads(args.out.read_text())
        results = [r for r in old["results"] if (r["arch"], r["method"]) not in done] + results
        meta = {**meta, "earlier": old["meta"]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "results": results}, indent=1) + "\n")
    print(methods_table(results) if args.methods else table(results))


if __name__ == "__main__":
    main()
