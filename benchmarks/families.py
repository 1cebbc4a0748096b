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
process: a 640×480 image, K = 8 prompts, text embeddings cached (warm), median of the repeats.

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
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KINDS = ["base", "siglip", "siglip2", "rn50", "laion-b32"]
PROMPTS = [
    "a photo of a cat.", "a photo of a dog.", "a photo of a dog and a cat.", "a cup of coffee.",
    "a spoon.", "a wooden table.", "a photo of an astronaut.", "a photo of a rocket.",
]


def build(kind: str, cache: Path) -> str:
    """Save (once) a random-weight model of a real architecture; return the name clipcam loads."""
    sys.path.insert(0, str(ROOT))
    import torch

    path = cache / kind
    if kind == "base":
        from clipcam.testing import architecture_config, save_random_clip, word_tokenizer

        if not (path / "model.safetensors").exists():
            tok = word_tokenizer()
            save_random_clip(path, config=architecture_config("base", tok), tokenizer=tok, seed=0)
        return str(path)
    if kind == "siglip":
        from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel

        from clipcam.testing import word_tokenizer

        if not (path / "model.safetensors").exists():
            tok = word_tokenizer()
            torch.manual_seed(0)
            model = SiglipModel(SiglipConfig()).eval()  # the defaults are siglip-base-patch16-224's sizes
            model.save_pretrained(path, safe_serialization=True)
            tok.save_pretrained(path)
            SiglipImageProcessor(size={"height": 224, "width": 224}).save_pretrained(path)
        return str(path)
    if kind == "siglip2":
        from transformers import Siglip2Config, Siglip2ImageProcessor, Siglip2Model, Siglip2Processor

        from clipcam.testing.families import gemma_word_tokenizer

        if not (path / "model.safetensors").exists():
            torch.manual_seed(0)
            model = Siglip2Model(Siglip2Config()).eval()  # the defaults are siglip2-base-patch16-naflex's sizes
            model.save_pretrained(path, safe_serialization=True)
            processor = Siglip2ImageProcessor(patch_size=16, max_num_patches=256)
            Siglip2Processor(image_processor=processor, tokenizer=gemma_word_tokenizer()).save_pretrained(path)
        return str(path)
    import open_clip
    from safetensors.torch import save_file

    name = {"rn50": "RN50", "laion-b32": "ViT-B-32", "vit-h": "ViT-H-14"}[kind]
    if not (path / "open_clip_model.safetensors").exists():
        path.mkdir(parents=True, exist_ok=True)
        cfg = open_clip.get_model_config(name)
        torch.manual_seed(0)
        model = open_clip.create_model(name, pretrained=None)
        preprocess = {"size": [224, 224], "mode": "RGB", "mean": list(open_clip.OPENAI_DATASET_MEAN),
                      "std": list(open_clip.OPENAI_DATASET_STD), "interpolation": "bicubic",
                      "resize_mode": "shortest", "fill_color": 0}
        (path / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg, "preprocess_cfg": preprocess}))
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path / "open_clip_model.safetensors"))
    return f"local-dir:{path}"


def measure(source: str, code: str, repeats: int) -> dict:
    """In this process: floor and explain times for one model, with clipcam imported from ``code``."""
    sys.path.insert(0, code)
    import torch
    from PIL import Image

    import clipcam
    from clipcam import load_explainer

    assert Path(clipcam.__file__).resolve().is_relative_to(Path(code).resolve()), clipcam.__file__
    torch.set_num_threads(torch.get_num_threads())
    ex = load_explainer(source, device="cpu")
    image = Image.open(ROOT / "assets" / "coffee.png").convert("RGB").resize((640, 480))
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
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        out[name] = statistics.median(times)
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
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "families.json")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--code", default=str(ROOT), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.code, args.repeats)))
        return
    kinds = args.models or KINDS + (["vit-h"] if args.vit_h else [])
    sources = {kind: build(kind, args.cache) for kind in kinds}
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
                row.update(before_explain=old["explain"], before_floor=old["floor"], before_forward=old["forward"],
                           before_explain_cold=old["explain_cold"])
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
