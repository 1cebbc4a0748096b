"""float32 against bfloat16 (and float16 on a GPU), side by side in one process (issue 25).

    python benchmarks/precision.py                          # CPU: fp32 and bf16, base and large
    python benchmarks/precision.py --archs base --repeats 2 # a smoke run
    python benchmarks/precision.py --device cuda            # a GPU: fp32, bf16 and fp16 in one run

Real architectures with random weights (timing does not depend on the weights' values): ViT-B/16
("base16", transformers' CLIP) and ViT-L/14 ("large"), K = 8 prompts, a 640×480 photo. Each row
times the same call under every precision, one precision after the other, after one warm-up call
each: Grad-CAM (mlp.fc1, second-to-last layer), Chefer (from layer 1 to the last, the attention
fold), a sweep (Grad-CAM at every layer, one pass), the words by integrated gradients (16 steps,
the text side) and, for base, the HTTP /explain of benchmarks/latency.py (app.py in its own
process, CLIPCAM_PRECISION set, Chefer from layer 11). Every repeat's seconds are kept in the JSON.
Beside each speed-up: the lowest per-prompt Pearson r of the maps against float32, whether every
peak stays in the same or an adjacent patch, and the largest probability difference. The CPU's
bfloat16 check (clipcam.precision.native_cpu_bf16) is written down too: without native bfloat16
the CPU emulates it, and bfloat16 is then slower, not faster.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # as a script too: this checkout's clipcam and benchmarks

import numpy as np
import torch

from benchmarks._common import PROMPTS, RESULTS, make_images, random_model, serve, timed
from clipcam import load_explainer
from clipcam.models import clear_cache
from clipcam.precision import choose, native_cpu_bf16

#: What each row runs: (label, call on an explainer and an image path) → an Explanation or a WordRelevance.
CALLS = {
    "gradcam": lambda ex, path: ex.explain(path, PROMPTS, method="gradcam", sublayer="mlp.fc1"),
    "chefer": lambda ex, path: ex.explain(path, PROMPTS, method="chefer", layer=1),
    "sweep": lambda ex, path: ex.sweep(path, PROMPTS, method="gradcam", sublayer="mlp.fc1"),
    "words_intgrad": lambda ex, path: ex.words(path, PROMPTS, method="intgrad"),
}


def base16(path: Path, seed: int = 0) -> str:
    """ViT-B/16 (transformers' CLIP, real sizes, random weights), saved once to ``path``."""
    from clipcam import testing  # for benchmarks and tests only, as benchmarks/_common.py does

    if not (path / "model.safetensors").exists():
        tok = testing.word_tokenizer()
        config = testing.architecture_config("base", tok)
        config.vision_config.patch_size = 16
        testing.save_random_clip(path, config=config, tokenizer=tok, seed=seed)
    return str(path)


def agreement(reference, other) -> dict:
    """Lowest per-prompt Pearson r of the maps, whether every peak is within one patch, the largest
    probability difference in percentage points (maps: every layer of a sweep)."""
    if not hasattr(reference, "layer_maps"):  # word relevance: the same most-negative word?
        same = [int(np.argmin(a.word_relevance)) == int(np.argmin(b.word_relevance))
                for a, b in zip(reference.prompts, other.prompts)]
        return {"same_most_negative_word": float(np.mean(same))}
    a = reference.layer_maps.reshape(-1, *reference.layer_maps.shape[-2:])
    b = other.layer_maps.reshape(-1, *other.layer_maps.shape[-2:])
    rs, near = [], []
    for x, y in zip(a, b):
        if x.std() > 0 and y.std() > 0:
            rs.append(float(np.corrcoef(x.ravel(), y.ravel())[0, 1]))
        px, py = np.unravel_index(x.argmax(), x.shape), np.unravel_index(y.argmax(), y.shape)
        near.append(max(abs(px[0] - py[0]), abs(px[1] - py[1])) <= 1)
    return {"min_r": round(min(rs), 5) if rs else None, "peaks_adjacent": float(np.mean(near)),
            "max_prob_diff_pp": round(float(np.abs(reference.probs - other.probs).max() * 100), 4)}


def time_arch(model: str, path: Path, precisions: list[str], device: str, repeats: int, calls: list[str],
              warmup: int = 1, rows: dict | None = None, save=lambda: None) -> dict:
    """Every call under every precision, one model loaded per precision, in this process; ``rows`` is
    filled and ``save()`` called after each call's row (an emulated bfloat16 run can take long)."""
    explainers = {p: load_explainer(model, device=device, precision=p) for p in precisions}
    rows = {} if rows is None else rows
    for name in calls:
        row: dict = {}
        results = {}
        for p, ex in explainers.items():
            call = CALLS[name]
            times = timed(lambda ex=ex, p=p, call=call, into=results: into.__setitem__(p, call(ex, str(path))), repeats,
                          warmup=warmup)
            row[p] = {"median_s": round(statistics.median(times), 4), "times_s": [round(t, 4) for t in times]}
        for p in precisions[1:]:
            row[p]["speedup"] = round(row[precisions[0]]["median_s"] / row[p]["median_s"], 3)
            row[p]["vs_" + precisions[0]] = agreement(results[precisions[0]], results[p])
        rows[name] = row
        save()
        print(model, name, json.dumps(row), flush=True)
    clear_cache()
    return rows


def time_http(model: str, path: Path, precisions: list[str], device: str, repeats: int, work: Path) -> dict:
    """/explain over HTTP (benchmarks/latency.py's call: Chefer from layer 11), one app per precision."""
    from gradio_client import Client, handle_file  # only now: it reads the temporary folder once, at import

    settings = dict(layer=11, sublayer="mlp.fc1", target="logit", method="chefer",
                    colormap="inferno", alpha=0.5, shared=False)
    row = {}
    for p in precisions:
        app, url = serve(["app.py", "--port", "PORT", "--device", device],
                         env={"CLIPCAM_MODELS": model, "CLIPCAM_PRECISION": p, "GRADIO_TEMP_DIR": str(work / f"gradio-{p}")})
        try:
            client = Client(url, verbose=False)
            times = timed(lambda c=client: c.predict(image=handle_file(str(path)), prompts_text="\n".join(PROMPTS),
                                                     model=model, **settings, api_name="/explain"), repeats, warmup=2)
        finally:
            app.kill()
        row[p] = {"median_s": round(statistics.median(times), 4), "times_s": [round(t, 4) for t in times]}
    for p in precisions[1:]:
        row[p]["speedup"] = round(row[precisions[0]]["median_s"] / row[p]["median_s"], 3)
    print(model, "explain_http", json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", default="base16,large", help="comma-separated: base16, large")
    parser.add_argument("--device", default="cpu", help="cpu (fp32, bf16) or cuda (fp32, bf16, fp16)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls per precision before the timed ones")
    parser.add_argument("--calls", default=",".join(CALLS), help=f"comma-separated: {', '.join(CALLS)}")
    parser.add_argument("--no-http", action="store_true", help="skip /explain over HTTP")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    precisions = ["fp32", "bf16"] + (["fp16"] if args.device.startswith("cuda") else [])
    work = Path(tempfile.mkdtemp(prefix="clipcam-precision-"))
    (work / "client").mkdir()
    tempfile.tempdir = str(work / "client")  # gradio_client's uploads: deleted with the work folder
    out = args.out or RESULTS / f"precision-{args.device.split(':')[0]}.json"
    native, how = native_cpu_bf16()
    archs: dict = {}
    result = {"command": "python " + " ".join(sys.argv), "device": args.device, "k": len(PROMPTS), "image": [640, 480],
              "precisions": precisions, "repeats": args.repeats, "warmup": args.warmup, "torch": torch.__version__,
              "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
              "cpu_native_bf16": native, "cpu_check": how, "auto_picks": choose("auto", args.device).name,
              "archs": archs}
    out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        out.write_text(json.dumps(result, indent=1) + "\n")

    try:
        path = make_images(work, [((640, 480), "jpg")])[0]
        for arch in args.archs.split(","):
            model = base16(work / arch) if arch == "base16" else random_model(arch, work / arch)
            archs[arch] = {}
            time_arch(model, path, precisions, args.device, args.repeats, args.calls.split(","), args.warmup,
                      archs[arch], save)
            if arch == "base16" and not args.no_http:
                archs[arch]["explain_http"] = time_http(model, path, precisions, args.device, args.repeats, work)
                save()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({k: v for k, v in result.items() if k != "archs"}, indent=1))


if __name__ == "__main__":
    main()
