"""Speed of every model family through its adapter, and of Hugging Face CLIP before and after the
adapters, measured side by side in one run.

    python benchmarks/families.py                      # SigLIP base, SigLIP 2 NaFlex base, RN50, open_clip ViT-B/32, base before/after
    python benchmarks/families.py --models siglip2     # only some of them
    python benchmarks/families.py --vit-h              # also open_clip's ViT-H/14 (4 GB of random weights)
    python benchmarks/families.py --before REV         # the "before" code: a git revision (default 8ec88e7)

The real architectures are built with random weights (timing does not depend on their values):
transformers' SiglipModel at google/siglip-base-patch16-224's sizes, Siglip2Model at
google/siglip2-base-patch16-naflex's (at most 256 patches of 16 px), and open_clip's own built-in
configs RN50, ViT-B-32 and ViT-H-14, saved in each family's own format. Each row runs in its own
process: a 640×480 image, K = 8 prompts, text embeddings cached (warm), median of the repeats (every repeat is kept
in the JSON, as NAME_times).

- floor: preprocessing + the image embedding + the scores, without gradients (text cached);
- explain: Grad-CAM at the family's default layer and sublayer, one forward + one batched backward
  (text cached);
- forward and explain cold: the same with the text cache emptied before each call, so the forward
  is the whole model's on the image and the 8 prompts without gradients, and explain encodes the
  prompts itself: the definitions of the first benchmark ("Speed and memory": (c) floor, (b) cold),
  whose ratio the model-families issue asks the families to keep (within 1.5× at K = 8).
"Before" runs the same explain on the code at --before (a temporary git worktree), to show that
the adapters cost Hugging Face CLIP nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # as a script too: this checkout's clipcam and benchmarks

from benchmarks._common import PROMPTS, RESULTS, ROOT, photo, random_model, timed

KINDS = ["base", "siglip", "siglip2", "rn50", "laion-b32"]


def measure(source: str, code: str, repeats: int) -> dict:
    """In this process: floor and explain times for one model, with clipcam imported from ``code``
    (every repeat kept, and their median)."""
    sys.path.insert(0, code)
    # imported only now: clipcam must come from ``code`` (this checkout or the "before" worktree)
    import torch

    import clipcam
    from clipcam import load_explainer

    assert Path(clipcam.__file__).resolve().is_relative_to(Path(code).resolve()), clipcam.__file__
    torch.set_num_threads(torch.get_num_threads())
    ex = load_explainer(source, device="cpu")
    image = photo()
    ex.explain(image, PROMPTS)  # warm-up: text cache, allocator

    def floor():
        _, pixels, _, _ = ex.prepare_image(image)
        text, _ = ex.text_embeddings(PROMPTS)
        with torch.no_grad():
            ex._logits(pixels, text)

    def explain():
        ex.explain(image, PROMPTS)

    # the code before the adapters kept the text cache on its loaded model
    cache = ex.adapter.text_cache if hasattr(ex, "adapter") else ex.loaded.text_cache

    def forward():  # "Speed and memory"'s floor (c): image and prompts through the whole model, nothing cached
        cache.clear()
        floor()

    def explain_cold():  # "Speed and memory"'s (b) cold: the prompts encoded inside the call
        cache.clear()
        explain()

    out = {}
    for name, fn in (("floor", floor), ("explain", explain), ("forward", forward), ("explain_cold", explain_cold)):
        times = timed(fn, repeats)
        out[name] = statistics.median(times)
        out[name + "_times"] = times
    out["layers"] = ex.num_layers
    return out


def child(source: str, code: str, repeats: int) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", source, "--code", code, "--repeats", str(repeats)],
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vit-h", action="store_true", help="also time open_clip's ViT-H/14")
    parser.add_argument("--models", nargs="+", default=None, choices=KINDS + ["vit-h"],
                        help="time only these (default: all but vit-h)")
    parser.add_argument("--before", default="8ec88e7", help="git revision of the code before the adapters")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "clipcam-bench-families")
    parser.add_argument("--out", type=Path, default=RESULTS / "families.json")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--code", default=str(ROOT), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.code, args.repeats)))
        return
    kinds = args.models or KINDS + (["vit-h"] if args.vit_h else [])
    sources = {kind: random_model(kind, args.cache / kind) for kind in kinds}
    before = Path(tempfile.mkdtemp(prefix="clipcam-before-"))
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(before), args.before],
                   check=True, capture_output=True)
    rows = []
    try:
        for kind in kinds:
            now = child(sources[kind], str(ROOT), args.repeats)
            row = {"model": kind, **now, "ratio": now["explain"] / now["floor"],
                   "ratio_cold": now["explain_cold"] / now["forward"]}
            if kind == "base":  # the same model on the code before the adapters, in the same run
                old = child(sources[kind], str(before), args.repeats)
                row.update({f"before_{name}": value for name, value in old.items() if name != "layers"})
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(before)], capture_output=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2) + "\n")
    print("\n| model | layers | image floor (s) | explain K=8, text cached (s) | ratio | forward: image + 8 prompts (s) "
          "| explain K=8, cold (s) | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['layers']} | {r['floor']:.3f} | {r['explain']:.3f} | {r['ratio']:.2f}× | "
              f"{r['forward']:.3f} | {r['explain_cold']:.3f} | {r['ratio_cold']:.2f}× |")
        if "before_explain" in r:
            print(f"| {r['model']} before the adapters ({args.before}) | {r['layers']} | {r['before_floor']:.3f} | "
                  f"{r['before_explain']:.3f} | {r['before_explain'] / r['before_floor']:.2f}× | "
                  f"{r['before_forward']:.3f} | {r['before_explain_cold']:.3f} | "
                  f"{r['before_explain_cold'] / r['before_forward']:.2f}× |")


if __name__ == "__main__":
    main()
